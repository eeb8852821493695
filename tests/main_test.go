// Package tests holds edgepixel's end-to-end tests: real redis-server and
// clickhouse-server processes, the real aggregator binary, and the real edge
// .wasm running under the POP binary, all on loopback.
//
// The edge module under test is the one edgepixel ships, built with TinyGo.
// The standard-Go build is the second, tested build: the parity test
// (parity_test.go) and the Fastly CLI tests run both, and the parity test
// holds them to the same answers, stored rows and edge counters.
package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/stack"
)

var (
	bin  stack.Binaries // the edge module in bin.Wasm is TinyGo's
	root string         // the repository root
	// wasm is the edge module built by each toolchain (wasm[build.TinyGo]
	// is bin.Wasm).
	wasm = map[build.Toolchain]string{}
	// compileCache holds the POP's compiled edge modules, compiled once in
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
	// machine a cold build is slow, and slow is not a failure. Each edge
	// module comes from the wasm cache when `make modules` (or any build
	// of the same sources) built it already; a first TinyGo build takes
	// minutes, and builds TinyGo itself when none is installed.
	start := time.Now()
	err = build.BuildInDir(context.Background(), build.TinyGo, root, dir, nil, stack.Artifacts...)
	if err == nil {
		wasm[build.Go] = filepath.Join(dir, "edgepixel-go.wasm")
		err = build.Edge.Build(context.Background(), build.Go, root, wasm[build.Go], nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin = stack.InDir(dir)
	wasm[build.TinyGo] = bin.Wasm
	fmt.Printf("tests: built the edge module (TinyGo and Go), POP and aggregator in %v\n", progress.Round(time.Since(start)))
	start = time.Now()
	compileCache = dir + "/wazero-cache"
	for _, tc := range build.Toolchains {
		b := bin
		b.Wasm = wasm[tc]
		if err := stack.Precompile(context.Background(), b, compileCache); err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	fmt.Printf("tests: compiled the edge modules for the POP in %v\n", progress.Round(time.Since(start)))
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
