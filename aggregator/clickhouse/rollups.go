package clickhouse

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Dimension is a column the dashboard's top tables group by, and that its
// filters narrow by. Expr computes the value from a row of the events
// table; a dimension that Collected is false has no source field yet and
// the dashboard says so instead of showing a number.
//
// Adding a dimension is a row here with Since set to a new migration
// step, which must create its own views into BotDimHoursTable and
// BotDimDaysTable (step 17's views, an ARRAY JOIN over the dimensions up
// to 7, are never changed; DimTable and DimDayTable are no longer
// written) and backfill them like BackfillBotDims, or roll it up into
// tables of its own, as step VersionOpens does (OpenDims), which the
// queries then read for it; either way every reader of the
// per-dimension rollups by a filter's name must leave out a dimension
// they lack (the per-minute rollups hold HasMinuteDim's). Since 4 marks
// the dimensions step 4 rolled up into its own, no longer read, dim_hours.
type Dimension struct {
	Name      string `json:"name"`  // in the API: /api/top?dim=NAME, and the filter NAME=VALUE
	Label     string `json:"label"` // on the page
	Expr      string `json:"-"`     // ClickHouse expression over the events table
	Since     int    `json:"-"`     // the migration step that creates its rollup view
	Collected bool   `json:"collected"`
	// Visit marks a dimension of visits, not of events (entry and exit
	// pages: VisitDimsTable): its top table counts visits, and it
	// filters nothing.
	Visit bool `json:"visit,omitempty"`
	// Path marks a dimension whose values are URL paths, stored as the
	// edge normalises them (package urlescape: "/caf%C3%A9"): a filter's
	// value is normalised the same way, so "/café" finds them, and the
	// page shows them decoded.
	Path bool `json:"path,omitempty"`
	// Upper marks a dimension whose values are codes in capitals (ISO
	// 3166's, as geolocation gives them): a filter's value is taken in
	// capitals, so "de" finds DE.
	Upper bool `json:"upper,omitempty"`
	// Host marks a dimension whose values are hosts (ClickHouse's
	// domain() of the URL the edge stored as received, a browser's in
	// lower case): a whole URL pasted in as a filter's value is taken
	// for its host, in lower case as a browser sends it; a host given
	// alone is matched as written, as a top table's row names it.
	Host bool `json:"host,omitempty"`
	// Values, if any, are all the values the dimension takes (a
	// closed set the edge derives, in lower case): a filter's value is
	// one of them, matched without regard to case, or refused, where a
	// misspelt one ("Social") would silently match nothing.
	Values []string `json:"values,omitempty"`
}

// Dimensions are the dashboard's dimensions, in the page's order. Those
// with Since 4 or 7 are rolled up by step 7 (one view over all of them,
// see schemaV7); a later row needs its own step and view (OpenDims:
// step VersionOpens).
var Dimensions = []Dimension{
	{Name: "page", Label: "Pages", Expr: "path(url)", Since: 4, Collected: true, Path: true},
	{Name: "referrer", Label: "Sources", Expr: "domain(referrer)", Since: 4, Collected: true, Host: true},
	{Name: "channel", Label: "Channels", Expr: "toString(channel)", Since: VersionRollups, Collected: true, Values: event.Channels[:]},
	{Name: "utm_source", Label: "UTM sources", Expr: "utm_source", Since: 4, Collected: true},
	{Name: "utm_medium", Label: "UTM mediums", Expr: "utm_medium", Since: 4, Collected: true},
	{Name: "utm_campaign", Label: "UTM campaigns", Expr: "utm_campaign", Since: 4, Collected: true},
	{Name: "country", Label: "Countries", Expr: "country", Since: 4, Collected: true, Upper: true},
	{Name: "region", Label: "Regions", Expr: "toString(region)", Since: VersionRollups, Collected: true, Upper: true},
	{Name: "city", Label: "Cities", Expr: "toString(city)", Since: VersionRollups, Collected: true},
	{Name: "browser", Label: "Browsers", Expr: "toString(browser)", Since: VersionRollups, Collected: true},
	{Name: "os", Label: "Operating systems", Expr: "toString(os)", Since: VersionRollups, Collected: true},
	{Name: "device", Label: "Devices", Expr: "toString(device)", Since: VersionRollups, Collected: true, Values: event.Devices[:]},
	{Name: "event", Label: "Events", Expr: "name", Since: 4, Collected: true},
	// The pixel's verdicts on an email or feed open and on a signed
	// pixel (step VersionOpens' own rollups, OpenDims; under another
	// dimension's filter, or combined with one, from the events table).
	{Name: "mail_open", Label: "Email opens", Expr: "toString(mail_open)", Since: VersionOpens, Collected: true, Values: event.MailOpens[:]},
	{Name: "signature", Label: "Signatures", Expr: "toString(signature)", Since: VersionOpens, Collected: true, Values: event.Signatures[:]},
	// Of visits: the page of a visit's first and last event (see
	// VisitDimsTable).
	{Name: EntryPageDim, Label: "Entry pages", Since: VersionVisitDims, Collected: true, Visit: true, Path: true},
	{Name: ExitPageDim, Label: "Exit pages", Since: VersionVisitDims, Collected: true, Visit: true, Path: true},
	// Of an event's properties, one row per member (PropsTable):
	// "key=value".
	{Name: PropsDim, Label: "Event properties", Since: VersionProps, Collected: true},
}

