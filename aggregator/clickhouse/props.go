package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Event properties, from a table of their own:
//
// An event's props are a JSON object (shared/event.CleanProps: compacted,
// every string decoded and written back with the only escapes needed, \"
// and \\). ClickHouse 18.16 has no JSON functions that list an object's
// members, so PropsTable's view reads them with a pattern over that
// canonical text (PropPairs): a member is a key and a scalar value (a
// string, a number, true, false or null). In canonical text every quote
// inside a string is escaped, so a key's opening quote is the only quote
// that follows '{' or ',' directly, and a string never ends a match
// early. The members of a nested object count under their own keys; an
// array's elements, and a member whose key is "", are not counted.
//
// PropsTable holds, per site, UTC day, event name, key and value, the
// events, pageviews and visitors, and one row of key "" per site, day
// and event name for every event (with props or not; no visitors): those rows count
// the events rolled up, which must equal the daily rollup's count for a
// range to be read from here (PropsComplete), and the backfill compares
// them per month as it does the other rollups'. Days, not hours: a top
// table merges a visitors state per row, and a month of hours was 24
// times the states (and several times the time) for the same answer;
// every range but the last 30 minutes starts at a UTC day. It covers every event
// once, as MinuteDimsTable does: a view from a cut-off (a whole hour a
// little ahead when the step runs; 0 on a database without events) for
// the events from then on (src 0), and the backfill (BackfillProps) for
// those before it (src 1).

// PropsTable is the per-day rollup of event properties.
const PropsTable = "rollup_props"

// VersionProps is the schema step that creates PropsTable.
const VersionProps = 12

// Patterns for extractAll over canonical props (RE2, as ClickHouse
// reads them): the same member pattern twice, capturing the key, then
// the value, so the two arrays pair up. A key is one or more characters
// or escapes; a value a string or a run of what a number, true, false or
// null is made of.
const (
	propKeyRE   = `[{,]"((?:[^"\\]|\\.)+)":(?:"(?:[^"\\]|\\.)*"|[^,{}\[\]"]+)`
	propValueRE = `[{,]"(?:[^"\\]|\\.)+":("(?:[^"\\]|\\.)*"|[^,{}\[\]"]+)`
)

// PropPairs is a ClickHouse expression over a row of events: the array of
// (key, value) tuples of its props, strings unescaped and without their
// quotes, after a first pair of empty strings that stands for the event
// itself (see PropsTable). ARRAY JOIN it to read the members one per row.
func PropPairs() string {
	// The lambda's names are long: an alias of the query that reads this
	// (m.1 AS k) would replace a parameter of the same name.
	unescape := func(s string) string { return `replaceRegexpAll(` + s + `, '\\\\(.)', '\\1')` }
	return "arrayConcat([('', '')], arrayMap((prop_key, prop_value) -> (" + unescape("prop_key") + ", " +
		unescape(`if(substring(prop_value, 1, 1) = '"', substring(prop_value, 2, length(prop_value) - 2), prop_value)`) + "), " +
		"extractAll(props, " + quote(propKeyRE) + "), extractAll(props, " + quote(propValueRE) + ")))"
}

// PropLabel is a ClickHouse expression of a property's row label in the
// props top table, "key=value", from the expressions of its key and
// value. A key's '%' and '=' are percent-escaped (RFC 3986's "%3D"), so
// the first '=' always ends the key: without it, keys and values that
// hold '=' ({"a=b": "c"} and {"a": "b=c"}) made one label, and one row
// counted an event with both twice.
func PropLabel(key, value string) string {
	return "concat(replaceAll(replaceAll(" + key + ", '%', '%25'), '=', '%3D'), '=', " + value + ")"
}

// propsRollup is PropsTable's rollup.
func propsRollup() rollup {
	return rollup{
		table: PropsTable,
		cols:  "event String,\n\t\tkey String,\n\t\tvalue String,\n\t\t" + countCols + ",\n\t\t" + visitorsCol,
		part:  "toYYYYMM(t)", order: "site, t, event, key, value", tExpr: Grains[2].Start + "(ts, 'UTC')",
		// The rows of key '' count events only: a visitors state there,
		// every visitor of the day, would be read with the members'.
		sel:    "name AS event, kv.1 AS key, kv.2 AS value, " + countAggs + ", uniqCombinedIfState(visitor_id, visitor_id != 0 AND kv.1 != '') AS visitors",
		arrayJ: "ARRAY JOIN " + PropPairs() + " AS kv", group: "site, t, event, key, value", check: "key = ''",
	}
}

