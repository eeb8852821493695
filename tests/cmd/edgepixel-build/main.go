// Command edgepixel-build builds edgepixel's artifacts with the recipes of
// package build. The Makefile and edge/fastly.toml's [scripts] build run
// it; it can run from anywhere inside the repository.
//
//	edgepixel-build [-dir DIR] [-toolchain T] ARTIFACT...   # into DIR (.edgepixel/bin)
//	edgepixel-build -o FILE [-toolchain T] ARTIFACT          # one artifact to FILE
//
// ARTIFACT is wasm (the edge module), pop, aggregator, run (the `make run`
// launcher), bench, worker (the Cloudflare Workers module), salt (the
// salt rotator), sign (the pixel signer), or all. The
// toolchain T of the edge module and of the worker is tinygo (what
// edgepixel ships; the default) or go (standard Go), also set by
// $EDGEPIXEL_WASM_TOOLCHAIN. With no tinygo on PATH, the first
// TinyGo build builds TinyGo itself into .edgepixel/tinygo (see package
// build). Relative paths are taken from the working directory. Each build
// reports its elapsed time on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/progress"
)

func main() {
	var names []string
	for _, a := range build.All {
		names = append(names, a.Name)
	}
	dir := flag.String("dir", ".edgepixel/bin", "where the artifacts go, each under its own file name")
	out := flag.String("o", "", "the file to write (one artifact only); overrides -dir")
	def, err := build.DefaultToolchain()
	if err != nil {
		fail(err)
	}
	tcName := flag.String("toolchain", string(def), fmt.Sprintf("the edge module's toolchain, one of %v (env %s)", build.Toolchains, build.ToolchainEnv))
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: edgepixel-build [-dir DIR | -o FILE] [-toolchain T] ARTIFACT...\nartifacts: %s, all\n", strings.Join(names, " "))
		flag.PrintDefaults()
	}
	flag.Parse()
	tc, err := build.ParseToolchain(*tcName)
	if err != nil {
		fail(err)
	}

	var arts []build.Artifact
	for _, n := range flag.Args() {
		if n == "all" {
			arts = append(arts, build.All...)
			continue
		}
		a, ok := build.Named(n)
		if !ok {
			fail(fmt.Errorf("unknown artifact %q (have %s, all)", n, strings.Join(names, " ")))
		}
		arts = append(arts, a)
	}
	if len(arts) == 0 || (*out != "" && len(arts) != 1) {
		flag.Usage()
		os.Exit(2)
	}
	root, err := build.RepoRoot()
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := progress.New(os.Stderr)
	if *out != "" {
		abs, err := filepath.Abs(*out)
		if err != nil {
			fail(err)
		}
		err = arts[0].Build(ctx, tc, root, abs, r)
		if err != nil {
			fail(err)
		}
		return
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	if err := build.BuildInDir(ctx, tc, root, abs, r, arts...); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "edgepixel-build:", err)
	os.Exit(1)
}
