package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// The backfill in the cluster layout, on two shards of two replicas:
// events stored on both shards before the cut-off are rolled up once
// (each month staged, its partitions dropped ON CLUSTER and the staged
// rows copied in through the Distributed table), read the same on every
// replica, and a further run from the other shard changes nothing; the
// visit hours are stored through the Distributed table.
func TestBackfillCluster(t *testing.T) {
	cl, clients := startClusterClients(t, "bf")
	ctx := context.Background()
	c := clients[0]
	if err := afterDDLRestart(t, cl, func() error {
		_, err := c.migrate(ctx, Migrations[:5], "test")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, cc := range clients {
		var evs []event.Event
		for j := range 1000 {
			e := mkEvent(t, "old.example", now.AddDate(0, -2, 0).Add(time.Duration(j)*80*time.Minute+time.Duration(i)*time.Minute).UnixMilli())
			e.VisitorID = uint64(j%13 + 1)
			evs = append(evs, e)
		}
		if err := cc.insertAsStored(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			// A retried insert (the loader's after an unknown
			// outcome) is the same block, which events_local keeps
			// once: the backfill counts rows, so a copy would show
			// as 3000 events.
			if err := cc.insertAsStored(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func(m time.Duration) { CutoffMargin = m }(CutoffMargin)
	CutoffMargin = 2 * time.Second
	// Step 7's backfill, as the step 7 tests on one server take it: up to
	// the step before VersionBotDims, whose tables and views' distributed
	// DDL only add to what each server's queue must run before the
	// backfill's, within distributed_ddl_task_timeout on a loaded machine.
	if err := afterDDLRestart(t, cl, func() error {
		_, err := c.MigrateTo(ctx, VersionBotDims-1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cutoff, _, err := c.RollupCutoff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cutoff))
	syncAll := func() {
		t.Helper()
		for _, reps := range cl.Shards {
			for _, r := range reps {
				rc, err := New(r.HTTPURL, "edgepixel")
				if err != nil {
					t.Fatal(err)
				}
				for _, tbl := range []string{"events", "rollup_days", "rollup_visits", VisitHoursTable, VisitDimsTable} {
					if err := rc.Exec(ctx, "SYSTEM SYNC REPLICA edgepixel."+tbl+"_local"); err != nil {
						t.Fatal(err)
					}
				}
				rc.Close()
			}
		}
	}
	check := func(what string) {
		t.Helper()
		syncAll()
		for _, reps := range cl.Shards {
			for _, r := range reps {
				rc, _ := New(r.HTTPURL, "edgepixel")
				got := rc.count(t, "SELECT sumMerge(events), uniqCombinedIfMerge(visitors) FROM edgepixel.rollup_days WHERE src = 1")
				want := rc.count(t, "SELECT count(), uniqExact(visitor_id) FROM edgepixel.events")
				segs := rc.count(t, "SELECT sumMerge(events) FROM edgepixel.rollup_visits WHERE src = 1")
				rc.Close()
				if got != want || segs != fmt.Sprint(2000) || want != "2000\t13" {
					t.Fatalf("%s, read on %s: rollup_days %s, rollup_visits %s; events say %s", what, r.HTTPURL, got, segs, want)
				}
			}
		}
	}
	// One run at a time, as the lease keeps them: in a cluster two at
	// once can double a month (see BackfillRollups).
	var res BackfillResult
	if err := afterDDLRestart(t, cl, func() (err error) {
		res, err = c.BackfillRollups(ctx)
		return err
	}); err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("the backfill: %+v %v", res, err)
	}
	check("after the backfill")
	if res, err := clients[1].BackfillRollups(ctx); err != nil || len(res.Rebuilt) != 0 {
		t.Fatalf("a further run: %+v %v", res, err)
	}
	check("after a further run")
	if n := c.count(t, "SELECT count() FROM system.tables WHERE database = 'edgepixel' AND position(name, '"+StagingInfix+"') > 0"); n != "0" {
		t.Fatalf("%s staging tables left", n)
	}
	n, err := c.BuildVisitHours(ctx, now.Add(-time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("visit hours: %d %v", n, err)
	}
	syncAll()
	if got := clients[1].count(t, "SELECT count() FROM (SELECT site, t FROM edgepixel."+VisitHoursTable+" GROUP BY site, t)"); got != fmt.Sprint(n) {
		t.Fatalf("%s visit hours read on the other shard, %d built", got, n)
	}
	// The visits per dimension value: one build marker per hour with
	// events near it, as the visit hours, and the same visits in the
	// whole site's entry pages as in the visit hours, read on the
	// other shard.
	nd, err := c.BuildVisitDims(ctx, now.Add(-time.Hour))
	if err != nil || nd != n {
		t.Fatalf("visit dims: %d hours (visit hours %d) %v", nd, n, err)
	}
	syncAll()
	if got := clients[1].count(t, "SELECT count() FROM (SELECT site, t FROM edgepixel."+VisitDimsTable+" WHERE dim = '' GROUP BY site, t)"); got != fmt.Sprint(n) {
		t.Fatalf("%s visit dim hours read on the other shard, %d built", got, n)
	}
	entries := clients[1].count(t, "SELECT sum(entries) + sum(entries_in) FROM edgepixel."+VisitDimsTable+" WHERE dim = '"+EntryPageDim+"'")
	pieces := clients[1].count(t, "SELECT sum(pieces) FROM edgepixel."+VisitHoursTable)
	if entries != pieces || entries == "0" {
		t.Fatalf("entry pages count %s visit pieces, visit hours %s", entries, pieces)
	}
}

// Erasure by visitor id in the cluster layout, on two shards of two
// replicas: the visitor's events on both shards, and its rows of the
// per-visitor rollups that each server's views wrote, are counted through
// the Distributed tables and deleted on every replica.
func TestEraseCluster(t *testing.T) {
	cl, clients := migratedCluster(t, "er")
	ctx := context.Background()
	c := clients[0]
	const id, other = 4242424242, 77
	now := time.Now().UnixMilli()
	for i, cc := range clients {
		var evs []event.Event
		for j, v := range []uint64{id, id, other} {
			e := mkEvent(t, "demo", now+int64(i*10+j))
			e.VisitorID = v
			evs = append(evs, e)
		}
		if err := cc.InsertEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	tables := []string{"events", VisitsTable, MinuteAudienceTable, MinuteSourcesTable}
	// rows counts v's rows of every table on every replica (its local
	// table), after the replicas caught up.
	rows := func(v uint64) map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, reps := range cl.Shards {
			for _, r := range reps {
				rc, err := New(r.HTTPURL, "edgepixel")
				if err != nil {
					t.Fatal(err)
				}
				for _, table := range tables {
					if err := rc.Exec(ctx, "SYSTEM SYNC REPLICA edgepixel."+table+LocalSuffix); err != nil {
						t.Fatal(err)
					}
					n, err := parseUint(rc.count(t, fmt.Sprintf("SELECT count() FROM edgepixel.%s%s WHERE visitor_id = %d", table, LocalSuffix, v)))
					if err != nil {
						t.Fatal(err)
					}
					out[table] += int(n)
				}
				rc.Close()
			}
		}
		return out
	}
	before := rows(id)
	for _, table := range tables {
		if before[table] == 0 {
			t.Fatalf("no rows of the visitor in %s to erase: %v", table, before)
		}
	}
	res, err := c.Erase(ctx, Erasure{VisitorID: VisitorID(fmt.Sprint(id)), AllSites: true}, time.Minute)
	if err != nil || !res.Done {
		t.Fatalf("%+v %v", res, err)
	}
	for _, table := range tables {
		// Counted on one replica of each shard: half of what the four
		// replicas hold.
		if int(res.Matched[table])*2 != before[table] {
			t.Errorf("matched %v; the replicas hold %v", res.Matched, before)
		}
	}
	after, kept := rows(id), rows(other)
	for _, table := range tables {
		if after[table] != 0 || kept[table] == 0 {
			t.Errorf("%s: %d rows of the erased visitor left, %d of the other", table, after[table], kept[table])
		}
	}
}

// startClusterClients starts a cluster called name of two shards of two
// replicas for t, and returns it with a client of the first replica of
// each shard in its layout, closed when t ends.
// migratedCluster is startClusterClients with the schema migrated (short
// cut-off margins) and the views' cut-offs passed, so that the views
// roll up what is inserted next.
func migratedCluster(t *testing.T, name string) (*localsrv.ClickHouseCluster, []*Client) {
	cl, clients := startClusterClients(t, name)
	ctx := context.Background()
	c := clients[0]
	defer func(m time.Duration) { CutoffMargin = m }(CutoffMargin)
	CutoffMargin = 2 * time.Second
	if err := afterDDLRestart(t, cl, migrate(c)); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []func(context.Context) (time.Time, bool, error){c.RollupCutoff, c.MinuteAudienceCutoff, c.MinuteSourcesCutoff} {
		cutoff, _, err := cut(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(cutoff.Add(time.Second)))
	}
	return cl, clients
}

func startClusterClients(t *testing.T, name string) (*localsrv.ClickHouseCluster, []*Client) {
	_, cl := localsrv.StartTestCluster(t, name, 2, 2)
	clients := make([]*Client, 2)
	for i := range clients {
		var err error
		if clients[i], err = New(cl.Shards[i][0].HTTPURL, "edgepixel"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clients[i].Close() })
		if err := clients[i].SetCluster(ClusterConfig{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	return cl, clients
}

// TestClusterViewFailure: an insert one of whose rollup views fails
// leaves the events out of events_local (its view runs last, views one
// after another: SetCluster's parallel_view_processing=0), so that events
// found stored are events every rollup counted; the retried block then
// fills what the failed attempt did not and is dropped by the rollups
// that had it.
func TestClusterViewFailure(t *testing.T) {
	cl, clients := migratedCluster(t, "vf")
	ctx := context.Background()
	c := clients[0]
	// The insert goes to c's server, whose views write its local tables.
	local, err := New(cl.Shards[0][0].HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	now := time.Now().UnixMilli()
	var evs []event.Event
	for i := range 50 {
		evs = append(evs, mkEvent(t, "vf.example", now-int64(i)*1000))
	}
	counts := func() string {
		return local.count(t, "SELECT (SELECT count() FROM edgepixel.events_local), "+
			"(SELECT sumMerge(events) FROM edgepixel.rollup_days_local), (SELECT sumMerge(events) FROM edgepixel.rollup_minutes_local)")
	}
	// A view that fails while it runs, named after every rollup's view
	// and before the events' (a missing table fails the insert before
	// any view runs). It fails after a second, time for views in
	// parallel to have run the events' view beside it.
	for _, q := range []string{
		"CREATE TABLE edgepixel.fail_local (x UInt8) ENGINE = Memory",
		"CREATE MATERIALIZED VIEW edgepixel.rollup_zfail_mv TO edgepixel.fail_local AS SELECT throwIf(count() > 0) AS x FROM edgepixel." + EventsInput + " WHERE sleep(1) = 0",
	} {
		if err := local.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.InsertEvents(ctx, evs); err == nil || !strings.Contains(err.Error(), "throwIf") {
		t.Fatalf("the insert with a failing view: %v", err)
	}
	if got := counts(); got != "0\t50\t50" {
		t.Fatalf("after the failed insert: events_local, rollup_days, rollup_minutes = %q, want 0, 50, 50", got)
	}
	if err := local.Exec(ctx, "DROP TABLE edgepixel.rollup_zfail_mv"); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if got := counts(); got != "50\t50\t50" {
		t.Fatalf("after the retry: events_local, rollup_days, rollup_minutes = %q, want 50 each", got)
	}
}
