package clickhouse

import (
	"context"
	"fmt"
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

// PropsComplete reports whether PropsTable holds every event of the
// sites siteCond selects in the UTC days that start in [from, to): whether
// its rows of key "" count as many events there as the daily rollup. It
// is false before step VersionProps, while the backfill has not rolled up
// the events before the cut-off, and for a moment while an insert is
// between the two tables' views.
func PropsComplete(ctx context.Context, q Querier, db, siteCond string, from, to time.Time) (bool, error) {
	if _, ok, err := viewCutoff(ctx, q, db, PropsTable); err != nil || !ok {
		return false, err
	}
	span := fmt.Sprintf("%s AND t >= toDateTime(%d) AND t < toDateTime(%d)", siteCond, from.Unix(), to.Unix())
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT (SELECT sumMerge(events) FROM %[1]s.%[2]s WHERE %[3]s AND key = ''), (SELECT sumMerge(events) FROM %[1]s.%[4]s WHERE %[3]s)",
		db, PropsTable, span, Grains[2].Table))
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && len(rows[0]) == 2 && rows[0][0] == rows[0][1], nil
}
