package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/progress"
)

// The TinyGo edgepixel builds when none is installed, and how.
const (
	TinyGoVersion = "0.41.0"
	tinyGoModule  = "github.com/tinygo-org/tinygo"
	// tinyGoTags selects the LLVM TinyGo links against: Debian bookworm's
	// newest is 19; untagged, TinyGo 0.41 wants LLVM 20.
	tinyGoTags = "llvm19"
)

// TinyGoFlags are the flags of the shipped module: -target=wasip1, as
// compute-sdk-go documents it for TinyGo (its defaults: gc=precise,
// scheduler=asyncify, opt=z); -scheduler=none, because the module starts
// no goroutine (it sends to backends through edge/hostcall, not fsthttp,
// whose streaming send starts one) and asyncify, which every other scheduler
// on wasm needs, instruments each call that can reach an unwind: without
// it the module is about a third smaller and a hit cheaper (tests/cmd/edgepixel-bench/
// HISTORY.md, "The goroutine scheduler"); -no-debug,
// which drops DWARF sections no one reads from the package, and -opt=2:
// LLVM optimising for speed rather than size (TinyGo's default, z), for
// less guest CPU per hit at the cost of a larger module (edgepixel-bench's
// HISTORY.md has both), because a hit's CPU is what Fastly bills and
// limits. InitialHeapFlag sizes the module's initial memory.
var TinyGoFlags = []string{"-target=wasip1", "-scheduler=none", "-no-debug", "-opt=2", InitialHeapFlag}

// InitialHeapFlag has the linker declare a linear memory with this much
// heap beyond the module's data (wasm-ld's --initial-heap; the module's
// minimum memory is otherwise its stack and data rounded up to a page,
// leaving a TinyGo heap of a few kilobytes). TinyGo's allocator collects
// before it grows the heap, and each collection scans all of the module's
// data (hundreds of kilobytes of tables) as roots: most of a fresh
// instance's start was a collection of a nearly empty heap. With room for
// what initialisation and a first hit allocate, a fresh instance starts
// without collecting (tests.TestGuestFreshStartCollects). A larger
// memory costs every instance its allocation and TinyGo's heap metadata,
// so this is room to spare for a start, not a warm instance's working
// heap, which still grows as it needs (tests/cmd/edgepixel-bench/
// HISTORY.md, "Fresh-instance start").
const InitialHeapFlag = "-ldflags=-extldflags=--initial-heap=524288"

// TinyGoDir is where edgepixel builds TinyGoVersion, once per checkout:
// root/.edgepixel/tinygo/VERSION, holding root/ (the TINYGOROOT: the
// module's source, TinyGo's net, build/tinygo) and cache/ (TinyGo's own
// XDG_CACHE_HOME, so that its caches do not mix with those of another
// TinyGo, whose directory names would be the same).
func TinyGoDir(root string) string {
	return filepath.Join(root, ".edgepixel", "tinygo", TinyGoVersion)
}

// tinyGo returns the tinygo to build with: the one on PATH (an official
// release, which bundles net), else the one under TinyGoDir, which it
// builds first if there is none. Either way its root gets stdExtras.
func tinyGo(ctx context.Context, root string, r *progress.Reporter) (*Compiler, error) {
	if path, err := exec.LookPath("tinygo"); err == nil {
		out, err := exec.CommandContext(ctx, path, "env", "TINYGOROOT").Output()
		if err != nil {
			return nil, fmt.Errorf("%s env TINYGOROOT: %w", path, err)
		}
		troot, err := overlayRoot(ctx, strings.TrimSpace(string(out)), filepath.Join(root, ".edgepixel", "tinygo"))
		if err != nil {
			return nil, fmt.Errorf("adding %s to the TinyGo on PATH: %w", strings.Join(stdExtras, ", "), err)
		}
		var vars []string
		if troot != strings.TrimSpace(string(out)) {
			vars = []string{"TINYGOROOT=" + troot}
		}
		return tinyGoCompiler(ctx, root, path, vars)
	}
	dir := TinyGoDir(root)
	bin := filepath.Join(dir, "root", "build", "tinygo")
	vars, err := tinyGoVars(ctx, root, dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		if err := installTinyGo(ctx, root, dir, r); err != nil {
			return nil, err
		}
	}
	// Also for a root built before stdExtras grew.
	if err := addStdExtras(ctx, filepath.Join(dir, "root")); err != nil {
		return nil, err
	}
	return tinyGoCompiler(ctx, root, bin, vars)
}

// tinyGoVars are the environment variables of the TinyGo under dir: its
// root and its own cache directory, and the go command's build cache
// pinned where it is now (Go's default follows XDG_CACHE_HOME).
func tinyGoVars(ctx context.Context, root, dir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOCACHE")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOCACHE: %w", err)
	}
	return []string{
		"TINYGOROOT=" + filepath.Join(dir, "root"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"GOCACHE=" + strings.TrimSpace(string(out)),
	}, nil
}

func tinyGoCompiler(ctx context.Context, root, bin string, vars []string) (*Compiler, error) {
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = withEnv(os.Environ(), vars...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s version: %v\n%s", bin, err, out)
	}
	version := strings.TrimSpace(string(out))
	return &Compiler{Toolchain: TinyGo, Bin: bin, Vars: vars, Version: version}, nil
}

