// Package query answers the dashboard's questions (per-site numbers, time
// series and top tables over a time range, with filters) from
// ClickHouse's rollups (see clickhouse.Grains, clickhouse.Dimensions),
// falling back to the events table where no rollup fits: combined
// filters, a filter or a top table in the realtime range.
//
// Times are UTC; ranges are half-open [From, To) and aligned to the
// buckets of the rollup they read, so a rollup and the events table give
// the same answer.
package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
)

// Ranges the API takes as range=NAME.
var Ranges = []string{"realtime", "today", "yesterday", "7d", "30d", "month", "custom"}

// Range is a time range and the grain its series uses.
type Range struct {
	Name  string           `json:"name"`
	From  time.Time        `json:"from"`
	To    time.Time        `json:"to"` // exclusive
	Grain clickhouse.Grain `json:"-"`
	// Total is the grain the totals read: the coarsest whose buckets the
	// range is aligned to.
	Total clickhouse.Grain `json:"-"`
}

// Filter narrows to rows whose dimension has Value.
type Filter struct {
	Dim   clickhouse.Dimension `json:"-"`
	Name  string               `json:"dim"`
	Value string               `json:"value"`
}

// Request is one question.
type Request struct {
	Site    string
	Range   Range
	Prev    Range // the same length right before Range
	Filters []Filter
}

var grain = map[string]clickhouse.Grain{}

func init() {
	for _, g := range clickhouse.Grains {
		grain[g.Name] = g
	}
}

// ParseRequest reads site, range (default today), from and to (custom:
// YYYY-MM-DD, both days included) and a filter per dimension name
// (page=/pricing&country=DE) from q.
func ParseRequest(q url.Values, now time.Time) (Request, error) {
	r := Request{Site: q.Get("site")}
	if r.Site == "" {
		return r, errors.New("site is required")
	}
	now = now.UTC()
	name := q.Get("range")
	if name == "" {
		name = "today"
	}
	day := now.Truncate(24 * time.Hour)
	d := 24 * time.Hour
	var err error
	switch name {
	case "realtime":
		to := now.Truncate(time.Minute).Add(time.Minute)
		r.Range = Range{From: to.Add(-30 * time.Minute), To: to, Grain: grain["minute"], Total: grain["minute"]}
	case "today":
		r.Range = Range{From: day, To: now.Truncate(time.Hour).Add(time.Hour), Grain: grain["hour"], Total: grain["hour"]}
	case "yesterday":
		r.Range = Range{From: day.Add(-d), To: day, Grain: grain["hour"], Total: grain["day"]}
	case "7d":
		r.Range = Range{From: day.Add(-6 * d), To: day.Add(d), Grain: grain["day"], Total: grain["day"]}
	case "30d":
		r.Range = Range{From: day.Add(-29 * d), To: day.Add(d), Grain: grain["day"], Total: grain["day"]}
	case "month":
		first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		r.Range = Range{From: first, To: day.Add(d), Grain: grain["day"], Total: grain["day"]}
	case "custom":
		var from, to time.Time
		if from, err = time.Parse(time.DateOnly, q.Get("from")); err != nil {
			return r, errors.New("custom range: from must be YYYY-MM-DD")
		}
		if to, err = time.Parse(time.DateOnly, q.Get("to")); err != nil {
			return r, errors.New("custom range: to must be YYYY-MM-DD")
		}
		to = to.Add(d)
		if !from.Before(to) || to.Sub(from) > 366*d {
			return r, errors.New("custom range: from must not be after to, at most 366 days")
		}
		g := grain["day"]
		if to.Sub(from) <= 2*d {
			g = grain["hour"]
		}
		r.Range = Range{From: from, To: to, Grain: g, Total: grain["day"]}
	default:
		return r, fmt.Errorf("range must be one of %s", strings.Join(Ranges, ", "))
	}
	r.Range.Name = name
	r.Prev = r.Range
	r.Prev.Name = "previous"
	r.Prev.From, r.Prev.To = r.Range.From.Add(-r.Range.To.Sub(r.Range.From)), r.Range.From
	for _, dim := range clickhouse.Dimensions {
		if !q.Has(dim.Name) {
			continue
		}
		if !dim.Collected {
			return r, fmt.Errorf("%s is not collected yet: it cannot filter", dim.Name)
		}
		r.Filters = append(r.Filters, Filter{Dim: dim, Name: dim.Name, Value: q.Get(dim.Name)})
	}
	return r, nil
}

// Source is where queries run: ClickHouse's Query and database.
type Source interface {
	Query(ctx context.Context, sql string) ([][]string, error)
	DB() string
}

