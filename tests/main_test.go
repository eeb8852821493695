// Package tests holds edgepixel's end-to-end tests: real redis-server and
// clickhouse-server processes, the real aggregator binary, and the real edge
// .wasm running under the POP binary, all on loopback.
package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/stack"
)

var (
	bin  stack.Binaries
	root string // the repository root
	// compileCache holds the POP's compiled edge module, compiled once in
	// TestMain and read by every stack's POP.
	compileCache string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("tests: -short: skipping end-to-end tests")
		os.Exit(0)
	}
	var err error
	if root, err = build.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(1)
	}
	if inReadmeNetns() { // readme_test.go: the README's own commands build
		os.Exit(m.Run())
	}
	if missing := deps.Missing(root, deps.Test); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "tests: %s\n", deps.Advice(missing))
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "edgepixel-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(1)
	}
	// Built once for the whole package, with no deadline: on a busy
	// machine a cold build is slow, and slow is not a failure.
	start := time.Now()
	err = build.BuildInDir(context.Background(), build.Go, root, dir, nil, stack.Artifacts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin = stack.InDir(dir)
	fmt.Printf("tests: built the edge module, POP and aggregator in %v\n", progress.Round(time.Since(start)))
	start = time.Now()
	compileCache = dir + "/wazero-cache"
	if err := stack.Precompile(context.Background(), bin, compileCache); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("tests: compiled the edge module for the POP in %v\n", progress.Round(time.Since(start)))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need is the path of an outside program a test runs (TestMain made sure
// deps.Test are installed), or the test fails saying what installs it.
func need(t *testing.T, p deps.Program) string {
	path, ok := p.Path(root)
	if !ok {
		t.Fatal(deps.Advice([]deps.Program{p}))
	}
	return path
}

// startStack brings up a whole stack (in a temp dir unless o.Dir is set),
// stopped when t ends. Child logs are shown only when the test fails.
func startStack(t *testing.T, o stack.Options) *stack.Stack {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o = withBin(o)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, o)
	if err != nil {
		dumpLogs(t, o.Dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, o.Dir)
		}
	})
	return s
}

func dumpLogs(t *testing.T, dir string) {
	for _, name := range []string{"aggregator", "pop"} {
		t.Logf("---- %s.log (tail) ----\n%s", name, proc.Tail(dir+"/logs/"+name+".log", 8000))
	}
}
