// Package query answers the dashboard's questions (per-site numbers, time
// series and top tables over a time range, with filters) from
// ClickHouse's rollups (see clickhouse.Grains, clickhouse.Dimensions),
// combined filters and a top table under another dimension's filter from
// the per-minute rollups (clickhouse.MinuteAudienceTable,
// clickhouse.MinuteSourcesTable), the email opens and signatures
// (clickhouse.OpenDims) under no other filter from their own rollups
// (clickhouse.OpensTable), falling back to the events table where no
// rollup fits: filters of dimensions none holds (one of OpenDims with
// another dimension's), a filter or a top table in the realtime range.
//
// Times are UTC; ranges are half-open [From, To) and aligned to the
// buckets of the rollup they read, so a rollup and the events table give
// the same answer.
package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/urlescape"
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
	Site  string
	Range Range
	// Prev is the period Range is compared with: the same length right
	// before it, but for today, yesterday's same hours.
	Prev    Range
	Filters []Filter
	// ExcludeBots leaves out the events of bots (clickhouse.BotCond):
	// the per-site rollups count them, so the site's numbers without
	// filters come from their own rollups (clickhouse.HumanTable, see
	// humans); under one filter, from the per-dimension rollups with the
	// verdict (clickhouse.BotDimRollups) where the visits add up from the
	// profile rows with it (see profileFilters), and the rest from the
	// per-minute rollups (which keep the verdict per row) or the events
	// table.
	ExcludeBots bool
}

// rollups reports whether r may read the rollups that count every event,
// bots' too: not in Raw, nor with bots left out.
func (e *Engine) rollups(r Request) bool { return !e.Raw && !r.ExcludeBots }

var grain = map[string]clickhouse.Grain{}

func init() {
	for _, g := range clickhouse.Grains {
		grain[g.Name] = g
	}
}

// customFirst and customEnd bound a custom range: within ClickHouse's
// DateTime, which a time out of wraps around silently, with the previous
// period of a range of up to 366 days.
var (
	customFirst = clickhouse.DateTimeMin.AddDate(0, 0, 366)
	customEnd   = clickhouse.DateTimeMax
)

