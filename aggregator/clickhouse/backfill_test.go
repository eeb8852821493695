package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// rollupTotals reads, for each step 7 rollup, the events it holds and
// what the events table says it should hold, with the visitors of the
// day rollup against the exact count.
func rollupTotals(t *testing.T, c *Client) (got, want string) {
	t.Helper()
	var g, w []string
	for _, r := range rollups() {
		cond := "1"
		if r.check != "" {
			cond = r.check
		}
		g = append(g, r.table+" "+c.count(t, "SELECT sumMerge(events) FROM "+c.db+"."+r.table+" WHERE "+cond))
		ecount := "count()"
		if r.where != "" {
			ecount = "countIf(" + r.where + ")"
		}
		w = append(w, r.table+" "+c.count(t, "SELECT "+ecount+" FROM "+c.db+".events"))
	}
	g = append(g, "visitors "+c.count(t, "SELECT uniqCombinedIfMerge(visitors) FROM "+c.db+".rollup_days"))
	w = append(w, "visitors "+c.count(t, "SELECT uniqExactIf(visitor_id, visitor_id != 0) FROM "+c.db+".events"))
	return strings.Join(g, ", "), strings.Join(w, ", ")
}

// A database with events from before step 7: the views roll up events
// from the cut-off on, the backfill those before it, once, and again
// only for a month where an event arrived late; no event is counted
// twice, including those stored between step 7 and the backfill.
func TestBackfillRollups(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.migrate(ctx, Migrations[:5], "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var seq uint64
	evs := func(n int, at time.Time, step time.Duration) []event.Event {
		var out []event.Event
		for i := range n {
			e := mkEvent(t, "old.example", at.Add(time.Duration(i)*step).UnixMilli())
			seq++
			e.VisitorID = seq % 7 // 0 for some: no visitor id
			if i%3 == 0 {
				e.Name = "signup"
			}
			out = append(out, e)
		}
		return out
	}
	// Two months of history before the upgrade.
	if err := c.InsertEvents(ctx, evs(300, now.AddDate(0, -2, 0), 4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	defer func(m time.Duration) { CutoffMargin = m }(CutoffMargin)
	CutoffMargin = 3 * time.Second
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.RollupCutoff(ctx)
	if err != nil || !ok || cutoff.Before(now) {
		t.Fatalf("cut-off %v %v %v, want after %v", cutoff, ok, err, now)
	}
	// Stored after the views exist but before the cut-off: the backfill's.
	if err := c.InsertEvents(ctx, evs(20, now.Add(-time.Hour), time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cutoff) + 100*time.Millisecond)
	// From the cut-off on: the views'.
	if err := c.InsertEvents(ctx, evs(30, cutoff, time.Second)); err != nil {
		t.Fatal(err)
	}
	got, want := rollupTotals(t, c)
	if got == want {
		t.Fatalf("rolled up before the backfill: %s", got)
	}
	res, err := c.BackfillRollups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v", res)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the backfill: %s\nevents say %s", got, want)
	}
	res, err = c.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after a second run: %s\nevents say %s", got, want)
	}
	// An event from before the cut-off that arrives late.
	if err := c.InsertEvents(ctx, evs(1, now.AddDate(0, -2, 0), 0)); err != nil {
		t.Fatal(err)
	}
	res, err = c.BackfillRollups(ctx)
	if err != nil || len(res.Rebuilt) != len(rollups()) {
		t.Fatalf("late event: %+v %v", res, err)
	}
	if got, want := rollupTotals(t, c); got != want {
		t.Fatalf("after the late event: %s\nevents say %s", got, want)
	}
	// The day rollup's buckets agree with the events, day by day.
	q := func(sql string) string { return c.count(t, fmt.Sprintf(sql, c.db)) }
	if got, want := q("SELECT t, sumMerge(events), sumMerge(pageviews) FROM %s.rollup_days GROUP BY t ORDER BY t"),
		q("SELECT toStartOfDay(ts, 'UTC') AS t, count(), countIf(name = 'pageview') FROM %s.events GROUP BY t ORDER BY t"); got != want {
		t.Fatalf("days:\n%s\nevents:\n%s", got, want)
	}
}

// On a database without events the cut-off is 0: the views cover every
// event and there is nothing to backfill.
func TestBackfillFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.RollupCutoff(ctx)
	if err != nil || !ok || cutoff.Unix() != 0 {
		t.Fatalf("%v %v %v", cutoff, ok, err)
	}
	if err := c.InsertEvents(ctx, []event.Event{mkEvent(t, "a.example", time.Now().AddDate(0, -1, 0).UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	res, err := c.BackfillRollups(ctx)
	if err != nil || res.Checked != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	for range 100 {
		if got, want := rollupTotals(t, c); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, want := rollupTotals(t, c)
	t.Fatalf("%s\nevents say %s", got, want)
}