// Engine answers requests.
type Engine struct {
	Src Source
	// Raw makes every question read the events table (to compare rollups
	// against, in tests and benchmarks).
	Raw bool
}

// Metric is one number with the previous period's and the change.
type Metric struct {
	Name      string   `json:"name"`
	Label     string   `json:"label"`
	Collected bool     `json:"collected"`
	Value     *float64 `json:"value,omitempty"`
	Previous  *float64 `json:"previous,omitempty"`
	// Change is (Value - Previous) / Previous; absent when Previous is 0.
	Change *float64 `json:"change,omitempty"`
}

// Point is one bucket of the series.
type Point struct {
	T         int64  `json:"t"` // unix seconds of the bucket's start
	Events    uint64 `json:"events"`
	Pageviews uint64 `json:"pageviews"`
}

// Stats is the answer for the tiles and the chart.
type Stats struct {
	Site     string   `json:"site"`
	Range    Range    `json:"range"`
	Previous Range    `json:"previous"`
	Grain    string   `json:"grain"`
	Filters  []Filter `json:"filters"`
	Source   string   `json:"source"` // the table read: a rollup or "events"
	Metrics  []Metric `json:"metrics"`
	Series   []Point  `json:"series"`
}

// notCollected are the numbers that need fields events do not have yet
// (visitor ids: issue 11).
var notCollected = []Metric{
	{Name: "visitors", Label: "Unique visitors"},
	{Name: "visits", Label: "Visits"},
	{Name: "views_per_visit", Label: "Views per visit"},
	{Name: "bounce_rate", Label: "Bounce rate"},
	{Name: "visit_duration", Label: "Visit duration"},
}

// where is the source table and condition for r over rng.
func (e *Engine) where(r Request, rng Range, g clickhouse.Grain) (table, cond, tcol string) {
	db := e.Src.DB()
	q := clickhouse.Quote
	span := fmt.Sprintf("toDateTime(%d) AND ", rng.From.Unix())
	end := fmt.Sprintf("toDateTime(%d)", rng.To.Unix())
	switch {
	case !e.Raw && len(r.Filters) == 0:
		return db + "." + g.Table, "site = " + q(r.Site) + " AND t >= " + span + "t < " + end, "t"
	case !e.Raw && len(r.Filters) == 1 && g.Seconds >= 3600:
		f := r.Filters[0]
		return db + "." + clickhouse.DimTable, "site = " + q(r.Site) + " AND dim = " + q(f.Name) + " AND value = " + q(f.Value) +
			" AND t >= " + span + "t < " + end, "t"
	}
	cond = "site = " + q(r.Site) + " AND ts >= " + span + "ts < " + end
	for _, f := range r.Filters {
		cond += " AND " + f.Dim.Expr + " = " + q(f.Value)
	}
	return db + ".events", cond, "ts"
}

// sums are the aggregates of a source table: rollups sum counts, events
// count rows.
func sums(table string) string {
	if strings.HasSuffix(table, ".events") {
		return "count(), countIf(name = 'pageview')"
	}
	return "sum(events), sum(pageviews)"
}

// Stats answers the tiles (with the previous period) and the series.
func (e *Engine) Stats(ctx context.Context, r Request) (Stats, error) {
	st := Stats{Site: r.Site, Range: r.Range, Previous: r.Prev, Grain: r.Range.Grain.Name, Filters: r.Filters}
	if st.Filters == nil {
		st.Filters = []Filter{}
	}
	totals := func(rng Range) (ev, pv uint64, table string, err error) {
		table, cond, _ := e.where(r, rng, rng.Total)
		rows, err := e.Src.Query(ctx, "SELECT "+sums(table)+" FROM "+table+" WHERE "+cond)
		if err != nil {
			return 0, 0, table, err
		}
		if len(rows) == 1 && len(rows[0]) == 2 {
			ev, _ = strconv.ParseUint(rows[0][0], 10, 64)
			pv, _ = strconv.ParseUint(rows[0][1], 10, 64)
		}
		return ev, pv, table, nil
	}
	ev, pv, table, err := totals(r.Range)
	if err != nil {
		return st, err
	}
	pev, ppv, _, err := totals(r.Prev)
	if err != nil {
		return st, err
	}
	st.Source = table[strings.LastIndexByte(table, '.')+1:]
	st.Metrics = []Metric{
		metric("pageviews", "Pageviews", float64(pv), float64(ppv)),
		metric("events", "Events", float64(ev), float64(pev)),
		metric("custom_events", "Custom events", float64(ev-pv), float64(pev-ppv)),
	}
	st.Metrics = append(st.Metrics, notCollected...)

	g := r.Range.Grain
	table, cond, tcol := e.where(r, r.Range, g)
	bucket := tcol
	if tcol == "ts" || table == e.Src.DB()+"."+clickhouse.DimTable && g.Seconds != 3600 {
		bucket = g.Start + "(" + tcol + ", 'UTC')"
	}
	rows, err := e.Src.Query(ctx, "SELECT toUnixTimestamp("+bucket+") AS b, "+sums(table)+" FROM "+table+" WHERE "+cond+" GROUP BY b ORDER BY b")
	if err != nil {
		return st, err
	}
	got := map[int64][2]uint64{}
	for _, row := range rows {
		if len(row) != 3 {
			continue
		}
		t, _ := strconv.ParseInt(row[0], 10, 64)
		a, _ := strconv.ParseUint(row[1], 10, 64)
		b, _ := strconv.ParseUint(row[2], 10, 64)
		got[t] = [2]uint64{a, b}
	}
	for t := r.Range.From.Unix(); t < r.Range.To.Unix(); t += g.Seconds {
		v := got[t]
		st.Series = append(st.Series, Point{T: t, Events: v[0], Pageviews: v[1]})
	}
	return st, nil
}