// ParseRequest reads site, range (default today), from and to (custom:
// YYYY-MM-DD, both days included), bots (include, the default, or
// exclude: Request.ExcludeBots) and a filter per dimension name
// (page=/pricing&country=DE) from q, the site's and the filters' values
// without white space around them. A filter of a Path dimension is
// normalised as the edge normalises stored pages (urlescape.Path), so
// "/café" finds the rows stored as "/caf%C3%A9".
//
// The parameters are RequestParams; ParseRequest does not refuse others
// (an endpoint may read more): CheckParams does.
func ParseRequest(q url.Values, now time.Time) (Request, error) {
	// White space around a site, an event's name or a campaign's
	// value is dropped at ingest (edge/pixel, edge/enrich/campaign, the
	// NDJSON import), and every other stored value has none: a value
	// with it would match nothing.
	r := Request{Site: event.CleanSite(q.Get("site"))}
	if r.Site == "" {
		return r, errors.New("site is required")
	}
	now = now.UTC()
	name := q.Get("range")
	if name == "" {
		name = "today"
	}
	// Another range would ignore them and answer for a period not asked for.
	if name != "custom" && (q.Has("from") || q.Has("to")) {
		return r, errors.New("from and to need range=custom (range is " + name + ")")
	}
	day := now.Truncate(24 * time.Hour)
	d := 24 * time.Hour
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
		from, err := customDate("from", q.Get("from"))
		if err != nil {
			return r, err
		}
		to, err := customDate("to", q.Get("to"))
		if err != nil {
			return r, err
		}
		to = to.Add(d)
		if !from.Before(to) {
			return r, fmt.Errorf("custom range: from %s is after to %s", from.Format(time.DateOnly), to.Add(-d).Format(time.DateOnly))
		}
		if days := to.Sub(from) / d; days > 366 {
			return r, fmt.Errorf("custom range: %d days from %s to %s; at most 366", days, from.Format(time.DateOnly), to.Add(-d).Format(time.DateOnly))
		}
		if from.Before(customFirst) || to.After(customEnd) {
			return r, fmt.Errorf("custom range: dates from %s to %s", customFirst.Format(time.DateOnly), customEnd.Add(-d).Format(time.DateOnly))
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
	if name == "month" {
		// This month so far against the last one's first days, as an
		// analyst reads a month (a tester's December 1-7 was compared
		// with November 24-30).
		r.Prev.From = r.Range.From.AddDate(0, -1, 0)
	}
	// A range that runs on past now is compared with the same part of
	// the previous one: today's hours so far with the same hours a day
	// before (found by a new-user tester: today until 19:00 was compared
	// with yesterday from 05:00), a week that ends today with the
	// previous week's same days and hours rather than its whole last day.
	// A previous month shorter than the part ends with it.
	switch so := now.Truncate(time.Hour).Add(time.Hour); {
	case name == "today":
		r.Prev.From, r.Prev.To = r.Range.From.Add(-d), r.Range.To.Add(-d)
	case r.Range.To.After(so):
		if r.Prev.To = r.Prev.From.Add(so.Sub(r.Range.From)); r.Prev.To.After(r.Range.From) {
			r.Prev.To = r.Range.From
		}
		if r.Prev.To.Unix()%86400 != 0 {
			// Its totals add up hours: a day's row would count the
			// whole of its last day.
			r.Prev.Grain, r.Prev.Total = grain["hour"], grain["hour"]
		}
	}
	switch q.Get("bots") {
	case "", "include":
	case "exclude":
		r.ExcludeBots = true
	default:
		return r, errors.New("bots must be include (the default) or exclude")
	}
	for _, dim := range clickhouse.Dimensions {
		if !q.Has(dim.Name) {
			continue
		}
		if !dim.Collected {
			return r, fmt.Errorf("%s is not collected yet: it cannot filter", dim.Name)
		}
		if dim.Visit {
			return r, fmt.Errorf("%s counts visits: it cannot filter (filter by page)", dim.Name)
		}
		if !dim.Filters() {
			return r, fmt.Errorf("%s are an event's members, several per event: they cannot filter (filter by event)", dim.Name)
		}
		v := strings.TrimSpace(q.Get(dim.Name))
		if dim.Path {
			v = pageFilter(v)
		}
		if dim.Host {
			v = hostFilter(v)
		}
		if dim.Upper {
			v = strings.ToUpper(v)
		}
		// An empty value is the rows stored before the edge derived
		// the dimension, as the top table lists them.
		if len(dim.Values) > 0 && v != "" {
			i := slices.IndexFunc(dim.Values, func(s string) bool { return strings.EqualFold(s, v) })
			if i < 0 {
				return r, fmt.Errorf("%s %q is none of its values: %s", dim.Name, v, strings.Join(dim.Values, ", "))
			}
			v = dim.Values[i]
		}
		r.Filters = append(r.Filters, Filter{Dim: dim, Name: dim.Name, Value: v})
	}
	return r, nil
}

// hostFilter returns a host filter's value as hosts are stored: the host
// of a whole URL pasted in (the referrer a page sent) as the edge stores
// it (urlescape.HostPort, by which edge/enrich/pageurl stores hosts, so
// the two cannot drift apart): without its user information, port or a
// trailing dot, in lower case as a browser sends it (the WHATWG URL
// standard lowers an ASCII host), an international name in its ASCII
// form (UTS #46 lookup, golang.org/x/net/idna's Lookup profile:
// "bücher.example" is "xn--bcher-kva.example"; a tester's pasted URLs
// found nothing), read as a browser reads it also where url.Parse
// refuses it (https://h/100%_Pure, a backslash). A host given alone is
// taken as it is, since a referrer sent otherwise (a hand-built ref=, an
// import) is stored as received and its top table row must filter by
// it (a re-tester's imported "Bücher.de").
func hostFilter(v string) string {
	if !strings.Contains(v, "://") {
		return v
	}
	scheme, auth, ok := urlescape.SplitAuthority(v)
	if !ok { // no URL: "a b://c"
		return v
	}
	host, _ := urlescape.HostPort(auth, scheme)
	return host
}

// pageFilter returns a page filter's value as pages are stored
// (ClickHouse's path() of the URL the edge normalised): the path of a
// whole URL pasted in, as the edge stores it (urlescape.ParsePage); without a query or fragment, which
// no stored page has; with the leading slash every stored page but the
// empty one has; and with its escapes in urlescape's normal form.
func pageFilter(v string) string {
	if strings.Contains(v, "://") {
		// A whole URL pasted in: its path as the edge stores it (a
		// backslash a slash, as browsers read it: a re-tester's
		// "/a\\b\\..\\c" is "/a/c"; dot segments resolved).
		if p := urlescape.ParsePage(v); p.Scheme != "" {
			return p.Path
		}
	}
	if i := strings.IndexAny(v, "?#"); i >= 0 {
		v = v[:i]
	}
	if v != "" && v[0] != '/' {
		v = "/" + v
	}
	// Dot segments resolved, as the edge stores a page ("/a/../b" is
	// "/b": a tester's pasted URL found nothing).
	return urlescape.RemoveDots(urlescape.Normalize(v, urlescape.Path))
}

// joinDistinct joins the errors of a question's parts asked at once, as
// errors.Join does, each text once: when the store is down every part
// fails alike, and one line says it.
func joinDistinct(errs []error) error {
	var out []error
	for _, err := range errs {
		if err != nil && !slices.ContainsFunc(out, func(o error) bool { return o.Error() == err.Error() }) {
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

// RequestParams returns the parameters ParseRequest reads: site, range,
// from, to, bots and a filter per dimension (named as the dimension; one that
// cannot filter too, which ParseRequest refuses saying why).
func RequestParams() []string {
	return append([]string{"site", "range", "from", "to", "bots"}, dimNames()...)
}

// dimNames returns the names of clickhouse.Dimensions, in their order.
func dimNames() []string {
	out := make([]string, len(clickhouse.Dimensions))
	for i, d := range clickhouse.Dimensions {
		out[i] = d.Name
	}
	return out
}

// CheckParams returns an error naming the parameters of q that are not
// among known, and the known ones, or nil: a misspelt parameter (contry
// for country) would otherwise be ignored and answer unfiltered figures
// as if they were filtered. A parameter given more than once is refused
// too: the endpoints read its first value only, so page=/a&page=/b would
// answer for /a as if both were asked for.
func CheckParams(q url.Values, known []string) error {
	if err := checkUnknown(q, known, "parameter"); err != nil {
		return err
	}
	var repeated []string
	for k, vs := range q {
		if len(vs) > 1 {
			repeated = append(repeated, k)
		}
	}
	slices.Sort(repeated)
	switch {
	case len(repeated) == 1:
		return errors.New("parameter " + repeated[0] + " given more than once: give it once")
	case len(repeated) > 1:
		return errors.New("parameters " + strings.Join(repeated, ", ") + " given more than once: give each once")
	}
	return nil
}

// CheckFields returns an error naming the fields of a POSTed form that
// are not among known, and the known ones, or nil, as CheckParams does
// for a query's parameters: a misspelt field would otherwise be ignored.
func CheckFields(form url.Values, known []string) error {
	return checkUnknown(form, known, "form field")
}

// checkUnknown is CheckParams' and CheckFields' refusal of the names of
// q not among known; noun is what a name is called.
func checkUnknown(q url.Values, known []string, noun string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	what := "unknown " + noun + " "
	if len(unknown) > 1 {
		what = "unknown " + noun + "s "
	}
	accepted := "none"
	if offered := slices.DeleteFunc(slices.Clone(known), cannotFilter); len(offered) > 0 {
		accepted = strings.Join(offered, ", ")
	}
	return errors.New(what + strings.Join(unknown, ", ") + "; accepted: " + accepted)
}

// cannotFilter reports whether name is a dimension that cannot filter (not
// collected yet, of visits, or of event properties). It stays a known
// parameter, so that ParseRequest's refusal says why, but CheckParams
// does not offer it among the accepted ones.
func cannotFilter(name string) bool {
	d, ok := clickhouse.DimensionByName(name)
	return ok && !d.Filters()
}

// Source is where queries run: ClickHouse's Query and database.
type Source interface {
	Query(ctx context.Context, sql string) ([][]string, error)
	DB() string
}

// Engine answers requests. Its methods may be called concurrently; an
// Engine kept for a server's life (as the aggregator's is) remembers what
// it learnt of the schema. It must not be copied after first use.
type Engine struct {
	Src Source
	// Raw makes every question read the events table (to compare rollups
	// against, in tests and benchmarks).
	Raw bool
	// botDims is set once Src's database is seen to have step 17's
	// per-dimension rollups (clickhouse.BotDimsExist), which no step
	// drops: an Engine kept across questions asks once.
	botDims atomic.Bool
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
	Visitors  uint64 `json:"visitors"`
}

// Stats is the answer for the tiles and the chart.
type Stats struct {
	Site     string   `json:"site"`
	Range    Range    `json:"range"`
	Previous Range    `json:"previous"`
	Grain    string   `json:"grain"`
	Filters  []Filter `json:"filters"`
	// ExcludeBots says the numbers leave bots out (Request.ExcludeBots).
	ExcludeBots bool `json:"exclude_bots"`
	// Source is the table the totals read: a rollup, "events", or
	// "rollup_dim_days_bot+rollup_dims_bot" (a per-dimension pair: whole
	// days from the one, the hours of partial or not yet merged days from
	// the other; see dimSource.rows).
	Source string `json:"source"`
	// VisitsSource is the table visits were computed from: VisitHoursTable
	// or VisitsTable without filters; VisitDimsTable with one filter,
	// without bots and no filter, or filters of a visitor's profile (see
	// profileFilters; "visit_dims+events" where some of the range's hours
	// are not built yet and were computed from the events table); or
	// "events" (other combined filters, filters of clickhouse.OpenDims,
	// which no visits rollup holds, the realtime range), or a
	// per-minute rollup for filters it holds that the per-dimension
	// rollups cannot answer (see minuteTable).
	VisitsSource string   `json:"visits_source"`
	Metrics      []Metric `json:"metrics"`
	Series       []Point  `json:"series"`
	// Pending, when set, says that the range has events from before the
	// rollups' cut-off that the backfill has not rolled up yet, so the
	// numbers read from the rollups lack them (see
	// clickhouse.BackfillPending).
	Pending string `json:"pending,omitempty"`
}

// where is the source table and condition for r over rng, read at grain
// g: "FROM table WHERE cond" reads it. With one filter, a rollup reads
// the per-dimension rollups of dims, if not nil (see dimSource.rows; table may
// be a subquery, cond "1"), and the events table without them. over, if
// not "", is the rollup chosen for r's question that the others cannot
// answer: a per-minute rollup (minuteTable) or, for a site's numbers
// without bots, humanRollups (humans: clickhouse.HumanTable of g), or,
// under filters of clickhouse.OpenDims alone, opensRollups (opens:
// clickhouse.OpensTable of g).
func (e *Engine) where(r Request, rng Range, g clickhouse.Grain, dims *dimSource, over string) (table, cond, tcol string) {
	db := e.Src.DB()
	q := clickhouse.Quote
	span := fmt.Sprintf("toDateTime(%d) AND ", rng.From.Unix())
	end := fmt.Sprintf("toDateTime(%d)", rng.To.Unix())
	switch {
	case over == humanRollups:
		human, _ := clickhouse.HumanTable(g)
		return db + "." + human, "site = " + q(r.Site) + " AND t >= " + span + "t < " + end, "t"
	case over == opensRollups:
		opens, _ := clickhouse.OpensTable(g)
		return db + "." + opens, rowsCond(r, rng), "t"
	case over != "":
		table, cond = e.minuteRows(over, r, rng)
		return table, cond, "t"
	case e.rollups(r) && len(r.Filters) == 0:
		return db + "." + g.Table, "site = " + q(r.Site) + " AND t >= " + span + "t < " + end, "t"
	case !e.Raw && len(r.Filters) == 1 && g.Seconds >= 3600 && dims != nil:
		f := r.Filters[0]
		table, cond = dims.rows(db, "site = "+q(r.Site)+" AND dim = "+q(f.Name)+" AND value = "+q(f.Value), rng)
		return table, cond, "t"
	}
	return db + ".events", eventsCond(r, rng.From, rng.To), "ts"
}

// minuteRows is the source of the per-minute rollup minute's rows of r's
// site and filters over rng, as "FROM table WHERE cond" reads it.
func (e *Engine) minuteRows(minute string, r Request, rng Range) (table, cond string) {
	return e.Src.DB() + "." + minute, rowsCond(r, rng)
}

// minuteTable returns the per-minute rollup that answers r's question
// over [from, to), with the top table's dimension dim if any, or "" for
// none: one that the per-dimension rollups and VisitDimsTable cannot
// answer (two filters or more, or a top table under another dimension's
// filter) of dimensions the per-minute rollups hold (clickhouse.HasMinuteDim), over
// a range it holds (clickhouse.MinuteAudienceReady, MinuteSourcesReady).
// MinuteAudienceTable where a filter is of the visitor's dimensions,
// which lead its sort key, otherwise MinuteSourcesTable, sorted by the
// sources, the event and the page; the other where that one does not
// hold the range yet.
func (e *Engine) minuteTable(ctx context.Context, r Request, dim string, from, to time.Time) (string, error) {
	if e.Raw || !r.ExcludeBots && (len(r.Filters) == 0 || dim == "" && len(r.Filters) == 1 || len(r.Filters) == 1 && r.Filters[0].Name == dim) {
		return "", nil
	}
	if dim != "" && !clickhouse.HasMinuteDim(dim) || slices.ContainsFunc(r.Filters, func(f Filter) bool { return !clickhouse.HasMinuteDim(f.Name) }) {
		return "", nil
	}
	type rollup struct {
		table string
		ready func(context.Context, clickhouse.Querier, string, string, time.Time, time.Time) (bool, error)
	}
	order := []rollup{{clickhouse.MinuteSourcesTable, clickhouse.MinuteSourcesReady}, {clickhouse.MinuteAudienceTable, clickhouse.MinuteAudienceReady}}
	if slices.ContainsFunc(r.Filters, func(f Filter) bool { return slices.Contains(clickhouse.AudienceDims, f.Name) }) {
		order[0], order[1] = order[1], order[0]
	}
	for _, m := range order {
		ok, err := m.ready(ctx, e.Src, e.Src.DB(), r.Site, from, to)
		if err != nil {
			return "", err
		}
		if ok {
			return m.table, nil
		}
	}
	return "", nil
}

// humanRollups, as where's over, names the rollups without bots
// (clickhouse.HumanTable).
const humanRollups = "humans"

// humans reports whether r's question, a site's numbers without bots and
// without filters, reads the rollups without bots (clickhouse.HumanTable
// of its grains): over whole hours, at an hour's grain or coarser, where
// they hold both periods (clickhouse.HumansReady). Its visits come from
// VisitDimsTable's rows of clickhouse.BotDim (see visits).
func (e *Engine) humans(ctx context.Context, r Request) (bool, error) {
	if e.Raw || !r.ExcludeBots || len(r.Filters) > 0 || r.Range.Grain.Seconds < 3600 || r.Range.Total.Seconds < 3600 {
		return false, nil
	}
	for _, t := range []time.Time{r.Prev.From, r.Range.From, r.Range.To} {
		if t.Unix()%3600 != 0 {
			return false, nil
		}
	}
	return clickhouse.HumansReady(ctx, e.Src, e.Src.DB(), r.Site, r.Prev.From, r.Range.To)
}

// opensRollups, as where's over, names the rollups of clickhouse.OpenDims
// (clickhouse.OpensTable).
const opensRollups = "opens"

// opens reports whether r's question, whose filters are all of
// clickhouse.OpenDims (or none, for those dimensions' top tables), reads
// their rollups (clickhouse.OpensTable of each of grains): over times
// aligned to every grain, where they hold [times[0], times[len-1])
// (clickhouse.OpensReady). Under another dimension's filter, or before
// the backfill, its question reads the events table: no other rollup
// holds these dimensions.
func (e *Engine) opens(ctx context.Context, r Request, grains []clickhouse.Grain, times ...time.Time) (bool, error) {
	if e.Raw || slices.ContainsFunc(r.Filters, func(f Filter) bool { return !clickhouse.IsOpenDim(f.Name) }) {
		return false, nil
	}
	for _, g := range grains {
		if _, ok := clickhouse.OpensTable(g); !ok {
			return false, nil
		}
		for _, t := range times {
			if t.Unix()%g.Seconds != 0 {
				return false, nil
			}
		}
	}
	return clickhouse.OpensReady(ctx, e.Src, e.Src.DB(), r.Site, times[0], times[len(times)-1])
}

// rowsCond is the condition on the rows of r's site over rng, in a rollup
// with a column t, a column named as each of r's filters' dimensions and
// a column bot (the per-minute rollups, clickhouse.OpensTable's), that
// r's filters keep, bots' left out if r says so.
func rowsCond(r Request, rng Range) string {
	cond := fmt.Sprintf("site = %s AND t >= toDateTime(%d) AND t < toDateTime(%d)", clickhouse.Quote(r.Site), rng.From.Unix(), rng.To.Unix())
	for _, f := range r.Filters {
		cond += " AND " + f.Name + " = " + clickhouse.Quote(f.Value)
	}
	if r.ExcludeBots {
		cond += " AND bot = 0"
	}
	return cond
}

// wholeDays returns the whole days of [from, to) as [dayFrom, dayTo)
// (unix seconds), empty when dayFrom >= dayTo.
func wholeDays(from, to time.Time) (dayFrom, dayTo int64) {
	const day = 86400
	return (from.Unix() + day - 1) / day * day, to.Unix() / day * day
}

// dimSource is where a question reads per-dimension rollup rows: the
// pair of tables that holds its range (clickhouse.DimRollupsFor), the
// whole days of the range their day table holds (freshDays), and whether
// the rows read leave bots out (only with a pair that keeps the verdict).
type dimSource struct {
	tables      clickhouse.DimRollups
	fresh       map[int64]bool
	excludeBots bool
}

// dimSource returns the per-dimension rollups that answer r's site over
// [from, to) (whole hours) as r asks, bots in or out, or nil where none
// does (read the events table, or a per-minute rollup, instead).
func (e *Engine) dimSource(ctx context.Context, r Request, from, to time.Time) (*dimSource, error) {
	if e.Raw {
		return nil, nil
	}
	db := e.Src.DB()
	bot := e.botDims.Load()
	if !bot {
		var err error
		if bot, err = clickhouse.BotDimsExist(ctx, e.Src, db); err != nil {
			return nil, err
		}
		if bot {
			e.botDims.Store(true)
		}
	}
	// Step 17's pair is the one chosen, but for the upgrade's window and
	// a question without bots over a month copied with verdict unknown:
	// its whole days are asked for while the pair is, rather than after
	// (given up if another pair is chosen).
	spec, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		botFresh map[int64]bool
		botErr   error
		asked    = make(chan struct{})
	)
	if bot {
		go func() {
			defer close(asked)
			botFresh, botErr = e.freshDays(spec, clickhouse.BotDimRollups.Days, r.Site, from, to)
		}()
	} else {
		close(asked)
	}
	tables, ok, err := clickhouse.DimRollupsFor(ctx, e.Src, db, r.Site, from, to, r.ExcludeBots, bot)
	if err != nil || !ok || tables != clickhouse.BotDimRollups {
		cancel()
	}
	<-asked
	if err != nil || !ok {
		return nil, err
	}
	fresh, err := botFresh, botErr
	if tables != clickhouse.BotDimRollups {
		fresh, err = e.freshDays(ctx, tables.Days, r.Site, from, to)
	}
	if err != nil {
		return nil, err
	}
	return &dimSource{tables: tables, fresh: fresh, excludeBots: r.ExcludeBots}, nil
}

// hourly is d without its whole days: for a series by the hour, which
// the day table cannot give.
func (d *dimSource) hourly() *dimSource {
	if d == nil {
		return nil
	}
	h := *d
	h.fresh = nil
	return &h
}

// freshDays returns the whole days of [from, to) that the day table days
// (of a clickhouse.DimRollups) holds in full for site: those whose events
// there (dimension event, one row per event) equal the day rollup's. A
// day its backfill has not merged yet, or that a late event changed
// since, is not among them. A day without events is (neither table has
// rows of it).
func (e *Engine) freshDays(ctx context.Context, days, site string, from, to time.Time) (map[int64]bool, error) {
	a, b := wholeDays(from, to)
	if a >= b {
		return nil, nil
	}
	db, q := e.Src.DB(), clickhouse.Quote
	span := fmt.Sprintf("site = %s AND t >= toDateTime(%d) AND t < toDateTime(%d)", q(site), a, b)
	rows, err := e.Src.Query(ctx, "SELECT d, sum(n), sum(m) FROM (SELECT toUnixTimestamp(t) AS d, sumMerge(events) AS n, toUInt64(0) AS m FROM "+db+"."+clickhouse.Grains[2].Table+
		" WHERE "+span+" GROUP BY d UNION ALL SELECT toUnixTimestamp(t) AS d, toUInt64(0) AS n, sumMerge(events) AS m FROM "+db+"."+days+
		" WHERE "+span+" AND dim = 'event' GROUP BY d) GROUP BY d")
	if err != nil {
		return nil, err
	}
	fresh := map[int64]bool{}
	for d := a; d < b; d += 86400 {
		fresh[d] = true
	}
	for _, row := range rows {
		if len(row) == 3 && row[1] != row[2] {
			d, _ := strconv.ParseInt(row[0], 10, 64)
			delete(fresh, d)
		}
	}
	return fresh, nil
}

// rows is the source of d's rows matching keys (site, dim and maybe
// value) over rng in database db, as "FROM table WHERE cond" reads it:
// rng's days in d.fresh from the day table, its other hours from the
// hour table, their rows together (the same columns: states merge alike
// whichever table they come from); bots' rows left out if d says so.
func (d *dimSource) rows(db, keys string, rng Range) (table, cond string) {
	if d.excludeBots {
		keys += " AND bot = 0"
	}
	fresh := d.fresh
	// The runs [a, b) of [From, To) read from each table, in order.
	var days, hours [][2]int64
	add := func(runs [][2]int64, a, b int64) [][2]int64 {
		if n := len(runs); n > 0 && runs[n-1][1] == a {
			runs[n-1][1] = b
			return runs
		}
		return append(runs, [2]int64{a, b})
	}
	at := rng.From.Unix()
	a, b := wholeDays(rng.From, rng.To)
	for d := a; d < b; d += 86400 {
		if fresh[d] {
			if at < d {
				hours = add(hours, at, d)
			}
			days = add(days, d, d+86400)
			at = d + 86400
		}
	}
	if at < rng.To.Unix() {
		hours = add(hours, at, rng.To.Unix())
	}
	spans := func(runs [][2]int64) string {
		var s []string
		for _, r := range runs {
			s = append(s, fmt.Sprintf("t >= toDateTime(%d) AND t < toDateTime(%d)", r[0], r[1]))
		}
		return strings.Join(s, " OR ")
	}
	switch {
	case len(days) == 0:
		return db + "." + d.tables.Hours, keys + " AND (" + spans(hours) + ")"
	case len(hours) == 0:
		return db + "." + d.tables.Days, keys + " AND (" + spans(days) + ")"
	}
	part := func(table string, runs [][2]int64) string {
		return "SELECT value, t, events, pageviews, visitors FROM " + db + "." + table + " WHERE " + keys + " AND (" + spans(runs) + ")"
	}
	return "(" + part(d.tables.Days, days) + " UNION ALL " + part(d.tables.Hours, hours) + ")", "1"
}

// topRollup answers a top table from rollup rows (dims' rows matching
// keys over rng, see dimSource.rows): the limit values with the most
// events, by events then value, each with its pageviews, events and
// visitors (rows of value, p, n, u), and the tables read. The values are
// ranked by their events alone first, so that visitors states, by far
// the costliest aggregate to read and merge, are read only for the
// values shown: a month of pages has hundreds of values, each with a
// state per hour or day. The second statement names them as constants,
// which ClickHouse moves to PREWHERE (reading the states of the matching
// rows only); a subquery's set stays in WHERE, where every row's state is
// read first (on 18.16, several times the time on a month of pages).
// Both statements rank alike, so the rows are those one pass would give.
// Values too long to name in one statement (maxInList) are asked in one
// pass.
func (e *Engine) topRollup(ctx context.Context, dims *dimSource, keys string, rng Range, limit int) ([][]string, string, error) {
	db := e.Src.DB()
	rows, table, err := e.rankedTop(ctx, "value", func(keys string) (string, string) { return dims.rows(db, keys, rng) }, keys, limit)
	return rows, dims.sourceName(table), err
}

// rankedTop is topRollup's two statements over any rollup with countCols
// and visitorsCol: the rows that rows(keys) reads ("FROM table WHERE
// cond"), ranked by expression value's events, then the pageviews,
// events and visitors of the limit values shown (those named as
// constants in keys' condition unless they are too long, maxInList). It
// returns the rows of (value, p, n, u) and the table of the last
// statement.
func (e *Engine) rankedTop(ctx context.Context, value string, rows func(keys string) (table, cond string), keys string, limit int) ([][]string, string, error) {
	tail := " GROUP BY v ORDER BY n DESC, v LIMIT " + strconv.Itoa(limit)
	table, cond := rows(keys)
	ranked, err := e.Src.Query(ctx, "SELECT "+value+" AS v, sumMerge(events) AS n FROM "+table+" WHERE "+cond+tail)
	if err != nil || len(ranked) == 0 {
		return nil, table, err
	}
	values := make([]string, 0, len(ranked))
	size := 0
	for _, row := range ranked {
		if len(row) == 2 {
			values = append(values, clickhouse.Quote(row[0]))
			size += len(values[len(values)-1]) + 2
		}
	}
	if size <= maxInList {
		keys += " AND " + value + " IN (" + strings.Join(values, ", ") + ")"
	}
	table, cond = rows(keys)
	out, err := e.Src.Query(ctx, "SELECT "+value+" AS v, sumMerge(pageviews) AS p, sumMerge(events) AS n, uniqCombinedIfMerge(visitors) AS u FROM "+table+" WHERE "+cond+tail)
	return out, table, err
}

// maxInList bounds the values topRollup names in a statement, in bytes
// quoted: ClickHouse refuses a statement over max_query_size (256 KiB by
// default), and a range of the day and hour tables names them twice.
const maxInList = 96 << 10

// sourceName names the table (or tables, see rows) a query of d read.
func (d *dimSource) sourceName(table string) string {
	if d != nil && strings.HasPrefix(table, "(") {
		return d.tables.Days + "+" + d.tables.Hours
	}
	return table[strings.LastIndexByte(table, '.')+1:]
}

// sums are the aggregates of a source table: events, pageviews and
// unique visitors (visitor id 0 is none). Rollups merge their states;
// the events table counts rows with the same functions, so both answer
// alike (uniqCombined is exact for small sets, an estimate beyond).
func sums(table string) string {
	if strings.HasSuffix(table, ".events") {
		return "count(), countIf(name = 'pageview'), " + visitorsOf(table)
	}
	return "sumMerge(events), sumMerge(pageviews), " + visitorsOf(table)
}

// visitorsOf is sums' unique visitors: the per-minute rollups and the
// events table keep visitor ids, the other rollups their states.
func visitorsOf(table string) string {
	if strings.HasSuffix(table, ".events") || strings.HasSuffix(table, "."+clickhouse.MinuteAudienceTable) || strings.HasSuffix(table, "."+clickhouse.MinuteSourcesTable) {
		return "uniqCombinedIf(visitor_id, visitor_id != 0)"
	}
	return "uniqCombinedIfMerge(visitors)"
}

// Stats answers the tiles (with the previous period) and the series.
func (e *Engine) Stats(ctx context.Context, r Request) (Stats, error) {
	st := Stats{Site: r.Site, Range: r.Range, Previous: r.Prev, Grain: r.Range.Grain.Name, Filters: r.Filters, ExcludeBots: r.ExcludeBots}
	if st.Filters == nil {
		st.Filters = []Filter{}
	}
	// With one filter of a dimension they hold, the per-dimension
	// rollups that hold both periods, the whole days of their day table
	// from it; without bots, where the visits add up from the profile
	// rows with the verdict (a filter of a visitor's dimension), the
	// rollups' rows of the events that are not a bot's.
	var dims *dimSource
	if !e.Raw && len(r.Filters) == 1 && rolledUp(r.Filters[0].Dim) && r.Range.Grain.Seconds >= 3600 &&
		(!r.ExcludeBots || e.profileFilters(r, r.Range) != nil && e.profileFilters(r, r.Prev) != nil) {
		var err error
		if dims, err = e.dimSource(ctx, r, r.Prev.From, r.Range.To); err != nil {
			return st, err
		}
	}
	// A site's numbers without bots from their own rollup, where it holds
	// both periods; under filters of clickhouse.OpenDims alone, theirs
	// (the visits from the events table); else, and with filters the
	// per-dimension rollups cannot combine, a per-minute rollup where it
	// holds them.
	human, err := e.humans(ctx, r)
	if err != nil {
		return st, err
	}
	opens := false
	if !human && len(r.Filters) > 0 {
		if opens, err = e.opens(ctx, r, []clickhouse.Grain{r.Range.Grain, r.Range.Total}, r.Prev.From, r.Range.From, r.Range.To); err != nil {
			return st, err
		}
	}
	minute, over := "", humanRollups
	switch {
	case opens:
		over = opensRollups
	case !human:
		if dims == nil {
			if minute, err = e.minuteTable(ctx, r, "", r.Prev.From, r.Range.To); err != nil {
				return st, err
			}
		}
		over = minute
	}
	totals := func(rng Range) (ev, pv, uv uint64, table string, err error) {
		table, cond, _ := e.where(r, rng, rng.Total, dims, over)
		rows, err := e.Src.Query(ctx, "SELECT "+sums(table)+" FROM "+table+" WHERE "+cond)
		if err != nil {
			return 0, 0, 0, table, err
		}
		if len(rows) == 1 && len(rows[0]) == 3 {
			ev, _ = strconv.ParseUint(rows[0][0], 10, 64)
			pv, _ = strconv.ParseUint(rows[0][1], 10, 64)
			uv, _ = strconv.ParseUint(rows[0][2], 10, 64)
		}
		return ev, pv, uv, table, nil
	}
	// The parts are independent queries: asked at once, the answer
	// takes about as long as the slowest.
	var (
		ev, pv, uv, pev, ppv, puv uint64
		table, vtable             string
		vs, pvs                   VisitStats
		seriesRows                [][]string
		errs                      [6]error
		wg                        sync.WaitGroup
	)
	g := r.Range.Grain
	seriesDims := dims
	if g.Seconds < 86400 { // buckets finer than the days
		seriesDims = dims.hourly()
	}
	stable, cond, tcol := e.where(r, r.Range, g, seriesDims, over)
	bucket := tcol
	if tcol == "ts" || stable != e.Src.DB()+"."+g.Table {
		bucket = g.Start + "(" + tcol + ", 'UTC')"
	}
	periods := []func() error{
		func() (err error) { ev, pv, uv, table, err = totals(r.Range); return err },
		func() (err error) { pev, ppv, puv, _, err = totals(r.Prev); return err },
		func() (err error) { vs, vtable, err = e.visits(ctx, r, r.Range); return err },
		func() (err error) { pvs, _, err = e.visits(ctx, r, r.Prev); return err },
	}
	onePass := minute != "" && (e.profileFilters(r, r.Range) == nil || e.profileFilters(r, r.Prev) == nil)
	if minute != "" && !onePass {
		// VisitDimsTable's profile rows hold counts an erasure cannot
		// edit, where the per-minute rollup loses the erased visitor's
		// rows: after an erasure in the range, its visits come from the
		// rollup its totals do (a tester saw 0 visitors beside 2 visits).
		if onePass, err = clickhouse.ErasedIn(ctx, e.Src, e.Src.DB(), r.Site, r.Prev.From, r.Range.To); err != nil {
			return st, err
		}
	}
	if onePass {
		// One pass over the per-minute rollup's rows per period answers its
		// totals and visits alike: reading the rows is most of the cost.
		// (Filters of a visitor's profile read their visits from
		// VisitDimsTable's profile rows instead, and their totals
		// without the visits' sorting, but for a range with an erasure.)
		periods = []func() error{
			func() (err error) {
				ev, pv, uv, vs, table, err = e.minuteTotals(ctx, minute, r, r.Range)
				vtable = table
				return err
			},
			func() (err error) { pev, ppv, puv, pvs, _, err = e.minuteTotals(ctx, minute, r, r.Prev); return err },
		}
	}
	for i, part := range append(periods, []func() error{
		func() (err error) {
			seriesRows, err = e.Src.Query(ctx, "SELECT toUnixTimestamp("+bucket+") AS b, "+sums(stable)+" FROM "+stable+" WHERE "+cond+" GROUP BY b ORDER BY b")
			return err
		},
		func() error {
			// Only the step-7 rollups wait for the backfill (the
			// per-dimension ones without bots hold what rollup_hours
			// does: see clickhouse.DimRollupsFor; those of
			// clickhouse.OpenDims are read once they hold the range,
			// the events table before).
			if e.Raw || r.ExcludeBots && dims == nil || minute != "" || len(r.Filters) > 1 || opens || len(r.Filters) == 1 && !rolledUp(r.Filters[0].Dim) {
				return nil
			}
			cutoff, pending, err := clickhouse.BackfillPending(ctx, e.Src, e.Src.DB(), r.Site, r.Range.From, r.Range.To)
			if pending {
				st.Pending = "events before " + cutoff.Format(time.RFC3339) + " (the rollups' cut-off) are not rolled up yet: the backfill runs --rollup-lateness after it; until then this range's numbers lack them"
			}
			return err
		},
	}...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = part()
		}()
	}
	wg.Wait()
	if err := joinDistinct(errs[:]); err != nil {
		return st, err
	}
	st.Source = dims.sourceName(table)
	st.VisitsSource = vtable[strings.LastIndexByte(vtable, '.')+1:]
	st.Metrics = []Metric{
		metric("visitors", "Unique visitors", float64(uv), float64(puv)),
		metric("visits", "Visits", float64(vs.Visits), float64(pvs.Visits)),
		metric("pageviews", "Pageviews", float64(pv), float64(ppv)),
		metric("views_per_visit", "Views per visit", vs.ratio(vs.Pageviews), pvs.ratio(pvs.Pageviews)),
		metric("bounce_rate", "Bounce rate", vs.ratio(vs.Bounces), pvs.ratio(pvs.Bounces)),
		metric("visit_duration", "Visit duration", vs.duration(), pvs.duration()),
		metric("events", "Events", float64(ev), float64(pev)),
		metric("custom_events", "Custom events", float64(ev-pv), float64(pev-ppv)),
	}
	rows := seriesRows
	got := map[int64][3]uint64{}
	for _, row := range rows {
		if len(row) != 4 {
			continue
		}
		t, _ := strconv.ParseInt(row[0], 10, 64)
		var v [3]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(row[i+1], 10, 64)
		}
		got[t] = v
	}
	for t := r.Range.From.Unix(); t < r.Range.To.Unix(); t += g.Seconds {
		v := got[t]
		st.Series = append(st.Series, Point{T: t, Events: v[0], Pageviews: v[1], Visitors: v[2]})
	}
	return st, nil
}

// VisitStats are the visits of a range: a visit is one visitor's events
// with gaps under 30 minutes (clickhouse.VisitsTable), counted in the
// range its events are in (a visit across the range's start or end is cut
// there); a bounce is a visit of one pageview and nothing else (Plausible's
// definition: one pageview, no other interaction); its duration is from
// its first event to its last (0 for a bounce), as Plausible and
// GoatCounter's peers measure it. Events without a visitor id (no consent
// for one) are in no visit.
type VisitStats struct {
	Visits     uint64
	Bounces    uint64
	DurationMS uint64 // summed over visits
	Pageviews  uint64 // in visits
}

// duration is the mean visit duration in seconds, to the millisecond:
// the ratio in milliseconds divided by 1000 was a float's noise in the
// JSON (142.27590909999998, a tester's).
func (v VisitStats) duration() float64 {
	return math.Round(v.ratio(v.DurationMS)) / 1000
}

func (v VisitStats) ratio(n uint64) float64 {
	if v.Visits == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(v.Visits)*10000) / 10000
}

