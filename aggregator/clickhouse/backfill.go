package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// How step 7's rollups cover every event exactly once:
//
// ClickHouse 18.16's materialized views see only the blocks inserted after
// they exist, and a view of a view is not fed (inserts do not cascade), so
// no insert-time marker can split "rolled up by a view" from "stored
// before". The split is by event time instead: the cut-off. Step 7's views
// roll up the events whose ts is at or after the cut-off; the backfill
// rolls up those before it into partitions of their own (src = 1). No
// event is in both, however late it is inserted.
//
// The cut-off is a little in the future when step 7 runs (CutoffMargin),
// so every view exists before an event at or after it can be inserted
// (an event is inserted after its ts, clocks agreeing), and 0 on a
// database with no events, where the views cover everything. It is
// recorded in the views' own SQL (ts >= toDateTime(N)), the one place it
// takes effect. The backfill compares, per table and month, the rolled-up
// count with the events table's and rebuilds a month that differs (drop
// its src = 1 partitions, roll it up again), so it is idempotent, and an
// event before the cut-off that arrives late is rolled up at the next run.

// CutoffMargin is how far after step 7 runs its cut-off is, on a database
// that has events: long enough for step 7 to create every view.
var CutoffMargin = time.Minute

var cutoffRE = regexp.MustCompile(`ts >= toDateTime\((\d+)\)`)

// viewCutoffs returns the cut-off of each of step 7's views that exists,
// by table.
func (c *Client) viewCutoffs(ctx context.Context) (map[string]int64, error) {
	return c.viewCutoffsOf(ctx, rollups())
}

