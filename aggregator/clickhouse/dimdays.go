package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The per-day dimension rollup, and how it covers every event once:
//
// A month under a filter, or a month's top table, read from DimTable
// merges a visitors state per hour and value, 24 times the day rollup's
// rows. DimDayTable holds the same rows per UTC day: a view (from a
// cut-off, as step 7's) for the events from then on (src 0), and, for
// those before, rows merged from DimTable's hours (src 1), so that it
// keeps what retention removed from the events table, as DimTable does.
// The cut-off is a whole hour, a little in the future when the step
// runs, so that DimTable's hours before it hold exactly the events
// before it; 0 on a database with neither events nor dimension rows.
//
// BackfillDimDays rebuilds each month whose backfilled events differ
// from DimTable's before the cut-off, as BackfillRollups does (a late
// event stored into DimTable shows up there). Readers take a day from
// DimDayTable only while its events equal the day rollup's (see
// package query), so a day not backfilled yet, or one a late event
// changed since, is read from DimTable's hours.

// DimDayTable is the per-dimension rollup by UTC day (DimTable's
// columns).
const DimDayTable = "rollup_dim_days"

// VersionDimDays is the schema step that creates DimDayTable and its view.
const VersionDimDays = 10

// dimDays is DimDayTable's rollup. Its rows are few and large (a day's
// visitors state of a value is far larger than an hour's), and a read
// decodes every state of each granule it touches: small granules and
// the value before the day in the key make a filtered month read its
// value's 30 rows, and a top table its values' days of the range, not
// the whole table (ClickHouse's default granule of 8192 rows held a
// month of every dimension).
func dimDays() rollup {
	r := dimRollup(DimDayTable, Grains[2].Start)
	r.order, r.settings = "site, dim, value, t", "index_granularity = 64"
	return r
}

// dimDaysSchema is step VersionDimDays' table (its view is made by
// createDimDaysView, which needs the cut-off).
func dimDaysSchema(l Layout) []string { return dimDays().create(l) }

// createDimDaysView is step VersionDimDays' work after its table: the
// view, from the next whole hour at least CutoffMargin ahead, or from 0
// on a database with no events and no dimension rows. A view already
// there keeps its cut-off, and is still created (IF NOT EXISTS, ON
// CLUSTER) with it, so that a cluster's repair gives a server that
// lacks it the same cut-off as the others.
func (c *Client) createDimDaysView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, dimDays(), "SELECT (SELECT count() FROM "+c.db+".events) + (SELECT count() FROM "+c.db+"."+DimTable+")")
}

// createHourCutoffView makes r's view, with the cut-off of the one
// already there if any (see createDimDaysView), else from the next whole
// hour at least CutoffMargin ahead, or from 0 where count (a query of
// one number: the rows r would be backfilled from) says 0.
func (c *Client) createHourCutoffView(ctx context.Context, r rollup, count string) error {
	cuts, err := c.viewCutoffsOf(ctx, []rollup{r})
	if err != nil {
		return err
	}
	if cut, ok := cuts[r.table]; ok {
		return c.execDDL(ctx, r.view(c.layout, cut))
	}
	rows, err := c.Query(ctx, count)
	if err != nil {
		return err
	}
	var cutoff int64
	if len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] != "0" {
		hour := int64(Grains[1].Seconds)
		cutoff = (time.Now().Add(CutoffMargin).Unix() + hour - 1) / hour * hour
	}
	return c.execDDL(ctx, r.view(c.layout, cutoff))
}

// DimDaysCutoff returns DimDayTable's cut-off: DimTable's hours before it
// are backfilled into it. ok is false before step VersionDimDays.
func (c *Client) DimDaysCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, dimDays())
}

// cutoffOf returns the cut-off of r's view; ok is false without one.
func (c *Client) cutoffOf(ctx context.Context, r rollup) (cutoff time.Time, ok bool, err error) {
	cuts, err := c.viewCutoffsOf(ctx, []rollup{r})
	if err != nil {
		return time.Time{}, false, err
	}
	n, ok := cuts[r.table]
	return time.Unix(n, 0).UTC(), ok, nil
}