// visits computes r's visits over rng. Without filters, over whole hours
// (every range but realtime), it adds up VisitHours (see
// clickhouse.VisitHoursTable): the stored ones whose hourly count still
// matches, the others computed from the segments (clickhouse.VisitsTable).
// With filters, in the realtime range or Raw, it computes them from the
// events table: rows per visitor and minute (first and last event time,
// events, pageviews), then per visitor sorted by time and cut where the
// gap from the previous row's last event is 30 minutes or more, then per
// visit. The previous row's last time comes from the array shifted by
// one, not from indexing s inside a lambda, which would copy s per
// element. (Stats asks minuteTotals instead where minuteTable names a
// rollup.)
func (e *Engine) visits(ctx context.Context, r Request, rng Range) (VisitStats, string, error) {
	whole := rng.From.Unix()%3600 == 0 && rng.To.Unix()%3600 == 0
	if e.rollups(r) && len(r.Filters) == 0 && whole {
		return e.visitsFromHours(ctx, r, rng)
	}
	if e.rollups(r) && len(r.Filters) == 1 && whole && rolledUp(r.Filters[0].Dim) {
		return e.visitsFromDims(ctx, r, rng)
	}
	if !e.Raw && r.ExcludeBots && len(r.Filters) == 0 && whole {
		return e.visitsWithoutBots(ctx, r, rng)
	}
	if f := e.profileFilters(r, rng); f != nil {
		return e.visitsFromProfiles(ctx, r, rng, f)
	}
	var vs VisitStats
	db := e.Src.DB()
	table := db + ".events"
	cond := eventsCond(r, rng.From, rng.To) + " AND visitor_id != 0"
	inner := "SELECT visitor_id AS v, toStartOfMinute(ts, 'UTC') AS t, min(ts_ms) AS f, max(ts_ms) AS l, count() AS n, countIf(name = 'pageview') AS p FROM " +
		table + " WHERE " + cond + " GROUP BY v, t"
	sql := `SELECT count(), countIf(vn = 1 AND vp = 1), sum(vl - vf), sum(vp) FROM (
	SELECT v, x.1 AS k, min(x.2) AS vf, max(x.3) AS vl, sum(x.4) AS vn, sum(x.5) AS vp FROM (
		SELECT v, arrayJoin(arrayMap((e, k) -> (k, e.1, e.2, e.3, e.4), s,
			arrayCumSum(arrayMap((f, pl) -> toUInt32(pl = 0 OR f - pl >= ` + strconv.Itoa(clickhouse.VisitGapMS) + `),
				arrayMap(e -> e.1, s), arrayPushFront(arrayPopBack(arrayMap(e -> e.2, s)), toUInt64(0)))))) AS x
		FROM (SELECT v, arraySort(groupArray((f, l, n, p))) AS s FROM (` + inner + `) GROUP BY v)
	) GROUP BY v, k)`
	rows, err := e.Src.Query(ctx, sql)
	if err != nil {
		return vs, table, err
	}
	if len(rows) == 1 && len(rows[0]) == 4 {
		for i, p := range []*uint64{&vs.Visits, &vs.Bounces, &vs.DurationMS, &vs.Pageviews} {
			*p, _ = strconv.ParseUint(rows[0][i], 10, 64)
		}
	}
	return vs, table, nil
}