// PropsDim is the dimension of event properties: its top table's values
// are "key=value" (see PropsTable), and it filters nothing.
const PropsDim = "props"

// Filters reports whether NAME=VALUE filters by d: whether d is collected
// and has a value per event (Expr). Entry and exit pages (of visits) and
// event properties (several members per event) have none.
func (d Dimension) Filters() bool { return d.Collected && d.Expr != "" }

// MarshalJSON adds Filters, as "filter", to the dimension's fields: the
// page shows a row of a table it cannot filter by as text.
func (d Dimension) MarshalJSON() ([]byte, error) {
	type fields Dimension
	return json.Marshal(struct {
		fields
		Filter bool `json:"filter"`
	}{fields(d), d.Filters()})
}

// DimensionByName returns the dimension called name.
func DimensionByName(name string) (Dimension, bool) {
	for _, d := range Dimensions {
		if d.Name == name {
			return d, true
		}
	}
	return Dimension{}, false
}

// Grain is a time bucket of the per-site rollups.
type Grain struct {
	Name    string // "minute", "hour", "day"
	Table   string // rollup_minutes, rollup_hours, rollup_days
	Seconds int64
	Start   string // ClickHouse function: bucket start of ts, in UTC
}

// Grains are the per-site rollups, finest first. Buckets are UTC.
var Grains = []Grain{
	{"minute", "rollup_minutes", 60, "toStartOfMinute"},
	{"hour", "rollup_hours", 3600, "toStartOfHour"},
	{"day", "rollup_days", 86400, "toStartOfDay"},
}

// DimTable is the per-dimension rollup: events, pageviews and visitors
// per site, dimension, value and UTC hour.
const DimTable = "rollup_dims"

// VisitsTable is the per-visitor rollup that visits are computed from:
// per site, visitor id and half hour (UTC, SegmentSeconds), the events
// and pageviews and the first and last event time (ms), a visit's
// "segment". A visit is one visitor's events with gaps under 30 minutes
// (VisitGapMS: issue 12's rule, and Plausible's and Google Analytics'
// default session timeout); no gap inside a half hour can reach that, so
// visits cut at the same places from these rows as from the events, at
// the gaps between a segment's last time and the next one's first. The
// states merge, so a segment's events may come in any number of inserts
// (batches). VisitHoursTable holds the visits computed from it.
const VisitsTable = "rollup_visits"

// SegmentSeconds is the length of VisitsTable's buckets; at most the
// visit gap, so that no gap inside one starts a visit.
const SegmentSeconds = 1800

// VisitGapMS is the gap between two events of a visitor that starts a new
// visit, in ms.
const VisitGapMS = 30 * 60 * 1000

// The aggregate columns of the step 7 rollups. ClickHouse 18.16 has no
// SimpleAggregateFunction, so sums are sum states too; readers use
// sumMerge, uniqCombinedIfMerge, minMerge and maxMerge.
const (
	countCols = `events AggregateFunction(sum, UInt64),
		pageviews AggregateFunction(sum, UInt64)`
	visitorsCol = `visitors AggregateFunction(uniqCombinedIf, UInt64, UInt8)`
	countAggs   = `sumState(toUInt64(1)) AS events, sumState(toUInt64(name = 'pageview')) AS pageviews`
	// Visitor id 0 is "none" (no consent for one, or an older edge).
	visitorsAgg = `uniqCombinedIfState(visitor_id, visitor_id != 0) AS visitors`
)