// installTinyGo builds TinyGoVersion into dir (see buildOnce).
func installTinyGo(ctx context.Context, root, dir string, r *progress.Reporter) error {
	if missing := deps.Missing(root, []deps.Program{deps.TinyGoLLVM}); len(missing) > 0 {
		return fmt.Errorf("no tinygo on PATH, and building TinyGo %s needs packages that are not installed\n%s\n(or install a TinyGo release, or build the edge module with standard Go: %s=go)",
			TinyGoVersion, deps.Advice(missing), ToolchainEnv)
	}
	logPath := filepath.Join(root, ".edgepixel", "logs", "tinygo-build.log")
	return buildOnce(ctx, dir, "a build of TinyGo "+TinyGoVersion, r, func(tmp string) error {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return err
		}
		logFile, err := os.Create(logPath)
		if err != nil {
			return err
		}
		defer logFile.Close()
		began := time.Now()
		r.Printf("no tinygo on PATH: building TinyGo %s from the Go module proxy with Debian's LLVM 19 into %s (once per checkout; a few minutes; log: %s)", TinyGoVersion, dir, logPath)
		troot := filepath.Join(tmp, "root")
		step := "TinyGo " + TinyGoVersion + ": "
		err = r.Run(step+"fetching its module", func() error {
			src, err := downloadModule(ctx, tinyGoModule, "v"+TinyGoVersion)
			if err != nil {
				return err
			}
			return copyDir(src, troot)
		})
		if err != nil {
			return err
		}
		err = r.Run(step+"compiling it (go build -tags="+tinyGoTags+")", func() error {
			cmd := exec.CommandContext(ctx, "go", "build", "-tags="+tinyGoTags, "-o", filepath.Join("build", "tinygo"), ".")
			cmd.Dir = troot
			// Built for this machine whatever the caller targets: the
			// conformance run's environment says GOOS=wasip1, for one.
			cmd.Env = withEnv(os.Environ(), "GOOS=", "GOARCH=", "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=1")
			cmd.Stdout, cmd.Stderr = logFile, logFile
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("go build in %s: %v (see %s)", troot, err, logPath)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = r.Run(step+"adding its net package (github.com/tinygo-org/net)", func() error {
			from, err := copyTinyGoNet(ctx, filepath.Join(troot, "src", "net"))
			fmt.Fprintf(logFile, "net package from %s\n", from)
			return err
		})
		if err != nil {
			return err
		}
		if err := seedTinyGoCache(ctx, root, tmp); err != nil {
			return err
		}
		r.Printf("built TinyGo %s in %s", TinyGoVersion, progress.Round(time.Since(began)))
		return nil
	})
}

// buildOnce makes dir by calling build on an empty temporary directory
// beside it and renaming that into place, under a lock: a concurrent
// caller waits for the first (what describes it in the wait's progress
// message) and then finds dir made; an interrupted or failed build leaves
// no dir, and its temporary directory is removed then or by the next
// call.
func buildOnce(ctx context.Context, dir, what string, r *progress.Reporter, build func(tmp string) error) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	l, err := acquire(ctx, dir+".lock", what, r)
	if err != nil {
		return err
	}
	defer l.release()
	if _, err := os.Stat(dir); err == nil {
		return nil // made by the caller we waited for
	}
	stale, _ := filepath.Glob(dir + ".tmp-*")
	for _, s := range stale {
		os.RemoveAll(s)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after the rename, nothing is there
	if err := build(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// seedTinyGoCache puts wasi-libc and compiler-rt, as Debian builds them,
// where TinyGo looks for its own builds of them: its module has no
// wasi-libc sources to build from.
func seedTinyGoCache(ctx context.Context, root, tmp string) error {
	vars, err := tinyGoVars(ctx, root, tmp)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tmp, "root", "build", "tinygo"), "env", "GOCACHE")
	cmd.Env = withEnv(os.Environ(), vars...)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tinygo env GOCACHE: %w", err)
	}
	cache := strings.TrimSpace(string(out))
	libc := filepath.Join(cache, "wasi-libc-wasm32-unknown-wasi-generic")
	rt := filepath.Join(cache, "compiler-rt-wasm32-unknown-wasi-generic")
	for _, c := range [][2]string{
		{deps.WasiLibc, filepath.Join(libc, "lib.a")},
		{deps.WasmCompilerRT, filepath.Join(rt, "lib.a")},
	} {
		if err := copyFile(c[0], c[1]); err != nil {
			return err
		}
	}
	return copyDir(deps.WasiLibcInclude, filepath.Join(libc, "include"))
}

// downloadModule returns the module cache directory of path@version,
// downloading it through the module proxy. It runs in a scratch module,
// so that no go.mod of the caller's changes.
func downloadModule(ctx context.Context, path, version string) (string, error) {
	tmp, err := os.MkdirTemp("", "edgepixel-mod-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module download\n"), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", path+"@"+version)
	cmd.Dir = tmp
	cmd.Env = withEnv(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &m); jerr == nil && m.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, m.Error)
	}
	if err != nil || m.Dir == "" {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go mod download %s@%s: %v: %s", path, version, err, ee.Stderr)
		}
		return "", fmt.Errorf("go mod download %s@%s: %v", path, version, err)
	}
	return m.Dir, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// withEnv returns env with each KEY=VALUE of set replacing that key's
// entries; KEY= with an empty value removes the key.
func withEnv(env []string, set ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	drop := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	for _, kv := range set {
		if k, v, _ := strings.Cut(kv, "="); v != "" || k == "" {
			out = append(out, kv)
		}
	}
	return out
}