// minuteTotals answers r's totals (events, pageviews, visitors) and
// visits over rng from the per-minute rollup minute (see minuteTable) in
// one pass: the
// visits as visits computes them from the events table, without its
// rows per visitor and minute, whose grouping (a key per row) and the
// grouping per visit after them cost most of that query.
//
// Per visitor, the rows' first event times sorted (a) and their last
// event times sorted apart (ls): both are sorted by minute first (a
// row's times lie in its minute), so a minute's rows take the same
// places in both, where the first of them in a holds the minute's first
// event and the last of them in ls its last event. A row starts a visit
// where its first event comes 30 minutes or more after the previous
// place's last event in ls: at a minute's first row, that is the end of
// the visitor's previous minute, as in visits; at a later row of the
// same minute, less than a minute separates the two, never a start. So
// the gaps g between places (the time between, where a visit starts;
// else 0) give the visits (1 + the gaps), their summed duration (the
// visitor's span less the gaps) and the bounces: a visit of one row (a
// start followed by a start or the end) that is one pageview, flagged in
// the low bit of a's values. Rows without a visitor id count in the
// totals only (their group's arrays are empty, which the resizes keep
// equal in length for arrayMap).
func (e *Engine) minuteTotals(ctx context.Context, minute string, r Request, rng Range) (ev, pv, uv uint64, vs VisitStats, table string, err error) {
	table, cond := e.minuteRows(minute, r, rng)
	gap := strconv.Itoa(clickhouse.VisitGapMS)
	sql := `SELECT sum(n), sum(p), uniqCombinedIf(v, v != 0), sumIf(1 + arrayCount(x -> x > 0, g), v != 0),
	sum(arraySum(arrayMap((x, s, e) -> x % 2 = 1 AND s > 0 AND e > 0, a, arrayResize(arrayPushFront(g, 1), length(a)), arrayResize(arrayPushBack(g, 1), length(a))))),
	sumIf(ls[-1] - intDiv(a[1], 2) - arraySum(g), v != 0), sumIf(p, v != 0)
FROM (SELECT v, n, p, a, ls, arrayMap((x, pl) -> if(intDiv(x, 2) >= pl + ` + gap + `, intDiv(x, 2) - pl, 0), arrayPopFront(a), arrayPopBack(ls)) AS g FROM (
	SELECT visitor_id AS v, sumMerge(events) AS n, sumMerge(pageviews) AS p,
		arraySort(groupArrayIf(finalizeAggregation(first) * 2 + (finalizeAggregation(events) = 1 AND finalizeAggregation(pageviews) = 1), visitor_id != 0)) AS a,
		arraySort(groupArrayIf(finalizeAggregation(last), visitor_id != 0)) AS ls
	FROM ` + table + ` WHERE ` + cond + ` GROUP BY v))`
	rows, err := e.Src.Query(ctx, sql)
	if err != nil {
		return 0, 0, 0, vs, table, err
	}
	if len(rows) == 1 && len(rows[0]) == 7 {
		for i, p := range []*uint64{&ev, &pv, &uv, &vs.Visits, &vs.Bounces, &vs.DurationMS, &vs.Pageviews} {
			*p, _ = strconv.ParseUint(rows[0][i], 10, 64)
		}
	}
	return ev, pv, uv, vs, table, nil
}

