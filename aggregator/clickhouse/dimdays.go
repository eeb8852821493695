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
	r := dimRollup(DimDayTable, Grains[2].Start+"(ts, 'UTC')")
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
// value and bucket: the bucket expression of hour h, cols the columns
// after value, if any (", EXPR AS NAME"), extra those after the
// aggregates. The hour is renamed in a subquery so that the bucket can be
// called t.
func mergedDimHours(db, bucket, cols, cond string, m uint64, extra string) string {
	return fmt.Sprintf(`SELECT site, %s AS t, toUInt8(1) AS src, dim, value%s, sumMergeState(e) AS events, sumMergeState(p) AS pageviews,
	uniqCombinedIfMergeState(u) AS visitors%s
FROM (SELECT site, dim, value, t AS h, events AS e, pageviews AS p, visitors AS u FROM %s.%s WHERE %s AND toYYYYMM(t) = %d)
GROUP BY site, dim, value, t`, bucket, cols, extra, db, DimTable, cond, m)
}

// BackfillDimDays merges DimTable's hours before DimDayTable's cut-off
// into DimDayTable's days (src = 1 partitions), rebuilding each month
// whose events there differ from DimTable's, in a staging table swapped
// in as BackfillRollups does (and with its guarantees). It is
// idempotent: a second run, with no event stored meanwhile, changes
// nothing. Checked counts the months compared.
func (c *Client) BackfillDimDays(ctx context.Context) (BackfillResult, error) {
	var res BackfillResult
	cutoff, ok, err := c.DimDaysCutoff(ctx)
	if err != nil || !ok {
		return res, err
	}
	res.Cutoff = cutoff
	if cutoff.Unix() == 0 {
		return res, nil
	}
	r := dimDays()
	before := fmt.Sprintf("t < toDateTime(%d)", cutoff.Unix())
	want, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+DimTable+" WHERE "+r.check+" AND "+before+" GROUP BY m")
	if err != nil {
		return res, err
	}
	have, err := c.monthCounts(ctx, "SELECT toYYYYMM(t) AS m, sumMerge(events) FROM "+c.db+"."+r.table+" WHERE src = 1 AND "+r.check+" GROUP BY m")
	if err != nil {
		return res, err
	}
	run := newRunID()
	staged := false
	for _, m := range slices.Sorted(maps.Keys(want)) {
		res.Checked++
		if have[m] == want[m] {
			continue
		}
		if !staged {
			if err := c.dropStaging(ctx, ""); err != nil {
				return res, err
			}
			defer c.dropStaging(context.WithoutCancel(ctx), run)
			if err := c.makeStaging(ctx, r, run); err != nil {
				return res, err
			}
			staged = true
		}
		// The hours' states merged into the day's.
		sel := func(extra string) []string {
			return []string{mergedDimHours(c.db, Grains[2].Start+"(h, 'UTC')", "", before, m, extra)}
		}
		if err := c.rebuildMonth(ctx, r, m, sel, r.table+StagingInfix+run); err != nil {
			return res, fmt.Errorf("backfill %s month %d: %w", r.table, m, err)
		}
		res.Rebuilt = append(res.Rebuilt, fmt.Sprintf("%s %d: had %d, %s %d", r.table, m, have[m], DimTable, want[m]))
	}
	return res, nil
}
