package clickhouse

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/shared/event"
)

// stringInput is evs as eventsInput encodes them, except that the
// string columns asString names are sent as String, as an aggregator of
// a version before event.VersionLowCardinality sends them.
func stringInput(evs []event.Event, asString func(name string) bool) proto.Input {
	in := eventsInput(evs)
	for i, col := range in {
		if f := fieldByJSON(col.Name); f != nil && f.Str != nil && asString(col.Name) {
			in[i].Data = strCol{evs: evs, get: f.Str}
		}
	}
	return in
}

// preLowCardinalityInput is evs as an aggregator of schema version
// event.VersionLowCardinality-1 sends them: user_agent and pop as String.
func preLowCardinalityInput(evs []event.Event) proto.Input {
	return stringInput(evs, func(name string) bool { return name == "user_agent" || name == "pop" })
}

// Step VersionLowCardinality makes user_agent and pop LowCardinality in
// place: rows stored before read as they did, the rollups keep their
// counts and count new rows, this version's inserts land, and an older
// aggregator's inserts fail (it keeps them to retry) instead of storing
// anything wrong.
func TestMigrateLowCardinality(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, event.VersionLowCardinality-1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var old []event.Event
	for i, ua := range []string{"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "Mozilla/5.0 (iPhone) Safari/604.1", ""} {
		e := mkEvent(t, "lc.example", now-int64(i)*60_000)
		e.UserAgent, e.Pop, e.VisitorID = ua, []string{"FRA", "AMS", ""}[i], uint64(7+i)
		old = append(old, e)
	}
	if err := c.insert(ctx, "events", len(old), preLowCardinalityInput(old)); err != nil {
		t.Fatalf("insert as version %d: %v", event.VersionLowCardinality-1, err)
	}
	rowsQ := "SELECT toString(event_id), ts_ms, site, user_agent, pop, url, visitor_id FROM " + c.db + ".events ORDER BY ts_ms, event_id"
	rowsBefore := c.count(t, rowsQ)
	rollupQ := "SELECT sumMerge(events), uniqCombinedIfMerge(visitors) FROM " + c.db + ".rollup_days"
	rollupBefore := c.count(t, rollupQ)
	if rollupBefore != "3\t3" {
		t.Fatalf("rollup before the step: %q", rollupBefore)
	}

	res, err := c.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.To != event.VersionLowCardinality && res.To != lastVersion() {
		t.Fatalf("%+v", res)
	}
	if got := c.count(t, "SELECT name, type FROM system.columns WHERE database = "+quote(c.db)+" AND table = 'events' AND name IN ('user_agent', 'pop') ORDER BY name"); got != "pop\tLowCardinality(String)\nuser_agent\tLowCardinality(String)" {
		t.Fatalf("columns after the step:\n%s", got)
	}
	if got := c.count(t, rowsQ); got != rowsBefore {
		t.Fatalf("old rows after the step\n%s\nwere\n%s", got, rowsBefore)
	}
	if got := c.count(t, rollupQ); got != rollupBefore {
		t.Fatalf("rollup after the step %q, was %q", got, rollupBefore)
	}

	// This version's insert lands and is rolled up.
	e := mkEvent(t, "lc.example", now)
	e.UserAgent, e.Pop, e.VisitorID = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "IAD", 99
	if err := c.InsertEvents(ctx, []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	if got := c.count(t, "SELECT user_agent, pop FROM "+c.db+".events WHERE event_id = '"+e.ID.String()+"'"); got != e.UserAgent+"\tIAD" {
		t.Fatalf("new row: %q", got)
	}
	if got := c.count(t, rollupQ); got != "4\t4" {
		t.Fatalf("rollup after a new insert: %q", got)
	}

	// An older aggregator still running: its insert fails whole.
	late := mkEvent(t, "lc.example", now)
	err = c.insert(ctx, "events", 1, preLowCardinalityInput([]event.Event{late}))
	if err == nil {
		t.Fatal("an insert with user_agent as String was taken")
	}
	if !strings.Contains(err.Error(), "Bad cast") {
		t.Logf("older aggregator's insert: %v", err)
	}
	if got := c.count(t, "SELECT count() FROM "+c.db+".events WHERE event_id = '"+late.ID.String()+"'"); got != "0" {
		t.Fatalf("the older aggregator's row: %s", got)
	}
	if got := c.count(t, rollupQ); got != "4\t4" {
		t.Fatalf("rollup after the older aggregator's insert: %q", got)
	}
}

// insertAsStored inserts evs as an aggregator of the database's schema
// version does: a LowCardinality field whose column is still String (the
// database is older than the step that changed it) is sent as String.
func (c *Client) insertAsStored(ctx context.Context, evs []event.Event) error {
	table := c.layout.LocalName("events")
	if c.layout.Clustered() {
		table = EventsInput
	}
	cols, err := c.columns(ctx, table)
	if err != nil {
		return err
	}
	in := stringInput(evs, func(name string) bool { return cols[name].typ == "String" })
	return c.insertInto(ctx, table, len(evs), in)
}