// rollup is one table of step 7 and the SELECT that fills it, from its
// view (src 0: events stored from the cut-off on) or from the backfill
// (src 1: events before it). Rows of the two never share a partition,
// so the backfill can rebuild its partitions without touching the view's.
type rollup struct {
	table string
	cols  string // columns after site, t, src
	part  string // partition expression of t (src is added)
	order string
	// settings, if any, are the table's SETTINGS (name = value, ...).
	settings string
	tExpr    string // t from a row of events
	// start, if not "", is the function of tExpr, start(ts, 'UTC'): a
	// Grain's Start, which also buckets the rollup's rows of a finer grain.
	start  string
	sel    string // SELECT list after site, t, src
	arrayJ string // ARRAY JOIN clause, if any
	where  string // extra condition on events rows, if any
	group  string
	// daily makes the backfill roll up a month's events a day at a
	// time: its groups are so many (per minute and visitor) that a
	// month's at once would hold gigabytes.
	daily bool
	// check is the condition on the table's rows whose sumMerge(events)
	// equals the number of events rolled up (each row of dims counts an
	// event once per dimension).
	check string
}

// backfilled is the condition on the table's backfilled rows (src = 1)
// whose sumMerge(events) counts each event rolled up once (check).
func (r rollup) backfilled() string {
	if r.check == "" {
		return "src = 1"
	}
	return "src = 1 AND " + r.check
}

// rollups are step 7's tables.
func rollups() []rollup {
	var out []rollup
	for _, g := range Grains {
		out = append(out, rollup{
			table: g.Table, cols: countCols + ",\n\t\t" + visitorsCol, part: "toYYYYMM(t)", order: "site, t",
			tExpr: g.Start + "(ts, 'UTC')", start: g.Start, sel: countAggs + ", " + visitorsAgg, group: "site, t",
		})
	}
	out = append(out, dimRollup(DimTable, Grains[1].Start))
	// Day partitions: retention drops visitor ids with the events
	// they came from (see DropPartitionsBefore).
	out = append(out, rollup{
		table: VisitsTable, cols: "visitor_id UInt64,\n\t\t" + countCols + `,
		first AggregateFunction(min, UInt64),
		last AggregateFunction(max, UInt64)`, part: "toYYYYMMDD(t)", order: "site, t, visitor_id",
		tExpr: "toDateTime(intDiv(toUInt32(ts), " + strconv.Itoa(SegmentSeconds) + ") * " + strconv.Itoa(SegmentSeconds) + ")", sel: "visitor_id, " + countAggs + ", minState(ts_ms) AS first, maxState(ts_ms) AS last",
		where: "visitor_id != 0", group: "site, t, visitor_id",
	})
	return out
}

// dimRollup is the per-dimension rollup called table whose bucket of an
// event starts at start(ts, 'UTC'), start a Grain's Start: one row per
// site, dimension, value and bucket (see DimTable, DimDayTable), over the
// dimensions step 7 rolled up.
func dimRollup(table, start string) rollup {
	var pairs []string
	for _, d := range Dimensions {
		if d.Collected && !d.Visit && d.Since <= VersionRollups {
			pairs = append(pairs, "('"+d.Name+"', "+d.Expr+")")
		}
	}
	return rollup{
		table: table, cols: "dim String,\n\t\tvalue String,\n\t\t" + countCols + ",\n\t\t" + visitorsCol,
		part: "toYYYYMM(t)", order: "site, dim, t, value", tExpr: start + "(ts, 'UTC')", start: start,
		sel:    "dv.1 AS dim, dv.2 AS value, " + countAggs + ", " + visitorsAgg,
		arrayJ: "ARRAY JOIN [" + strings.Join(pairs, ", ") + "] AS dv", group: "site, dim, value, t", check: "dim = 'event'",
	}
}

// withBot is r, a dimRollup, with a column bot after value: 1 for a bot's
// events (BotCond), 0 for the others, so that a row counts the events of
// one verdict. order is its sort key.
func withBot(r rollup, order string) rollup {
	r.cols = strings.Replace(r.cols, "value String,", "value String,\n\t\tbot UInt8,", 1)
	r.sel = strings.Replace(r.sel, "dv.2 AS value, ", "dv.2 AS value, toUInt8("+BotCond+") AS bot, ", 1)
	r.group, r.order = "site, dim, value, bot, t", order
	return r
}

// viewRollups are the rollups whose views a step's Run makes (from a
// cut-off) and keeps: every step's but MinuteDimsTable's, DimTable's and
// DimDayTable's, whose views later steps drop.
func viewRollups() []rollup {
	var out []rollup
	for _, r := range rollups() {
		if r.table != DimTable {
			out = append(out, r)
		}
	}
	return append(out, propsRollup(), propsDimsRollup(), minuteAudience(), minuteSources(), humanHours(), humanDays(), botDimHours(), botDimDays(), mixHours(), opensHours(), opensDays(), pageDimsRollup())
}

// create returns the statements that make r's table in layout l.
func (r rollup) create(l Layout) []string { return r.createAs(l, r.table) }