// visitsFromHours adds up rng's VisitHours: those stored whose Source is
// the hourly rollup's WindowCount now, the rest computed in one query
// from the segments; an hour with no events near it has no visits.
func (e *Engine) visitsFromHours(ctx context.Context, r Request, rng Range) (VisitStats, string, error) {
	var vs VisitStats
	db := e.Src.DB()
	site := "site = " + clickhouse.Quote(r.Site)
	hour := int64(3600)
	from, to := rng.From.Unix(), rng.To.Unix()
	counts, err := clickhouse.HourCounts(ctx, e.Src, db, site, rng.From.Add(-time.Hour), rng.To.Add(time.Hour))
	if err != nil {
		return vs, db + "." + clickhouse.VisitHoursTable, err
	}
	stored, srcs, err := clickhouse.StoredVisitHours(ctx, e.Src, db, site, rng.From, rng.To)
	if err != nil {
		return vs, db + "." + clickhouse.VisitHoursTable, err
	}
	hours := map[int64]clickhouse.VisitHour{}
	var missing []int64
	for h := from; h < to; h += hour {
		w := clickhouse.WindowCount(counts[r.Site], h)
		if w == 0 {
			continue
		}
		if s, ok := srcs[r.Site][h]; ok && s == w {
			hours[h] = stored[r.Site][h]
			continue
		}
		missing = append(missing, h)
	}
	table := db + "." + clickhouse.VisitHoursTable
	if len(missing) > 0 {
		table = db + "." + clickhouse.VisitsTable
		a, b := missing[0], missing[len(missing)-1]+hour
		end := min(b+clickhouse.SegmentSeconds, to)
		rows, err := e.Src.Query(ctx, clickhouse.VisitPiecesSQL(db, site, time.Unix(a, 0), time.Unix(b, 0), time.Unix(end, 0)))
		if err != nil {
			return vs, table, err
		}
		got, err := clickhouse.ParseVisitHours(rows)
		if err != nil {
			return vs, table, err
		}
		for _, v := range got[r.Site] {
			if _, ok := hours[v.T.Unix()]; !ok {
				hours[v.T.Unix()] = v
			}
		}
	}
	return sumVisitHours(hours, from, to), table, nil
}

// rolledUp reports whether VisitDimsTable and the per-dimension rollups
// (step 7's view, and step 17's: clickhouse.DimRollupsFor) have d's
// values. A dimension added later (clickhouse.OpenDims) has no rows
// there: a filter of it read there would silently count nothing.
func rolledUp(d clickhouse.Dimension) bool {
	return d.Collected && !d.Visit && d.Since <= clickhouse.VersionRollups
}

