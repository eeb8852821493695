package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// An install with history migrates to DimDayTable: its view rolls up the
// events from its cut-off (a whole hour ahead), the backfill merges
// DimTable's hours before it, so that every day, dimension and value
// holds what DimTable's hours of the day hold and the events table says,
// including events stored between the step and its cut-off and one that
// arrives late; a second run changes nothing.
func TestBackfillDimDays(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	mk := func(n int, at time.Time, step time.Duration) []event.Event { return historyEvents(t, n, at, step) }
	// Step VersionBotDims drops DimTable's and DimDayTable's views.
	_, history, cutoff := migrateWithHistoryTo(t, c, VersionDimDays, VersionBotDims-1, c.DimDaysCutoff)
	// Per day, dimension and value: events, pageviews and visitors of
	// DimDayTable, of DimTable's hours, and of the events table.
	days := "SELECT t, dim, value, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM %s.%s GROUP BY t, dim, value ORDER BY t, dim, value"
	hours := "SELECT toStartOfDay(t, 'UTC') AS d, dim, value, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM %s.%s GROUP BY d, dim, value ORDER BY d, dim, value"
	raw := "SELECT toStartOfDay(ts, 'UTC') AS d, 'country' AS dim, country AS value, count(), countIf(name = 'pageview'), uniqExactIf(visitor_id, visitor_id != 0) FROM %s.events GROUP BY d, value ORDER BY d, value"
	check := func(when string) {
		t.Helper()
		got, want := c.count(t, fmt.Sprintf(days, c.db, DimDayTable)), c.count(t, fmt.Sprintf(hours, c.db, DimTable))
		if got != want {
			t.Fatalf("%s: %s by day:\n%s\n%s by day:\n%s", when, DimDayTable, got, DimTable, want)
		}
		got = c.count(t, fmt.Sprintf("SELECT t, dim, value, sumMerge(events), sumMerge(pageviews), uniqCombinedIfMerge(visitors) FROM %s.%s WHERE dim = 'country' GROUP BY t, dim, value ORDER BY t, dim, value", c.db, DimDayTable))
		if want := c.count(t, fmt.Sprintf(raw, c.db)); got != want {
			t.Fatalf("%s: countries by day:\n%s\nevents say:\n%s", when, got, want)
		}
	}
	if got, want := c.count(t, fmt.Sprintf(days, c.db, DimDayTable)), c.count(t, fmt.Sprintf(hours, c.db, DimTable)); got == want {
		t.Fatalf("the days hold the history before the backfill:\n%s", got)
	}
	res, err := c.BackfillDimDays(ctx)
	if err != nil || len(res.Rebuilt) == 0 || !res.Cutoff.Equal(cutoff) {
		t.Fatalf("%+v %v", res, err)
	}
	check("after the backfill")
	res, err = c.BackfillDimDays(ctx)
	if err != nil || len(res.Rebuilt) != 0 || res.Checked == 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	check("after a second run")
	// Late, before the cut-off: DimTable's view has it, the days not
	// until its month is rebuilt.
	if err := c.InsertEvents(ctx, mk(1, history, 0)); err != nil {
		t.Fatal(err)
	}
	res, err = c.BackfillDimDays(ctx)
	if err != nil || len(res.Rebuilt) != 1 {
		t.Fatalf("late event: %+v %v", res, err)
	}
	check("after the late event")
	// Compacted, the days answer the same.
	if _, err := c.CompactRollups(ctx, 0); err != nil {
		t.Fatal(err)
	}
	check("compacted")
}

// On a database without events or dimension rows the cut-off is 0: the
// view covers every event and there is nothing to backfill.
func TestDimDaysFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, VersionBotDims-1); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := c.DimDaysCutoff(ctx)
	if err != nil || !ok || cutoff.Unix() != 0 {
		t.Fatalf("cut-off %v %v %v, want 0", cutoff, ok, err)
	}
	if err := c.InsertEvents(ctx, []event.Event{mkEvent(t, "new.example", time.Now().AddDate(0, 0, -3).UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	if got := c.count(t, "SELECT sumMerge(events) FROM "+c.db+"."+DimDayTable+" WHERE dim = 'event'"); got != "1" {
		t.Fatalf("%s holds %s events, want 1", DimDayTable, got)
	}
	if res, err := c.BackfillDimDays(ctx); err != nil || res.Checked != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}

// historyEvents are n events of old.example from at, step apart, of five
// visitors (and none), three countries, two devices, four pages, a third
// of them custom events.
// migrateWithHistory takes c to the step before version, stores two
// months of history (rolled up hourly by step 7's views), migrates to the
// latest step and checks that the cut-off of version's view (cutoffOf) is
// a whole hour after the migration; then stores events before the cut-off
// (the backfill's) and from it on (the view's). It returns when it
// began, the history's start and the cut-off.
func migrateWithHistory(t *testing.T, c *Client, version int, cutoffOf func(context.Context) (time.Time, bool, error)) (now, history, cutoff time.Time) {
	t.Helper()
	return migrateWithHistoryTo(t, c, version, SchemaVersion(), cutoffOf)
}

// migrateWithHistoryTo is migrateWithHistory migrating to step to, not
// the latest.
func migrateWithHistoryTo(t *testing.T, c *Client, version, to int, cutoffOf func(context.Context) (time.Time, bool, error)) (now, history, cutoff time.Time) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, version-1); err != nil {
		t.Fatal(err)
	}
	now = time.Now()
	history = now.AddDate(0, -2, 0)
	if err := c.InsertEvents(ctx, historyEvents(t, 400, history, 3*time.Hour+7*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MigrateTo(ctx, to); err != nil {
		t.Fatal(err)
	}
	cutoff, ok, err := cutoffOf(ctx)
	if err != nil || !ok || !cutoff.After(now) || cutoff.Unix()%3600 != 0 {
		t.Fatalf("cut-off %v %v %v, want a whole hour after %v", cutoff, ok, err, now)
	}
	if err := c.InsertEvents(ctx, historyEvents(t, 30, cutoff.Add(-40*time.Minute), time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertEvents(ctx, historyEvents(t, 30, cutoff, 3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	return now, history, cutoff
}

func historyEvents(t *testing.T, n int, at time.Time, step time.Duration) []event.Event {
	countries := []string{"DE", "US", ""}
	devices := []string{"mobile", "desktop"}
	var out []event.Event
	for i := range n {
		e := mkEvent(t, "old.example", at.Add(time.Duration(i)*step).UnixMilli())
		e.VisitorID = uint64(i % 5) // 0: none
		e.Country = countries[i%len(countries)]
		e.Device = devices[i%len(devices)]
		e.URL = fmt.Sprintf("https://old.example/p/%d", i%4)
		e.Referrer = []string{"", "https://www.google.com/", "https://t.co/x"}[i/2%3]
		e.BotScore = []uint8{0, 0, 90, 0, 20, 0, 60}[i%7] // 90 and 60 a bot's
		e.Tier = []string{event.TierFull, "", event.TierAggregate, event.TierFull}[i%4]
		e.MailOpen = []string{"", "person", "gmail", "", "apple"}[i%5]
		e.Signature = []string{"", "verified", "unsigned"}[i/3%3]
		if i%3 == 0 {
			e.Name = "signup"
			e.Props = fmt.Sprintf(`{"plan":"p%d"}`, i%2)
		}
		out = append(out, e)
	}
	return out
}
