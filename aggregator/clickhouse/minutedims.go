package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Combined filters, and a top table under another dimension's filter,
// from a table sorted by the filters' values:
//
// DimTable and DimDayTable hold one dimension per row, so they cannot
// answer a question that narrows by two dimensions (country=DE and
// device=mobile), nor pages under a country; those read the events
// table, whose rows are sorted by site and time, so a month under any
// filter reads every event of the month. MinuteDimsTable holds the
// events per site, minute, visitor and value of each of MinuteDims (one
// row per combination that occurred): the same counts, visitors and
// per-visitor minutes (first and last event time) that the events
// table's queries compute, sorted by the visitor-level dimensions first,
// so that a filter on them reads its share of the rows only. Grouped by
// visitor and minute, its rows are those the events table's visits query
// groups its events into, so visits under any filters of MinuteDims add
// up from it exactly as from the events.
//
// It covers every event once as DimDayTable does: a view from a cut-off
// (a whole hour, a little ahead when the step runs; 0 on a database
// without events) for the events from then on (src 0), and the backfill
// (BackfillMinuteDims) for those before it (src 1), rebuilt per month
// from the events table where its count differs, as BackfillRollups
// does. It holds visitor ids, so its partitions are days, and retention
// drops them with the events they came from. Readers take it for a
// range only where it holds the days before the cut-off (see
// MinuteDimsReady).

// MinuteDimsTable is the per-minute, per-visitor rollup of MinuteDims.
const MinuteDimsTable = "rollup_minute_dims"

// VersionMinuteDims is the schema step that creates MinuteDimsTable.
const VersionMinuteDims = 11

// MinuteDims are the dimensions MinuteDimsTable holds, each in a column
// of its name. The visitor-level ones (constant per visitor id, which
// hashes IP and user agent, but for geography changing within a day)
// lead its sort key, most selective last among them.
var MinuteDims = []string{"country", "device", "browser", "os", "region", "city", "event", "page"}

// HasMinuteDim reports whether MinuteDimsTable holds dimension name.
func HasMinuteDim(name string) bool { return slices.Contains(MinuteDims, name) }

// minuteDims is MinuteDimsTable's rollup.
func minuteDims() rollup {
	var cols, sel []string
	for _, name := range MinuteDims {
		d, ok := DimensionByName(name)
		if !ok {
			panic("clickhouse: MinuteDims names an unknown dimension " + name)
		}
		cols = append(cols, name+" String")
		// CAST: a function of a LowCardinality column is one too, which
		// a view into a String column refuses.
		sel = append(sel, "CAST("+d.Expr+" AS String) AS "+name)
	}
	keys := strings.Join(MinuteDims, ", ")
	return rollup{
		table: MinuteDimsTable,
		cols: "visitor_id UInt64,\n\t\t" + strings.Join(cols, ",\n\t\t") + ",\n\t\t" + countCols + `,
		first AggregateFunction(min, UInt64),
		last AggregateFunction(max, UInt64)`,
		part:  "toYYYYMMDD(t)",
		order: "site, " + strings.Join(MinuteDims[:len(MinuteDims)-2], ", ") + ", t, visitor_id, event, page",
		tExpr: Grains[0].Start + "(ts, 'UTC')",
		sel:   "visitor_id, " + strings.Join(sel, ", ") + ", " + countAggs + ", minState(ts_ms) AS first, maxState(ts_ms) AS last",
		group: "site, t, visitor_id, " + keys,
		daily: true,
		// Each day partition holds a filter's rows in one run of the
		// key: a read takes the granules at both ends of each whole,
		// which at ClickHouse's default 8192 rows were as many rows
		// again as a month of a two-dimension filter matched.
		settings: "index_granularity = 1024",
	}
}

// minuteDimsSchema is step VersionMinuteDims' table (its view is made by
// createMinuteDimsView, which needs the cut-off).
func minuteDimsSchema(l Layout) []string { return minuteDims().create(l) }

// createMinuteDimsView is step VersionMinuteDims' work after its table:
// the view, from the next whole hour at least CutoffMargin ahead, or
// from 0 on a database with no events. A view already there keeps its
// cut-off (see createDimDaysView).
func (c *Client) createMinuteDimsView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, minuteDims(), "SELECT count() FROM "+c.db+".events")
}

// MinuteDimsCutoff returns MinuteDimsTable's cut-off: the events before
// it are rolled up by BackfillMinuteDims. ok is false before step
// VersionMinuteDims.
func (c *Client) MinuteDimsCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, minuteDims())
}

// BackfillMinuteDims rolls up the events before MinuteDimsTable's
// cut-off into it (src = 1 partitions), rebuilding each month that holds
// fewer events than the events table, as BackfillRollups does (and with
// its guarantees). It is idempotent.
func (c *Client) BackfillMinuteDims(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.MinuteDimsCutoff, []rollup{minuteDims()})
}

// MinuteDimsReady reports whether MinuteDimsTable holds site's events of
// [from, to): those from its cut-off on (its view's) always; those
// before it once the backfill has swapped in the day partitions (src =
// 1) of every day the hourly rollup has site's events of before the
// cut-off. A day is swapped in whole, after the events of its month were
// rolled up; an event before the cut-off stored after that is missing
// until the next run rebuilds the month, as from step 7's rollups. ok is
// false before step VersionMinuteDims. q is a *Client in a cluster, so
// that every shard's partitions are listed.
func MinuteDimsReady(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	cutoff, ok, err := viewCutoff(ctx, q, db, MinuteDimsTable)
	if err != nil || !ok {
		return false, err
	}
	if from.Unix() >= cutoff {
		return true, nil
	}
	parts, local := "system.parts", MinuteDimsTable
	if c, ok := q.(*Client); ok {
		parts, local = c.system("parts"), c.layout.LocalName(MinuteDimsTable)
	}
	// Days as the server partitions them (toYYYYMMDD in its time zone).
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT d, has(p, d) FROM (SELECT DISTINCT toYYYYMMDD(t) AS d FROM %[1]s.%[2]s WHERE site = %[3]s AND t >= toDateTime(%[4]d) AND t < toDateTime(%[5]d))
	CROSS JOIN (SELECT groupUniqArray(toUInt32(substring(partition_id, 1, 8))) AS p FROM %[6]s WHERE database = %[7]s AND table = %[8]s AND active AND endsWith(partition_id, '-1'))`,
		db, Grains[1].Table, quote(site), from.Unix(), min(to.Unix(), cutoff), parts, quote(db), quote(local)))
	if err != nil {
		return false, err
	}
	for _, r := range rows {
		if len(r) != 2 || r[1] != "1" {
			return false, nil
		}
	}
	return true, nil
}
