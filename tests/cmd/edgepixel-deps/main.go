// Command edgepixel-deps installs, or checks for, the programs edgepixel
// runs but Go does not build (package deps has the lists).
//
//	edgepixel-deps install [-soft] run|test|bench...   # what `make deps` and `make run` do
//	edgepixel-deps check run|test|bench...             # says what is missing and how to install it
//
// install uses apt-get when root and npm, logging their output to
// .edgepixel/logs/deps.log. Not root, it prints the sudo command and fails;
// with -soft (for `make run`, which can do without) it only warns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/progress"
)

var sets = map[string][]deps.Program{"run": deps.Run, "test": deps.Test, "bench": deps.Bench, "cluster": deps.Cluster, "workers": deps.Workers}

func main() {
	if len(os.Args) < 3 || (os.Args[1] != "install" && os.Args[1] != "check") {
		usage()
	}
	fs := flag.NewFlagSet("edgepixel-deps "+os.Args[1], flag.ExitOnError)
	soft := fs.Bool("soft", false, "install: on failure, warn and exit 0 (make run can run without them)")
	fs.Parse(os.Args[2:])
	var want []deps.Program
	for _, name := range fs.Args() {
		ps, ok := sets[name]
		if !ok {
			usage()
		}
		want = append(want, ps...)
	}
	root, err := build.RepoRoot()
	if err != nil {
		fail(err)
	}
	if os.Args[1] == "check" {
		if missing := deps.Missing(root, want); len(missing) > 0 {
			fmt.Fprintln(os.Stderr, deps.Advice(missing))
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = deps.Install(ctx, root, want, progress.New(os.Stderr))
	switch {
	case err == nil:
	case *soft && errors.Is(err, deps.ErrNotRoot):
		fmt.Fprintf(os.Stderr, "note: %s are not installed (%v); running without them\n", deps.Names(deps.Missing(root, want)), err)
	case *soft:
		fmt.Fprintf(os.Stderr, "note: %v; running without them\n", err)
	default:
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: edgepixel-deps install [-soft] run|test|bench|cluster|workers...\n       edgepixel-deps check run|test|bench|cluster|workers...")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "edgepixel-deps:", err)
	os.Exit(1)
}
