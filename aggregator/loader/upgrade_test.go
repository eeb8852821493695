package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// testdata/spool-v1 is a spool written by the aggregator of git main
// (5fbb671), before method existed, and never loaded: a plain batch of two
// events and an envelope of two batches (three events) and a bad row.
// spoolV1 copies it to a fresh directory.
func spoolV1(t *testing.T) *spool.Spool {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Glob("testdata/spool-v1/*")
	if err != nil || len(src) == 0 {
		t.Fatalf("testdata: %v", err)
	}
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// loadAll runs a loader over sp into st until the spool is drained.
func loadAll(t *testing.T, sp *spool.Spool, st store.Store) {
	t.Helper()
	if sp.Pending() == 0 {
		t.Fatal("nothing spooled")
	}
	l := New(Config{Spool: sp, Dedupe: dedupe.NewMemory(time.Hour), Store: st, MaxAge: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, DrainTimeout: time.Second, OnCounts: func(map[string]uint64, uint64) {}, OnStored: func(map[string]uint64) {}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for sp.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still spooled", sp.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Events spooled before the upgrade load after it: into a ClickHouse the
// new aggregator migrated, with method empty, and the bad row with them.
func TestSpoolFromBeforeUpgradeLoadsIntoClickHouse(t *testing.T) {
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	if testing.Short() {
		t.Skip("-short: starts clickhouse-server")
	}
	ch, err := localsrv.StartClickHouse(context.Background(), t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	c, err := clickhouse.New(ch.HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	loadAll(t, spoolV1(t), c) // Init migrates the empty database first

	q := func(sql string) string {
		rows, err := c.Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, strings.Join(r, "|"))
		}
		return strings.Join(out, "\n")
	}
	if v := q("SELECT max(version) FROM edgepixel.schema_migrations"); v != fmt.Sprint(len(clickhouse.Migrations)) {
		t.Fatalf("schema version %s", v)
	}
	got := q("SELECT site, ts_ms, url, user_agent, pop, props, method = '' FROM edgepixel.events ORDER BY ts_ms")
	var want []string
	for i := 0; i < 5; i++ {
		want = append(want, strings.Join([]string{[]string{"a", "b"}[i%2], jsonNum(1_790_000_000_000 + int64(i)*61_000),
			"https://example.com/p" + string(rune('0'+i)), "Mozilla/5.0 (v1)", "AMS", `{"v":1}`, "1"}, "|"))
	}
	if got != strings.Join(want, "\n") {
		t.Fatalf("events\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if got := q("SELECT source, site, reason FROM edgepixel.bad_rows"); got != "ndjson|a|bad_json" {
		t.Fatalf("bad rows %q", got)
	}
}

// The same spool into the disk store.
func TestSpoolFromBeforeUpgradeLoadsIntoDisk(t *testing.T) {
	dir := t.TempDir()
	d, err := store.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	loadAll(t, spoolV1(t), d)
	files, _ := filepath.Glob(filepath.Join(dir, "events-*.ndjson"))
	var n int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var row map[string]any
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatal(err)
			}
			if m, ok := row["method"]; !ok || m != "" || row["pop"] != "AMS" {
				t.Errorf("row %s", line)
			}
			n++
		}
	}
	if n != 5 {
		t.Fatalf("%d rows", n)
	}
}

func jsonNum(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
