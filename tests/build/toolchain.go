package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/edgepixel/edgepixel/tests/progress"
)

// A Toolchain compiles the edge module to WebAssembly for Fastly Compute.
type Toolchain string

const (
	// TinyGo builds the module edgepixel ships: tinygo build with
	// TinyGoFlags, a WASI command module about a sixth the size of Go's.
	TinyGo Toolchain = "tinygo"
	// Go is standard Go, GOOS=wasip1 GOARCH=wasm: the second, tested build.
	Go Toolchain = "go"
)

// Toolchains lists the toolchains, the default first.
var Toolchains = []Toolchain{TinyGo, Go}

// ToolchainEnv names the environment variable that picks the edge
// module's toolchain for edgepixel-build (its -toolchain flag wins), and so
// for `make wasm`, `make run` and fastly.toml's build script.
const ToolchainEnv = "EDGEPIXEL_WASM_TOOLCHAIN"

// ParseToolchain returns the toolchain named s.
func ParseToolchain(s string) (Toolchain, error) {
	for _, tc := range Toolchains {
		if string(tc) == s {
			return tc, nil
		}
	}
	return "", fmt.Errorf("unknown toolchain %q (have %v)", s, Toolchains)
}

// DefaultToolchain is $EDGEPIXEL_WASM_TOOLCHAIN if set, else TinyGo.
func DefaultToolchain() (Toolchain, error) {
	if v := strings.TrimSpace(os.Getenv(ToolchainEnv)); v != "" {
		tc, err := ParseToolchain(v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", ToolchainEnv, err)
		}
		return tc, nil
	}
	return Toolchains[0], nil
}

// A Compiler is a toolchain ready to run.
type Compiler struct {
	Toolchain Toolchain
	Bin       string // the go or tinygo executable
	// Vars are the environment variables it needs on top of any
	// environment (see Env).
	// Version is what the compiler says of itself (`tinygo version`, `go
	// env GOVERSION`): with the flags and the sources, it keys the wasm
	// cache.
	Version string
	Vars    []string
}

// Env is base with the compiler's variables set.
func (c *Compiler) Env(base []string) []string { return withEnv(base, c.Vars...) }

// Compiler returns tc ready to run. TinyGo is the tinygo on PATH, else
// the one under TinyGoDir(root), which it builds first when there is none
// (reported to r: that takes minutes).
func (tc Toolchain) Compiler(ctx context.Context, root string, r *progress.Reporter) (*Compiler, error) {
	switch tc {
	case TinyGo:
		return tinyGo(ctx, root, r)
	case Go:
		cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go env GOVERSION: %w", err)
		}
		return &Compiler{
			Toolchain: Go,
			Bin:       "go",
			Vars:      []string{"GOOS=wasip1", "GOARCH=wasm"},
			Version:   strings.TrimSpace(string(out)),
		}, nil
	}
	return nil, fmt.Errorf("unknown toolchain %q (have %v)", tc, Toolchains)
}

// Args are the compiler's arguments that build the main package pkg into
// the WebAssembly module out.
func (c *Compiler) Args(pkg, out string) []string {
	if c.Toolchain == TinyGo {
		return append(append([]string{"build"}, TinyGoFlags...), "-o", out, pkg)
	}
	return []string{"build", "-trimpath", "-o", out, pkg}
}