// createAs returns the statements that make a table like r's called name.
//
// In a cluster the table has LoadColumn too (Layout.CreateTable), which
// stays out of ORDER BY: a merge of two loads' rows of one key merges
// their states, which is the sum wanted, and keeps one load value, which
// nothing reads after the insert. Deduplication compares whole blocks at
// insert time, where each load's rows still carry their own value.
func (r rollup) createAs(l Layout, name string) []string {
	keys := `PARTITION BY (` + r.part + `, src)
	ORDER BY (` + r.order + `)`
	if r.settings != "" {
		keys += "\n\tSETTINGS " + r.settings
	}
	return l.CreateTable(name, `
		site String,
		t DateTime,
		src UInt8,
		`+r.cols+`
	`, "AggregatingMergeTree", keys)
}

// columns is the SELECT list that rolls up rows of events, tagged src.
func (r rollup) columns(src int) string {
	return "site, " + r.tExpr + " AS t, toUInt8(" + strconv.Itoa(src) + ") AS src, " + r.sel
}

// clauses are the ARRAY JOIN, if any, and the WHERE that keep the rows of
// events matching cond.
func (r rollup) clauses(cond string) string {
	if r.where != "" {
		cond += " AND " + r.where
	}
	if r.arrayJ != "" {
		return r.arrayJ + " WHERE " + cond
	}
	return "WHERE " + cond
}

// selectFrom is the SELECT that rolls up the rows matching cond of events,
// the events table as named in the query, tagged src, with extra after
// the columns (", EXPR AS NAME" or "").
func (r rollup) selectFrom(events string, src int, cond, extra string) string {
	return "SELECT " + r.columns(src) + extra + " FROM " + events + " " + r.clauses(cond) + " GROUP BY " + r.group
}

// view is the materialized view of r in layout l: the events inserted at
// or after cutoff (unix seconds of ts), rolled up into r's local table
// (see Layout.CreateFilteredView).
func (r rollup) view(l Layout, cutoff int64) string {
	return l.CreateFilteredView(r.table+"_mv", r.table, r.columns(0), r.clauses(fmt.Sprintf("ts >= toDateTime(%d)", cutoff)), r.group)
}

// schemaV7 is step 7's tables (their views are made by createRollupViews,
// which needs the cut-off). The views of step 4 are dropped: nothing reads
// its tables any more, and each view costs every insert into events. The
// tables stay (a step drops no data).
func schemaV7(l Layout) []string {
	var out []string
	for _, r := range rollups() {
		out = append(out, r.create(l)...)
	}
	return append(out, visitHoursSchema(l)...)
}

// v4Grains and v4Dims are step 4's tables, as released.
var v4Grains = []Grain{
	{"minute", "site_minutes", 60, "toStartOfMinute"},
	{"hour", "site_hours", 3600, "toStartOfHour"},
	{"day", "site_days", 86400, "toStartOfDay"},
}

const v4DimTable = "dim_hours"

// schemaV4 created the first rollups, SummingMergeTrees kept by views on
// inserts into events, with no cut-off and no backfill. Step 7 replaced
// them; this stays as released.
func schemaV4(l Layout) []string {
	var out []string
	for _, g := range v4Grains {
		out = append(out, l.CreateTable(g.Table, `
		site String,
		t DateTime,
		events UInt64,
		pageviews UInt64
	`, "SummingMergeTree", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, t)`)...)
		out = append(out, l.CreateView(g.Table+"_mv", g.Table, `site, `+g.Start+`(ts, 'UTC') AS t, count() AS events, countIf(name = 'pageview') AS pageviews`, `site, t`))
	}
	out = append(out, l.CreateTable(v4DimTable, `
		site String,
		dim String,
		value String,
		t DateTime,
		events UInt64,
		pageviews UInt64
	`, "SummingMergeTree", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, dim, t, value)`)...)
	for _, d := range Dimensions {
		if d.Since != 4 || !d.Collected {
			continue
		}
		out = append(out, l.CreateView(v4DimTable+"_"+d.Name+"_mv", v4DimTable, `site, '`+d.Name+`' AS dim, `+d.Expr+` AS value, toStartOfHour(ts, 'UTC') AS t,
		count() AS events, countIf(name = 'pageview') AS pageviews`, `site, value, t`))
	}
	return out
}

// v4Views are the views step 7 drops.
func v4Views() []string {
	var out []string
	for _, g := range v4Grains {
		out = append(out, g.Table+"_mv")
	}
	for _, d := range Dimensions {
		if d.Since == 4 && d.Collected {
			out = append(out, v4DimTable+"_"+d.Name+"_mv")
		}
	}
	return out
}

// VersionRollups is the schema step that made the rollups with visitors
// and visits (rollups, createRollupViews) and dropped step 4's views.
const VersionRollups = 7
