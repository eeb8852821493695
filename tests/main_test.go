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

	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/stack"
)

var bin stack.Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("tests: -short: skipping end-to-end tests")
		os.Exit(0)
	}
	for _, have := range []func() (string, bool){localsrv.RedisAvailable, localsrv.ClickHouseAvailable} {
		if p, ok := have(); !ok {
			fmt.Fprintf(os.Stderr, "tests: %s not found: run `make deps` (installs redis-server and clickhouse-server)\n", p)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "edgepixel-e2e-bin-")
	if err != nil {
		panic(err)
	}
	root, err := stack.RepoRoot()
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	bin, err = stack.Build(ctx, root, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(1)
	}
	fmt.Printf("tests: built edge module, POP and aggregator in %v\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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
		b, _ := os.ReadFile(dir + "/logs/" + name + ".log")
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("---- %s.log (tail) ----\n%s", name, b)
	}
}