func metric(name, label string, v, prev float64) Metric {
	m := Metric{Name: name, Label: label, Collected: true, Value: &v, Previous: &prev}
	if prev != 0 {
		c := (v - prev) / prev
		c = math.Round(c*10000) / 10000
		m.Change = &c
	}
	return m
}

// Row is one line of a top table.
type Row struct {
	Value     string `json:"value"`
	Pageviews uint64 `json:"pageviews"`
	Events    uint64 `json:"events"`
}

// Top is a top table.
type Top struct {
	Site      string   `json:"site"`
	Dim       string   `json:"dim"`
	Label     string   `json:"label"`
	Collected bool     `json:"collected"`
	Range     Range    `json:"range"`
	Filters   []Filter `json:"filters"`
	Source    string   `json:"source,omitempty"`
	Rows      []Row    `json:"rows"`
}

// MaxLimit bounds the rows of a top table.
const MaxLimit = 1000

// Top answers the top values of dimension dim, by events, at most limit
// rows. A dimension not collected yet answers Collected false, no rows.
func (e *Engine) Top(ctx context.Context, r Request, dimName string, limit int) (Top, error) {
	dim, ok := clickhouse.DimensionByName(dimName)
	if !ok {
		return Top{}, fmt.Errorf("unknown dimension %q", dimName)
	}
	t := Top{Site: r.Site, Dim: dim.Name, Label: dim.Label, Collected: dim.Collected, Range: r.Range, Filters: r.Filters, Rows: []Row{}}
	if t.Filters == nil {
		t.Filters = []Filter{}
	}
	if !dim.Collected {
		return t, nil
	}
	limit = min(max(limit, 1), MaxLimit)
	q := clickhouse.Quote
	db := e.Src.DB()
	var sql string
	span := fmt.Sprintf(" >= toDateTime(%d) AND %%s < toDateTime(%d)", r.Range.From.Unix(), r.Range.To.Unix())
	if !e.Raw && len(r.Filters) == 0 && r.Range.Grain.Seconds >= 3600 {
		t.Source = clickhouse.DimTable
		sql = "SELECT value, sum(pageviews) AS p, sum(events) AS n FROM " + db + "." + clickhouse.DimTable +
			" WHERE site = " + q(r.Site) + " AND dim = " + q(dim.Name) + " AND t" + fmt.Sprintf(span, "t") + " GROUP BY value"
	} else {
		t.Source = "events"
		cond := "site = " + q(r.Site) + " AND ts" + fmt.Sprintf(span, "ts")
		for _, f := range r.Filters {
			cond += " AND " + f.Dim.Expr + " = " + q(f.Value)
		}
		sql = "SELECT " + dim.Expr + " AS value, countIf(name = 'pageview') AS p, count() AS n FROM " + db + ".events WHERE " + cond + " GROUP BY value"
	}
	rows, err := e.Src.Query(ctx, sql+" ORDER BY n DESC, value LIMIT "+strconv.Itoa(limit))
	if err != nil {
		return t, err
	}
	for _, row := range rows {
		if len(row) != 3 {
			continue
		}
		p, _ := strconv.ParseUint(row[1], 10, 64)
		n, _ := strconv.ParseUint(row[2], 10, 64)
		t.Rows = append(t.Rows, Row{Value: row[0], Pageviews: p, Events: n})
	}
	return t, nil
}
