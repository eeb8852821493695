package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// An install with history migrates to MinuteDimsTable: its view rolls up
// the events from its cut-off (a whole hour ahead), the backfill those
// before it, so that per minute, visitor and values it holds what the
// events table says, including events stored between the step and its
// cut-off; readers take it for the history only once backfilled; a
// second run changes nothing; retention drops its days with the events'.
func TestBackfillMinuteDims(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	mk := func(n int, at time.Time, step time.Duration) []event.Event { return historyEvents(t, n, at, step) }
	now, history, cutoff := migrateWithHistory(t, c, VersionMinuteDims, c.MinuteDimsCutoff)
	ready := func(from, to time.Time) bool {
		t.Helper()
		ok, err := MinuteDimsReady(ctx, c, c.db, "old.example", from, to)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if ready(history, now) {
		t.Fatal("ready for the history before the backfill")
	}
	if !ready(cutoff, cutoff.Add(2*time.Hour)) {
		t.Fatal("not ready from the cut-off on")
	}
	// Per minute, visitor and value: events, pageviews, first and last
	// time of MinuteDimsTable and of the events table.
	got := "SELECT toUnixTimestamp(t), visitor_id, country, device, page, event, sumMerge(events), sumMerge(pageviews), minMerge(first), maxMerge(last) FROM %s.%s GROUP BY t, visitor_id, country, device, page, event ORDER BY t, visitor_id, country, device, page, event"
	raw := "SELECT toUnixTimestamp(toStartOfMinute(ts, 'UTC')) AS m, visitor_id, country, toString(device) AS d, path(url) AS p, name, count(), countIf(name = 'pageview'), min(ts_ms), max(ts_ms) FROM %s.events GROUP BY m, visitor_id, country, d, p, name ORDER BY m, visitor_id, country, d, p, name"
	check := func(when string) {
		t.Helper()
		if g, w := c.count(t, fmt.Sprintf(got, c.db, MinuteDimsTable)), c.count(t, fmt.Sprintf(raw, c.db)); g != w {
			t.Fatalf("%s: %s:\n%s\nevents say:\n%s", when, MinuteDimsTable, g, w)
		}
	}
	res, err := c.BackfillMinuteDims(ctx)
	if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v %v", res, err)
	}
	check("after the backfill")
	if !ready(history, now) {
		t.Fatal("not ready for the history after the backfill")
	}
	res, err = c.BackfillMinuteDims(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	check("after a second run")
	// Late, before the cut-off, in a day the history had none of: not
	// ready for that day until its month is rebuilt.
	late := mk(1, history.Add(-36*time.Hour), 0)
	if err := c.InsertEvents(ctx, late); err != nil {
		t.Fatal(err)
	}
	if ready(history.Add(-48*time.Hour), now) {
		t.Fatal("ready for a day the backfill has not rolled up")
	}
	if res, err = c.BackfillMinuteDims(ctx); err != nil || len(res.Rebuilt) != 1 {
		t.Fatalf("late event: %+v %v", res, err)
	}
	check("after the late event")
	if !ready(history.Add(-48*time.Hour), now) {
		t.Fatal("not ready after the late event's month was rebuilt")
	}
}

// On a database without events the cut-off is 0: the view covers every
// event, every range is ready, and there is nothing to backfill.
func TestMinuteDimsFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.MinuteDimsCutoff(ctx)
	if err != nil || !ok || cutoff.Unix() != 0 {
		t.Fatalf("cut-off %v %v %v, want 0", cutoff, ok, err)
	}
	at := time.Now().AddDate(0, 0, -3)
	if err := c.InsertEvents(ctx, []event.Event{mkEvent(t, "new.example", at.UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	if got := c.count(t, "SELECT sumMerge(events) FROM "+c.db+"."+MinuteDimsTable+" WHERE site = 'new.example' AND country = 'DE'"); got != "1" {
		t.Fatalf("%s holds %s events, want 1", MinuteDimsTable, got)
	}
	if ok, err := MinuteDimsReady(ctx, c, c.db, "new.example", at.Add(-time.Hour), time.Now()); err != nil || !ok {
		t.Fatalf("ready %v %v", ok, err)
	}
	if res, err := c.BackfillMinuteDims(ctx); err != nil || res.Checked != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}
