// Package stack starts edgepixel's processes — private Redis and ClickHouse
// servers, the aggregator and a local POP running the edge module — the way
// a user would, as separate programs on loopback. The end-to-end tests and
// `make run` both use it, so what the tests prove is what users run.
package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are the built artifacts a stack runs.
type Binaries struct {
	Pop        string // edgepixel-pop
	Aggregator string // edgepixel-aggregator
	Wasm       string // the edge module
}

// InDir names the artifacts as `make build` lays them out in dir.
func InDir(dir string) Binaries {
	return Binaries{
		Pop:        filepath.Join(dir, "edgepixel-pop"),
		Aggregator: filepath.Join(dir, "edgepixel-aggregator"),
		Wasm:       filepath.Join(dir, "edgepixel.wasm"),
	}
}

// Build compiles the three artifacts into dir with the go command on PATH.
// root is the repository root (the directory holding go.mod).
func Build(ctx context.Context, root, dir string) (Binaries, error) {
	b := InDir(dir)
	steps := []struct {
		out, pkg string
		env      []string
	}{
		{b.Wasm, "./edge/cmd/edgepixel", []string{"GOOS=wasip1", "GOARCH=wasm"}},
		{b.Pop, "./edge/cmd/edgepixel-pop", nil},
		{b.Aggregator, "./aggregator/cmd/edgepixel-aggregator", nil},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", s.out, s.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), s.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %v\n%s", s.pkg, err, out)
		}
	}
	return b, nil
}

// RepoRoot finds the directory holding go.mod, starting from the working
// directory (tests run inside their package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/edgepixel/edgepixel") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no edgepixel go.mod above the working directory")
		}
		dir = parent
	}
}
