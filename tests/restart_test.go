package tests

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestRestartKeepsData is what `make run` promises: stopping the stack
// loses nothing — not even hits still buffered in the POP's instances when
// Ctrl-C came — and a second start on the same directory keeps every row.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	// A long batch age keeps the hits buffered in the POP until shutdown
	// makes it flush them.
	opts := stack.Options{Dir: dir, EdgeConfig: map[string]string{"batch_max_age_ms": "60000"}}
	first, err := stack.Start(t.Context(), withBin(opts))
	if err != nil {
		dumpLogs(t, dir)
		t.Fatal(err)
	}
	const before, after = 25, 7
	for i := 0; i < before; i++ {
		resp, body := get(t, pixelURL(first.PopURL, "restart", fmt.Sprintf("https://example.com/before/%d", i), ""), nil)
		checkPixel(t, resp, body)
	}
	if n := chCount(t, first.ClickHouse.HTTPURL); n != 0 {
		t.Logf("%d rows already stored before the stop (batch age not honoured?)", n)
	}
	if err := first.Stop(); err != nil {
		dumpLogs(t, dir)
		t.Fatalf("stop: %v", err)
	}

	second := startStack(t, opts)
	eventually(t, 30*time.Second, "hits sent before the stop stored", func() (bool, string) {
		n := chCount(t, second.ClickHouse.HTTPURL)
		return n >= before, strconv.Itoa(n)
	})
	for i := 0; i < after; i++ {
		resp, body := get(t, pixelURL(second.PopURL, "restart", fmt.Sprintf("https://example.com/after/%d", i), ""), nil)
		checkPixel(t, resp, body)
	}
	// The second POP flushes on shutdown too; wait on ClickHouse instead so
	// the count is checked while everything still runs.
	second.Pop.Stop(30 * time.Second)
	eventually(t, 30*time.Second, "all hits stored", func() (bool, string) {
		n := chCount(t, second.ClickHouse.HTTPURL)
		return n >= before+after, strconv.Itoa(n)
	})
	if n := chCount(t, second.ClickHouse.HTTPURL); n != before+after {
		t.Fatalf("%d rows, want exactly %d", n, before+after)
	}
}

// withBin gives o the binaries (unless o names its own) and compile cache
// TestMain prepared.
func withBin(o stack.Options) stack.Options {
	if o.Bin == (stack.Binaries{}) {
		o.Bin = bin
	}
	if o.CompileCache == "" {
		o.CompileCache = compileCache
	}
	return o
}