// viewCutoffsOf returns the cut-off of the view of each of rs that
// exists, by table.
func (c *Client) viewCutoffsOf(ctx context.Context, rs []rollup) (map[string]int64, error) {
	var names []string
	for _, r := range rs {
		names = append(names, quote(r.table+"_mv"))
	}
	sql := fmt.Sprintf("SELECT name, create_table_query FROM system.tables WHERE database = %s AND name IN (%s)",
		quote(c.db), strings.Join(names, ", "))
	rows, err := c.Query(ctx, sql)
	// 18.16 fails the read when a racing aggregator drops a table
	// meanwhile; the next read does not see it.
	for attempt := 0; err != nil && attempt < 3 && ctx.Err() == nil; attempt++ {
		time.Sleep(50 * time.Millisecond)
		rows, err = c.Query(ctx, sql)
	}
	if err != nil {
		return nil, fmt.Errorf("read the rollup views: %w", err)
	}
	out := map[string]int64{}
	for _, r := range rows {
		if len(r) != 2 {
			continue
		}
		m := cutoffRE.FindStringSubmatch(r[1])
		if m == nil {
			return nil, fmt.Errorf("%w: view %s.%s has no cut-off (ts >= toDateTime(N)); drop it and restart the aggregator to recreate it", ErrSchemaConflict, c.db, r[0])
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		out[strings.TrimSuffix(r[0], "_mv")] = n
	}
	return out, nil
}

// viewCutoff reads the cut-off (unix seconds) of table's view in
// database db through q; ok is false when the view does not exist or has
// no cut-off.
func viewCutoff(ctx context.Context, q Querier, db, table string) (cutoff int64, ok bool, err error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT create_table_query FROM system.tables WHERE database = %s AND name = %s", quote(db), quote(table+"_mv")))
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
		return 0, false, err
	}
	m := cutoffRE.FindStringSubmatch(rows[0][0])
	if m == nil {
		return 0, false, nil
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n, true, nil
}

// BackfillPending reports whether site has events in [from, to) from
// before the rollups' cut-off that the backfill has not rolled up yet:
// events there but no backfilled row of the day rollup. It does not see a
// range whose backfill is partly done (a month done, another not); q
// reads database db.
func BackfillPending(ctx context.Context, q Querier, db, site string, from, to time.Time) (cutoff time.Time, pending bool, err error) {
	n, ok, err := viewCutoff(ctx, q, db, Grains[2].Table)
	if err != nil || !ok {
		return cutoff, false, err
	}
	cutoff = time.Unix(n, 0).UTC()
	if !from.Before(cutoff) {
		return cutoff, false, nil
	}
	end := min(to.Unix(), n)
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT
	(SELECT count() FROM (SELECT 1 FROM %[1]s.events WHERE site = %[2]s AND ts >= toDateTime(%[3]d) AND ts < toDateTime(%[4]d) LIMIT 1)),
	(SELECT count() FROM (SELECT 1 FROM %[1]s.%[5]s WHERE site = %[2]s AND src = 1 AND t >= toDateTime(%[3]d) AND t < toDateTime(%[4]d) LIMIT 1))`,
		db, quote(site), from.Unix(), end, Grains[2].Table))
	if err != nil || len(rows) != 1 || len(rows[0]) != 2 {
		return cutoff, false, err
	}
	return cutoff, rows[0][0] == "1" && rows[0][1] == "0", nil
}

// RollupCutoff returns the cut-off of the rollups (see above): events
// before it are rolled up by the backfill. ok is false before step 7.
func (c *Client) RollupCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	cuts, err := c.viewCutoffs(ctx)
	if err != nil || len(cuts) == 0 {
		return time.Time{}, false, err
	}
	var n int64
	for _, v := range cuts {
		n = max(n, v)
	}
	return time.Unix(n, 0).UTC(), true, nil
}

// createRollupViews is step 7's work after its tables: the views, with one
// cut-off. An aggregator racing this one may have chosen another; once
// all views exist, any view whose cut-off differs from the latest is made
// again with it, which is safe because the cut-off has not come yet.
func (c *Client) createRollupViews(ctx context.Context) error {
	cuts, err := c.viewCutoffs(ctx)
	if err != nil {
		return err
	}
	var cutoff int64
	for _, v := range cuts {
		cutoff = max(cutoff, v)
	}
	if len(cuts) == 0 {
		rows, err := c.Query(ctx, "SELECT count() FROM "+c.db+".events")
		if err != nil {
			return err
		}
		if len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] != "0" {
			cutoff = time.Now().Add(CutoffMargin).Unix()
		}
	}
	for _, r := range rollups() {
		if err := c.execDDL(ctx, r.view(c.layout, cutoff)); err != nil {
			return err
		}
	}
	if cuts, err = c.viewCutoffs(ctx); err != nil {
		return err
	}
	for _, v := range cuts {
		cutoff = max(cutoff, v)
	}
	for _, r := range rollups() {
		if cuts[r.table] == cutoff {
			continue
		}
		if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+r.table+"_mv"+c.layout.OnCluster()); err != nil {
			return err
		}
		if err := c.execDDL(ctx, r.view(c.layout, cutoff)); err != nil {
			return err
		}
	}
	for _, v := range v4Views() {
		if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+v+c.layout.OnCluster()); err != nil {
			return err
		}
	}
	return nil
}

// BackfillResult says what BackfillRollups found and did.
type BackfillResult struct {
	Cutoff  time.Time `json:"cutoff"`
	Checked int       `json:"checked"` // table months compared
	// Rebuilt notes each month rebuilt: "table YYYYMM: had N, events M",
	// or, copied from DimTable, "table YYYYMM: had N, rollup_dims M".
	Rebuilt []string `json:"rebuilt"`
}

// StagingInfix marks the tables a backfill builds a month in before it
// swaps the month in: TABLE_bf_RUN, one set per run (see BackfillRollups).
const StagingInfix = "_bf_"

// BackfillRollups rolls up the events before the cut-off into step 7's
// rollups (src = 1 partitions), rebuilding each table month that holds
// fewer events than the events table. It is idempotent: a second run, with
// no event stored meanwhile, changes nothing.
//
// A month is never doubled, even by two runs at once or a run that died
// half-way: it is built in full in a staging table of this run's own
// (TABLE_bf_RUN, made like the rollup) and swapped in with ALTER TABLE
// ... REPLACE PARTITION, which replaces a partition's rows with the
// staging table's in one step. A run that dies leaves its staging table
// and, at worst, months that were not swapped in yet, which the next run
// finds short and rebuilds. A run first drops every other run's staging
// tables: a run that lost its lease (see package lease) and wakes up
// finds its table gone and fails before it swaps anything. Two runs at
// once still swap complete months (each checks a month it swapped against
// what it staged, and swaps it again while it holds more: see
// rebuildMonth); the one that read the events first
// may leave a month short by the events that arrived in between, which
// the next run rebuilds. The aggregator runs it from one holder of a
// lease so that that is rare and the work is not done twice.
//
// In a cluster the swap is a drop and a copy (see rebuildMonth), so
// there the lease alone keeps two runs from doubling a month: a run that
// lost its lease is still stopped by its dropped staging table, but two
// runs that both copy one month at the same moment double it, and a
// month with more rolled up than stored is not rebuilt.
func (c *Client) BackfillRollups(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.RollupCutoff, rollups())
}

// backfillRollupsFrom rolls up the events before the cut-off cut returns
// into rs, as BackfillRollups does.
func (c *Client) backfillRollupsFrom(ctx context.Context, cut func(context.Context) (time.Time, bool, error), rs []rollup) (BackfillResult, error) {
	return c.backfillRun(ctx, cut, func(cutoff time.Time, run string, res *BackfillResult) error {
		for _, r := range rs {
			if err := c.backfillFromEvents(ctx, r, cutoff, run, res); err != nil {
				return err
			}
		}
		return nil
	})
}

// backfillRun is one backfill run up to the cut-off cut returns (nothing
// before its step, or where it is 0): it drops every other run's staging
// tables, calls fill with the cut-off, the run's id and the result to add
// to, and drops its own staging tables after (see BackfillRollups).
func (c *Client) backfillRun(ctx context.Context, cut func(context.Context) (time.Time, bool, error), fill func(cutoff time.Time, run string, res *BackfillResult) error) (BackfillResult, error) {
	var res BackfillResult
	cutoff, ok, err := cut(ctx)
	if err != nil || !ok {
		return res, err
	}
	res.Cutoff = cutoff
	if cutoff.Unix() == 0 {
		return res, nil
	}
	run := newRunID()
	if err := c.dropStaging(ctx, ""); err != nil {
		return res, err
	}
	defer c.dropStaging(context.WithoutCancel(ctx), run)
	err = fill(cutoff, run, &res)
	return res, err
}

// backfillFromEvents rebuilds each month of r's src = 1 partitions that
// holds fewer events than the events table before cutoff, in run's
// staging table (see BackfillRollups), and adds what it compared and
// rebuilt to res.
func (c *Client) backfillFromEvents(ctx context.Context, r rollup, cutoff time.Time, run string, res *BackfillResult) error {
	return c.backfillFromEventsBut(ctx, r, cutoff, run, res, nil)
}

// backfillFromEventsBut is backfillFromEvents but for the months (YYYYMM)
// in skip, which another source fills (a set: its values are not read).
func (c *Client) backfillFromEventsBut(ctx context.Context, r rollup, cutoff time.Time, run string, res *BackfillResult, skip map[uint64]uint64) error {
	before := fmt.Sprintf("ts < toDateTime(%d)", cutoff.Unix())
	cond := before
	if r.where != "" {
		cond += " AND " + r.where
	}
	want, err := c.monthCounts(ctx, "SELECT toYYYYMM("+r.tExpr+") AS m, count() FROM "+c.db+".events WHERE "+cond+" GROUP BY m")
	if err != nil {
		return err
	}
	have, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+r.table+" WHERE "+r.backfilled()+" GROUP BY m")
	if err != nil {
		return err
	}
	staged := false
	for _, m := range slices.Sorted(maps.Keys(want)) {
		if _, ok := skip[m]; ok {
			continue
		}
		res.Checked++
		// Fewer events than rolled up means retention or an
		// erasure removed some: the rollup keeps their counts
		// (see retentionTables), so only more is rebuilt.
		if have[m] >= want[m] {
			continue
		}
		if !staged {
			if err := c.makeStaging(ctx, r, run); err != nil {
				return err
			}
			staged = true
		}
		month := fmt.Sprintf("%s AND toYYYYMM(%s) = %d", before, r.tExpr, m)
		sel := func(extra string) []string {
			if !r.daily {
				return []string{r.selectFrom(c.db+".events", 1, month, extra)}
			}
			// The UTC days around the month (the server's time zone
			// places its bounds), each read alone.
			first := time.Date(int(m/100), time.Month(m%100), 1, 0, 0, 0, 0, time.UTC)
			var out []string
			for d := first.AddDate(0, 0, -1); d.Before(first.AddDate(0, 1, 1)); d = d.AddDate(0, 0, 1) {
				out = append(out, r.selectFrom(c.db+".events", 1, fmt.Sprintf("%s AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", month, d.Unix(), d.AddDate(0, 0, 1).Unix()), extra))
			}
			return out
		}
		if err := c.rebuildMonth(ctx, r, m, sel, r.table+StagingInfix+run); err != nil {
			return fmt.Errorf("backfill %s month %d: %w", r.table, m, err)
		}
		res.Rebuilt = append(res.Rebuilt, fmt.Sprintf("%s %d: had %d, events %d", r.table, m, have[m], want[m]))
	}
	return nil
}

// makeStaging makes run's staging table of r (TABLE_bf_RUN).
func (c *Client) makeStaging(ctx context.Context, r rollup, run string) error {
	for _, s := range r.createAs(c.layout, r.table+StagingInfix+run) {
		if err := c.execDDL(ctx, s); err != nil {
			return fmt.Errorf("backfill %s: make its staging table: %w", r.table, err)
		}
	}
	return nil
}

// afterStage, if set (by tests), is called when a month is staged and
// before it is swapped in; afterSwap after each swap of it on one server,
// before the swap is checked (try counts from 1).
var (
	afterStage func(c *Client, table string, month uint64)
	afterSwap  func(c *Client, table, staging string, month uint64, try int)
)

// newRunID names one backfill run's staging tables.
func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dropStaging drops the backfill staging tables of run, or, with run "",
// of every run: those of a run that died, and of one that lost its lease
// and may still be running, which then fails (see BackfillRollups).
func (c *Client) dropStaging(ctx context.Context, run string) error {
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT name FROM system.tables WHERE database = %s AND position(name, %s) > 0 AND NOT endsWith(name, %s)",
		quote(c.db), quote(StagingInfix+run), quote(LocalSuffix)))
	if err != nil {
		return fmt.Errorf("list the backfill staging tables: %w", err)
	}
	for _, r := range rows {
		if len(r) != 1 {
			continue
		}
		names := []string{r[0]}
		if c.layout.Clustered() {
			names = append(names, r[0]+LocalSuffix)
		}
		for _, n := range names {
			if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+n+c.layout.OnCluster()); err != nil {
				return fmt.Errorf("drop the backfill staging table %s: %w", n, err)
			}
		}
	}
	return nil
}

// rebuildMonth rolls month m up into the staging table (made like r's
// table) with the SELECTs selectMonth returns (given what to add after their
// columns: the load column in a cluster, see below), then swaps each of the month's
// src = 1 partitions of r's table for the staging table's, one REPLACE
// PARTITION each; a partition the staging table lacks is replaced by
// nothing.
//
// Partitions belong to a table's local part: on one server that is the
// table; in a cluster every shard's NAME_local, whose partitions are listed
// from every shard (Client.system) and replaced ON CLUSTER (each shard's
// replicas follow through ZooKeeper), each shard's by its own staging
// rows. The roll-up reads the events of every shard through the
// Distributed events table and inserts through the Distributed staging
// table synchronously (insert_distributed_sync: the insert returns once
// every shard has its rows), with the client's insert quorum. Which shard
// a backfilled row lands on does not matter: readers merge the states of
// every shard.
//
// In a cluster the rows' LoadColumn is "backfill:MONTH:RUN": the rollup
// tables drop a block that repeats one of their recent blocks (see
// Layout.CreateTable), and a month rebuilt by a later run, after its
// partitions were dropped, can produce a shard's block equal to an
// earlier run's, which must not be taken for a retry of it and dropped.
func (c *Client) rebuildMonth(ctx context.Context, r rollup, m uint64, selectMonth func(extra string) []string, staging string) error {
	sels := selectMonth("")
	if c.layout.Clustered() {
		load := quote(fmt.Sprintf("backfill:%d:%s", m, strings.TrimPrefix(staging, r.table+StagingInfix)))
		sels = selectMonth(", " + load + " AS " + LoadColumn)
	}
	settings := map[string]string{}
	for k, v := range c.insertSettings {
		settings[k] = v
	}
	if c.layout.Clustered() {
		settings["insert_distributed_sync"] = "1"
		// The staged rows are copied out by a read through the
		// Distributed table right after they are written to one replica
		// of each shard; a read that picked another replica, which had
		// not fetched them yet (no quorum, or fewer than all replicas),
		// copied the month short. The first healthy replica, for the
		// write and the read alike, is the same one; should it change
		// in between, the month is found short and rebuilt next run.
		settings["load_balancing"] = "in_order"
	}
	for _, sel := range sels {
		if err := c.execSettings(ctx, "INSERT INTO "+c.db+"."+staging+" "+sel, settings); err != nil {
			return err
		}
	}
	if afterStage != nil {
		afterStage(c, r.table, m)
	}
	local, slocal := c.layout.LocalName(r.table), c.layout.LocalName(staging)
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT DISTINCT partition_id FROM %s WHERE database = %s AND table IN (%s, %s) AND active AND partition_id LIKE '%d%%-1'",
		c.system("parts"), quote(c.db), quote(local), quote(slocal), m))
	if err != nil {
		return err
	}
	if c.layout.Clustered() {
		// 18.16 refuses REPLACE PARTITION ON CLUSTER ("Unsupported type
		// of ALTER query"), and the client reaches one server only: the
		// month's partitions are dropped on every shard, then the staged
		// month copied in through the Distributed tables. A reader sees
		// the month empty in between, and two runs that copy the same
		// month at once can double it (see BackfillRollups).
		var ids []string
		for _, p := range rows {
			if len(p) == 1 {
				ids = append(ids, p[0])
			}
		}
		if err := c.dropPartitions(ctx, local, ids...); err != nil {
			return err
		}
		return c.execSettings(ctx, fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s WHERE toYYYYMM(t) = %d", c.db, r.table, c.db, staging, m), settings)
	}
	// Two REPLACE PARTITIONs of one partition at once (two runs at once)
	// can leave both sources' parts in it on 18.16, each dropping only the
	// parts older than the block number it took: the month doubled,
	// which no later run would find (it rebuilds months short of events,
	// never over). So the month is checked against what was staged after
	// the swaps, and swapped again while it holds more; a run whose
	// staging table another dropped fails there (see BackfillRollups).
	sum := func(table string) (uint64, error) {
		n, err := c.monthCounts(ctx, fmt.Sprintf("SELECT toYYYYMM(t) AS m, sumMerge(events) FROM %s.%s WHERE %s AND toYYYYMM(t) = %d GROUP BY m", c.db, table, r.backfilled(), m))
		return n[m], err
	}
	for try := 1; ; try++ {
		for _, p := range rows {
			if len(p) != 1 {
				continue
			}
			if err := c.retryServer(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s REPLACE PARTITION ID %s FROM %s.%s", c.db, local, c.layout.OnCluster(), quote(p[0]), c.db, slocal)); err != nil {
				return err
			}
		}
		if afterSwap != nil {
			afterSwap(c, r.table, staging, m, try)
		}
		swapped, err := sum(local)
		if err != nil {
			return err
		}
		staged, err := sum(slocal)
		if err != nil {
			return err
		}
		if swapped <= staged {
			return nil
		}
		if try == 5 {
			return fmt.Errorf("the month holds %d events after %d swaps of the %d staged: another run swaps it at the same time", swapped, try, staged)
		}
		slog.Warn("clickhouse: backfill: a month swapped in holds more than was staged, another run swapping it at the same time; swapping it again", "table", r.table, "month", m, "events", swapped, "staged", staged)
		time.Sleep(time.Duration(50*try) * time.Millisecond)
	}
}

func (c *Client) monthCounts(ctx context.Context, sql string) (map[uint64]uint64, error) {
	rows, err := c.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]uint64, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("clickhouse: month count row %q", r)
		}
		m, err := parseUint(r[0])
		if err != nil {
			return nil, err
		}
		n, err := parseUint(r[1])
		if err != nil {
			return nil, err
		}
		out[m] = n
	}
	return out, nil
}

// VisitHoursEvery is how often RunBackfill stores the visit hours that
// have settled (BuildVisitHours) and compacts the rollups' quiet
// partitions (CompactRollups).
var VisitHoursEvery = time.Minute

// CompactQuiet is how long a rollup partition must go unwritten (no new
// part, no merge) before RunBackfill compacts it (CompactRollups).
var CompactQuiet = time.Hour

// settled reports whether the backfill of a table whose cut-off cut
// returns may run: once the cut-off is lateness behind. Before, the
// events or hours before the cut-off are still being written (and for
// DimDayTable step 7's backfill, whose months it merges, may not have
// run), so each run would rebuild the month again. An error reads as
// settled: the backfill then reports it.
func settled(ctx context.Context, cut func(context.Context) (time.Time, bool, error), lateness time.Duration) bool {
	cutoff, ok, err := cut(ctx)
	return err != nil || !ok || time.Until(cutoff.Add(lateness)) <= 0
}

// Backfill is the backfill of a rollup made after step 7's, from its
// own cut-off.
type Backfill struct {
	Table  string
	Cutoff func(context.Context) (time.Time, bool, error)
	Run    func(context.Context) (BackfillResult, error)
}

// Backfills are the backfills RunBackfill runs after step 7's
// (BackfillRollups), in the order it runs them: DimDayTable's first,
// which merges the months step 7's rebuilt.
func (c *Client) Backfills() []Backfill {
	return []Backfill{
		{DimDayTable, c.DimDaysCutoff, c.BackfillDimDays},
		{PropsTable, c.PropsCutoff, c.BackfillProps},
		{PropsDimsTable, c.PropsDimsCutoff, c.BackfillPropsDims},
		{MinuteAudienceTable, c.MinuteAudienceCutoff, c.BackfillMinuteAudience},
		{MinuteSourcesTable, c.MinuteSourcesCutoff, c.BackfillMinuteSources},
		{HumanHoursTable, c.HumanHoursCutoff, c.BackfillHumans},
		{BotDimHoursTable, c.BotDimsCutoff, c.BackfillBotDims},
		{MixHoursTable, c.MixCutoff, c.BackfillMix},
		{OpensHoursTable, c.OpensCutoff, c.BackfillOpens},
		{PageDimsTable, c.PageDimsCutoff, c.BackfillPageDims},
	}
}

// RunBackfill is the rollups' background work, until ctx ends. It runs
// BackfillRollups once the cut-off is lateness behind, so that events
// from before it still in flight (spools, edge retries) have arrived,
// then every interval for those that arrive later; before step 7 it
// looks again every VisitHoursEvery. Every interval it runs
// Backfills too. Every VisitHoursEvery it stores the
// visit hours that settled (BuildVisitHours, and per dimension value
// BuildVisitDims), those a segment and
// lateness behind now, and compacts the rollup partitions that went
// CompactQuiet unwritten (CompactRollups). It must run in one aggregator at a time (package
// lease); a second one does the work twice but does not double a month.
func RunBackfill(ctx context.Context, c *Client, lateness, interval time.Duration, log *slog.Logger) {
	var last time.Time
	lastDays := make([]time.Time, len(c.Backfills()))
	waiting := false
	for {
		cutoff, ok, err := c.RollupCutoff(ctx)
		switch {
		case err != nil:
			log.Warn("rollup backfill: could not read the cut-off; retrying", "err", err, "in", VisitHoursEvery)
		case !ok:
			// Not migrated yet (ClickHouse was down at start).
		case cutoff.Unix() == 0 || time.Since(last) < interval:
			// Nothing to backfill, or done lately.
		case time.Until(cutoff.Add(lateness)) > 0:
			if !waiting {
				log.Info("rollup backfill: waiting for events before the cut-off to arrive", "cutoff", cutoff, "in", time.Until(cutoff.Add(lateness)).Round(time.Second))
				waiting = true
			}
		default:
			start := time.Now()
			res, err := c.BackfillRollups(ctx)
			if err != nil {
				log.Warn("rollup backfill failed; retrying", "err", err, "in", VisitHoursEvery)
			} else {
				last = start
				if len(res.Rebuilt) > 0 {
					log.Info("rollup backfill: rebuilt", "cutoff", res.Cutoff, "months", strings.Join(res.Rebuilt, "; "), "took", time.Since(start).Round(time.Millisecond))
				}
			}
		}
		// DimDayTable's after step 7's backfill, whose months it merges.
		for i, b := range c.Backfills() {
			if !ok || err != nil || time.Since(lastDays[i]) < interval || !settled(ctx, b.Cutoff, lateness) {
				continue
			}
			start := time.Now()
			res, err := b.Run(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn(b.Table+" backfill failed; retrying", "err", err, "in", VisitHoursEvery)
			case err == nil:
				lastDays[i] = start
				if len(res.Rebuilt) > 0 {
					log.Info(b.Table+" backfill: rebuilt", "cutoff", res.Cutoff, "months", strings.Join(res.Rebuilt, "; "), "took", time.Since(start).Round(time.Millisecond))
				}
			}
		}
		if ok && err == nil {
			start := time.Now()
			n, err := c.BuildVisitHours(ctx, start.Add(-SegmentSeconds*time.Second-lateness))
			if err != nil && ctx.Err() == nil {
				log.Warn("visit hours: build failed; retrying", "err", err, "in", VisitHoursEvery)
			} else if n > 0 {
				log.Info("visit hours: built", "hours", n, "took", time.Since(start).Round(time.Millisecond))
			}
			start = time.Now()
			n, err = c.BuildVisitDims(ctx, start.Add(-SegmentSeconds*time.Second-lateness))
			if err != nil && ctx.Err() == nil {
				log.Warn("visit dims: build failed; retrying", "err", err, "in", VisitHoursEvery)
			} else if n > 0 {
				log.Info("visit dims: built", "hours", n, "took", time.Since(start).Round(time.Millisecond))
			}
			start = time.Now()
			n, err = c.CompactRollups(ctx, CompactQuiet)
			if err != nil && ctx.Err() == nil {
				log.Warn("rollups: compaction failed; retrying", "err", err, "in", VisitHoursEvery)
			} else if n > 0 {
				log.Info("rollups: compacted quiet partitions", "partitions", n, "took", time.Since(start).Round(time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(VisitHoursEvery):
		}
	}
}
