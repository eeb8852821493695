package clickhouse

// Dimension is a column the dashboard's top tables group by, and that its
// filters narrow by. Expr computes the value from a row of the events
// table; a dimension that Collected is false has no source field yet and
// the dashboard says so instead of showing a number.
//
// Adding a dimension is a row here: with Since set to a new migration
// step (see Migrations, which reads this table), that step creates its
// materialized view into dim_hours; rows stored before then are not in
// the rollup (a step never rewrites data), which the README states.
type Dimension struct {
	Name      string `json:"name"`  // in the API: /api/top?dim=NAME, and the filter NAME=VALUE
	Label     string `json:"label"` // on the page
	Expr      string `json:"-"`     // ClickHouse expression over the events table
	Since     int    `json:"-"`     // the migration step that creates its rollup view
	Collected bool   `json:"collected"`
}

// Dimensions are the dashboard's dimensions, in the page's order.
var Dimensions = []Dimension{
	{Name: "page", Label: "Pages", Expr: "path(url)", Since: 4, Collected: true},
	{Name: "referrer", Label: "Sources", Expr: "domain(referrer)", Since: 4, Collected: true},
	{Name: "utm_source", Label: "UTM sources", Expr: "utm_source", Since: 4, Collected: true},
	{Name: "utm_medium", Label: "UTM mediums", Expr: "utm_medium", Since: 4, Collected: true},
	{Name: "utm_campaign", Label: "UTM campaigns", Expr: "utm_campaign", Since: 4, Collected: true},
	{Name: "country", Label: "Countries", Expr: "country", Since: 4, Collected: true},
	{Name: "event", Label: "Events", Expr: "name", Since: 4, Collected: true},
	// Fields of the edge data issue (issue 11) that events do not have
	// yet: listed so the page can say so.
	{Name: "entry_page", Label: "Entry pages"},
	{Name: "exit_page", Label: "Exit pages"},
	{Name: "channel", Label: "Channels"},
	{Name: "region", Label: "Regions"},
	{Name: "city", Label: "Cities"},
	{Name: "browser", Label: "Browsers"},
	{Name: "os", Label: "Operating systems"},
	{Name: "device", Label: "Devices"},
	{Name: "props", Label: "Event properties"},
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
	Table   string // site_minutes, site_hours, site_days
	Seconds int64
	Start   string // ClickHouse function: bucket start of ts, in UTC
}

// Grains are the per-site rollups, finest first. Buckets are UTC.
var Grains = []Grain{
	{"minute", "site_minutes", 60, "toStartOfMinute"},
	{"hour", "site_hours", 3600, "toStartOfHour"},
	{"day", "site_days", 86400, "toStartOfDay"},
}

// DimTable is the per-dimension rollup: events and pageviews per site,
// dimension, value and UTC hour.
const DimTable = "dim_hours"

// schemaV4 creates the rollups the dashboard reads instead of events.
// They are SummingMergeTrees (counts add up at merges; readers still sum,
// as rows of one key may be unmerged) kept by materialized views on
// inserts into events. ClickHouse 18.16's materialized views see inserted
// blocks only, so events stored before this step are not rolled up; the
// dashboard reads them from events (see package query, Stored). Visitors
// would be an AggregatingMergeTree column (uniqCombinedState) once events
// carry a visitor id (issue 11).
func schemaV4(l Layout) []string {
	var out []string
	for _, g := range Grains {
		out = append(out, l.CreateTable(g.Table, `
		site String,
		t DateTime,
		events UInt64,
		pageviews UInt64
	`, "SummingMergeTree", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, t)`)...)
		out = append(out, l.CreateView(g.Table+"_mv", g.Table, `site, `+g.Start+`(ts, 'UTC') AS t, count() AS events, countIf(name = 'pageview') AS pageviews`, `site, t`))
	}
	out = append(out, l.CreateTable(DimTable, `
		site String,
		dim String,
		value String,
		t DateTime,
		events UInt64,
		pageviews UInt64
	`, "SummingMergeTree", `PARTITION BY toYYYYMM(t)
	ORDER BY (site, dim, t, value)`)...)
	return append(out, dimViews(l, 4)...)
}

// dimViews are the views of the dimensions a step introduces.
func dimViews(l Layout, step int) []string {
	var out []string
	for _, d := range Dimensions {
		if d.Since != step || !d.Collected {
			continue
		}
		out = append(out, l.CreateView(DimTable+"_"+d.Name+"_mv", DimTable, `site, '`+d.Name+`' AS dim, `+d.Expr+` AS value, toStartOfHour(ts, 'UTC') AS t,
		count() AS events, countIf(name = 'pageview') AS pageviews`, `site, value, t`))
	}
	return out
}
