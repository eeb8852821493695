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
// device=mobile), nor pages under a country; the events table's rows are
// sorted by site and time, so a month under any filter reads every event
// of the month. A per-minute rollup (minuteRollup) holds the events per
// site, minute, visitor and value of each of its dimensions (one row per
// combination that occurred): the same counts, visitors and per-visitor
// minutes (first and last event time) that the events table's queries
// compute, sorted by some dimensions first, so that a filter on them
// reads its share of the rows only. Grouped by visitor and minute, its
// rows are those the events table's visits query groups its events into,
// so visits under any filters of its dimensions add up from it exactly
// as from the events.
//
// MinuteDimsTable, step VersionMinuteDims' such rollup, held the
// visitor's dimensions, the event and the page; step VersionMinutes
// replaced it (see MinuteAudienceTable).

// MinuteDimsTable is step VersionMinuteDims' per-minute rollup.
const MinuteDimsTable = "rollup_minute_dims"

// VersionMinuteDims is the schema step that creates MinuteDimsTable.
const VersionMinuteDims = 11

// minuteDims is MinuteDimsTable's rollup, as step VersionMinuteDims made
// it: the visitor-level dimensions (AudienceDims) lead its sort key, then
// the time, the visitor, the event and the page. Since step
// VersionMinutes, MinuteAudienceTable holds the same with the sources
// too, and this table is no longer written (the step drops its view) or
// read; retention and erasure still trim it.
func minuteDims() rollup {
	// Its own list, as released: a later change to AudienceDims must not
	// change this step.
	return minuteRollup(MinuteDimsTable, []string{"country", "device", "browser", "os", "region", "city"}, []string{"event", "page"}, false)
}

// minuteRollup is a rollup of events per site, minute, visitor and value
// of each dimension of lead and rest (a column of its name each), sorted
// by site, lead, t, visitor_id and rest: a filter of lead's first
// dimensions reads its share of a day's rows only. With bot, a column bot
// after rest: 1 for a bot's events (BotCond), 0 for the others.
func minuteRollup(table string, lead, rest []string, bot bool) rollup {
	dims := slices.Concat(lead, rest)
	var cols, sel []string
	for _, name := range dims {
		d, ok := DimensionByName(name)
		if !ok {
			panic("clickhouse: a minute rollup names an unknown dimension " + name)
		}
		cols = append(cols, name+" String")
		// CAST: a function of a LowCardinality column is one too, which
		// a view into a String column refuses.
		sel = append(sel, "CAST("+d.Expr+" AS String) AS "+name)
	}
	if bot {
		dims = append(dims, "bot")
		rest = append(slices.Clip(rest), "bot")
		cols = append(cols, "bot UInt8")
		sel = append(sel, "toUInt8("+BotCond+") AS bot")
	}
	return rollup{
		table: table,
		cols: "visitor_id UInt64,\n\t\t" + strings.Join(cols, ",\n\t\t") + ",\n\t\t" + countCols + `,
		first AggregateFunction(min, UInt64),
		last AggregateFunction(max, UInt64)`,
		part:  "toYYYYMMDD(t)",
		order: "site, " + strings.Join(lead, ", ") + ", t, visitor_id, " + strings.Join(rest, ", "),
		tExpr: Grains[0].Start + "(ts, 'UTC')",
		sel:   "visitor_id, " + strings.Join(sel, ", ") + ", " + countAggs + ", minState(ts_ms) AS first, maxState(ts_ms) AS last",
		group: "site, t, visitor_id, " + strings.Join(dims, ", "),
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

// minuteReady reports whether the per-minute rollup table (see
// minuteRollup: a view from a cut-off, the backfill's day partitions)
// holds site's events of [from, to): those from its cut-off on (its
// view's) always; those before it once the backfill has swapped in the
// day partitions (src = 1) of every day the hourly rollup has site's
// events of before the cut-off. A day is swapped in whole, after the
// events of its month were rolled up; an event before the cut-off stored
// after that is missing until the next run rebuilds the month, as from
// step 7's rollups. ok is false before the table's step. q is a *Client
// in a cluster, so that every shard's partitions are listed.
func minuteReady(ctx context.Context, q Querier, db, table, site string, from, to time.Time) (bool, error) {
	return backfilled(ctx, q, db, "toYYYYMMDD", site, from, to, table)
}

// backfilled is minuteReady for tables partitioned by (part(t), src),
// part toYYYYMMDD or toYYYYMM, whose views share the cut-off of the
// first's: every one of them holds the range, read in one query.
func backfilled(ctx context.Context, q Querier, db, part, site string, from, to time.Time, tables ...string) (bool, error) {
	cutoff, ok, err := viewCutoff(ctx, q, db, tables[0])
	if err != nil || !ok {
		return false, err
	}
	if from.Unix() >= cutoff {
		return true, nil
	}
	parts, local := "system.parts", slices.Clone(tables)
	if c, ok := q.(*Client); ok {
		parts = c.system("parts")
		for i, t := range tables {
			local[i] = c.layout.LocalName(t)
		}
	}
	// Days or months as the server partitions them (in its time zone),
	// each in the backfilled partitions (src = 1) of every table.
	digits := len(strings.TrimPrefix(part, "to")) // YYYYMMDD or YYYYMM
	var names, arrays, has []string
	for i, t := range local {
		names = append(names, quote(t))
		arrays = append(arrays, fmt.Sprintf("groupUniqArrayIf(toUInt32(substring(partition_id, 1, %d)), table = %s) AS p%d", digits, quote(t), i))
		has = append(has, fmt.Sprintf("has(p%d, d)", i))
	}
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT d, %[9]s FROM (SELECT DISTINCT %[8]s(t) AS d FROM %[1]s.%[2]s WHERE site = %[3]s AND t >= toDateTime(%[4]d) AND t < toDateTime(%[5]d))
	CROSS JOIN (SELECT %[10]s FROM %[6]s WHERE database = %[7]s AND table IN (%[11]s) AND active AND endsWith(partition_id, '-1'))`,
		db, Grains[1].Table, quote(site), from.Unix(), min(to.Unix(), cutoff), parts, quote(db), part,
		strings.Join(has, " AND "), strings.Join(arrays, ", "), strings.Join(names, ", ")))
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
