package stack

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/edgepixel/edgepixel/tests/build"
)

// Binaries are the built artifacts a stack runs.
type Binaries struct {
	Pop        string // edgepixel-pop
	Aggregator string // edgepixel-aggregator
	Wasm       string // the edge module
}

// Artifacts are what a stack needs built (package build's recipes).
var Artifacts = []build.Artifact{build.Edge, build.Pop, build.Aggregator}

// InDir names the artifacts as package build lays them out in dir.
func InDir(dir string) Binaries {
	return Binaries{
		Pop:        build.Pop.InDir(dir),
		Aggregator: build.Aggregator.InDir(dir),
		Wasm:       build.Edge.InDir(dir),
	}
}

// Precompile fills the POP's compile cache in cacheDir for the edge
// module, so that stacks given the same CompileCache start without
// compiling. It takes as long as the compile does: no deadline but ctx.
func Precompile(ctx context.Context, b Binaries, cacheDir string) error {
	cmd := exec.CommandContext(ctx, b.Pop, "--compile-only", "--compile-cache", cacheDir, b.Wasm)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s --compile-only: %v\n%s", b.Pop, err, out)
	}
	return nil
}
