// Package build is the one recipe for each artifact edgepixel builds: the
// edge module, the POP, the aggregator, the `make run` launcher and the
// benchmark. `make` and fastly.toml's [scripts] build call it through
// tests/cmd/edgepixel-build; the end-to-end tests import it. A change to
// how something is built is made here and nowhere else.
//
// The edge module is built by a Toolchain: TinyGo, the module edgepixel
// ships, or standard Go (GOOS=wasip1), the second, tested build. TinyGo is
// the one on PATH or, failing that, one this package builds from source
// (tinygo.go); each module built is kept in a cache keyed by its sources
// (wasmcache.go), so tests and make targets build it once.
package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/tests/progress"
)

// An Artifact is one program edgepixel builds.
type Artifact struct {
	Name  string // what `edgepixel-build` and the Makefile call it
	About string // what progress messages call it
	Pkg   string // the main package, relative to the repository root
	File  string // its file name in a bin directory (InDir)
	// Wasm marks a WebAssembly module built by a Toolchain: the edge
	// module for Fastly Compute, and the worker for Cloudflare Workers
	// (Reactor).
	Wasm bool
	// Reactor builds a WASI reactor (-buildmode=c-shared, with either
	// toolchain: _initialize and //go:wasmexport functions, no main)
	// instead of a command.
	Reactor bool
}

// The artifacts. Their files in .edgepixel/bin are what `make run` and
// `make bench` start.
var (
	Edge       = Artifact{Name: "wasm", About: "the edge module", Pkg: "./edge/cmd/edgepixel", File: "edgepixel.wasm", Wasm: true}
	Pop        = Artifact{Name: "pop", About: "the POP", Pkg: "./edge/cmd/edgepixel-pop", File: "edgepixel-pop"}
	Aggregator = Artifact{Name: "aggregator", About: "the aggregator", Pkg: "./aggregator/cmd/edgepixel-aggregator", File: "edgepixel-aggregator"}
	Launcher   = Artifact{Name: "run", About: "the launcher", Pkg: "./tests/cmd/edgepixel-run", File: "edgepixel-run"}
	Fleet      = Artifact{Name: "cluster", About: "the fleet launcher", Pkg: "./tests/cmd/edgepixel-cluster", File: "edgepixel-cluster"}
	Bench      = Artifact{Name: "bench", About: "the benchmark", Pkg: "./tests/cmd/edgepixel-bench", File: "edgepixel-bench"}
	// Salt rotates the visitor-id salts; `make run` runs it hourly.
	Salt = Artifact{Name: "salt", About: "the salt rotator", Pkg: "./edge/cmd/edgepixel-salt", File: "edgepixel-salt"}
	// Sign makes signed pixel URLs (README, signed pixels).
	Sign = Artifact{Name: "sign", About: "the pixel signer", Pkg: "./edge/cmd/edgepixel-sign", File: "edgepixel-sign"}
	// Worker is the Cloudflare Workers module; wrangler.toml's main
	// module imports it from wrangler/build/edgepixel.wasm.
	Worker = Artifact{Name: "worker", About: "the Cloudflare worker", Pkg: "./wrangler/cmd/edgepixel-worker", File: "edgepixel-worker.wasm", Wasm: true, Reactor: true}

	All = []Artifact{Edge, Pop, Aggregator, Launcher, Fleet, Bench, Salt, Sign, Worker}
)