// mergedDimHours is the SELECT of DimTable's rows of month m (YYYYMM)
// matching cond, tagged src 1, their states merged per site, dimension,
// value and bucket: the bucket of an hour h is start(h, 'UTC'), start a
// Grain's Start (a rollup's start); cols are the columns after value, if
// any (", EXPR AS NAME"), extra those after the aggregates. The hour is
// renamed in a subquery so that the bucket can be called t.
func mergedDimHours(db, start, cols, cond string, m uint64, extra string) string {
	return fmt.Sprintf(`SELECT site, %s(h, 'UTC') AS t, toUInt8(1) AS src, dim, value%s, sumMergeState(e) AS events, sumMergeState(p) AS pageviews,
	uniqCombinedIfMergeState(u) AS visitors%s
FROM (SELECT site, dim, value, t AS h, events AS e, pageviews AS p, visitors AS u FROM %s.%s WHERE %s AND toYYYYMM(t) = %d)
GROUP BY site, dim, value, t`, start, cols, extra, db, DimTable, cond, m)
}

// BackfillDimDays merges DimTable's hours before DimDayTable's cut-off
// into DimDayTable's days (src = 1 partitions), rebuilding each month
// whose events there differ from DimTable's, in a staging table swapped
// in as BackfillRollups does (and with its guarantees). It is
// idempotent: a second run, with no event stored meanwhile, changes
// nothing. Checked counts the months compared.
func (c *Client) BackfillDimDays(ctx context.Context) (BackfillResult, error) {
	return c.backfillRun(ctx, c.DimDaysCutoff, func(cutoff time.Time, run string, res *BackfillResult) error {
		r := dimDays()
		kept, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+DimTable+" WHERE "+r.check+" AND "+dimHoursBefore(cutoff)+" GROUP BY m")
		if err != nil {
			return err
		}
		return c.copyDimHours(ctx, r, "", cutoff, kept, run, res, nil)
	})
}

// dimHoursBefore is the condition on DimTable's rows of the hours before
// cutoff.
func dimHoursBefore(cutoff time.Time) string {
	return fmt.Sprintf("t < toDateTime(%d)", cutoff.Unix())
}

// copyDimHours rebuilds each month of kept (YYYYMM: the events DimTable's
// hours before cutoff hold) whose events in r's src = 1 partitions differ,
// in run's staging table (see BackfillRollups), from DimTable's hours
// merged into r's buckets (mergedDimHours, with the columns cols), and
// adds what it compared and rebuilt to res; stored, if not nil, are the
// months' events in the events table, for the note of a rebuilt one.
func (c *Client) copyDimHours(ctx context.Context, r rollup, cols string, cutoff time.Time, kept map[uint64]uint64, run string, res *BackfillResult, stored map[uint64]uint64) error {
	if len(kept) == 0 {
		return nil
	}
	have, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+r.table+" WHERE "+r.backfilled()+" GROUP BY m")
	if err != nil {
		return err
	}
	staged := false
	for _, m := range slices.Sorted(maps.Keys(kept)) {
		res.Checked++
		if have[m] == kept[m] {
			continue
		}
		if !staged {
			if err := c.makeStaging(ctx, r, run); err != nil {
				return err
			}
			staged = true
		}
		sel := func(extra string) []string {
			return []string{mergedDimHours(c.db, r.start, cols, dimHoursBefore(cutoff), m, extra)}
		}
		if err := c.rebuildMonth(ctx, r, m, sel, r.table+StagingInfix+run); err != nil {
			return fmt.Errorf("backfill %s month %d: %w", r.table, m, err)
		}
		note := fmt.Sprintf("%s %d: had %d, %s %d", r.table, m, have[m], DimTable, kept[m])
		if stored != nil {
			note += fmt.Sprintf(" (events %d)", stored[m])
		}
		res.Rebuilt = append(res.Rebuilt, note)
	}
	return nil
}
