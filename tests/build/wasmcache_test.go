package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// module writes a small Go module: a main package importing a package of
// its own, and an unrelated package.
func module(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/m\n\ngo 1.22\n",
		"cmd/app/main.go":   "package main\n\nimport \"example.com/m/lib\"\n\nfunc main() { lib.F() }\n",
		"lib/lib.go":        "package lib\n\nfunc F() {}\n",
		"lib/lib_test.go":   "package lib\n",
		"lib/notes.txt":     "a file beside the code\n",
		"unrelated/u.go":    "package unrelated\n",
		"lib/tinygo_only.s": "", // any file of the package counts
	}
	for name, body := range files {
		write(t, filepath.Join(root, name), body)
	}
	return root
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSourceKey(t *testing.T) {
	ctx := context.Background()
	root := module(t)
	c := &Compiler{Toolchain: Go, Version: "go1.99"}
	key := func() string {
		t.Helper()
		k, err := SourceKey(ctx, c, root, "./cmd/app")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key()
	write(t, filepath.Join(root, "unrelated", "u.go"), "package unrelated\n\nvar X = 1\n")
	write(t, filepath.Join(root, "lib", "lib_test.go"), "package lib\n\nvar Y = 1\n")
	if k := key(); k != k0 {
		t.Error("the key changed with a package the module does not import, or with a test")
	}
	write(t, filepath.Join(root, "lib", "notes.txt"), "changed\n")
	k1 := key()
	if k1 == k0 {
		t.Error("the key did not change with a file of an imported package")
	}
	write(t, filepath.Join(root, "go.mod"), "module example.com/m\n\ngo 1.23\n")
	k2 := key()
	if k2 == k1 {
		t.Error("the key did not change with go.mod")
	}
	c.Version = "go1.100"
	k3 := key()
	if k3 == k2 {
		t.Error("the key did not change with the compiler's version")
	}
	c.Toolchain = TinyGo
	if k := key(); k == k3 {
		t.Error("the key did not change with the toolchain")
	}
}

// TestBuildCached builds with a stand-in compiler that counts its runs: a
// second build of the same sources is the cached module, a changed source
// builds again, and the output is replaced atomically.
func TestBuildCached(t *testing.T) {
	ctx := context.Background()
	root := module(t)
	bin := t.TempDir()
	count := filepath.Join(bin, "count")
	// Called as: fake build -trimpath -o OUT PKG. Writes the run number.
	fake := filepath.Join(bin, "fake")
	write(t, fake, "#!/bin/sh\necho run >> "+count+"\nwc -l < "+count+" > \"$4\"\n")
	os.Chmod(fake, 0o755)
	c := &Compiler{Toolchain: Go, Bin: fake, Version: "fake 1"}
	a := Artifact{Name: "app", About: "the app", Pkg: "./cmd/app", File: "app.wasm", Wasm: true}
	out := filepath.Join(t.TempDir(), "bin", "main.wasm")
	os.MkdirAll(filepath.Dir(out), 0o755)

	build := func() string {
		t.Helper()
		if err := a.buildCached(ctx, c, root, out, nil); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := build(); got != "1" {
		t.Fatalf("first build: %q", got)
	}
	if got := build(); got != "1" {
		t.Errorf("unchanged sources were built again: %q", got)
	}
	write(t, filepath.Join(root, "lib", "lib.go"), "package lib\n\nfunc F() { println() }\n")
	if got := build(); got != "2" {
		t.Errorf("changed sources: %q, want a new build", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("the output directory holds %d files, want only the module", len(entries))
	}
	wasm, _ := filepath.Glob(filepath.Join(WasmCache(root), "go-*.wasm"))
	if len(wasm) != 2 {
		t.Errorf("cache holds %v, want both builds", wasm)
	}
}

func TestPruneWasmCache(t *testing.T) {
	dir := t.TempDir()
	for i := range wasmCacheKeep + 3 {
		p := filepath.Join(dir, "tinygo-"+string(rune('a'+i))+".wasm")
		write(t, p, "")
		mt := timeAt(i)
		os.Chtimes(p, mt, mt)
	}
	write(t, filepath.Join(dir, "go-x.wasm"), "")
	pruneWasmCache(dir, TinyGo)
	left, _ := filepath.Glob(filepath.Join(dir, "tinygo-*.wasm"))
	if len(left) != wasmCacheKeep {
		t.Errorf("%d TinyGo modules left, want %d", len(left), wasmCacheKeep)
	}
	if _, err := os.Stat(filepath.Join(dir, "tinygo-a.wasm")); err == nil {
		t.Error("the least recently used module was kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "go-x.wasm")); err != nil {
		t.Error("another toolchain's module was pruned")
	}
}

func timeAt(minute int) time.Time { return time.Unix(1_700_000_000+int64(minute)*60, 0) }