// profileFilters returns r's filters by dimension name when its visits
// over rng add up from VisitDimsTable's profile rows (see
// clickhouse.ProfileDim): filters of two or more of a visitor's
// dimensions (clickhouse.ProfileCond), or of one or more with bots left
// out (the filter clickhouse.BotDim "0" added: the rows of
// clickhouse.ProfileBotDim), over whole hours; otherwise nil.
func (e *Engine) profileFilters(r Request, rng Range) map[string]string {
	if e.Raw || rng.From.Unix()%3600 != 0 || rng.To.Unix()%3600 != 0 {
		return nil
	}
	m := map[string]string{}
	for _, f := range r.Filters {
		m[f.Name] = f.Value
	}
	if len(m) != len(r.Filters) || r.ExcludeBots && len(m) == 0 {
		return nil
	}
	if r.ExcludeBots {
		m[clickhouse.BotDim] = "0"
	}
	if _, _, ok := clickhouse.ProfileCond("value", m); !ok {
		return nil
	}
	return m
}

// visitsFromDims adds up the VisitHours of rng's hours for r's one
// filter from VisitDimsTable (see dimVisits).
func (e *Engine) visitsFromDims(ctx context.Context, r Request, rng Range) (VisitStats, string, error) {
	f := r.Filters[0]
	return e.valueVisits(ctx, r.Site, rng, f.Name, f.Value, nil)
}

// visitsWithoutBots adds up the VisitHours of rng's hours of the site's
// events that are not a bot's, from VisitDimsTable's rows of
// clickhouse.BotDim, value "0" (see dimVisits; a build made before
// those rows existed counts as missing).
func (e *Engine) visitsWithoutBots(ctx context.Context, r Request, rng Range) (VisitStats, string, error) {
	return e.valueVisits(ctx, r.Site, rng, clickhouse.BotDim, "0", func(b clickhouse.VisitDimBuild) bool { return b.Bots })
}

// valueVisits adds up the VisitHours of rng's hours of site's events
// whose dimension dim has value, from VisitDimsTable (see dimVisits,
// and holds).
func (e *Engine) valueVisits(ctx context.Context, site string, rng Range, dim, value string, holds func(clickhouse.VisitDimBuild) bool) (VisitStats, string, error) {
	return e.dimVisits(ctx, site, rng, holds,
		func(fresh map[int64]clickhouse.VisitDimBuild) (map[int64]clickhouse.VisitHour, error) {
			stored, err := clickhouse.StoredVisitDims(ctx, e.Src, e.Src.DB(), site, dim, &value, rng.From, rng.To, fresh)
			hours := map[int64]clickhouse.VisitHour{}
			for h, v := range stored[value] {
				hours[h] = v.VisitHour
			}
			return hours, err
		},
		dim, "dv.2 = "+clickhouse.Quote(value),
		func(v clickhouse.VisitDim) bool { return v.Dim == dim && v.Value == value })
}

// visitsFromProfiles adds up the VisitHours of rng's hours of the profiles
// that filters (from profileFilters) select, from VisitDimsTable's
// profile rows, or its rows of the profile with the verdict where the
// filters leave bots out (see dimVisits; a build made before those rows
// existed counts as missing).
func (e *Engine) visitsFromProfiles(ctx context.Context, r Request, rng Range, filters map[string]string) (VisitStats, string, error) {
	cond, dim, _ := clickhouse.ProfileCond("value", filters)
	pairs, _, _ := clickhouse.ProfileCond("dv.2", filters)
	holds := func(b clickhouse.VisitDimBuild) bool { return b.Profiles }
	if dim == clickhouse.ProfileBotDim {
		holds = func(b clickhouse.VisitDimBuild) bool { return b.ProfileBots }
	}
	return e.dimVisits(ctx, r.Site, rng, holds,
		func(fresh map[int64]clickhouse.VisitDimBuild) (map[int64]clickhouse.VisitHour, error) {
			return clickhouse.StoredProfileHours(ctx, e.Src, e.Src.DB(), r.Site, dim, cond, rng.From, rng.To, fresh)
		},
		dim, pairs,
		func(v clickhouse.VisitDim) bool { return v.Dim == dim })
}

// dimVisits adds up site's VisitHours over rng from VisitDimsTable: for
// the hours whose latest build was made from the hourly rollup's
// WindowCount now (and that holds says hold the rows read, if holds is
// not nil: a pair added since), those
// stored returns; the rest computed in one query from the events table
// (VisitDimPiecesSQL: the same pieces) for the pairs of dimension dim
// that valueCond (over dv.2) selects,
// the pieces of which keep picks adding up per hour. The source names
// the tables read.
func (e *Engine) dimVisits(ctx context.Context, site string, rng Range, holds func(clickhouse.VisitDimBuild) bool,
	stored func(fresh map[int64]clickhouse.VisitDimBuild) (map[int64]clickhouse.VisitHour, error),
	dim, valueCond string, keep func(clickhouse.VisitDim) bool) (VisitStats, string, error) {
	db := e.Src.DB()
	table := db + "." + clickhouse.VisitDimsTable
	fresh, missing, err := e.dimHours(ctx, site, rng)
	if err != nil {
		return VisitStats{}, table, err
	}
	if holds != nil {
		for h, b := range fresh {
			if !holds(b) {
				delete(fresh, h)
				missing[h] = true
			}
		}
	}
	hours := map[int64]clickhouse.VisitHour{}
	if len(fresh) > 0 {
		if hours, err = stored(fresh); err != nil {
			return VisitStats{}, table, err
		}
	}
	if len(missing) > 0 {
		table = db + ".events"
		if len(fresh) > 0 {
			table = db + "." + clickhouse.VisitDimsTable + "+events"
		}
		got, err := e.missingDims(ctx, site, dim, valueCond, missing, rng)
		if err != nil {
			return VisitStats{}, table, err
		}
		for _, v := range got {
			if h := v.T.Unix(); missing[h] && keep(v) {
				sum := hours[h]
				sum.Add(v.VisitHour)
				hours[h] = sum
			}
		}
	}
	return sumVisitHours(hours, rng.From.Unix(), rng.To.Unix()), table, nil
}

// dimHours sorts the hours of rng that have events near them into those
// whose latest VisitDimsTable build still matches the hourly rollup
// (with that build) and the missing ones.
func (e *Engine) dimHours(ctx context.Context, site string, rng Range) (map[int64]clickhouse.VisitDimBuild, map[int64]bool, error) {
	db := e.Src.DB()
	cond := "site = " + clickhouse.Quote(site)
	var (
		counts map[string]map[int64]uint64
		builds map[string]map[int64]clickhouse.VisitDimBuild
		errs   [2]error
		wg     sync.WaitGroup
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		counts, errs[0] = clickhouse.HourCounts(ctx, e.Src, db, cond, rng.From.Add(-time.Hour), rng.To.Add(time.Hour))
	}()
	go func() {
		defer wg.Done()
		builds, errs[1] = clickhouse.VisitDimBuilds(ctx, e.Src, db, cond, rng.From, rng.To)
	}()
	wg.Wait()
	if err := joinDistinct(errs[:]); err != nil {
		return nil, nil, err
	}
	fresh := map[int64]clickhouse.VisitDimBuild{}
	missing := map[int64]bool{}
	for h := rng.From.Unix(); h < rng.To.Unix(); h += 3600 {
		w := clickhouse.WindowCount(counts[site], h)
		if w == 0 {
			continue
		}
		if b, ok := builds[site][h]; ok && b.Source == w {
			fresh[h] = b
		} else {
			missing[h] = true
		}
	}
	return fresh, missing, nil
}

// missingDims computes the VisitDims of site's missing hours of rng (the
// span from the first to the last) from the events table, for the
// (dimension, value) pairs of dimension dim ("" for the whole site's
// visits) that valueCond, a condition on the value dv.2, selects.
func (e *Engine) missingDims(ctx context.Context, site, dim, valueCond string, missing map[int64]bool, rng Range) ([]clickhouse.VisitDim, error) {
	a, b := int64(math.MaxInt64), int64(0)
	for h := range missing {
		a, b = min(a, h), max(b, h+3600)
	}
	end := min(b+clickhouse.SegmentSeconds, rng.To.Unix())
	rows, err := e.Src.Query(ctx, clickhouse.VisitDimPiecesSQL(e.Src.DB(), "site = "+clickhouse.Quote(site), valueCond, []string{dim}, time.Unix(a, 0), time.Unix(b, 0), time.Unix(end, 0)))
	if err != nil {
		return nil, err
	}
	return clickhouse.ParseVisitDims(rows)
}

// sumVisitHours adds up the VisitHours of a range [from, to) of whole
// hours, cutting the visits across its start and end there.
func sumVisitHours(hours map[int64]clickhouse.VisitHour, from, to int64) VisitStats {
	var vs VisitStats
	hour := int64(3600)
	first, last := from, to-hour
	for h, v := range hours {
		vs.Visits += v.Pieces
		vs.DurationMS += v.DurationMS
		vs.Pageviews += v.Pageviews
		vs.Bounces += v.Bounce
		if h == first {
			vs.Bounces += v.BounceIn // its visit starts before the range: cut
		} else {
			vs.Visits -= v.Joins
			vs.DurationMS += v.JoinMS
		}
		if h == last {
			vs.Bounces += v.BounceOut // its visit goes on after the range: cut
			if h == first {
				vs.Bounces += v.BounceInOut
			}
		}
	}
	return vs
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
	Visitors  uint64 `json:"visitors"`
	// Visits, in a top table of visits (Dimension.Visit), are the
	// visits entering (or leaving) at the value; the other counts are 0.
	Visits uint64 `json:"visits,omitempty"`
}

