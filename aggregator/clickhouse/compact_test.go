package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Rollups written in several inserts, each spanning two months, leave
// every key in several parts; compaction merges each partition into one
// part and one row per key, only once the partition is quiet, and every
// rollup answers as before (and as the events table does).
func TestCompactRollups(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for b := range 3 {
		var evs []event.Event
		for i := range 200 {
			e := mkEvent(t, []string{"a.example", "b.example"}[i%2], now.AddDate(0, 0, -i%50).Add(-time.Duration(b)*time.Minute).UnixMilli())
			e.VisitorID = uint64(i%13) + uint64(b)
			evs = append(evs, e)
		}
		if err := c.InsertEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	var before string
	for i := 0; ; i++ {
		got, want := rollupTotals(t, c)
		if got == want {
			before = got
			break
		}
		if i == 100 {
			t.Fatalf("%s\nevents say %s", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	parts := func() string {
		return c.count(t, "SELECT table, partition_id, count() FROM system.parts WHERE database = '"+c.db+"' AND active AND table IN ('"+strings.Join(compactTables, "', '")+"') GROUP BY table, partition_id ORDER BY table, partition_id")
	}
	// Every row of each key, and the keys.
	keys := func() string {
		return c.count(t, "SELECT (SELECT count() FROM "+c.db+".rollup_days), (SELECT uniqExact(site, t) FROM "+c.db+".rollup_days), (SELECT count() FROM "+c.db+"."+BotDimHoursTable+"), (SELECT uniqExact(site, dim, value, bot, t) FROM "+c.db+"."+BotDimHoursTable+")")
	}
	visitors := func() string {
		return c.count(t, "SELECT site, toUnixTimestamp(t), uniqCombinedIfMerge(visitors) FROM "+c.db+".rollup_days GROUP BY site, t ORDER BY site, t")
	}
	wantVisitors := c.count(t, "SELECT site, toUnixTimestamp(toStartOfDay(ts, 'UTC')) AS d, uniqExactIf(visitor_id, visitor_id != 0) FROM "+c.db+".events GROUP BY site, d ORDER BY site, d")
	if got := visitors(); got != wantVisitors {
		t.Fatalf("visitors per day before compaction:\n%s\nevents say\n%s", got, wantVisitors)
	}
	p0, k0 := parts(), keys()
	// Background merges may have merged some partitions already.
	several := 0
	for _, line := range strings.Split(p0, "\n") {
		if !strings.HasSuffix(line, "\t1") {
			several++
		}
	}
	if several == 0 {
		t.Fatalf("no partition has several parts to compact:\n%s", p0)
	}
	if n, err := c.CompactRollups(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("compacted %d partitions written just now: %v", n, err)
	}
	n, err := c.CompactRollups(ctx, 0)
	if err != nil || n == 0 || n > several {
		t.Fatalf("compacted %d partitions (%d had several parts): %v\nparts before:\n%s", n, several, err, p0)
	}
	p1, k1 := parts(), keys()
	for _, line := range strings.Split(p1, "\n") {
		if !strings.HasSuffix(line, "\t1") {
			t.Errorf("a partition still has several parts: %q\nbefore:\n%s", line, p0)
		}
	}
	var rows, ks, drows, dks uint64
	if _, err := fmt.Sscan(k1, &rows, &ks, &drows, &dks); err != nil || rows != ks || drows != dks {
		t.Errorf("rows and keys after compaction: %s (before %s): %v", k1, k0, err)
	}
	if got, _ := rollupTotals(t, c); got != before {
		t.Errorf("after compaction %s\nbefore %s", got, before)
	}
	if got := visitors(); got != wantVisitors {
		t.Errorf("visitors per day after compaction:\n%s\nevents say\n%s", got, wantVisitors)
	}
	if n, err := c.CompactRollups(ctx, 0); err != nil || n != 0 {
		t.Errorf("a second compaction compacted %d partitions: %v", n, err)
	}
}
