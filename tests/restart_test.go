package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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
	secretsOffCommandLines(t, first)
	// Every process's log is in the logs directory, as make run's banner
	// says: the servers' by a link to their own directories.
	for _, name := range []string{"aggregator.log", "pop.log", "redis.log", "clickhouse-server.log", "clickhouse-server.err.log"} {
		if _, err := os.Stat(filepath.Join(dir, "logs", name)); err != nil {
			t.Errorf("logs: %v", err)
		}
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

	// The live windows are rebuilt from what is stored: an aggregator
	// restarted with no traffic since still shows the pages viewed in the
	// last minutes.
	if err := second.Aggregator.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop the aggregator: %v", err)
	}
	if err := second.StartAggregator(t.Context()); err != nil {
		dumpLogs(t, dir)
		t.Fatal(err)
	}
	u := "ws" + strings.TrimPrefix(second.DashboardURL, "http") + "/live"
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + second.DashboardToken}})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	defer conn.Close()
	var snap struct {
		Type  string `json:"type"`
		Pages map[string][]struct {
			Path string `json:"path"`
			N    int    `json:"n"`
		} `json:"pages"`
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := conn.ReadJSON(&snap); err != nil || snap.Type != "snapshot" {
		t.Fatalf("first message %+v: %v", snap, err)
	}
	var views int
	for _, p := range snap.Pages["restart"] {
		if strings.HasPrefix(p.Path, "/before/") || strings.HasPrefix(p.Path, "/after/") {
			views += p.N
		}
	}
	if views == 0 {
		t.Fatalf("after the aggregator's restart, pages viewed now: %+v, want the hits of the last minutes", snap.Pages)
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

// secretsOffCommandLines checks that the stack's children got the log
// token and the shared secret some other way than their command lines,
// which every local user can read (ps, /proc/PID/cmdline).
func secretsOffCommandLines(t *testing.T, s *stack.Stack) {
	t.Helper()
	for name, pid := range map[string]int{"POP": s.Pop.Pid(), "aggregator": s.Aggregator.Pid()} {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		for secret, v := range map[string][]byte{"log token": []byte(s.LogToken), "shared secret": s.Secret} {
			if len(v) > 0 && bytes.Contains(cmdline, v) {
				t.Errorf("the %s's command line shows the %s: %q", name, secret, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		}
	}
}