// Top is a top table.
type Top struct {
	Site      string   `json:"site"`
	Dim       string   `json:"dim"`
	Label     string   `json:"label"`
	Collected bool     `json:"collected"`
	Range     Range    `json:"range"`
	Filters   []Filter `json:"filters"`
	// ExcludeBots says the rows leave bots out (Request.ExcludeBots).
	ExcludeBots bool   `json:"exclude_bots"`
	Source      string `json:"source,omitempty"`
	Rows        []Row  `json:"rows"`
}

// MaxLimit bounds the rows of a top table; DefaultLimit is the API's
// when none is asked for.
const (
	MaxLimit     = 1000
	DefaultLimit = 10
)

// Top answers the top values of dimension dim, by events (by visits for
// a dimension of visits), at most limit rows. A dimension not collected
// yet answers Collected false, no rows; no dim, or an unknown one, an
// error naming the dimensions, with Top's Dim empty.
//
// Without filters, over whole hours, it reads the per-dimension rollups
// that hold the range (see dimSource; VisitDimsTable for a dimension of
// visits), with bots or without; with one filter of the same dimension,
// those too; the pages under one filter of clickhouse.PageDims, or one
// of those under a page's filter, over whole days, clickhouse.PageDimsTable
// (see topPageDims); under other filters that a per-minute rollup holds,
// with dim, that rollup (see minuteTable); otherwise the events table. A
// dimension of clickhouse.OpenDims, which neither holds, reads its own
// rollups under no filter or filters of OpenDims alone (see opens), and
// the events table under others.
func (e *Engine) Top(ctx context.Context, r Request, dimName string, limit int) (Top, error) {
	dim, ok := clickhouse.DimensionByName(dimName)
	if !ok {
		names := strings.Join(dimNames(), ", ")
		if dimName == "" {
			return Top{}, errors.New("dim is required: one of " + names)
		}
		return Top{}, fmt.Errorf("unknown dimension %q: one of %s", dimName, names)
	}
	t := Top{Site: r.Site, Dim: dim.Name, Label: dim.Label, Collected: dim.Collected, Range: r.Range, Filters: r.Filters, ExcludeBots: r.ExcludeBots, Rows: []Row{}}
	if t.Filters == nil {
		t.Filters = []Filter{}
	}
	if !dim.Collected {
		return t, nil
	}
	limit = min(max(limit, 1), MaxLimit)
	if dim.Visit {
		return e.topVisits(ctx, r, t, dim, limit)
	}
	if dim.Name == clickhouse.PropsDim {
		return e.topProps(ctx, r, t, limit)
	}
	q := clickhouse.Quote
	db := e.Src.DB()
	same := len(r.Filters) == 1 && r.Filters[0].Name == dim.Name
	if (len(r.Filters) == 0 || same) && r.Range.Grain.Seconds >= 3600 && rolledUp(dim) {
		dims, err := e.dimSource(ctx, r, r.Range.From, r.Range.To)
		if err != nil {
			return t, err
		}
		if dims != nil {
			keys := "site = " + q(r.Site) + " AND dim = " + q(dim.Name)
			if same {
				keys += " AND value = " + q(r.Filters[0].Value)
			}
			rows, source, err := e.topRollup(ctx, dims, keys, r.Range, limit)
			t.Source = source
			return t.add(rows, err)
		}
	}
	if top, ok, err := e.topPageDims(ctx, r, t, dim, limit); ok || err != nil {
		return top, err
	}
	if clickhouse.IsOpenDim(dim.Name) {
		ok, err := e.opens(ctx, r, []clickhouse.Grain{r.Range.Total}, r.Range.From, r.Range.To)
		if err != nil {
			return t, err
		}
		if ok {
			// A few rows per hour or day: one pass.
			table, _ := clickhouse.OpensTable(r.Range.Total)
			t.Source = table
			return t.add(e.Src.Query(ctx, "SELECT "+dim.Name+" AS value, sumMerge(pageviews) AS p, sumMerge(events) AS n, uniqCombinedIfMerge(visitors) AS u FROM "+db+"."+table+
				" WHERE "+rowsCond(r, r.Range)+" GROUP BY value ORDER BY n DESC, value LIMIT "+strconv.Itoa(limit)))
		}
	}
	minute, err := e.minuteTable(ctx, r, dim.Name, r.Range.From, r.Range.To)
	if err != nil {
		return t, err
	}
	if minute != "" {
		// One pass, as from the events table: a per-minute rollup holds
		// about a row per event, and ranking first (as topRollup does)
		// read the filter's rows twice, slower where the values shown
		// are most of them (see make bench).
		table, cond := e.minuteRows(minute, r, r.Range)
		t.Source = minute
		sql := "SELECT " + dim.Name + " AS value, sumMerge(pageviews) AS p, sumMerge(events) AS n, " + visitorsOf(table) + " AS u FROM " + table + " WHERE " + cond +
			" GROUP BY value ORDER BY n DESC, value LIMIT " + strconv.Itoa(limit)
		return t.add(e.Src.Query(ctx, sql))
	}
	t.Source = "events"
	cond := eventsCond(r, r.Range.From, r.Range.To)
	// One pass: ranking first would read the events twice, which cost
	// more than the visitors of the values not shown.
	sql := "SELECT " + dim.Expr + " AS value, countIf(name = 'pageview') AS p, count() AS n, uniqCombinedIf(visitor_id, visitor_id != 0) AS u FROM " + db + ".events WHERE " + cond +
		" GROUP BY value ORDER BY n DESC, value LIMIT " + strconv.Itoa(limit)
	return t.add(e.Src.Query(ctx, sql))
}

// topProps answers the top table of event properties, "key=value" by
// events: from PropsTable under no filter or the event name's alone, from
// PropsDimsTable under one filter of clickhouse.PropsDims (and the event
// name's, if any), over a range from a UTC day's start whose days the
// table holds completely (clickhouse.PropsComplete, PropsDimsComplete;
// its last day may end after the range, today's at the next hour, where
// that day holds no later events); otherwise from the events table,
// its members read by the same expression (clickhouse.PropPairs).
func (e *Engine) topProps(ctx context.Context, r Request, t Top, limit int) (Top, error) {
	q := clickhouse.Quote
	db := e.Src.DB()
	site := "site = " + q(r.Site)
	from, to := r.Range.From.Unix(), r.Range.To.Unix()
	var byEvent, byDim []Filter
	for _, f := range r.Filters {
		if f.Name == "event" {
			byEvent = append(byEvent, f)
		} else {
			byDim = append(byDim, f)
		}
	}
	table, complete := "", clickhouse.PropsComplete
	switch {
	case len(byEvent) > 1:
	case len(byDim) == 0:
		table = clickhouse.PropsTable
	case len(byDim) == 1 && slices.ContainsFunc(clickhouse.PropsDims, func(d clickhouse.Dimension) bool { return d.Name == byDim[0].Name }):
		table, complete = clickhouse.PropsDimsTable, clickhouse.PropsDimsComplete
	}
	tail := " GROUP BY kv ORDER BY n DESC, kv LIMIT " + strconv.Itoa(limit)
	if e.rollups(r) && table != "" && from%86400 == 0 && to%3600 == 0 {
		ok, err := complete(ctx, e.Src, db, site, r.Range.From, r.Range.To)
		if err != nil {
			return t, err
		}
		if ok {
			cond := fmt.Sprintf("%s AND t >= toDateTime(%d) AND t < toDateTime(%d) AND key != ''", site, from, to)
			for _, f := range byEvent {
				cond += " AND event = " + q(f.Value)
			}
			for _, f := range byDim {
				cond += " AND dim = " + q(f.Name) + " AND dim_value = " + q(f.Value)
			}
			t.Source = table
			rows, _, err := e.rankedTop(ctx, clickhouse.PropLabel("key", "value"), inTable(db+"."+table), cond, limit)
			return t.add(rows, err)
		}
	}
	t.Source = "events"
	// PREWHERE by hand: ClickHouse does not move a condition of a query
	// with ARRAY JOIN to PREWHERE itself, and without it every column
	// (props too) was read for the whole range before the filters.
	cond := eventsCond(r, r.Range.From, r.Range.To) + " AND props != ''"
	return t.add(e.Src.Query(ctx, "SELECT "+clickhouse.PropLabel("m.1", "m.2")+" AS kv, countIf(name = 'pageview') AS p, count() AS n, uniqCombinedIf(visitor_id, visitor_id != 0) AS u FROM "+
		db+".events ARRAY JOIN "+clickhouse.PropPairs()+" AS m PREWHERE "+cond+" WHERE m.1 != ''"+tail))
}

// topPageDims answers, where it can, a top table of pages under one
// filter of a dimension of clickhouse.PageDims, or of one of those
// dimensions under a page's filter, with bots or without, from
// clickhouse.PageDimsTable: over a range from a UTC day's start whose
// days it holds completely (clickhouse.PageDimsComplete; its last day may
// end after the range where it holds no later events, as in topProps). ok
// is false where it cannot, and the caller asks another table.
func (e *Engine) topPageDims(ctx context.Context, r Request, t Top, dim clickhouse.Dimension, limit int) (top Top, ok bool, err error) {
	if e.Raw || len(r.Filters) != 1 || r.Range.From.Unix()%86400 != 0 || r.Range.To.Unix()%3600 != 0 {
		return t, false, nil
	}
	f := r.Filters[0]
	q := clickhouse.Quote
	// The site, range and bot verdict as for the other rollups' rows;
	// the filter is a pair of columns here.
	unfiltered := r
	unfiltered.Filters = nil
	cond := rowsCond(unfiltered, r.Range)
	var value string
	switch {
	case dim.Name == "page" && clickhouse.IsPageDim(f.Name):
		value, cond = "page", cond+" AND dim = "+q(f.Name)+" AND dim_value = "+q(f.Value)
	case f.Name == "page" && clickhouse.IsPageDim(dim.Name):
		value, cond = "dim_value", cond+" AND dim = "+q(dim.Name)+" AND page = "+q(f.Value)
	default:
		return t, false, nil
	}
	db := e.Src.DB()
	if ok, err := clickhouse.PageDimsComplete(ctx, e.Src, db, r.Site, r.Range.From, r.Range.To); err != nil || !ok {
		return t, false, err
	}
	t.Source = clickhouse.PageDimsTable
	rows, _, err := e.rankedTop(ctx, value, inTable(db+"."+clickhouse.PageDimsTable), cond, limit)
	top, err = t.add(rows, err)
	return top, true, err
}