// propsSchema is step VersionProps' table (its view is made by
// createPropsView, which needs the cut-off).
func propsSchema(l Layout) []string { return propsRollup().create(l) }

// createPropsView is step VersionProps' work after its table: the view,
// from the next whole hour at least CutoffMargin ahead, or from 0 on a
// database with no events. A view already there keeps its cut-off.
func (c *Client) createPropsView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, propsRollup(), "SELECT count() FROM "+c.db+".events")
}

// PropsCutoff returns PropsTable's cut-off: the events before it are
// rolled up by BackfillProps. ok is false before step VersionProps.
func (c *Client) PropsCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, propsRollup())
}

// BackfillProps rolls up the events before PropsTable's cut-off into it
// (src = 1 partitions), rebuilding each month that holds fewer events
// than the events table, as BackfillRollups does (and with its
// guarantees). It is idempotent.
func (c *Client) BackfillProps(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.PropsCutoff, []rollup{propsRollup()})
}

// PropsComplete reports whether PropsTable's days answer [from, to) (from
// a UTC day's start) for the sites siteCond selects: whether its rows of
// key "" count as many events in the UTC days that start in [from, to) as
// the daily rollup, and the last of those days holds no event from to on
// (an event stamped ahead of now, which ingest accepts up to an hour, in
// today's range that ends at the next hour). It is false before step
// VersionProps, while the backfill has not rolled up the events before
// the cut-off, and for a moment while an insert is between the two
// tables' views.
func PropsComplete(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (bool, error) {
	return propsComplete(ctx, q, db, PropsTable, "key = ''", siteCond, from, to)
}

// propsComplete reports whether the rows of table that marker selects
// count as many events of the sites siteCond selects, in the UTC days
// that start in [from, to), as the daily rollup, and the hourly rollup
// holds none of them from to to the end of the last of those days (which
// a day row would count though the range ends before them); false before
// table's step.
func propsComplete(ctx context.Context, q Querier, db, table, marker, siteCond string, from, to time.Time) (bool, error) {
	if _, ok, err := viewCutoff(ctx, q, db, table); err != nil || !ok {
		return false, err
	}
	const day = 86400
	span := fmt.Sprintf("%s AND t >= toDateTime(%d) AND t < toDateTime(%d)", siteCond, from.Unix(), to.Unix())
	// From to's hour: a row of the hour to falls in holds events from
	// to on too, where to is not on the hour.
	after := fmt.Sprintf("%s AND t >= toDateTime(%d) AND t < toDateTime(%d)", siteCond, to.Unix()/3600*3600, (to.Unix()+day-1)/day*day)
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT (SELECT sumMerge(events) FROM %[1]s.%[2]s WHERE %[3]s AND %[5]s), (SELECT sumMerge(events) FROM %[1]s.%[4]s WHERE %[3]s), "+
		"(SELECT sumMerge(events) FROM %[1]s.%[6]s WHERE %[7]s)",
		db, table, span, Grains[2].Table, marker, Grains[1].Table, after))
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && len(rows[0]) == 3 && rows[0][0] == rows[0][1] && rows[0][2] == "0", nil
}

// Event properties under a filter, from a table of their own:
//
// PropsTable has no column to narrow by but the event name, so the props
// of the events of one country, device or page read the events table
// (every event of the range, every props text matched by the pattern).
// PropsDimsTable holds PropsTable's member rows once per (dimension,
// value) pair of the event, for every dimension that filters but the
// event name (a column of both tables): per site, UTC day, dimension,
// its value, event name, key and value, the events, pageviews and
// visitors. Sorted by the pair first, a filter reads its own rows only.
// An event adds one row of dim "" (and key "") per site, day and event
// name, whose events count the events rolled up, for PropsDimsComplete
// and the backfill's comparison, as PropsTable's key "" rows do; an
// event without props adds nothing else. It covers every event once as
// PropsTable does (a view from a cut-off, BackfillPropsDims before it).

