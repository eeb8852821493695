package loader

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// On a ClickHouse cluster, an insert that failed after some rollup views
// had counted its events, by a process that then stopped before a retry
// succeeded, is finished by the next process as the same block, so those
// rollups keep each event once. Here a view that fails on one site's
// events (sorting after the views of events_per_minute, rollup_hours,
// rollup_dims_bot and rollup_minutes, before rollup_visits' and the events
// table's) stands for the failure; more events
// are spooled before the restart, so that the next process's first load
// is not the same block as the failed one.
func TestJournalFinishesAPartialInsert(t *testing.T) {
	_, cl := localsrv.StartTestCluster(t, "jc", 1, 1)
	ctx := context.Background()
	dir := t.TempDir()
	newClient := func() *clickhouse.Client {
		c, err := clickhouse.New(cl.Shards[0][0].HTTPURL, "edgepixel")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetCluster(clickhouse.ClusterConfig{Name: "jc"}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	spoolDir := dir + "/spool"
	run := func(c *clickhouse.Client, m *metrics.Metrics, stored *uint64) (stop func()) {
		sp, err := spool.Open(spoolDir, spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		l := New(Config{Spool: sp, Dedupe: dedupe.NewMemory(time.Hour), Store: c, Metrics: m,
			MaxAge: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, DrainTimeout: 200 * time.Millisecond,
			OnCounts: func(map[string]uint64, uint64) {},
			OnStored: func(d map[string]uint64) {
				for _, v := range d {
					*stored += v
				}
			}})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { l.Run(runCtx); close(done) }()
		return func() { cancel(); <-done; sp.Close() }
	}
	evs := func(site string, n int) []byte {
		out := events(t, n)
		for i := range out {
			out[i].Site = site
		}
		return wire.Append(nil, out)
	}
	appendTo := func(b []byte) {
		sp, err := spool.Open(spoolDir, spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
		sp.Close()
	}

	c1 := newClient()
	defer c1.Close()
	if _, err := c1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c1.Exec(ctx, "CREATE TABLE edgepixel.fail_sink (n UInt8) ENGINE = Null"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Exec(ctx, "CREATE MATERIALIZED VIEW edgepixel.rollup_minutes_zfail_mv TO edgepixel.fail_sink AS SELECT throwIf(site = 'boom') AS n FROM edgepixel."+clickhouse.EventsInput); err != nil {
		t.Fatal(err)
	}
	appendTo(evs("boom", 20))
	m1 := metrics.New()
	var stored1, stored2 uint64
	stop := run(c1, m1, &stored1)
	deadline := time.Now().Add(2 * time.Minute)
	for m1.StoreErrors.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the failing insert was never tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop() // the process stops before a retry succeeds

	if err := c1.Exec(ctx, "DROP TABLE edgepixel.rollup_minutes_zfail_mv"); err != nil {
		t.Fatal(err)
	}
	appendTo(evs("more", 10))
	c2 := newClient()
	defer c2.Close()
	stop = run(c2, metrics.New(), &stored2)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		n := count(t, c2, "SELECT count() FROM edgepixel.events")
		if n == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events stored, want 30", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a double, if any, would be in by now
	stop()
	for _, q := range []string{
		"SELECT count() FROM edgepixel.events",
		"SELECT toUInt64(sum(n)) FROM edgepixel.events_per_minute",
		"SELECT toUInt64(sumMerge(events)) FROM edgepixel.rollup_hours",
		"SELECT toUInt64(sumMerge(events)) FROM edgepixel.rollup_dims_bot WHERE dim = 'country'",
	} {
		if n := count(t, c2, q); n != 30 {
			t.Errorf("%s = %d, want 30", q, n)
		}
	}
	if stored1+stored2 != 30 {
		t.Errorf("live counts %d + %d, want 30", stored1, stored2)
	}
}

func count(t *testing.T, c *clickhouse.Client, q string) int {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: %v %v", q, rows, err)
	}
	n, err := strconv.Atoi(rows[0][0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}