// inTable is rankedTop's rows for one table: its rows that keys keep.
func inTable(table string) func(keys string) (string, string) {
	return func(keys string) (string, string) { return table, keys }
}

// eventsCond is the condition on the events table's rows of r's site in
// [from, to) that r's filters keep.
func eventsCond(r Request, from, to time.Time) string {
	cond := fmt.Sprintf("site = %s AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", clickhouse.Quote(r.Site), from.Unix(), to.Unix())
	for _, f := range r.Filters {
		cond += " AND " + f.Dim.Expr + " = " + clickhouse.Quote(f.Value)
	}
	if r.ExcludeBots {
		cond += " AND NOT (" + clickhouse.BotCond + ")"
	}
	return cond
}

// add appends rows of (value, pageviews, events, visitors) to t.
func (t Top) add(rows [][]string, err error) (Top, error) {
	if err != nil {
		return t, err
	}
	for _, row := range rows {
		if len(row) != 4 {
			continue
		}
		p, _ := strconv.ParseUint(row[1], 10, 64)
		n, _ := strconv.ParseUint(row[2], 10, 64)
		u, _ := strconv.ParseUint(row[3], 10, 64)
		t.Rows = append(t.Rows, Row{Value: row[0], Pageviews: p, Events: n, Visitors: u})
	}
	return t, nil
}

// topVisits answers a top table of visits (entry or exit pages): without
// filters over whole hours from VisitDimsTable (the hours whose build is
// out of date computed from the events table, see visitsFromDims),
// otherwise from the events table: per visitor, sorted by time and cut
// where a gap is 30 minutes or more (as visits), the page of each visit's
// first (last) event, least (greatest) by (time, page).
func (e *Engine) topVisits(ctx context.Context, r Request, t Top, dim clickhouse.Dimension, limit int) (Top, error) {
	db := e.Src.DB()
	q := clickhouse.Quote
	from, to := r.Range.From.Unix(), r.Range.To.Unix()
	entry := dim.Name == clickhouse.EntryPageDim
	got := map[string]uint64{}
	if e.rollups(r) && len(r.Filters) == 0 && from%3600 == 0 && to%3600 == 0 {
		t.Source = clickhouse.VisitDimsTable
		fresh, missing, err := e.dimHours(ctx, r.Site, r.Range)
		if err != nil {
			return t, err
		}
		// A piece joined to the hour before enters only in the range's
		// first hour; one joined to the hour after leaves only in its
		// last.
		edge, n, in := from, "entries", "entries_in"
		if !entry {
			edge, n, in = to-3600, "exits", "exits_out"
		}
		if len(fresh) > 0 {
			builds := make([]string, 0, len(fresh))
			for h, b := range fresh {
				builds = append(builds, fmt.Sprintf("(%d, %d)", h, b.Built))
			}
			rows, err := e.Src.Query(ctx, fmt.Sprintf("SELECT value, sum(%s) + sumIf(%s, t = toDateTime(%d)) AS n FROM %s.%s WHERE site = %s AND dim = %s AND t >= toDateTime(%d) AND t < toDateTime(%d) AND (toUnixTimestamp(t), built) IN (%s) GROUP BY value HAVING n > 0",
				n, in, edge, db, clickhouse.VisitDimsTable, q(r.Site), q(dim.Name), from, to, strings.Join(builds, ", ")))
			if err != nil {
				return t, err
			}
			addCounts(got, rows)
		}
		if len(missing) > 0 {
			t.Source = "events"
			if len(fresh) > 0 {
				t.Source = clickhouse.VisitDimsTable + "+events"
			}
			vds, err := e.missingDims(ctx, r.Site, "", "1", missing, r.Range)
			if err != nil {
				return t, err
			}
			for _, v := range vds {
				h := v.T.Unix()
				if v.Dim != dim.Name || !missing[h] {
					continue
				}
				c := v.Entries
				if h == edge {
					c += v.EntriesIn
				}
				if !entry {
					c = v.Exits
					if h == edge {
						c += v.ExitsOut
					}
				}
				if c > 0 {
					got[v.Value] += c
				}
			}
		}
	} else {
		t.Source = "events"
		page, _ := clickhouse.DimensionByName("page")
		cond := eventsCond(r, r.Range.From, r.Range.To) + " AND visitor_id != 0"
		pick := "argMin(x.4, x.2)"
		if !entry {
			pick = "argMax(x.5, x.3)"
		}
		inner := "SELECT visitor_id AS v, toStartOfMinute(ts, 'UTC') AS t, min(ts_ms) AS f, max(ts_ms) AS l, argMin(" + page.Expr + ", (ts_ms, " + page.Expr + ")) AS fp, argMax(" +
			page.Expr + ", (ts_ms, " + page.Expr + ")) AS lp FROM " + db + ".events WHERE " + cond + " GROUP BY v, t"
		sql := `SELECT value, count() AS n FROM (
	SELECT v, x.1 AS k, ` + pick + ` AS value FROM (
		SELECT v, arrayJoin(arrayMap((e, k) -> (k, e.1, e.2, e.3, e.4), s,
			arrayCumSum(arrayMap((f, pl) -> toUInt32(pl = 0 OR f - pl >= ` + strconv.Itoa(clickhouse.VisitGapMS) + `),
				arrayMap(e -> e.1, s), arrayPushFront(arrayPopBack(arrayMap(e -> e.2, s)), toUInt64(0)))))) AS x
		FROM (SELECT v, arraySort(groupArray((f, l, fp, lp))) AS s FROM (` + inner + `) GROUP BY v)
	) GROUP BY v, k) GROUP BY value`
		rows, err := e.Src.Query(ctx, sql)
		if err != nil {
			return t, err
		}
		addCounts(got, rows)
	}
	for v, n := range got {
		t.Rows = append(t.Rows, Row{Value: v, Visits: n})
	}
	slices.SortFunc(t.Rows, func(a, b Row) int {
		if c := cmp.Compare(b.Visits, a.Visits); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	if len(t.Rows) > limit {
		t.Rows = t.Rows[:limit]
	}
	return t, nil
}

// addCounts adds rows of (value, count) to got.
func addCounts(got map[string]uint64, rows [][]string) {
	for _, row := range rows {
		if len(row) == 2 {
			c, _ := strconv.ParseUint(row[1], 10, 64)
			got[row[0]] += c
		}
	}
}

// Mix is what the events of a question are made of: how many are bots'
// (clickhouse.BotCond) and how many came in each consent tier ("full",
// "aggregate"; "" for events stored before the edge set one).
type Mix struct {
	Events   uint64            `json:"events"`
	Bots     uint64            `json:"bots"`
	BotShare float64           `json:"bot_share"` // Bots / Events, 0 without events
	Tiers    map[string]uint64 `json:"tiers"`
	Source   string            `json:"source"`
}

// Mix answers r's mix over its range and filters, bots included whatever
// r.ExcludeBots says (the share is of them): without filters, over whole
// hours, from clickhouse.MixHoursTable where it holds the range
// (clickhouse.MixReady); otherwise from the events table's two narrow
// columns (and the filters'), since no other rollup keeps the tier.
func (e *Engine) Mix(ctx context.Context, r Request) (Mix, error) {
	r.ExcludeBots = false
	m := Mix{Tiers: map[string]uint64{}, Source: "events"}
	sql := "SELECT toString(tier) AS k, count(), countIf(" + clickhouse.BotCond + ") FROM " + e.Src.DB() + ".events WHERE " +
		eventsCond(r, r.Range.From, r.Range.To) + " GROUP BY k ORDER BY k"
	if !e.Raw && len(r.Filters) == 0 && r.Range.Total.Seconds >= 3600 {
		ok, err := clickhouse.MixReady(ctx, e.Src, e.Src.DB(), r.Site, r.Range.From, r.Range.To)
		if err != nil {
			return m, err
		}
		if ok {
			m.Source = clickhouse.MixHoursTable
			sql = fmt.Sprintf("SELECT tier AS k, sumMerge(events), sumMergeIf(events, bot = 1) FROM %s.%s WHERE site = %s AND t >= toDateTime(%d) AND t < toDateTime(%d) GROUP BY k ORDER BY k",
				e.Src.DB(), clickhouse.MixHoursTable, clickhouse.Quote(r.Site), r.Range.From.Unix(), r.Range.To.Unix())
		}
	}
	rows, err := e.Src.Query(ctx, sql)
	if err != nil {
		return m, err
	}
	for _, row := range rows {
		if len(row) != 3 {
			continue
		}
		n, _ := strconv.ParseUint(row[1], 10, 64)
		b, _ := strconv.ParseUint(row[2], 10, 64)
		m.Tiers[row[0]] += n
		m.Events += n
		m.Bots += b
	}
	if m.Events > 0 {
		m.BotShare = float64(m.Bots) / float64(m.Events)
	}
	return m, nil
}

// customDate reads a custom range's date (the parameter name), as
// ParseDate does.
func customDate(name, v string) (time.Time, error) {
	t, err := ParseDate(v)
	if err != nil {
		return t, fmt.Errorf("custom range: %s %w", name, err)
	}
	return t, nil
}

// ParseDate reads a date, YYYY-MM-DD, a day of the calendar, as the
// start of that UTC day. A date of that form that does not exist
// (2026-02-30) is said to be no date ("2026-02-30 is no date of the
// calendar"), not to be of the wrong form ("must be YYYY-MM-DD, not
// ...").
func ParseDate(v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	var pe *time.ParseError
	switch {
	case err == nil:
		return t, nil
	case errors.As(err, &pe) && strings.Contains(pe.Message, "out of range"):
		return t, fmt.Errorf("%s is no date of the calendar", v)
	}
	return t, fmt.Errorf("must be YYYY-MM-DD, not %q", v)
}