// PropsDimsTable is the per-day rollup of event properties per value of
// each dimension in PropsDims.
const PropsDimsTable = "rollup_props_dims"

// VersionPropsDims is the schema step that creates PropsDimsTable.
const VersionPropsDims = 13

// PropsDims are the dimensions PropsDimsTable holds: every dimension a
// filter narrows by (Dimension.Filters) that step 7 rolls up, but the
// event name, a column of its own.
var PropsDims = func() []Dimension {
	var out []Dimension
	for _, d := range Dimensions {
		if d.Filters() && d.Since <= VersionRollups && d.Name != "event" {
			out = append(out, d)
		}
	}
	return out
}()

// propsDimsRollup is PropsDimsTable's rollup. The pairs are a second
// arrayJoin, over the member ARRAY JOIN's rows: one ("", "") for the
// event's own row, each of PropsDims' for a member.
func propsDimsRollup() rollup {
	pairs := make([]string, len(PropsDims))
	for i, d := range PropsDims {
		// CAST: every element of the array must have one type, and some
		// expressions are LowCardinality or Enum.
		pairs[i] = "('" + d.Name + "', CAST(" + d.Expr + " AS String))"
	}
	return rollup{
		table: PropsDimsTable,
		cols:  "dim String,\n\t\tdim_value String,\n\t\tevent String,\n\t\tkey String,\n\t\tvalue String,\n\t\t" + countCols + ",\n\t\t" + visitorsCol,
		part:  "toYYYYMM(t)", order: "site, dim, dim_value, t, event, key, value", tExpr: Grains[2].Start + "(ts, 'UTC')",
		sel: "(arrayJoin(if(kv.1 = '', [('', '')], [" + strings.Join(pairs, ", ") + "])) AS dv).1 AS dim, dv.2 AS dim_value, " +
			"name AS event, kv.1 AS key, kv.2 AS value, " + countAggs + ", uniqCombinedIfState(visitor_id, visitor_id != 0 AND kv.1 != '') AS visitors",
		arrayJ: "ARRAY JOIN " + PropPairs() + " AS kv", group: "site, t, dim, dim_value, event, key, value", check: "dim = ''",
		// Each member is a row per dimension, each with a visitors
		// state: a month's groups at once could pass the server's
		// memory limit where props hold many values (ids, many pages).
		daily: true,
		// A filter's rows are a few hundred in a month; a read
		// decodes the visitors states of every row of the granules it
		// touches, which at ClickHouse's default 8192 rows were most of
		// the table's.
		settings: "index_granularity = 256",
	}
}

// propsDimsSchema is step VersionPropsDims' table (its view is made by
// createPropsDimsView, which needs the cut-off).
func propsDimsSchema(l Layout) []string { return propsDimsRollup().create(l) }

// createPropsDimsView is step VersionPropsDims' work after its table, as
// createPropsView is step VersionProps'.
func (c *Client) createPropsDimsView(ctx context.Context) error {
	return c.createHourCutoffView(ctx, propsDimsRollup(), "SELECT count() FROM "+c.db+".events")
}

// PropsDimsCutoff returns PropsDimsTable's cut-off: the events before it
// are rolled up by BackfillPropsDims. ok is false before step
// VersionPropsDims.
func (c *Client) PropsDimsCutoff(ctx context.Context) (cutoff time.Time, ok bool, err error) {
	return c.cutoffOf(ctx, propsDimsRollup())
}

// BackfillPropsDims rolls up the events before PropsDimsTable's cut-off
// into it, as BackfillProps does into PropsTable.
func (c *Client) BackfillPropsDims(ctx context.Context) (BackfillResult, error) {
	return c.backfillRollupsFrom(ctx, c.PropsDimsCutoff, []rollup{propsDimsRollup()})
}

// PropsDimsComplete reports whether PropsDimsTable's days answer [from,
// to) for the sites siteCond selects, as PropsComplete does for
// PropsTable.
func PropsDimsComplete(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (bool, error) {
	return propsComplete(ctx, q, db, PropsDimsTable, "dim = ''", siteCond, from, to)
}
