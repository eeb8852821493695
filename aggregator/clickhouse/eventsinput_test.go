package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// In a cluster the loader inserts into EventsInput, whose views fill the
// rollups and events_local. On a real shard of two replicas: a block
// inserted twice (a retry after an unknown outcome) is kept once by the
// events table and every rollup; a column added to events_local by a
// later step reaches EventsInput on the next start; and a database an
// earlier cluster layout made (rollup views on rollup_input, a Null
// table the loader inserted into after events_local) is switched over,
// its rollups still counting every event once.
func TestClusterEventsInput(t *testing.T) {
	_, cl, c := startShard(t, "inp", ClusterConfig{Name: "in_cluster", InsertQuorum: 2, QuorumTimeout: 30 * time.Second})
	ctx := context.Background()
	if err := afterDDLRestart(t, cl, migrate(c)); err != nil {
		t.Fatal(err)
	}

	sent := 0
	batch := func(n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = mkEvent(t, "s", time.Now().UnixMilli())
		}
		sent += n
		return evs
	}
	insert := func(evs []event.Event) {
		t.Helper()
		if err := c.InsertEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	// Every table holds each sent event once: the events table, and the
	// sums of events_per_minute, rollup_hours and a dimension of
	// rollup_dims_bot (step 4's site_hours and dim_hours, and step 7's
	// rollup_dims since step 17, fill no more).
	check := func(when string) {
		t.Helper()
		want := fmt.Sprint(sent)
		for _, q := range []string{
			"SELECT count() FROM inp.events",
			"SELECT uniqExact(event_id) FROM inp.events",
			"SELECT sum(n) FROM inp.events_per_minute",
			"SELECT sumMerge(events) FROM inp.rollup_hours",
			"SELECT sumMerge(events) FROM inp.rollup_dims_bot WHERE dim = 'country'",
		} {
			if got := c.count(t, q); got != want {
				t.Errorf("%s: %s = %s, want %s", when, q, got, want)
			}
		}
	}

	evs := batch(50)
	insert(evs)
	insert(evs) // the same block again: kept once everywhere
	insert(batch(30))
	check("fresh database, a block inserted twice")

	// A later step's column: events_local gains it, EventsInput on the
	// next start.
	// Tried again after a restart, the ALTER finds the column that its
	// first run added.
	if err := afterDDLRestart(t, cl, func() error {
		if c.count(t, "SELECT count() FROM system.columns WHERE database = 'inp' AND table = 'events_local' AND name = 'extra'") == "1" {
			return nil
		}
		return c.Exec(ctx, "ALTER TABLE inp.events_local ON CLUSTER in_cluster ADD COLUMN extra String DEFAULT 'x'")
	}); err != nil {
		t.Fatal(err)
	}
	// Until then inserts fail: the views that sort before EventsView
	// have run, and the loader's retry of the same block (after the
	// start below) is dropped by them and stored by EventsView.
	retried := batch(10)
	if err := c.InsertEvents(ctx, retried); err == nil {
		t.Error("an insert into an EventsInput that lacks a column of events_local succeeded")
	}
	if err := afterDDLRestart(t, cl, migrate(c)); err != nil {
		t.Fatal(err)
	}
	insert(retried)
	insert(batch(20))
	check("after a new column, with a block retried across it")
	if got := c.count(t, "SELECT count() FROM inp.events_local WHERE extra = 'x'"); got != fmt.Sprint(sent) {
		t.Errorf("rows with the new column's default: %s, want %d", got, sent)
	}

	// An earlier cluster layout: the rollup views read rollup_input, which
	// the loader filled after events_local, or events_local itself (the
	// rollups' views with their cut-off, in a development build), and
	// nothing stores EventsInput's rows. The switch-over must make them
	// again on EventsInput with their cut-off, and not bring back step
	// 4's views, which step VersionRollups dropped.
	var views []string
	for _, r := range mustQuery(t, c, "SELECT name FROM system.tables WHERE database = 'inp' AND engine = 'MaterializedView' ORDER BY name") {
		views = append(views, r[0])
	}
	if cutoff, ok, err := c.RollupCutoff(ctx); err != nil || !ok || cutoff.Unix() != 0 {
		t.Fatalf("rollups' cut-off on a fresh database: %v %v %v, want 0", cutoff, ok, err)
	}
	var legacy []string
	for _, r := range rollups() {
		if r.table == DimTable {
			continue // its view dropped by step VersionBotDims
		}
		legacy = append(legacy, "DROP TABLE inp."+r.table+"_mv ON CLUSTER in_cluster",
			strings.ReplaceAll(strings.ReplaceAll(r.view(c.layout, 0), "{db}."+EventsInput, "{db}.events_local"), "{db}", "inp"))
	}
	for _, s := range append(legacy,
		"DROP TABLE inp."+EventsView+" ON CLUSTER in_cluster",
		"DROP TABLE inp.events_per_minute_mv ON CLUSTER in_cluster",
		"DROP TABLE inp."+EventsInput+" ON CLUSTER in_cluster",
		"CREATE TABLE inp.rollup_input ON CLUSTER in_cluster (event_id UUID, ts DateTime, site String, name String) ENGINE = Null",
		"CREATE MATERIALIZED VIEW inp.events_per_minute_mv ON CLUSTER in_cluster TO inp.events_per_minute_local AS SELECT site, toStartOfMinute(ts) AS minute, count() AS n, "+
			loadExpr+" AS load FROM inp.rollup_input GROUP BY site, minute",
	) {
		if err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := afterDDLRestart(t, cl, migrate(c)); err != nil {
		t.Fatal(err)
	}
	if cutoff, ok, err := c.RollupCutoff(ctx); err != nil || !ok || cutoff.Unix() != 0 {
		t.Errorf("rollups' cut-off after the switch-over: %v %v %v, want 0 as before", cutoff, ok, err)
	}
	insert(batch(40))
	check("after switching an earlier layout's database over")
	var after []string
	for _, r := range mustQuery(t, c, "SELECT name FROM system.tables WHERE database = 'inp' AND engine = 'MaterializedView' ORDER BY name") {
		after = append(after, r[0])
	}
	if strings.Join(after, " ") != strings.Join(views, " ") {
		t.Errorf("views after the switch: %v, want %v", after, views)
	}
	for _, srv := range cl.Servers() {
		sc, err := New(srv.HTTPURL, "inp")
		if err != nil {
			t.Fatal(err)
		}
		deps := sc.count(t, "SELECT arrayStringConcat(dependencies_table, ' ') FROM system.tables WHERE database = 'inp' AND name = '"+EventsInput+"'")
		old := sc.count(t, "SELECT count() FROM system.tables WHERE database = 'inp' AND name = 'rollup_input'")
		sc.Close()
		if n := len(strings.Fields(deps)); n != len(views) || old != "0" {
			t.Errorf("%s: %d views read %s (%s), want %d; rollup_input tables: %s", srv.HTTPURL, n, EventsInput, deps, len(views), old)
		}
	}
}

// migrate returns c's migration as a change for afterDDLRestart.
func migrate(c *Client) func() error {
	return func() error {
		_, err := c.Migrate(context.Background())
		return err
	}
}

func mustQuery(t *testing.T, c *Client, q string) [][]string {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
