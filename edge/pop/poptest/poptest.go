// Package poptest holds what the tests of the POP's packages share: the
// test guests of edge/pop/testdata, built and compiled once per test
// binary, and small waiting helpers.
//
// Building a guest (go build for wasip1) and compiling it (wazero, seconds
// for a standard-Go module, ten times that under the race detector) are
// the slow part of a POP test. Doing both in TestMain, before any test
// runs and outside any test's deadline, keeps a busy machine from failing
// a test for time spent compiling: a test's own deadlines start when its
// guest is ready to instantiate.
package poptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// testdata is edge/pop/testdata: each directory in it except precompile
// is a guest.
func testdata() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("poptest: cannot locate its source directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata"), nil
}

// Guests lists the guests in edge/pop/testdata.
func Guests() ([]string, error) {
	dir, err := testdata()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "precompile" {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// BuildWasm builds the named guests of edge/pop/testdata with GOOS=wasip1
// GOARCH=wasm into dir, as dir/NAME, in one go build.
func BuildWasm(dir string, names ...string) error {
	src, err := testdata()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./"+n)
	}
	return run(src, []string{"GOOS=wasip1", "GOARCH=wasm"}, "go", args...)
}

// Precompile compiles the modules into the compile cache cacheDir for use
// by the calling test binary (pop.Config.CompileCacheDir, --compile-cache
// in process). It runs edge/pop/testdata/precompile, built without -race,
// so a race-instrumented test binary only loads the compiled code.
//
// wazero labels cache entries with its version, which it reads from the
// binary's build info, and ignores entries with another label; the helper
// is built with the label the calling binary has, or the tests would
// compile again (and still pass, only slower).
func Precompile(cacheDir string, wasm ...string) error {
	src, err := testdata()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "poptest-precompile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	helper := filepath.Join(tmp, "precompile")
	if err := run(src, nil, "go", "build",
		"-ldflags=-X github.com/tetratelabs/wazero/internal/version.version="+wazeroLabel(),
		"-o", helper, "./precompile"); err != nil {
		return err
	}
	return run("", nil, helper, append([]string{cacheDir}, wasm...)...)
}

// wazeroLabel is the version wazero labels compiled code with in this
// binary, found the way wazero finds it: its module version, else "dev".
func wazeroLabel() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/tetratelabs/wazero" && dep.Version != "" && dep.Version != "(devel)" {
				return dep.Version
			}
		}
	}
	return "dev"
}

// Build builds the named guests into dir and precompiles them into
// dir/cache (see Precompile). It returns the cache directory.
func Build(dir string, names ...string) (cacheDir string, err error) {
	began := time.Now()
	if err := BuildWasm(dir, names...); err != nil {
		return "", fmt.Errorf("building the test guests: %w", err)
	}
	cacheDir = filepath.Join(dir, "cache")
	var wasm []string
	for _, n := range names {
		wasm = append(wasm, filepath.Join(dir, n))
	}
	if err := Precompile(cacheDir, wasm...); err != nil {
		return "", fmt.Errorf("compiling the test guests: %w", err)
	}
	// Shown with -v or when the package fails.
	fmt.Fprintf(os.Stderr, "poptest: built and compiled %d guests in %s\n", len(names), time.Since(began).Round(time.Millisecond))
	return cacheDir, nil
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", name, args, err)
	}
	return nil
}

// WaitFor polls cond every 10ms until it holds, failing the test after
// 10s. The timeout only bounds a hang: nothing waited for takes long.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