// Named returns the artifact called name.
func Named(name string) (Artifact, bool) {
	for _, a := range All {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// InDir is the artifact's path in the bin directory dir.
func (a Artifact) InDir(dir string) string { return filepath.Join(dir, a.File) }

// Command is the command that builds a into out, run in the repository
// root; a module's is c's (c is unused for the others, and may be
// nil). -trimpath makes a Go build independent of where the checkout is,
// so that the same source gives the same bytes (and the POP's compile
// cache, keyed by those bytes, is shared between builds).
func (a Artifact) Command(ctx context.Context, c *Compiler, root, out string) *exec.Cmd {
	var cmd *exec.Cmd
	switch {
	case a.Wasm:
		args := a.compilerArgs(c, out)
		if c.Toolchain == TinyGo {
			// Not in Args, which the wasm cache's key hashes: a time limit
			// does not change the module built.
			args = append(args[:1:1], append([]string{tinyGoInterpTimeout}, args[1:]...)...)
		}
		cmd = exec.CommandContext(ctx, c.Bin, args...)
		cmd.Env = c.Env(os.Environ())
	default:
		// -buildvcs=auto over a GOFLAGS that turns it off: the commit
		// is what --version and the migrations table report.
		cmd = exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=auto", "-o", out, a.Pkg)
	}
	cmd.Dir = root
	return cmd
}

// Describe is how progress messages name the build of a.
func (a Artifact) Describe(tc Toolchain) string {
	if a.Wasm {
		return fmt.Sprintf("building %s (%s, %s)", a.About, tc, a.Pkg)
	}
	return fmt.Sprintf("building %s (%s)", a.About, a.Pkg)
}

// Build builds a into out, reporting the step to r (which may be nil); tc
// is the modules' toolchain (see Toolchain.Compiler). A module
// comes from the wasm cache when its sources have not changed since a
// build of it with the same compiler (see WasmCache). A failure's error
// holds the compiler's output.
func (a Artifact) Build(ctx context.Context, tc Toolchain, root, out string, r *progress.Reporter) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if a.Wasm {
		c, err := tc.Compiler(ctx, root, r)
		if err != nil {
			return err
		}
		return a.buildCached(ctx, c, root, out, r)
	}
	return a.run(ctx, nil, root, out, r)
}

// compilerArgs are c's arguments that build a into out: a command
// module, or with -buildmode=c-shared a reactor. A TinyGo reactor, like
// the command module, has no scheduler (TinyGoFlags): with one, every
// call of a //go:wasmexport function runs on a new goroutine with a newly
// allocated stack (TinyGo's runtime_wasmentry.go), which made each
// request cost milliseconds.
func (a Artifact) compilerArgs(c *Compiler, out string) []string {
	args := c.Args(a.Pkg, out)
	if a.Reactor {
		args = slices.Insert(args, 1, "-buildmode=c-shared")
	}
	return args
}

// run builds a into out with c.
func (a Artifact) run(ctx context.Context, c *Compiler, root, out string, r *progress.Reporter) error {
	cmd := a.Command(ctx, c, root, out)
	tc := Go
	if c != nil {
		tc = c.Toolchain
	}
	return r.Run(a.Describe(tc), func() error {
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, b, buildHint(b))
		}
		return nil
	})
}

// BuildInDir builds each artifact into the bin directory dir, in order;
// tc is the edge module's toolchain.
func BuildInDir(ctx context.Context, tc Toolchain, root, dir string, r *progress.Reporter, arts ...Artifact) error {
	for _, a := range arts {
		if err := a.Build(ctx, tc, root, a.InDir(dir), r); err != nil {
			return err
		}
	}
	return nil
}

// RepoRoot finds the repository root (the directory holding edgepixel's
// go.mod), starting from the working directory: tests run in their
// package's folder, fastly.toml's build script in edge/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/edgepixel/edgepixel\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no edgepixel go.mod above the working directory")
		}
		dir = parent
	}
}

// tinyGoInterpTimeout bounds TinyGo's interp pass, which runs package
// initialisers at build time (crypto's P-256 tables take minutes of it on
// a busy machine). TinyGo's default, 3 minutes, failed a first make run
// on 2 cores shared with other builds.
const tinyGoInterpTimeout = "-interp-timeout=20m"

// buildHint says what to do about a build failure whose cause the
// compiler's output names but does not explain ("" for others).
func buildHint(out []byte) string {
	if bytes.Contains(out, []byte("interp: running for more than")) {
		return "\nTinyGo's interp pass (package initialisers run at build time) ran out of time: the machine is busy. Run the same make again when the machine is quieter, or build with standard Go: EDGEPIXEL_WASM_TOOLCHAIN=go make ...\n"
	}
	return ""
}
