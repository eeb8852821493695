package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCommands(t *testing.T) {
	ctx := context.Background()
	goc := &Compiler{Toolchain: Go, Bin: "go", Vars: []string{"GOOS=wasip1", "GOARCH=wasm"}}
	cmd := Edge.Command(ctx, goc, "/repo", "/out/edgepixel.wasm")
	if got := strings.Join(cmd.Args, " "); got != "go build -trimpath -o /out/edgepixel.wasm ./edge/cmd/edgepixel" || cmd.Dir != "/repo" {
		t.Errorf("edge module, Go: %q in %q", got, cmd.Dir)
	}
	if !slices.Contains(cmd.Env, "GOOS=wasip1") || !slices.Contains(cmd.Env, "GOARCH=wasm") {
		t.Errorf("edge module built without GOOS=wasip1 GOARCH=wasm")
	}
	tgc := &Compiler{Toolchain: TinyGo, Bin: "/opt/tinygo/bin/tinygo", Vars: []string{"TINYGOROOT=/opt/tinygo"}}
	cmd = Edge.Command(ctx, tgc, "/repo", "/out/edgepixel.wasm")
	if got := strings.Join(cmd.Args, " "); got != "/opt/tinygo/bin/tinygo build -interp-timeout=20m -target=wasip1 -scheduler=none -no-debug -opt=2 -ldflags=-extldflags=--initial-heap=524288 -o /out/edgepixel.wasm ./edge/cmd/edgepixel" {
		t.Errorf("edge module, TinyGo: %q", got)
	}
	// The time limit is not part of what the wasm cache's key hashes.
	if got := strings.Join(tgc.Args("./edge/cmd/edgepixel", "OUT"), " "); strings.Contains(got, "interp") {
		t.Errorf("Args, hashed into the cache key, has the interp time limit: %q", got)
	}
	if !slices.Contains(cmd.Env, "TINYGOROOT=/opt/tinygo") {
		t.Errorf("TinyGo run without its TINYGOROOT")
	}
	cmd = Pop.Command(ctx, tgc, "/repo", "/out/edgepixel-pop")
	if got := strings.Join(cmd.Args, " "); got != "go build -trimpath -buildvcs=auto -o /out/edgepixel-pop ./edge/cmd/edgepixel-pop" || cmd.Env != nil {
		t.Errorf("the POP is built by go for this machine, got %q with env %v", got, cmd.Env)
	}
	// The worker is a reactor, built by either toolchain.
	cmd = Worker.Command(ctx, tgc, "/repo", "/out/w.wasm")
	if got := strings.Join(cmd.Args, " "); got != "/opt/tinygo/bin/tinygo build -interp-timeout=20m -buildmode=c-shared -target=wasip1 -scheduler=none -no-debug -opt=2 -ldflags=-extldflags=--initial-heap=524288 -o /out/w.wasm ./wrangler/cmd/edgepixel-worker" {
		t.Errorf("worker, TinyGo: %q", got)
	}
	cmd = Worker.Command(ctx, goc, "/repo", "/out/w.wasm")
	if got := strings.Join(cmd.Args, " "); got != "go build -buildmode=c-shared -trimpath -o /out/w.wasm ./wrangler/cmd/edgepixel-worker" || !slices.Contains(cmd.Env, "GOOS=wasip1") {
		t.Errorf("worker, Go: %q", got)
	}
}

func TestToolchains(t *testing.T) {
	if Toolchains[0] != TinyGo {
		t.Errorf("the default toolchain is %s, want TinyGo (the module edgepixel ships)", Toolchains[0])
	}
	t.Setenv(ToolchainEnv, "")
	if tc, err := DefaultToolchain(); tc != TinyGo || err != nil {
		t.Errorf("default: %v %v", tc, err)
	}
	t.Setenv(ToolchainEnv, "go")
	if tc, err := DefaultToolchain(); tc != Go || err != nil {
		t.Errorf("%s=go: %v %v", ToolchainEnv, tc, err)
	}
	t.Setenv(ToolchainEnv, "gccgo")
	if _, err := DefaultToolchain(); err == nil || !strings.Contains(err.Error(), ToolchainEnv) {
		t.Errorf("an unknown toolchain: %v", err)
	}
	if _, err := Toolchain("nope").Compiler(context.Background(), t.TempDir(), nil); err == nil {
		t.Error("an unknown toolchain got a compiler")
	}
}

func TestNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range All {
		if seen[a.Name] || seen[a.File] {
			t.Errorf("%s: name or file used twice", a.Name)
		}
		seen[a.Name], seen[a.File] = true, true
		if b, ok := Named(a.Name); !ok || b != a {
			t.Errorf("Named(%q) = %v, %v", a.Name, b, ok)
		}
	}
	if _, ok := Named("nope"); ok {
		t.Error("Named found nope")
	}
}

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"A=1", "GOOS=linux", "B=2", "GOOS=darwin"}, "GOOS=wasip1", "B=", "C=3")
	if want := []string{"A=1", "GOOS=wasip1", "C=3"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestTinyGoFromPath: a tinygo on PATH (an official release) is used as it
// is, with the caller's environment, and nothing is built but the wasm-opt
// wrapper; only when its root lacks a stdExtras package does it get an
// overlay root (links).
func TestTinyGoFromPath(t *testing.T) {
	for _, complete := range []bool{true, false} {
		bin, troot := t.TempDir(), t.TempDir()
		os.MkdirAll(filepath.Join(troot, "src", "net", "http"), 0o755)
		if complete {
			os.MkdirAll(filepath.Join(troot, "src", "net", "http", "cookiejar"), 0o755)
		}
		script := "#!/bin/sh\nif [ \"$1\" = env ]; then echo " + troot + "; exit; fi\necho 'tinygo version 9.9.9 linux/amd64 (fake)'\n"
		if err := os.WriteFile(filepath.Join(bin, "tinygo"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		root := t.TempDir()
		c, err := TinyGo.Compiler(context.Background(), root, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Bin != filepath.Join(bin, "tinygo") || c.Version != "tinygo version 9.9.9 linux/amd64 (fake)" {
			t.Errorf("compiler %+v", c)
		}
		made, err := filepath.Glob(filepath.Join(root, ".edgepixel", "tinygo", "*"))
		switch {
		case complete && (len(made) > 0 || len(c.Vars) > 0):
			t.Errorf("something was made although the release has every package: %v, vars %v", made, c.Vars)
		case !complete && (len(made) != 1 || !strings.Contains(made[0], "root-overlay-") || len(c.Vars) != 1 || c.Vars[0] != "TINYGOROOT="+made[0]):
			t.Errorf("a release without cookiejar: made %v, vars %v; want one overlay root and TINYGOROOT on it", made, c.Vars)
		}
		if !complete {
			if m, _ := filepath.Glob(filepath.Join(root, ".edgepixel", "tinygo", "*", "src", "net", "http", "cookiejar", "jar.go")); len(m) != 1 {
				t.Error("the overlay has no cookiejar")
			}
		}
	}
}

// TestBuildOnce: concurrent callers build once; a failed or interrupted
// build leaves nothing that looks finished, and the next call cleans up.
func TestBuildOnce(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "thing", "1.0")

	if err := buildOnce(ctx, dir, "a thing", nil, func(tmp string) error {
		os.WriteFile(filepath.Join(tmp, "half"), nil, 0o644)
		return errors.New("compiler crashed")
	}); err == nil || !strings.Contains(err.Error(), "compiler crashed") {
		t.Fatalf("failed build: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*")); len(left) != 1 || !strings.HasSuffix(left[0], ".lock") {
		t.Fatalf("a failed build left %v", left)
	}
	// A build killed mid-way leaves its temporary directory.
	if err := os.Mkdir(dir+".tmp-killed", 0o755); err != nil {
		t.Fatal(err)
	}

	var builds atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = buildOnce(ctx, dir, "a thing", nil, func(tmp string) error {
				builds.Add(1)
				time.Sleep(100 * time.Millisecond)
				return os.WriteFile(filepath.Join(tmp, "done"), []byte("ok"), 0o644)
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "done")); err != nil || string(b) != "ok" {
		t.Errorf("the build is not in place: %q %v", b, err)
	}
	if left, _ := filepath.Glob(dir + ".tmp-*"); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestLockWaitsForHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l, err := acquire(context.Background(), path, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := acquire(ctx, path, "x", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second holder while the first holds it: %v", err)
	}
	l.release()
	l2, err := acquire(context.Background(), path, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l2.release()
}

func TestBuildHint(t *testing.T) {
	out := []byte("# crypto/internal/fips140/nistec\n/usr/local/go/src/crypto/internal/fips140/nistec/p256.go:571:6: interp: running for more than 3m0s, timing out (executed calls: 2)\n")
	if h := buildHint(out); !strings.Contains(h, "busy") || !strings.Contains(h, "EDGEPIXEL_WASM_TOOLCHAIN=go") {
		t.Errorf("interp timeout: hint %q", h)
	}
	if h := buildHint([]byte("main.go:3:1: syntax error")); h != "" {
		t.Errorf("a compile error: hint %q", h)
	}
}
