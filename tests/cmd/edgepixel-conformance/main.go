// Command edgepixel-conformance judges the POP by compute-sdk-go's own
// tests: the SDK's integration tests run under `edgepixel-pop run`, built
// with Go and with TinyGo (the toolchain of the module edgepixel ships),
// its end-to-end tests under the official Fastly CLI's `fastly compute
// serve` with the POP as Viceroy (see package tests/conformance). It prints
// passed / failed / skipped per package and exits non-zero on any failure
// not listed, with its reason, in conformance.Expected, and on any listed
// one that passes.
//
//	go run ./tests/cmd/edgepixel-conformance --pop .edgepixel/bin/edgepixel-pop
//
// `make conformance` builds the POP and runs it so.
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
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/conformance"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/progress"
)

func main() {
	os.Exit(run())
}

func run() int {
	root, err := build.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgepixel-conformance:", err)
		return 2
	}
	var (
		pop         = flag.String("pop", filepath.Join(root, ".edgepixel", "bin", "edgepixel-pop"), "the edgepixel-pop binary (make build puts it there)")
		suites      = flag.String("suites", envOr("EDGEPIXEL_CONFORMANCE_SUITES", "integration,e2e,integration-tinygo"), "suites to run: integration, e2e, integration-tinygo [EDGEPIXEL_CONFORMANCE_SUITES]")
		timeout     = flag.Duration("timeout", envDuration("EDGEPIXEL_CONFORMANCE_TIMEOUT", 40*time.Minute), "limit for the whole run [EDGEPIXEL_CONFORMANCE_TIMEOUT]")
		testTimeout = flag.Duration("test-timeout", 5*time.Minute, "go test -timeout per test binary; for TinyGo, per package, its build included")
		parallel    = flag.Int("p", 2, "integration test binaries built and run at once (go test -p; TinyGo packages at once)")
		work        = flag.String("work", "", "scratch directory, kept (default: a new temporary one, removed unless the run fails)")
	)
	flag.Parse()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "edgepixel-conformance: "+format+"\n", args...)
		return 1
	}
	if _, err := os.Stat(*pop); err != nil {
		return fail("%s not found: run `make build` first, or pass --pop", *pop)
	}
	if *pop, err = filepath.Abs(*pop); err != nil {
		return fail("%v", err)
	}
	list := strings.Split(*suites, ",")
	o := conformance.Options{
		Root:        root,
		Pop:         *pop,
		Work:        *work,
		Parallel:    *parallel,
		TestTimeout: *testTimeout,
		Suites:      list,
		Progress:    os.Stdout,
	}
	for _, s := range list {
		if s == "e2e" {
			// Checked before anything runs: a missing npm should not cost
			// the minutes of the integration suite first.
			cli, ok := deps.FastlyCLI.Path(root)
			if !ok {
				return fail("the end-to-end suite needs the Fastly CLI:\n%s(to run only the integration suite: --suites integration)", deps.Advice([]deps.Program{deps.FastlyCLI}))
			}
			o.FastlyCLI = cli
		}
	}
	for _, s := range list {
		if s == "integration-tinygo" {
			// Before anything runs, as it may build TinyGo first (minutes).
			c, err := build.TinyGo.Compiler(context.Background(), root, progress.New(os.Stderr))
			if err != nil {
				return fail("the integration-tinygo suite needs TinyGo: %v\n(to run only the Go suites: --suites integration,e2e)", err)
			}
			fmt.Printf("conformance: TinyGo is %s (%s)\n", c.Bin, c.Version)
			o.TinyGo = &conformance.TinyGo{Bin: c.Bin, Vars: c.Vars}
		}
	}
	keep := *work != ""
	if !keep {
		if o.Work, err = os.MkdirTemp("", "edgepixel-conformance-"); err != nil {
			return fail("%v", err)
		}
	}
	if err := conformance.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "edgepixel-conformance: cannot adopt orphaned test servers:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	began := time.Now()
	report, err := conformance.Run(ctx, o)
	if n := conformance.ReapOrphans(); n > 0 {
		fmt.Printf("conformance: ended %d test server processes left behind\n", n)
	}
	if err != nil {
		return fail("%v\n(scratch directory kept: %s)", err, o.Work)
	}
	v := report.Verdict
	fmt.Printf("\n%s %s under edgepixel-pop (%s)\n\n", conformance.SDKModule, report.SDKVersion, time.Since(began).Round(time.Second))
	v.Print(os.Stdout)
	if len(v.Problems) > 0 {
		fmt.Printf("\n%d problem(s):\n", len(v.Problems))
		for _, p := range v.Problems {
			fmt.Println("- " + p)
		}
		fmt.Printf("\nfull output: %s\n", strings.Join(report.Logs, " "))
		return 1
	}
	if !keep {
		os.RemoveAll(o.Work)
	}
	fmt.Println("\nconformance: passed")
	return 0
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "edgepixel-conformance: %s=%q is not a duration; using %s\n", key, v, def)
	}
	return def
}
