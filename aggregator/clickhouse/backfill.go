package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
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
	var names []string
	for _, r := range rollups() {
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
	Rebuilt []string  `json:"rebuilt"` // "table YYYYMM: had N, events M"
}

// BackfillRollups rolls up the events before the cut-off into step 7's
// rollups (src = 1 partitions), rebuilding each table month that holds
// fewer events than the events table. It is idempotent: a second run, with
// no event stored meanwhile, changes nothing. Two runs at once could
// both rebuild one month and double it until the next run finds and
// rebuilds it; the aggregator runs it from one goroutine.
func (c *Client) BackfillRollups(ctx context.Context) (BackfillResult, error) {
	var res BackfillResult
	cutoff, ok, err := c.RollupCutoff(ctx)
	if err != nil || !ok {
		return res, err
	}
	res.Cutoff = cutoff
	if cutoff.Unix() == 0 {
		return res, nil
	}
	before := fmt.Sprintf("ts < toDateTime(%d)", cutoff.Unix())
	for _, r := range rollups() {
		cond := before
		if r.where != "" {
			cond += " AND " + r.where
		}
		want, err := c.monthCounts(ctx, "SELECT toYYYYMM("+r.tExpr+") AS m, count() FROM "+c.db+".events WHERE "+cond+" GROUP BY m")
		if err != nil {
			return res, err
		}
		check := "src = 1"
		if r.check != "" {
			check += " AND " + r.check
		}
		have, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+r.table+" WHERE "+check+" GROUP BY m")
		if err != nil {
			return res, err
		}
		months := make([]uint64, 0, len(want))
		for m := range want {
			months = append(months, m)
		}
		slices.Sort(months)
		for _, m := range months {
			res.Checked++
			// Fewer events than rolled up means retention or an
			// erasure removed some: the rollup keeps their counts
			// (see retentionTables), so only more is rebuilt.
			if have[m] >= want[m] {
				continue
			}
			if err := c.rebuildMonth(ctx, r, m, before); err != nil {
				return res, fmt.Errorf("backfill %s month %d: %w", r.table, m, err)
			}
			res.Rebuilt = append(res.Rebuilt, fmt.Sprintf("%s %d: had %d, events %d", r.table, m, have[m], want[m]))
		}
	}
	return res, nil
}

// rebuildMonth drops r's backfilled partitions of month m and rolls the
// month's events before the cut-off up again.
//
// Partitions belong to a table's local part: on one server that is the
// table; in a cluster every shard's NAME_local, whose partitions are listed
// from every shard (Client.system) and dropped ON CLUSTER (each shard's
// replicas follow through ZooKeeper). The roll-up then reads the events of
// every shard through the Distributed events table and inserts through the
// Distributed rollup table synchronously (insert_distributed_sync: the
// insert returns once every shard has its rows, so the next check counts
// them), with the client's insert quorum. Which shard a backfilled row
// lands on does not matter: readers merge the states of every shard. The
// rollup tables are not deduplicated (Layout.CreateTable), so a block that
// repeats an earlier one is kept.
func (c *Client) rebuildMonth(ctx context.Context, r rollup, m uint64, before string) error {
	local := c.layout.LocalName(r.table)
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT DISTINCT partition_id FROM %s WHERE database = %s AND table = %s AND active AND partition_id LIKE '%d%%-1'",
		c.system("parts"), quote(c.db), quote(local), m))
	if err != nil {
		return err
	}
	for _, p := range rows {
		if len(p) != 1 {
			continue
		}
		if err := c.dropPartition(ctx, local, p[0]); err != nil {
			return err
		}
	}
	sel := strings.ReplaceAll(r.selectFrom("{db}.events", 1, fmt.Sprintf("%s AND toYYYYMM(%s) = %d", before, r.tExpr, m)), "{db}", c.db)
	settings := map[string]string{}
	for k, v := range c.insertSettings {
		settings[k] = v
	}
	if c.layout.Clustered() {
		settings["insert_distributed_sync"] = "1"
	}
	return c.execSettings(ctx, "INSERT INTO "+c.db+"."+r.table+" "+sel, settings)
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

// RunBackfill runs BackfillRollups once the cut-off is lateness behind,
// so that events from before it still in flight (spools, edge retries)
// have arrived, then every interval for those that arrive later, until ctx
// ends. Before step 7 it looks again every interval; with a cut-off of 0
// it has nothing to do and waits for ctx.
func RunBackfill(ctx context.Context, c *Client, lateness, interval time.Duration, log *slog.Logger) {
	for {
		wait := interval
		cutoff, ok, err := c.RollupCutoff(ctx)
		switch {
		case err != nil:
			log.Warn("rollup backfill: could not read the cut-off; retrying", "err", err, "in", interval)
		case !ok:
			// Not migrated yet (ClickHouse was down at start).
		case cutoff.Unix() == 0:
			<-ctx.Done()
			return
		case time.Until(cutoff.Add(lateness)) > 0:
			wait = time.Until(cutoff.Add(lateness))
			log.Info("rollup backfill: waiting for events before the cut-off to arrive", "cutoff", cutoff, "in", wait.Round(time.Second))
		default:
			start := time.Now()
			res, err := c.BackfillRollups(ctx)
			if err != nil {
				log.Warn("rollup backfill failed; retrying", "err", err, "in", interval)
			} else if len(res.Rebuilt) > 0 {
				log.Info("rollup backfill: rebuilt", "cutoff", res.Cutoff, "months", strings.Join(res.Rebuilt, "; "), "took", time.Since(start).Round(time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
