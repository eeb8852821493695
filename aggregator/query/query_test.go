package query

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// startCH starts a private clickhouse-server with the schema migrated and
// returns a client.
func startCH(t *testing.T) *clickhouse.Client {
	t.Helper()
	c := newCH(t)
	if _, err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// newCH starts a private clickhouse-server and returns a client of
// database q, not created yet.
func newCH(t *testing.T) *clickhouse.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts clickhouse-server")
	}
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	dir, err := os.MkdirTemp("", "query-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := localsrv.StartClickHouse(context.Background(), filepath.Join(dir, "ch"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Kill() })
	c, err := clickhouse.New(ch.HTTPURL, "q")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Generate inserts about n events for site over the last 70 days, a tenth
// of them in the last 30 minutes, and returns them. They come in visits:
// a visitor (one in ten has no id) sends one to six events, each 10 s to
// 25 min after the previous, and sometimes comes back 30 to 40 min later
// (a new visit by the 30-minute rule). A visitor's country, browser, OS
// and device are the same in all its events, as the edge's visitor id
// (a hash of the address and the user agent) makes them; events without
// one have any.
func Generate(t testing.TB, c *clickhouse.Client, site string, n int, now time.Time, seed uint64) []event.Event {
	r := mrand.New(mrand.NewPCG(seed, 1))
	// Pages with a quote and a backslash: a top table names its values
	// back to ClickHouse (see topRollup), which must escape them.
	pages := []string{"/", "/pricing", "/blog/a", "/blog/b", "/docs", "/it's", `/a\b`}
	refs := []string{"", "https://news.ycombinator.com/item", "https://www.google.com/", "https://t.co/x"}
	countries := []string{"DE", "US", "FR", ""}
	regions := []string{"DE-BE", "US-CA", "FR-IDF", ""}
	utm := []string{"", "newsletter", "spring"}
	browsers := []string{"Chrome", "Firefox", "Safari", ""}
	oses := []string{"Windows", "macOS", "Android", "iOS"}
	devices := []string{"desktop", "mobile", "tablet"}
	channels := []string{"direct", "search", "referral", "email"}
	names := []string{event.KindPageview, event.KindPageview, event.KindPageview, "signup", "download"}
	// Event properties, as the edge stores them (event.CleanProps):
	// members of nested objects, arrays, escapes and a member that
	// looks like one inside a string. Picked by the event's index, so
	// the other fields come out as before.
	var props []string
	for _, raw := range []string{"", `{"plan":"pro"}`, `{"plan":"free","seats":3,"ok":true}`, "",
		`{"o":{"a":"x,"},"arr":[1,{"in":null}],"q":"it's \"q\" \\","s":"{\"k\":1}","":2}`, `{}`,
		`{"a=b":"c","a":"b=c","p%3D":"q"}`} { // keys that hold '=' and '%' (clickhouse.PropLabel)
		p, err := event.CleanProps([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		props = append(props, p)
	}
	var all, evs []event.Event
	for visit := 0; len(all) < n; visit++ {
		var at time.Time
		if visit%10 == 0 {
			at = now.Add(-time.Duration(r.Int64N(int64(30 * time.Minute))))
		} else {
			at = now.Add(-time.Duration(r.Int64N(int64(70 * 24 * time.Hour))))
		}
		var visitor uint64
		if r.IntN(10) != 0 {
			visitor = uint64(r.IntN(n/4)) + 1
		}
		// The profile: the visitor's own, or any for events without an id.
		pick := func(n int, shift uint64) int {
			if visitor == 0 {
				return r.IntN(n)
			}
			return int((visitor*0x9E3779B97F4A7C15)>>shift) % n
		}
		k := pick(len(countries), 8)
		for e := r.IntN(6); e >= 0 && at.Before(now); e-- {
			id, _ := event.NewID(at.UnixMilli(), rand.Reader)
			ev := event.Event{ID: id, Time: at.UnixMilli(), Site: site, Name: names[r.IntN(len(names))],
				URL: "https://" + site + pages[r.IntN(len(pages))] + "?q=" + strconv.Itoa(r.IntN(3)), Referrer: refs[r.IntN(len(refs))],
				Country: countries[k], Region: regions[k], City: "c" + strconv.Itoa(r.IntN(3)),
				UTMSource: utm[r.IntN(len(utm))], UTMMedium: utm[r.IntN(len(utm))], UTMCampaign: utm[r.IntN(len(utm))],
				Browser: browsers[pick(len(browsers), 16)], OS: oses[pick(len(oses), 24)], Device: devices[pick(len(devices), 32)],
				Channel: channels[r.IntN(len(channels))], VisitorID: visitor, Props: props[len(all)%len(props)],
				BotScore: []uint8{0, 0, 90, 0, 20, 0, 60}[len(all)%7], Tier: []string{event.TierFull, "", event.TierAggregate}[len(all)%3],
				MailOpen: []string{"", "person", "", "gmail", "apple", "", "person", "yahoo", "outlook", "feed", ""}[len(all)%11], Signature: []string{"", "verified", "unsigned", "unverified", "verified"}[len(all)%5]}
			evs = append(evs, ev)
			all = append(all, ev)
			gap := 10*time.Second + time.Duration(r.Int64N(int64(25*time.Minute)))
			if r.IntN(8) == 0 {
				gap = 30*time.Minute + time.Duration(r.Int64N(int64(10*time.Minute)))
			}
			at = at.Add(gap)
		}
		if len(evs) >= 50000 {
			if err := c.InsertEvents(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	if err := c.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return all
}

// goVisits computes the visits of evs (one site) in [from, to) whose
// country is country (any if ""), written apart from the engine's SQL:
// per visitor, events sorted by time, a new visit at a gap of 30 minutes
// or more.
func goVisits(evs []event.Event, from, to time.Time, country string) VisitStats {
	vs, _, _ := goVisitsOf(evs, from, to, func(e event.Event) bool { return country == "" || e.Country == country })
	return vs
}

// goPath is path(url) of an event.
func goPath(e event.Event) string {
	u, _ := url.Parse(e.URL)
	return u.Path
}

// goFilter is the Go predicate of a filter of TestAgainstRawEvents, and
// whether there is one.
func goFilter(f url.Values) (func(event.Event) bool, bool) {
	switch {
	case len(f) == 2 && f.Has("country") && f.Has("device"):
		return func(e event.Event) bool { return e.Country == f.Get("country") && e.Device == f.Get("device") }, true
	case len(f) == 2 && f.Has("country") && f.Get("bots") == "exclude":
		return func(e event.Event) bool { return e.Country == f.Get("country") && e.BotScore < event.BotScoreMin }, true
	case len(f) > 1:
		return nil, false
	case f.Has("country"):
		return func(e event.Event) bool { return e.Country == f.Get("country") }, true
	case f.Has("page"):
		return func(e event.Event) bool { return goPath(e) == f.Get("page") }, true
	case f.Has("mail_open"):
		return func(e event.Event) bool { return e.MailOpen == f.Get("mail_open") }, true
	case len(f) == 0:
		return func(event.Event) bool { return true }, true
	case f.Get("bots") == "exclude":
		return func(e event.Event) bool { return e.BotScore < event.BotScoreMin }, true
	}
	return nil, false
}

// goVisitsOf computes the visits of the events of evs in [from, to) that
// keep keeps, with the number of visits entering and leaving at each
// page (the path of a visit's first and last event, least and greatest
// by time, then path).
func goVisitsOf(evs []event.Event, from, to time.Time, keep func(event.Event) bool) (VisitStats, map[string]uint64, map[string]uint64) {
	by := map[uint64][]event.Event{}
	for _, e := range evs {
		if e.VisitorID != 0 && e.Time >= from.UnixMilli() && e.Time < to.UnixMilli() && keep(e) {
			by[e.VisitorID] = append(by[e.VisitorID], e)
		}
	}
	var vs VisitStats
	entries, exits := map[string]uint64{}, map[string]uint64{}
	for _, l := range by {
		slices.SortFunc(l, func(a, b event.Event) int {
			return cmp.Or(cmp.Compare(a.Time, b.Time), strings.Compare(goPath(a), goPath(b)))
		})
		var first, last int64
		var n, pv uint64
		var entry, exit string
		end := func() {
			vs.Visits++
			vs.DurationMS += uint64(last - first)
			vs.Pageviews += pv
			if n == 1 && pv == 1 {
				vs.Bounces++
			}
			entries[entry]++
			exits[exit]++
		}
		for i, e := range l {
			if i > 0 && e.Time-last >= 30*60*1000 {
				end()
				n, pv = 0, 0
			}
			if n == 0 {
				first = e.Time
				entry = goPath(e)
			}
			last = e.Time
			exit = goPath(e)
			n++
			if e.Name == event.KindPageview {
				pv++
			}
		}
		end()
	}
	return vs, entries, exits
}

// goTop is the first limit rows of counts, most first, then by value.
func goTop(counts map[string]uint64, limit int) []Row {
	var rows []Row
	for v, n := range counts {
		rows = append(rows, Row{Value: v, Visits: n})
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmp.Or(cmp.Compare(b.Visits, a.Visits), strings.Compare(a.Value, b.Value)) })
	return rows[:min(limit, len(rows))]
}

// goProps is the members of an event's props that PropsTable counts
// (see clickhouse.PropPairs), written apart from its pattern: every
// member of every object, however nested, whose value is a scalar (its
// text, a string's decoded) and whose key is not "".
func goProps(props string) [][2]string {
	d := json.NewDecoder(strings.NewReader(props))
	d.UseNumber()
	var out [][2]string
	type frame struct {
		obj     bool
		wantKey bool
		key     string
	}
	var stack []*frame
	// valueDone marks the value of the enclosing object's member read.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return out
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].obj && stack[top].wantKey {
			if k, ok := tok.(string); ok {
				stack[top].key, stack[top].wantKey = k, false
				continue
			}
			stack = stack[:top] // '}'
			valueDone()
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{obj: true, wantKey: true})
			case '[':
				stack = append(stack, &frame{})
			case ']':
				stack = stack[:top]
				valueDone()
			}
			continue
		case string:
			if top >= 0 && stack[top].obj && stack[top].key != "" {
				out = append(out, [2]string{stack[top].key, v})
			}
		default:
			text := "null"
			switch v := v.(type) {
			case json.Number:
				text = v.String()
			case bool:
				text = strconv.FormatBool(v)
			}
			if top >= 0 && stack[top].obj && stack[top].key != "" {
				out = append(out, [2]string{stack[top].key, text})
			}
		}
		valueDone()
	}
}

// goTopProps is the top table of event properties of the events of evs in
// [from, to) that keep keeps, by events, as Engine.Top answers it.
func goTopProps(evs []event.Event, from, to time.Time, keep func(event.Event) bool, limit int) []Row {
	rows := map[string]*Row{}
	visitors := map[string]map[uint64]bool{}
	for _, e := range evs {
		if e.Time < from.UnixMilli() || e.Time >= to.UnixMilli() || !keep(e) {
			continue
		}
		for _, m := range goProps(e.Props) {
			kv := strings.NewReplacer("%", "%25", "=", "%3D").Replace(m[0]) + "=" + m[1]
			if rows[kv] == nil {
				rows[kv], visitors[kv] = &Row{Value: kv}, map[uint64]bool{}
			}
			rows[kv].Events++
			if e.Name == event.KindPageview {
				rows[kv].Pageviews++
			}
			if e.VisitorID != 0 {
				visitors[kv][e.VisitorID] = true
			}
		}
	}
	var out []Row
	for kv, r := range rows {
		r.Visitors = uint64(len(visitors[kv]))
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Row) int { return cmp.Or(cmp.Compare(b.Events, a.Events), strings.Compare(a.Value, b.Value)) })
	return out[:min(limit, len(out))]
}

func one(t *testing.T, c *clickhouse.Client, sql string) uint64 {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%s: %v %v", sql, rows, err)
	}
	n, _ := strconv.ParseUint(rows[0][0], 10, 64)
	return n
}

// Every number and table the page shows, read from the rollups, equals the
// same question asked of the raw events table in SQL written here, for
// every range, without and with filters (one, and combined).
func TestAgainstRawEvents(t *testing.T) {
	c := startCH(t)
	now := time.Now().UTC()
	demo := Generate(t, c, "demo.example", 20000, now, 1)
	Generate(t, c, "other.example", 3000, now, 2) // must not leak into demo's numbers
	waitRollups(t, c, "q")
	e := &Engine{Src: c}
	ctx := context.Background()
	// The lease holder's build of the visits per dimension value and
	// the entry and exit pages: the settled hours read it, the others
	// are computed from the events table.
	if n, err := c.BuildVisitDims(ctx, now.Add(-clickhouse.SegmentSeconds*time.Second)); err != nil || n == 0 {
		t.Fatalf("BuildVisitDims: %d hours, %v", n, err)
	}
	filters := []url.Values{
		{},
		{"country": {"DE"}},
		{"page": {"/pricing"}},
		{"country": {"US"}, "utm_source": {"newsletter"}},
		{"country": {"DE"}, "device": {"mobile"}},
		{"device": {"mobile"}, "browser": {"Chrome"}, "os": {"Android"}},
		// Every part of the profile (its LIKE prefix once matched none).
		{"country": {"DE"}, "device": {"mobile"}, "browser": {"Chrome"}, "os": {"Android"}},
		{"event": {"signup"}, "browser": {"Chrome"}},
		{"channel": {"search"}},
		{"referrer": {"www.google.com"}, "page": {"/pricing"}},
		// A source's or an event's filter alone: their top pages, and
		// the other top tables, as they were (rollup_page_dims for
		// the pages).
		{"referrer": {"www.google.com"}},
		{"event": {"signup"}},
		{"bots": {"exclude"}},
		{"bots": {"exclude"}, "country": {"DE"}, "channel": {"search"}},
		// Without bots under filters of a visitor's profile: visits from
		// the profile rows with the verdict.
		{"bots": {"exclude"}, "country": {"DE"}},
		{"bots": {"exclude"}, "device": {"mobile"}, "os": {"Android"}},
		{"bots": {"exclude"}, "device": {"mobile"}},
		{"bots": {"exclude"}, "page": {"/pricing"}},
		// Email opens and signatures: from their own rollups alone or
		// together, with bots or without; with another dimension's
		// filter, from the events table.
		{"mail_open": {"gmail"}},
		{"mail_open": {"person"}, "signature": {"unsigned"}},
		{"bots": {"exclude"}, "signature": {""}},
		{"mail_open": {"apple"}, "country": {"DE"}},
	}
	exprs := map[string]string{}
	for _, d := range clickhouse.Dimensions {
		exprs[d.Name] = d.Expr
	}
	for _, rng := range Ranges {
		for _, f := range filters {
			q := url.Values{"site": {"demo.example"}, "range": {rng}}
			if rng == "custom" {
				q.Set("from", now.AddDate(0, 0, -40).Format(time.DateOnly))
				q.Set("to", now.AddDate(0, 0, -10).Format(time.DateOnly))
			}
			for k, v := range f {
				q[k] = v
			}
			req, err := ParseRequest(q, now)
			if err != nil {
				t.Fatal(err)
			}
			name := rng + " " + f.Encode()
			// bots=exclude leaves out the events the edge scored 50 or
			// more; the rest of f are filters.
			bots := f.Get("bots") == "exclude"
			// Filters, all of them of the email opens and signatures
			// (which their own rollups answer), or some.
			var opensOnly, someOpens bool
			for k := range f {
				if clickhouse.IsOpenDim(k) {
					someOpens = true
				}
			}
			if someOpens {
				opensOnly = !slices.ContainsFunc(slices.Collect(maps.Keys(f)), func(k string) bool { return k != "bots" && !clickhouse.IsOpenDim(k) })
			}
			opensTable, _ := clickhouse.OpensTable(req.Range.Total)
			// The raw question, written independently of the engine.
			cond := func(from, to time.Time) string {
				s := fmt.Sprintf("site = 'demo.example' AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", from.Unix(), to.Unix())
				for k := range f {
					if k == "bots" {
						s += " AND bot_score < 50"
						continue
					}
					s += fmt.Sprintf(" AND %s = %s", exprs[k], clickhouse.Quote(f.Get(k)))
				}
				return s
			}
			raw := func(from, to time.Time, what string) float64 {
				return float64(one(t, c, "SELECT "+what+" FROM q.events WHERE "+cond(from, to)))
			}
			st, err := e.Stats(ctx, req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := map[string][2]float64{
				"pageviews":     {raw(req.Range.From, req.Range.To, "countIf(name = 'pageview')"), raw(req.Prev.From, req.Prev.To, "countIf(name = 'pageview')")},
				"events":        {raw(req.Range.From, req.Range.To, "count()"), raw(req.Prev.From, req.Prev.To, "count()")},
				"custom_events": {raw(req.Range.From, req.Range.To, "countIf(name != 'pageview')"), raw(req.Prev.From, req.Prev.To, "countIf(name != 'pageview')")},
				"visitors":      {raw(req.Range.From, req.Range.To, "uniqExactIf(visitor_id, visitor_id != 0)"), raw(req.Prev.From, req.Prev.To, "uniqExactIf(visitor_id, visitor_id != 0)")},
			}
			// Visits: computed here in Go where the filter is one a Go
			// event can be checked against; otherwise by the engine
			// over the raw events table.
			keep, inGo := goFilter(f)
			var entries, exits map[string]uint64
			if inGo {
				var cur, prev VisitStats
				cur, entries, exits = goVisitsOf(demo, req.Range.From, req.Range.To, keep)
				prev, _, _ = goVisitsOf(demo, req.Prev.From, req.Prev.To, keep)
				addVisits(want, cur, prev)
			} else {
				cur, _, err := (&Engine{Src: c, Raw: true}).visits(ctx, req, req.Range)
				if err != nil {
					t.Fatal(err)
				}
				prev, _, err := (&Engine{Src: c, Raw: true}).visits(ctx, req, req.Prev)
				if err != nil {
					t.Fatal(err)
				}
				addVisits(want, cur, prev)
			}
			checked := 0
			for _, m := range st.Metrics {
				w, ok := want[m.Name]
				if !ok {
					if m.Collected || m.Value != nil {
						t.Errorf("%s: %s shows a value but is not collected", name, m.Name)
					}
					continue
				}
				checked++
				if *m.Value != w[0] || *m.Previous != w[1] {
					t.Errorf("%s: %s = %v (previous %v), raw events say %v (%v) [source %s]", name, m.Name, *m.Value, *m.Previous, w[0], w[1], st.Source)
				}
				if w[1] != 0 && (m.Change == nil || abs(*m.Change-(w[0]-w[1])/w[1]) > 1e-3) {
					t.Errorf("%s: %s change %v", name, m.Name, m.Change)
				}
			}
			visitsRollup := st.VisitsSource == clickhouse.VisitsTable || st.VisitsSource == clickhouse.VisitHoursTable
			// The visit hours are built a segment after their end
			// (BuildVisitDims above): in the first hour and a half
			// after midnight UTC no hour of today is, and its visits
			// are read from the events alone. Yesterday's last hour is
			// not settled in the first half hour after midnight (it
			// needs the segment after it).
			settled := now.Add(-clickhouse.SegmentSeconds * time.Second).Truncate(time.Hour)
			someSettled := !req.Range.From.Add(time.Hour).After(settled)
			settledRange := !req.Range.To.After(settled)
			visitDims := func(source string) bool {
				return strings.HasPrefix(source, clickhouse.VisitDimsTable) || !someSettled && source == "events"
			}
			// Without bots and filters, over whole hours: the rollup
			// of the events that are not bots' and the visits of
			// those in VisitDimsTable.
			humans := bots && len(f) == 1 && rng != "realtime"
			if human, _ := clickhouse.HumanTable(req.Range.Total); humans && (st.Source != human || !visitDims(st.VisitsSource)) {
				t.Errorf("%s: read %s+%s, want %s+%s", name, st.Source, st.VisitsSource, human, clickhouse.VisitDimsTable)
			}
			// Without bots: only what keeps each event's verdict.
			keepsVerdict := strings.HasPrefix(st.Source, clickhouse.BotDimDaysTable) || strings.HasPrefix(st.Source, clickhouse.BotDimHoursTable) ||
				st.Source == clickhouse.OpensHoursTable || st.Source == clickhouse.OpensDaysTable
			// Under filters of the email opens and signatures alone,
			// over whole hours: their rollup of the totals' grain, the
			// visits from the events (no visits rollup holds them);
			// under others too, the events table.
			if opensOnly && rng != "realtime" && (st.Source != opensTable || st.VisitsSource != "events") {
				t.Errorf("%s: read %s+%s, want %s+events", name, st.Source, st.VisitsSource, opensTable)
			}
			if someOpens && (!opensOnly || rng == "realtime") && (st.Source != "events" || st.VisitsSource != "events") {
				t.Errorf("%s: read %s+%s, want events", name, st.Source, st.VisitsSource)
			}
			if bots && !humans && st.Source != "events" && st.Source != minuteWant(f, "") && !keepsVerdict {
				t.Errorf("%s: read %s, which counts bots", name, st.Source)
			}
			// Without bots under one filter of a visitor's profile: the
			// per-dimension rollups with the verdict, and the visits of
			// the profile rows with it.
			profile := (&Engine{}).profileFilters(req, req.Range) != nil
			verdictDims := bots && len(f) == 2 && profile
			if verdictDims && (!keepsVerdict || !visitDims(st.VisitsSource)) {
				t.Errorf("%s: read %s+%s, want %s+%s", name, st.Source, st.VisitsSource, clickhouse.BotDimDaysTable, clickhouse.VisitDimsTable)
			}
			if bots {
				// The sources checked above and below are those of
				// questions with bots.
			} else if len(f) == 0 && (st.Source == "events" || rng != "realtime" && !visitsRollup) || len(f) == 1 && !someOpens && rng != "realtime" && !strings.HasPrefix(st.Source, "rollup_dim") {
				t.Errorf("%s: read %s, want a rollup", name, st.Source)
			}
			// The whole days of a month under a filter: from the
			// per-day rollup (every day of this database is in it).
			if !bots && len(f) == 1 && !someOpens && (rng == "30d" || rng == "custom") && st.Source != clickhouse.BotDimDaysTable {
				t.Errorf("%s: read %s, want %s", name, st.Source, clickhouse.BotDimDaysTable)
			}
			// A range of settled hours reads the visits of one filter
			// from the rollup alone (see settledRange above).
			// Filters of a visitor's profile add up its rows in the
			// same table.
			if profile && rng != "realtime" && !visitDims(st.VisitsSource) {
				t.Errorf("%s: visits read %s, want %s", name, st.VisitsSource, clickhouse.VisitDimsTable)
			}
			if (!bots && len(f) == 1 && !someOpens || profile || humans) && (rng == "yesterday" || rng == "custom") && settledRange && st.VisitsSource != clickhouse.VisitDimsTable {
				t.Errorf("%s: visits read %s, want %s", name, st.VisitsSource, clickhouse.VisitDimsTable)
			}
			// Filters that a per-minute rollup holds all of: from it
			// (their cut-off is 0 here, so they hold every range).
			if w := minuteWant(f, ""); w != "" && !humans && !verdictDims && (st.Source != w || !profile && st.VisitsSource != w) {
				t.Errorf("%s: read %s+%s, want %s", name, st.Source, st.VisitsSource, w)
			}
			if checked != 8 {
				t.Errorf("%s: %d numbers checked", name, checked)
			}
			if rng == "7d" && len(f) == 0 && want["events"][0] == 0 {
				t.Fatal("no data in 7d: the data set is wrong")
			}
			// The series adds up to the total, bucket by bucket.
			var sum uint64
			for _, p := range st.Series {
				n := one(t, c, fmt.Sprintf("SELECT count() FROM q.events WHERE %s", cond(time.Unix(p.T, 0), time.Unix(p.T+req.Range.Grain.Seconds, 0))))
				if p.Events != n {
					t.Fatalf("%s: bucket %d: %d events, raw %d", name, p.T, p.Events, n)
				}
				sum += p.Events
			}
			if float64(sum) != want["events"][0] {
				t.Errorf("%s: series sums to %d, want %v", name, sum, want["events"][0])
			}
			// Every top table.
			// The quality tile's mix, bots included whatever f says:
			// without filters, over whole hours, from its own rollup.
			mix, err := e.Mix(ctx, req)
			if err != nil {
				t.Fatalf("%s mix: %v", name, err)
			}
			mixCond := fmt.Sprintf("site = 'demo.example' AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", req.Range.From.Unix(), req.Range.To.Unix())
			for k := range f {
				if k != "bots" {
					mixCond += fmt.Sprintf(" AND %s = %s", exprs[k], clickhouse.Quote(f.Get(k)))
				}
			}
			mixRows, err := c.Query(ctx, "SELECT toString(tier) AS k, count(), countIf(bot_score >= 50) FROM q.events WHERE "+mixCond+" GROUP BY k ORDER BY k")
			if err != nil {
				t.Fatal(err)
			}
			var mixGot []string
			for k, n := range mix.Tiers {
				mixGot = append(mixGot, fmt.Sprintf("%s %d", k, n))
			}
			slices.Sort(mixGot)
			var mixWant []string
			var mixBots uint64
			for _, row := range mixRows {
				mixWant = append(mixWant, row[0]+" "+row[1])
				b, _ := strconv.ParseUint(row[2], 10, 64)
				mixBots += b
			}
			if fmt.Sprint(mixGot) != fmt.Sprint(mixWant) || mix.Bots != mixBots || mix.Events != uint64(raw(req.Range.From, req.Range.To, "count()")) && !bots {
				t.Errorf("%s mix: tiers %v, bots %d of %d [source %s]; the events say tiers %v, bots %d", name, mixGot, mix.Bots, mix.Events, mix.Source, mixWant, mixBots)
			}
			if wantSrc := clickhouse.MixHoursTable; len(f)-len(f["bots"]) == 0 && rng != "realtime" && mix.Source != wantSrc || len(f)-len(f["bots"]) > 0 && mix.Source != "events" {
				t.Errorf("%s mix: read %s", name, mix.Source)
			}
			for _, d := range clickhouse.Dimensions {
				top, err := e.Top(ctx, req, d.Name, 5)
				if err != nil {
					t.Fatalf("%s top %s: %v", name, d.Name, err)
				}
				if !d.Collected {
					if top.Collected || len(top.Rows) != 0 {
						t.Errorf("%s: %s is not collected but shows rows", name, d.Name)
					}
					continue
				}
				if d.Name == clickhouse.PropsDim {
					// Event properties, from Go's reading of the
					// props, or under filters Go does not model,
					// the same question of the events table.
					w := goTopProps(demo, req.Range.From, req.Range.To, func(event.Event) bool { return true }, 5)
					if inGo {
						w = goTopProps(demo, req.Range.From, req.Range.To, keep, 5)
					} else {
						raw, err := (&Engine{Src: c, Raw: true}).Top(ctx, req, d.Name, 5)
						if err != nil {
							t.Fatal(err)
						}
						w = raw.Rows
					}
					if fmt.Sprint(top.Rows) != fmt.Sprint(w) {
						t.Errorf("%s top %s: %v, want %v [source %s]", name, d.Name, top.Rows, w, top.Source)
					}
					if bots && top.Source != "events" {
						t.Errorf("%s top %s: read %s, which counts bots", name, d.Name, top.Source)
					}
					if len(f) == 0 && rng != "realtime" && top.Source != clickhouse.PropsTable {
						t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, clickhouse.PropsTable)
					}
					// One filter but the event name's, with or without
					// that: PropsDimsTable.
					if others := len(f) - len(f["event"]); !bots && others == 1 && !someOpens && len(f) <= 2 && rng != "realtime" && top.Source != clickhouse.PropsDimsTable {
						t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, clickhouse.PropsDimsTable)
					}
					continue
				}
				if d.Visit {
					// Entry and exit pages, from Go's visits.
					if !inGo {
						continue
					}
					w := goTop(entries, 5)
					if d.Name == clickhouse.ExitPageDim {
						w = goTop(exits, 5)
					}
					if fmt.Sprint(top.Rows) != fmt.Sprint(w) {
						t.Errorf("%s top %s: %v, Go's visits say %v [source %s]", name, d.Name, top.Rows, w, top.Source)
					}
					if len(f) == 0 && (rng == "yesterday" || rng == "custom") && settledRange && top.Source != clickhouse.VisitDimsTable {
						t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, clickhouse.VisitDimsTable)
					}
					continue
				}
				// A top table without filters or under its own, over
				// whole hours: from the per-dimension rollups with the
				// bot verdict, bots or not. Under another dimension's
				// filter, both in a per-minute rollup: from it.
				filters := len(f)
				if bots {
					filters--
				}
				if pageDimsWant(f, d.Name, req.Range) {
					if top.Source != clickhouse.PageDimsTable {
						t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, clickhouse.PageDimsTable)
					}
				} else if clickhouse.IsOpenDim(d.Name) {
					// The email opens and signatures: from their own
					// rollups under no filter or theirs alone, else
					// from the events table.
					if w := opensTable; rng == "realtime" || filters > 0 && !opensOnly {
						if top.Source != "events" {
							t.Errorf("%s top %s: read %s, want events", name, d.Name, top.Source)
						}
					} else if top.Source != w {
						t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, w)
					}
				} else if someOpens {
					// Another dimension under their filter: no
					// rollup holds both.
					if top.Source != "events" {
						t.Errorf("%s top %s: read %s, want events", name, d.Name, top.Source)
					}
				} else if rng != "realtime" && (filters == 0 || filters == 1 && f.Has(d.Name)) {
					if both := clickhouse.BotDimDaysTable + "+" + clickhouse.BotDimHoursTable; !slices.Contains([]string{clickhouse.BotDimHoursTable, clickhouse.BotDimDaysTable, both}, top.Source) {
						t.Errorf("%s top %s: read %s, want %s or either", name, d.Name, top.Source, both)
					}
				} else if w := minuteWant(f, d.Name); w != "" && top.Source != w || bots && w == "" && top.Source != "events" {
					t.Errorf("%s top %s: read %s, want %s", name, d.Name, top.Source, w)
				}
				rows, err := c.Query(ctx, "SELECT "+d.Expr+" AS v, countIf(name = 'pageview'), count() AS n, uniqExactIf(visitor_id, visitor_id != 0) FROM q.events WHERE "+
					cond(req.Range.From, req.Range.To)+" GROUP BY v ORDER BY n DESC, v LIMIT 5")
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != len(top.Rows) {
					t.Errorf("%s top %s: %d rows, raw %d", name, d.Name, len(top.Rows), len(rows))
					continue
				}
				for i, r := range rows {
					if got := top.Rows[i]; got.Value != r[0] || strconv.FormatUint(got.Pageviews, 10) != r[1] || strconv.FormatUint(got.Events, 10) != r[2] || strconv.FormatUint(got.Visitors, 10) != r[3] {
						t.Errorf("%s top %s row %d: %+v, raw %q", name, d.Name, i, got, r)
					}
				}
			}
		}
	}
}

// pageDimsWant reports whether the top table of dimension dim under
// filters f over rng must read clickhouse.PageDimsTable: the pages under
// one filter of clickhouse.PageDims, or one of those under the page's,
// with bots or without, over whole days.
func pageDimsWant(f url.Values, dim string, rng Range) bool {
	f = maps.Clone(f)
	delete(f, "bots")
	if len(f) != 1 || rng.From.Unix()%86400 != 0 || rng.To.Unix()%3600 != 0 {
		return false
	}
	for k := range f {
		return dim == "page" && clickhouse.IsPageDim(k) || k == "page" && clickhouse.IsPageDim(dim)
	}
	return false
}

// minuteWant is the per-minute rollup that must answer a question under
// filters f, with the top table of dimension dim ("" for the tiles): none
// where the one-dimension rollups answer it (no filter; one filter and
// the tiles or that dimension's own top table, with bots) or a dimension
// is named that the per-minute rollups lack; rollup_minute_audience where a
// filter is of the visitor's dimensions (which lead its key), otherwise
// rollup_minute_sources.
func minuteWant(f url.Values, dim string) string {
	bots := f.Has("bots")
	f = maps.Clone(f)
	delete(f, "bots")
	if !bots && (len(f) == 0 || len(f) == 1 && (dim == "" || f.Has(dim))) {
		return ""
	}
	audience := []string{"country", "device", "browser", "os", "region", "city"}
	held := slices.Concat(audience, []string{"event", "page", "channel", "referrer", "utm_source", "utm_medium", "utm_campaign"})
	if dim != "" && !slices.Contains(held, dim) {
		return ""
	}
	byAudience := false
	for k := range f {
		if !slices.Contains(held, k) {
			return ""
		}
		byAudience = byAudience || slices.Contains(audience, k)
	}
	if byAudience {
		return clickhouse.MinuteAudienceTable
	}
	return clickhouse.MinuteSourcesTable
}

func addVisits(want map[string][2]float64, cur, prev VisitStats) {
	want["visits"] = [2]float64{float64(cur.Visits), float64(prev.Visits)}
	want["views_per_visit"] = [2]float64{cur.ratio(cur.Pageviews), prev.ratio(prev.Pageviews)}
	want["bounce_rate"] = [2]float64{cur.ratio(cur.Bounces), prev.ratio(prev.Bounces)}
	want["visit_duration"] = [2]float64{cur.duration(), prev.duration()}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// waitRollups waits until the materialized views have rolled up every
// stored event: ClickHouse makes an insert's rows visible before its
// views have written theirs.
func waitRollups(t testing.TB, c *clickhouse.Client, db string) {
	var qs []string
	for _, g := range clickhouse.Grains {
		qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+g.Table)
	}
	for _, d := range clickhouse.Dimensions {
		if d.Filters() && d.Since <= clickhouse.VersionRollups {
			for _, table := range []string{clickhouse.BotDimHoursTable, clickhouse.BotDimDaysTable} {
				qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+table+" WHERE dim = "+clickhouse.Quote(d.Name))
			}
		}
	}
	qs = append(qs, "SELECT sumMerge(events) + (SELECT count() FROM "+db+".events WHERE visitor_id = 0) FROM "+db+"."+clickhouse.VisitsTable)
	qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+clickhouse.PropsTable+" WHERE key = ''")
	for _, table := range []string{clickhouse.HumanHoursTable, clickhouse.HumanDaysTable} {
		qs = append(qs, "SELECT sumMerge(events) + (SELECT count() FROM "+db+".events WHERE "+clickhouse.BotCond+") FROM "+db+"."+table)
	}
	qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+clickhouse.PropsDimsTable+" WHERE dim = ''")
	qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+clickhouse.PageDimsTable+" WHERE dim = 'event'")
	for _, table := range []string{clickhouse.MinuteAudienceTable, clickhouse.MinuteSourcesTable, clickhouse.MixHoursTable, clickhouse.OpensHoursTable, clickhouse.OpensDaysTable} {
		qs = append(qs, "SELECT sumMerge(events) FROM "+db+"."+table)
	}
	want := "SELECT count() FROM " + db + ".events"
	for i := 0; ; i++ {
		rows, _ := c.Query(context.Background(), want)
		n := rows[0][0]
		done := true
		for _, q := range qs {
			if rows, _ := c.Query(context.Background(), q); len(rows) != 1 || rows[0][0] != n {
				done = false
			}
		}
		if done {
			return
		}
		if i == 3000 {
			t.Fatal("the rollups never caught up with the events table")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Visits from the visit hours equal visits counted in Go from the events,
// for every range of whole hours: computed from the segments before any
// hour is stored, from stored hours after BuildVisitHours, with late
// events in stored hours (which no longer match their count and are
// computed again), and once those are rebuilt. The data has visits across
// hours, midnight and inserts (one visit's events in three batches).
func TestVisitHours(t *testing.T) {
	c := startCH(t)
	ctx := context.Background()
	now := time.Now().UTC()
	demo := Generate(t, c, "demo.example", 20000, now, 3)
	Generate(t, c, "other.example", 2000, now, 4)
	day := now.Truncate(24*time.Hour).AddDate(0, 0, -3)
	mk := func(at time.Time, name string, visitor uint64) event.Event {
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		return event.Event{ID: id, Time: at.UnixMilli(), Site: "demo.example", Name: name, URL: "https://demo.example/x", VisitorID: visitor}
	}
	// One visit from 23:50 to 00:40 over midnight, in three inserts; a
	// bounce at 00:59:59 whose next event is 30 minutes later exactly (a
	// new visit); a visit whose 29-minute gaps span three hours.
	v := uint64(1 << 40)
	crafted := [][]event.Event{
		{mk(day.Add(-10*time.Minute), event.KindPageview, v), mk(day.Add(-time.Minute), "signup", v)},
		{mk(day.Add(10*time.Minute), event.KindPageview, v)},
		{mk(day.Add(40*time.Minute), event.KindPageview, v),
			mk(day.Add(time.Hour-time.Second), event.KindPageview, v+1), mk(day.Add(90*time.Minute-time.Second), event.KindPageview, v+1),
			mk(day.Add(5*time.Hour), event.KindPageview, v+2), mk(day.Add(5*time.Hour+29*time.Minute), event.KindPageview, v+2),
			mk(day.Add(5*time.Hour+58*time.Minute), event.KindPageview, v+2), mk(day.Add(6*time.Hour+27*time.Minute), event.KindPageview, v+2)},
	}
	for _, b := range crafted {
		if err := c.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
		demo = append(demo, b...)
	}
	waitRollups(t, c, "q")
	e := &Engine{Src: c}
	check := func(phase string, wantSource string) {
		t.Helper()
		for _, q := range []url.Values{
			{"range": {"today"}}, {"range": {"yesterday"}}, {"range": {"7d"}}, {"range": {"30d"}}, {"range": {"month"}},
			{"range": {"custom"}, "from": {day.Format(time.DateOnly)}, "to": {day.Format(time.DateOnly)}},
			{"range": {"custom"}, "from": {day.AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {day.AddDate(0, 0, -1).Format(time.DateOnly)}},
			{"range": {"custom"}, "from": {now.AddDate(0, 0, -60).Format(time.DateOnly)}, "to": {now.AddDate(0, 0, -31).Format(time.DateOnly)}},
		} {
			q.Set("site", "demo.example")
			req, err := ParseRequest(q, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, rng := range []Range{req.Range, req.Prev} {
				got, source, err := e.visits(ctx, req, rng)
				if err != nil {
					t.Fatalf("%s %s: %v", phase, q.Encode(), err)
				}
				want := goVisits(demo, rng.From, rng.To, "")
				if got != want {
					t.Errorf("%s %s [%v, %v): %+v from %s, events say %+v", phase, q.Encode(), rng.From, rng.To, got, source, want)
				}
				if rng.Name != "today" && rng.Name != "previous" && wantSource != "" && !strings.HasSuffix(source, "."+wantSource) {
					t.Errorf("%s %s: read %s, want %s", phase, q.Encode(), source, wantSource)
				}
			}
		}
	}
	check("from the segments", clickhouse.VisitsTable)
	settled := now.Add(-clickhouse.SegmentSeconds * time.Second)
	n, err := c.BuildVisitHours(ctx, settled)
	if err != nil || n == 0 {
		t.Fatalf("built %d hours: %v", n, err)
	}
	check("from stored hours", "")
	for _, q := range []url.Values{{"range": {"yesterday"}}, {"range": {"custom"}, "from": {day.Format(time.DateOnly)}, "to": {day.Format(time.DateOnly)}}} {
		q.Set("site", "demo.example")
		req, _ := ParseRequest(q, now)
		if req.Range.To.After(settled.Truncate(time.Hour)) {
			// Yesterday's last hour is not settled yet in the first
			// half hour after midnight (it needs the segment after it):
			// that hour is read from the segments.
			continue
		}
		if _, source, _ := e.visits(ctx, req, req.Range); !strings.HasSuffix(source, "."+clickhouse.VisitHoursTable) {
			t.Errorf("%s after the build: read %s, want only %s", q.Encode(), source, clickhouse.VisitHoursTable)
		}
	}
	if n, err := c.BuildVisitHours(ctx, settled); err != nil || n != 0 {
		t.Fatalf("a second build built %d hours: %v", n, err)
	}
	// Late events: one joins the midnight visit, one starts a bounce.
	late := []event.Event{mk(day.Add(-25*time.Minute), event.KindPageview, v), mk(day.Add(3*time.Hour), event.KindPageview, v+3)}
	if err := c.InsertEvents(ctx, late); err != nil {
		t.Fatal(err)
	}
	demo = append(demo, late...)
	waitRollups(t, c, "q")
	check("with late events in stored hours", "")
	if n, err := c.BuildVisitHours(ctx, settled); err != nil || n == 0 || n > 10 {
		t.Fatalf("the rebuild after late events built %d hours: %v", n, err)
	}
	check("rebuilt", "")
}

// emptySource answers every query with no rows, counting the queries; it
// is safe for concurrent use.
type emptySource struct {
	mu sync.Mutex
	n  int
}

func (s *emptySource) Query(context.Context, string) ([][]string, error) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return nil, nil
}
func (s *emptySource) DB() string { return "db" }

// Stats asks its parts at once; with -race this checks they share
// nothing unguarded. A source with no rows gives zeros and a full series.
func TestStatsParts(t *testing.T) {
	src := &emptySource{}
	e := &Engine{Src: src}
	for _, rng := range Ranges {
		q := url.Values{"site": {"s"}, "range": {rng}}
		if rng == "custom" {
			q.Set("from", "2026-01-01")
			q.Set("to", "2026-01-31")
		}
		req, err := ParseRequest(q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.Stats(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Metrics) != 8 || len(st.Series) == 0 || *st.Metrics[1].Value != 0 || st.Pending != "" {
			t.Fatalf("%s: %+v", rng, st)
		}
	}
	if src.n == 0 {
		t.Fatal("no queries")
	}
}

// An install with history migrated to the per-day dimension rollup: its
// totals and top tables under a filter (and top tables without) equal
// the raw events' over a range with partial edge days, read from the
// hours alone before the backfill has merged the days (which are not
// fresh yet), and from the days with the edges from the hours after it.
func TestDimDaysAgainstRawEvents(t *testing.T) {
	c := newCH(t)
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, clickhouse.VersionDimDays-1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	Generate(t, c, "demo.example", 20000, now, 5)
	Generate(t, c, "other.example", 3000, now, 6)
	// Step VersionBotDims drops DimDayTable's view, whose cut-off its
	// backfill needs: that step comes after this one's backfill.
	if _, err := c.MigrateTo(ctx, clickhouse.VersionBotDims-1); err != nil {
		t.Fatal(err)
	}
	e := &Engine{Src: c}
	day := now.Truncate(24 * time.Hour)
	// 19 whole days between two partial ones.
	rng := Range{From: day.AddDate(0, 0, -25).Add(5 * time.Hour), To: day.AddDate(0, 0, -5).Add(7 * time.Hour), Grain: grain["hour"], Total: grain["hour"]}
	check := func(phase, wantSource string, excludeBots bool) {
		t.Helper()
		for _, f := range []url.Values{{}, {"country": {"DE"}}, {"page": {"/pricing"}}} {
			q := url.Values{"site": {"demo.example"}}
			for k, v := range f {
				q[k] = v
			}
			if excludeBots {
				q.Set("bots", "exclude")
			}
			req, err := ParseRequest(q, now)
			if err != nil {
				t.Fatal(err)
			}
			req.Range, req.Prev = rng, rng
			req.Prev.From, req.Prev.To = rng.From.Add(-rng.To.Sub(rng.From)), rng.From
			cond := func(from, to time.Time) string {
				s := fmt.Sprintf("site = 'demo.example' AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", from.Unix(), to.Unix())
				for _, flt := range req.Filters {
					s += " AND " + flt.Dim.Expr + " = " + clickhouse.Quote(flt.Value)
				}
				if excludeBots {
					s += " AND NOT (" + clickhouse.BotCond + ")"
				}
				return s
			}
			name := phase + " " + q.Encode()
			// The site's numbers without bots under a filter read a
			// per-minute rollup, not these.
			if len(f) == 1 && !excludeBots {
				st, err := e.Stats(ctx, req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for _, m := range st.Metrics {
					what := map[string]string{"events": "count()", "pageviews": "countIf(name = 'pageview')", "visitors": "uniqExactIf(visitor_id, visitor_id != 0)"}[m.Name]
					if what == "" {
						continue
					}
					want := [2]float64{float64(one(t, c, "SELECT "+what+" FROM q.events WHERE "+cond(req.Range.From, req.Range.To))),
						float64(one(t, c, "SELECT "+what+" FROM q.events WHERE "+cond(req.Prev.From, req.Prev.To)))}
					if *m.Value != want[0] || *m.Previous != want[1] {
						t.Errorf("%s: %s = %v (previous %v), raw events say %v [source %s]", name, m.Name, *m.Value, *m.Previous, want, st.Source)
					}
				}
				if st.Source != wantSource {
					t.Errorf("%s: read %s, want %s", name, st.Source, wantSource)
				}
			}
			for _, d := range []string{"page", "country", "browser", "event"} {
				top, err := e.Top(ctx, req, d, 5)
				if err != nil {
					t.Fatalf("%s top %s: %v", name, d, err)
				}
				if len(f) == 0 || f.Has(d) {
					if top.Source != wantSource {
						t.Errorf("%s top %s: read %s, want %s", name, d, top.Source, wantSource)
					}
				}
				dim, _ := clickhouse.DimensionByName(d)
				rows, err := c.Query(ctx, "SELECT "+dim.Expr+" AS v, countIf(name = 'pageview'), count() AS n, uniqExactIf(visitor_id, visitor_id != 0) FROM q.events WHERE "+
					cond(req.Range.From, req.Range.To)+" GROUP BY v ORDER BY n DESC, v LIMIT 5")
				if err != nil {
					t.Fatal(err)
				}
				var got [][]string
				for _, r := range top.Rows {
					got = append(got, []string{r.Value, strconv.FormatUint(r.Pageviews, 10), strconv.FormatUint(r.Events, 10), strconv.FormatUint(r.Visitors, 10)})
				}
				if fmt.Sprint(got) != fmt.Sprint(rows) {
					t.Errorf("%s top %s: %v, raw %v [source %s]", name, d, got, rows, top.Source)
				}
			}
		}
	}
	check("before the backfill", clickhouse.DimTable, false)
	if res, err := c.BackfillDimDays(ctx); err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	check("after the backfill", clickhouse.DimDayTable+"+"+clickhouse.DimTable, false)
	// Step VersionBotDims' rollups, once backfilled, answer with bots
	// and without; until then DimTable and DimDayTable, no longer
	// written, answer with what they hold.
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	check("after step VersionBotDims", clickhouse.DimDayTable+"+"+clickhouse.DimTable, false)
	// Without bots, nothing that keeps the verdict holds the range yet
	// (the per-minute rollups' backfill has not run either).
	check("after step VersionBotDims", "events", true)
	if res, err := c.BackfillBotDims(ctx); err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	both := clickhouse.BotDimDaysTable + "+" + clickhouse.BotDimHoursTable
	check("after the bot-verdict backfill", both, false)
	check("after the bot-verdict backfill", both, true)
	if n := one(t, c, "SELECT count() FROM system.tables WHERE database = 'q' AND name IN ('"+clickhouse.DimTable+"_mv', '"+clickhouse.DimDayTable+"_mv')"); n != 0 {
		t.Errorf("%d of the replaced views left", n)
	}
}

func TestCheckParams(t *testing.T) {
	known := append(RequestParams(), "dim")
	for q, want := range map[string]string{
		"site=demo&range=7d&country=DE&dim=page": "",
		"site=demo&contry=DE":                    `unknown parameter "contry"; accepted: site, range, from, to, `,
		"site=demo&b=1&a=2":                      `unknown parameters "a", "b"; accepted: `,
	} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckParams(v, known)
		if want == "" && err != nil || want != "" && (err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), ", dim")) {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
	// The accepted list offers the filters that work; one that cannot
	// filter stays known, for ParseRequest to say why it cannot.
	v := url.Values{"contry": {"DE"}}
	if err := CheckParams(v, known); err == nil || !strings.Contains(err.Error(), "country") ||
		strings.Contains(err.Error(), "entry_page") || strings.Contains(err.Error(), "exit_page") || strings.Contains(err.Error(), "props") {
		t.Errorf("accepted list: %v, want country, not entry_page, exit_page or props", err)
	}
	v = url.Values{"site": {"demo"}, "entry_page": {"/"}, "props": {"x"}}
	if err := CheckParams(v, known); err != nil {
		t.Errorf("dimensions that cannot filter refused as unknown: %v", err)
	}
	if _, err := ParseRequest(v, time.Now()); err == nil || !strings.Contains(err.Error(), "cannot filter") {
		t.Errorf("ParseRequest: %v, want a refusal saying it cannot filter", err)
	}
	if err := CheckParams(url.Values{"x": nil}, nil); err == nil || !strings.HasSuffix(err.Error(), "accepted: none") {
		t.Errorf("no parameters known: %v", err)
	}
	// A repeated parameter was read as its first value: refused, named.
	for q, want := range map[string]string{
		"site=demo&page=/a&page=/b":       "parameter page given more than once: give it once",
		"site=a&site=b":                   "parameter site given more than once: give it once",
		"site=demo&range=7d&range=30d":    "parameter range given more than once: give it once",
		"site=demo&dim=page&dim=country":  "parameter dim given more than once: give it once",
		"site=demo&limit=5&limit=6&dim=x": "parameter limit given more than once: give it once",
		"site=a&site=b&dim=a&dim=b":       "parameters dim, site given more than once: give each once",
	} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckParams(v, append(known, "limit")); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
}

// A top table without dim, or of a dimension that does not exist, says
// which it takes, before any query.
func TestTopDim(t *testing.T) {
	e := &Engine{}
	for dim, want := range map[string]string{
		"":     "dim is required: one of page, referrer, ",
		"nope": `unknown dimension "nope": one of page, referrer, `,
	} {
		_, err := e.Top(context.Background(), Request{Site: "demo"}, dim, 10)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "country") || !strings.HasSuffix(err.Error(), ", props") {
			t.Errorf("dim %q: %v, want %q...", dim, err, want)
		}
	}
}

// from and to belong to range=custom: with another range (or none, today)
// they were ignored, answering for a period not asked for. Its dates
// are those ClickHouse can hold, with the previous period's.
func TestParseRequestFromTo(t *testing.T) {
	for q, want := range map[string]string{
		"site=demo&range=7d&from=2026-01-01&to=2026-01-31":     "from and to need range=custom (range is 7d)",
		"site=demo&from=2026-01-01":                            "from and to need range=custom (range is today)",
		"site=demo&range=month&to=2026-01-31":                  "from and to need range=custom (range is month)",
		"site=demo&range=custom&from=2026-01-01&to=2026-01-31": "",
		// Out of ClickHouse's DateTime, where the times would wrap
		// around to another period's (the range's or the previous one).
		"site=demo&range=custom&from=2163-01-08&to=2163-01-10": "custom range: dates from 1971-01-02 to 2105-12-31",
		"site=demo&range=custom&from=9999-12-30&to=9999-12-31": "custom range: dates from 1971-01-02 to 2105-12-31",
		"site=demo&range=custom&from=1970-01-01&to=1970-01-03": "custom range: dates from 1971-01-02 to 2105-12-31",
		"site=demo&range=custom&from=1971-01-02&to=1971-01-02": "",
		"site=demo&range=custom&from=2105-12-31&to=2105-12-31": "",
		// A closed set's value is matched without regard to case, and
		// one outside it refused, where it matched nothing (found by a
		// new-user tester); empty is the rows from before the column.
		"site=demo&channel=Social":  "",
		"site=demo&device=MOBILE":   "",
		"site=demo&channel=":        "",
		"site=demo&channel=socials": `channel "socials" is none of its values: direct, internal, search, social, email, paid, referral`,
		"site=demo&device=phone":    `device "phone" is none of its values: other, desktop, mobile, tablet, bot`,
		// Found by a new-user tester: each refusal says which rule.
		"site=demo&range=custom&from=2026-02-30&to=2026-03-01": "custom range: from 2026-02-30 is no date of the calendar",
		"site=demo&range=custom&from=2026-01-01&to=2026-1-31":  `custom range: to must be YYYY-MM-DD, not "2026-1-31"`,
		"site=demo&range=custom&from=2026-01-01":               `custom range: to must be YYYY-MM-DD, not ""`,
		"site=demo&range=custom&from=2026-03-02&to=2026-03-01": "custom range: from 2026-03-02 is after to 2026-03-01",
		"site=demo&range=custom&from=2025-01-01&to=2026-01-01": "",
		"site=demo&range=custom&from=2024-01-01&to=2025-01-01": "custom range: 367 days from 2024-01-01 to 2025-01-01; at most 366",
	} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseRequest(v, time.Now())
		if want == "" && err != nil || want != "" && (err == nil || err.Error() != want) {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
}

// Visits under combined filters from the per-minute rollups (minuteTotals) at
// the edges its per-minute rows meet: a minute of several rows, whose
// last event is not in the row of its first (the gap to the next minute
// runs from the minute's last event, to the next minute's first); gaps
// of 30 minutes exactly and a second under; bounces beside rows the
// filter leaves out; events without a visitor id, in the totals only.
func TestMinuteVisitsCrafted(t *testing.T) {
	c := startCH(t)
	ctx := context.Background()
	now := time.Now().UTC()
	day := now.Truncate(24*time.Hour).AddDate(0, 0, -2)
	base := day.Add(2 * time.Hour)
	mk := func(at time.Time, name, page, device string, visitor uint64) event.Event {
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		return event.Event{ID: id, Time: at.UnixMilli(), Site: "demo.example", Name: name, URL: "https://demo.example" + page,
			Country: "DE", Device: device, VisitorID: visitor}
	}
	pv, sec := event.KindPageview, time.Second
	v := uint64(1 << 40)
	n := base.Add(time.Hour) // visitor v+1's later minute
	evs := []event.Event{
		// v: a minute of two rows, /a from :00 to :50 and /b at :10;
		// the next event 29:59 after :50 (the same visit), the one
		// after that 30:00 later (a new visit).
		mk(base, pv, "/a", "mobile", v), mk(base.Add(50*sec), pv, "/a", "mobile", v), mk(base.Add(10*sec), pv, "/b", "mobile", v),
		mk(base.Add(50*sec+30*time.Minute-sec), "signup", "/a", "mobile", v),
		mk(base.Add(50*sec+60*time.Minute-sec), pv, "/a", "mobile", v),
		// v+1: a minute of /c at :05 and /d from :01 to :59, after an
		// event 29:58 before :01 (the same visit), and a minute with one
		// row, 30:00 after :59 (a new visit, a bounce).
		mk(n.Add(3*sec-30*time.Minute), pv, "/x", "mobile", v+1),
		mk(n.Add(5*sec), pv, "/c", "mobile", v+1), mk(n.Add(sec), pv, "/d", "mobile", v+1), mk(n.Add(59*sec), pv, "/d", "mobile", v+1),
		mk(n.Add(59*sec+30*time.Minute), pv, "/e", "mobile", v+1),
		// v+2: a bounce with a desktop event in its minute (filtered
		// out), a lone custom event (no bounce), two pageviews of one
		// page in one minute (no bounce).
		mk(base.Add(3*time.Hour), pv, "/a", "mobile", v+2), mk(base.Add(3*time.Hour+sec), pv, "/b", "desktop", v+2),
		mk(base.Add(5*time.Hour), "signup", "/a", "mobile", v+2),
		mk(base.Add(7*time.Hour), pv, "/a", "mobile", v+2), mk(base.Add(7*time.Hour+sec), pv, "/a", "mobile", v+2),
		// No visitor id: in the totals, in no visit.
		mk(base.Add(sec), pv, "/a", "mobile", 0), mk(base.Add(2*time.Hour), "signup", "/a", "mobile", 0),
	}
	// In two inserts, so that the two rows of one key (v+1's /d) come
	// in unmerged parts.
	for _, b := range [][]event.Event{evs[:8], evs[8:]} {
		if err := c.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitRollups(t, c, "q")
	q := url.Values{"site": {"demo.example"}, "range": {"custom"}, "from": {day.Format(time.DateOnly)}, "to": {day.Format(time.DateOnly)},
		"country": {"DE"}, "device": {"mobile"}}
	req, err := ParseRequest(q, now)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Src: c}
	keep := func(e event.Event) bool { return e.Device == "mobile" }
	var events, pageviews uint64
	for _, e := range evs {
		if keep(e) {
			events++
			if e.Name == pv {
				pageviews++
			}
		}
	}
	want, _, _ := goVisitsOf(evs, req.Range.From, req.Range.To, keep)
	if want.Visits != 7 || want.Bounces != 3 {
		t.Fatalf("the crafted events make %+v, want 7 visits, 3 bounces", want)
	}
	// Both per-minute rollups hold these filters' dimensions.
	for _, table := range []string{clickhouse.MinuteAudienceTable, clickhouse.MinuteSourcesTable} {
		ev, pvs, uv, vs, _, err := e.minuteTotals(ctx, table, req, req.Range)
		if err != nil {
			t.Fatal(err)
		}
		if vs != want || ev != events || pvs != pageviews || uv != 3 {
			t.Errorf("minuteTotals of %s: %d events, %d pageviews, %d visitors, %+v; the events say %d, %d, 3, %+v", table, ev, pvs, uv, vs, events, pageviews, want)
		}
	}
	// The page reads the totals from MinuteAudienceTable too, and these
	// filters' visits from the profile rows of VisitDimsTable (computed
	// from the events before a build, read from it after), alike.
	for _, build := range []bool{false, true} {
		if build {
			if _, err := c.BuildVisitDims(ctx, now.Add(-clickhouse.SegmentSeconds*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		st, err := e.Stats(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		wantVisits := "events"
		if build {
			wantVisits = clickhouse.VisitDimsTable
		}
		if st.Source != clickhouse.MinuteAudienceTable || st.VisitsSource != wantVisits {
			t.Errorf("built %v: read %s+%s, want %s+%s", build, st.Source, st.VisitsSource, clickhouse.MinuteAudienceTable, wantVisits)
		}
		for _, m := range st.Metrics {
			if w, ok := map[string]uint64{"visits": want.Visits, "pageviews": pageviews, "events": events}[m.Name]; ok && *m.Value != float64(w) {
				t.Errorf("built %v: %s = %v, the events say %d", build, m.Name, *m.Value, w)
			}
			if m.Name == "bounce_rate" && *m.Value != math.Round(float64(want.Bounces)/float64(want.Visits)*10000)/10000 {
				t.Errorf("built %v: bounce rate %v, the events say %d of %d", build, *m.Value, want.Bounces, want.Visits)
			}
		}
	}
}

func TestParseRequestCountryCase(t *testing.T) {
	// ISO codes as stored, in capitals: a tester's country=us matched
	// nothing while channel=SEARCH was taken.
	req, err := ParseRequest(url.Values{"site": {"s"}, "country": {"us"}, "region": {"ca"}}, time.Now())
	if err != nil || len(req.Filters) != 2 {
		t.Fatalf("%+v %v", req.Filters, err)
	}
	for _, f := range req.Filters {
		if want := map[string]string{"country": "US", "region": "CA"}[f.Name]; f.Value != want {
			t.Errorf("%s=%q, want %q", f.Name, f.Value, want)
		}
	}
}

// A referrer filter is taken as hosts are stored: the host of a whole URL
// pasted in (a tester's referrer=https://news.ycombinator.com/ matched
// nothing), in lower case as browsers send it; a host alone as written,
// as a top table's row names a referrer stored in capitals.
func TestParseRequestReferrerHost(t *testing.T) {
	for in, want := range map[string]string{
		"www.google.com":                  "www.google.com",
		"News.YCombinator.com":            "News.YCombinator.com",
		"https://news.ycombinator.com/":   "news.ycombinator.com",
		"HTTP://Example.COM:8080/a?b=c#d": "example.com",
		// As the edge stores a host: international names in ASCII, no
		// trailing dot (a tester's pasted URLs found nothing).
		"https://bücher.example/":   "xn--bcher-kva.example",
		"bücher.example":            "bücher.example",
		"https://www.Example.org./": "www.example.org",
		"www.example.org.":          "www.example.org.",
		// Where url.Parse refuses the URL, as a browser reads it.
		"https://www.google.com/wiki/100%_Pure": "www.google.com",
		"https://www.Google.com\\path":          "www.google.com",
		"https://u:p@www.google.com:xyz/":       "www.google.com",
		"":                                      "",
	} {
		req, err := ParseRequest(url.Values{"site": {"s"}, "referrer": {in}}, time.Now())
		if err != nil || len(req.Filters) != 1 || req.Filters[0].Value != want {
			t.Errorf("referrer=%s: %+v %v, want %q", in, req.Filters, err, want)
		}
	}
}

// A page filter is spelled as the edge stores pages (package urlescape),
// so a person's "/café" and a mailer's "/it%27s" find their rows.
func TestParseRequestPagePath(t *testing.T) {
	for in, want := range map[string]string{
		"/café":      "/caf%C3%A9",
		"/caf%c3%a9": "/caf%C3%A9",
		"/it%27s":    "/it's",
		"/a b":       "/a%20b",
		"/pricing":   "/pricing",
		// As a user types or pastes it: the stored page is the path.
		"pricing":                                "/pricing",
		"/pricing?utm_source=x#top":              "/pricing",
		"https://demo.example/pricing?plan=pro":  "/pricing",
		"HTTP://demo.example:8080/caf%c3%a9#top": "/caf%C3%A9",
		"https://demo.example":                   "/",
		"https://demo.example?x=1":               "/",
		"https://x.example/a/../b":               "/b",
		"/a/./b/.":                               "/a/b/",
		"https://t76.example/a\\b\\..\\c":        "/a/c",
		"android-app://com.example.app/x/../y":   "/y",
		"":                                       "",
	} {
		req, err := ParseRequest(url.Values{"site": {"s"}, "page": {in}, "utm_source": {"/café"}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, f := range req.Filters {
			got[f.Name] = f.Value
		}
		if got["page"] != want || got["utm_source"] != "/café" {
			t.Errorf("page=%s: filters %v, want page %q and utm_source as given", in, got, want)
		}
	}
}

// White space around the site and a filter's value is dropped, and a
// site is cut to its length, as ingest drops and cuts what it stores (a tester's event= %20signup%20 matched
// nothing); a site of white space only is none.
func TestParseRequestTrims(t *testing.T) {
	req, err := ParseRequest(url.Values{"site": {" demo "}, "event": {" signup\t"}, "page": {" /pricing "}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range req.Filters {
		got[f.Name] = f.Value
	}
	if req.Site != "demo" || got["event"] != "signup" || got["page"] != "/pricing" {
		t.Errorf("site %q, filters %q", req.Site, got)
	}
	if _, err := ParseRequest(url.Values{"site": {"  "}}, time.Now()); err == nil {
		t.Error("a site of white space only was taken")
	}
	// A site longer than a stored one can be is the site cut as the edge
	// cut it (a tester's 300-byte site answered zeros).
	long := strings.Repeat("s", 300)
	if req, err := ParseRequest(url.Values{"site": {long}}, time.Now()); err != nil || req.Site != long[:event.MaxSiteLen] {
		t.Errorf("a %d-byte site: %d bytes, %v", len(long), len(req.Site), err)
	}
}

// bots= takes include (the default) or exclude; any other value is an
// error, not the default, so a mistyped link does not show bots as if
// they were left out.
func TestParseRequestBots(t *testing.T) {
	for q, want := range map[string]string{
		"site=demo":                     "include",
		"site=demo&bots=include":        "include",
		"site=demo&bots=exclude":        "exclude",
		"site=demo&bots=":               "include",
		"site=demo&bots=no":             "error",
		"site=demo&bots=Exclude":        "error",
		"site=demo&bots=exclude&bots=x": "exclude",
	} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseRequest(v, time.Now())
		got := map[bool]string{false: "include", true: "exclude"}[r.ExcludeBots]
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("%s: %s (%v), want %s", q, got, err, want)
		}
	}
}

// With the store down every part of a question fails alike: the error
// says it once.
func TestJoinDistinct(t *testing.T) {
	down := func() error { return errors.New("clickhouse: connection refused") }
	err := joinDistinct([]error{down(), nil, down(), errors.New("clickhouse: timeout"), down()})
	if err == nil || err.Error() != "clickhouse: connection refused\nclickhouse: timeout" {
		t.Errorf("joined %q", err)
	}
	if joinDistinct([]error{nil, nil}) != nil {
		t.Error("no errors joined to one")
	}
}

// A top table of long values names no more of them than a statement
// holds: the per-dimension rollups' second statement listed the ranked
// values, and a thousand pages of 310 bytes passed ClickHouse's
// max_query_size ("Max query size exceeded", found by a review). Under a
// filter (a per-minute rollup) and without (the per-dimension rollups),
// every page is there.
func TestTopLongValues(t *testing.T) {
	c := startCH(t)
	ctx := context.Background()
	now := time.Now().UTC()
	at := now.Truncate(24*time.Hour).AddDate(0, 0, -2).Add(3 * time.Hour)
	var evs []event.Event
	for i := range 1000 {
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		evs = append(evs, event.Event{ID: id, Time: at.UnixMilli() + int64(i), Site: "long.example", Name: "pageview",
			URL: fmt.Sprintf("https://long.example/%04d/%s", i, strings.Repeat("x", 300)), Country: "DE", VisitorID: uint64(i%7 + 1)})
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	waitRollups(t, c, "q")
	e := &Engine{Src: c}
	for _, q := range []url.Values{{"country": {"DE"}}, {}} {
		q.Set("site", "long.example")
		q.Set("range", "7d")
		req, err := ParseRequest(q, now)
		if err != nil {
			t.Fatal(err)
		}
		top, err := e.Top(ctx, req, "page", MaxLimit)
		if err != nil || len(top.Rows) != 1000 {
			t.Errorf("%s: %d rows from %s, %v", q.Encode(), len(top.Rows), top.Source, err)
		}
	}
}

// A closed set's filter value is stored's spelling, whatever its case.
func TestParseRequestClosedValues(t *testing.T) {
	r, err := ParseRequest(url.Values{"site": {"demo"}, "channel": {" Social "}, "device": {"Tablet"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range r.Filters {
		got[f.Name] = f.Value
	}
	if got["channel"] != "social" || got["device"] != "tablet" {
		t.Errorf("filters %v, want channel social and device tablet", got)
	}
	// The email opens and signatures too (found by a new-user tester:
	// neither filtered at all).
	r, err = ParseRequest(url.Values{"site": {"demo"}, "mail_open": {"Gmail"}, "signature": {" UNSIGNED"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Filters) != 2 || r.Filters[0].Name != "mail_open" || r.Filters[0].Value != "gmail" || r.Filters[1].Name != "signature" || r.Filters[1].Value != "unsigned" {
		t.Errorf("filters %+v, want mail_open gmail and signature unsigned", r.Filters)
	}
	for q, want := range map[string]string{"mail_open": "gmial", "signature": "signed"} {
		if _, err := ParseRequest(url.Values{"site": {"demo"}, q: {want}}, time.Now()); err == nil || !strings.Contains(err.Error(), "is none of its values") {
			t.Errorf("%s=%s: %v, want a refusal naming its values", q, want, err)
		}
	}
}

// After an erasure, one answer does not contradict itself. Under a
// profile filter (two of country, device, browser, os) the totals come
// from a per-minute rollup, whose rows of an erased visitor go, and the
// visits came from VisitDimsTable's stored profile hours, which hold
// counts the erasure cannot edit: a tester saw 0 visitors and pageviews
// beside 2 visits of 1.5 views each.
func TestStatsAfterErasure(t *testing.T) {
	c := startCH(t)
	ctx := context.Background()
	now := time.Now().UTC()
	day := now.Truncate(24*time.Hour).AddDate(0, 0, -3)
	var evs []event.Event
	for i, v := range []uint64{1 << 41, 1<<41 + 1} {
		for j := range 2 {
			at := day.Add(time.Duration(10+i) * time.Hour).Add(time.Duration(j) * time.Minute)
			id, _ := event.NewID(at.UnixMilli(), rand.Reader)
			evs = append(evs, event.Event{ID: id, Time: at.UnixMilli(), Site: "erased.example", Name: event.KindPageview,
				URL: "https://erased.example/", VisitorID: v, Country: "DE", Device: "desktop", Browser: "Firefox", OS: "Linux"})
		}
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	waitRollups(t, c, "q")
	settled := now.Add(-clickhouse.SegmentSeconds * time.Second)
	if _, err := c.BuildVisitHours(ctx, settled); err != nil {
		t.Fatal(err)
	}
	if n, err := c.BuildVisitDims(ctx, settled); err != nil || n == 0 {
		t.Fatalf("built %d hours of visit dims: %v", n, err)
	}
	e := &Engine{Src: c}
	profile := url.Values{"country": {"DE"}, "device": {"desktop"}}
	stats := func(filters url.Values) map[string]float64 {
		t.Helper()
		q := url.Values{"site": {"erased.example"}, "range": {"7d"}}
		for k, v := range filters {
			q[k] = v
		}
		req, err := ParseRequest(q, now)
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.Stats(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]float64{}
		for _, x := range st.Metrics {
			if x.Value != nil {
				m[x.Name] = *x.Value
			}
		}
		return m
	}
	if m := stats(profile); m["visitors"] != 2 || m["visits"] != 2 || m["pageviews"] != 4 {
		t.Fatalf("before the erasure: %v, want 2 visitors, 2 visits, 4 pageviews", m)
	}
	for _, v := range []uint64{1 << 41, 1<<41 + 1} {
		if res, err := c.Erase(ctx, clickhouse.Erasure{VisitorID: clickhouse.VisitorID(fmt.Sprint(v)), Site: "erased.example"}, time.Minute); err != nil || !res.Done {
			t.Fatalf("erase %d: %+v %v", v, res, err)
		}
	}
	if m := stats(profile); m["visitors"] != 0 || m["visits"] != 0 || m["pageviews"] != 0 || m["views_per_visit"] != 0 {
		t.Fatalf("after erasing both visitors: %v, want no visitors, visits or pageviews", m)
	}
	// Every other shape of question reads rollups of one kind for its
	// answer: all kept (ErasureKept) or all erased, never a mix.
	for _, f := range []url.Values{
		{}, {"bots": {"exclude"}}, {"country": {"DE"}}, {"country": {"DE"}, "bots": {"exclude"}},
		{"country": {"DE"}, "device": {"desktop"}, "bots": {"exclude"}}, {"country": {"DE"}, "page": {"/"}},
	} {
		m := stats(f)
		if (m["visitors"] == 0) != (m["visits"] == 0) || (m["pageviews"] == 0) != (m["visits"] == 0) {
			t.Errorf("%s after the erasure: %v, one answer with and without the erased visitors", f.Encode(), m)
		}
	}
}

// A day row counts its whole day: today's range ends at the next hour,
// and an event stamped ahead of now (ingest takes them up to an hour) is
// in today's row but not the range. The top pages under a source and the
// top props, which read day rows, must not count it: here "now" is 11:30
// of a past day and three of the day's five events come at 20:00.
func TestDayRowsEndWithRange(t *testing.T) {
	c := startCH(t)
	ctx := context.Background()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	var evs []event.Event
	for i, h := range []int{10, 10, 20, 20, 20} {
		at := day.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Minute)
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		evs = append(evs, event.Event{ID: id, Time: at.UnixMilli(), Site: "ahead.example", Name: event.KindPageview,
			URL: "https://ahead.example/p", Referrer: "https://www.google.com/", Props: `{"plan":"pro"}`, VisitorID: uint64(i + 1), Country: "DE"})
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	waitRollups(t, c, "q")
	e := &Engine{Src: c}
	now := day.Add(11*time.Hour + 30*time.Minute)
	for _, tc := range []struct {
		dim string
		q   url.Values
	}{
		{"page", url.Values{"referrer": {"www.google.com"}}},
		{"referrer", url.Values{"page": {"/p"}}},
		{clickhouse.PropsDim, url.Values{}},
		{clickhouse.PropsDim, url.Values{"country": {"DE"}}},
	} {
		tc.q.Set("site", "ahead.example")
		tc.q.Set("range", "today")
		req, err := ParseRequest(tc.q, now)
		if err != nil {
			t.Fatal(err)
		}
		top, err := e.Top(ctx, req, tc.dim, 10)
		if err != nil || len(top.Rows) != 1 || top.Rows[0].Events != 2 {
			t.Errorf("top %s under %s at 11:30: %+v from %s, %v; want one row of the 2 events before noon", tc.dim, tc.q.Encode(), top.Rows, top.Source, err)
		}
		// The next day, the same question of the whole day reads the
		// day rows, all five events.
		tc.q.Set("range", "yesterday")
		if req, err = ParseRequest(tc.q, day.Add(36*time.Hour)); err != nil {
			t.Fatal(err)
		}
		top, err = e.Top(ctx, req, tc.dim, 10)
		if err != nil || len(top.Rows) != 1 || top.Rows[0].Events != 5 || top.Source == "events" {
			t.Errorf("top %s under %s of the whole day: %+v from %s, %v; want the 5 events from a day rollup", tc.dim, tc.q.Encode(), top.Rows, top.Source, err)
		}
	}
}

// TestParseRequestPrevious: a range that runs on past now is compared
// with the same part of the one before: today so far with yesterday's
// same hours (it was compared with the hours right before midnight), a
// week or 30 days that end today with the same days and hours before
// (they were compared with whole days), this month with the last one's
// first days (December 1-7 was compared with November 24-30), cut at
// the previous month's end; a range in the past with the same length
// right before it.
func TestParseRequestPrevious(t *testing.T) {
	at := func(month time.Month, day, hour int) time.Time {
		return time.Date(2026, month, day, hour, 0, 0, 0, time.UTC)
	}
	for _, c := range []struct {
		now  time.Time
		rng  string
		want [4]time.Time
	}{
		{at(12, 4, 18), "today", [4]time.Time{at(12, 4, 0), at(12, 4, 19), at(12, 3, 0), at(12, 3, 19)}},
		{at(12, 4, 18), "yesterday", [4]time.Time{at(12, 3, 0), at(12, 4, 0), at(12, 2, 0), at(12, 3, 0)}},
		{at(12, 4, 18), "7d", [4]time.Time{at(11, 28, 0), at(12, 5, 0), at(11, 21, 0), at(11, 27, 19)}},
		{at(12, 4, 18), "30d", [4]time.Time{at(11, 5, 0), at(12, 5, 0), at(10, 6, 0), at(11, 4, 19)}},
		{at(12, 4, 18), "month", [4]time.Time{at(12, 1, 0), at(12, 5, 0), at(11, 1, 0), at(11, 4, 19)}},
		{at(3, 31, 18), "month", [4]time.Time{at(3, 1, 0), at(4, 1, 0), at(2, 1, 0), at(3, 1, 0)}},
		{at(12, 4, 23), "today", [4]time.Time{at(12, 4, 0), at(12, 5, 0), at(12, 3, 0), at(12, 4, 0)}},
	} {
		req, err := ParseRequest(url.Values{"site": {"demo"}, "range": {c.rng}}, c.now.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		got := [4]time.Time{req.Range.From, req.Range.To, req.Prev.From, req.Prev.To}
		if got != c.want {
			t.Errorf("range %s at %s: %v, want %v", c.rng, c.now, got, c.want)
		}
	}
	// A custom range in the past: the same length right before it.
	req, err := ParseRequest(url.Values{"site": {"demo"}, "range": {"custom"}, "from": {"2026-11-01"}, "to": {"2026-11-10"}}, at(12, 4, 18))
	if err != nil || req.Prev.From != at(10, 22, 0) || req.Prev.To != at(11, 1, 0) {
		t.Errorf("custom: previous %v to %v, %v", req.Prev.From, req.Prev.To, err)
	}
}

// An install with history upgraded to step VersionOpens: the top tables
// of the email opens and signatures, and the site's numbers under their
// filters, read the events table until the backfill has rolled the
// history up (the rollups' views start at a cut-off ahead), then the
// rollups; both answers equal the raw events'.
func TestOpensUpgrade(t *testing.T) {
	c := newCH(t)
	ctx := context.Background()
	if _, err := c.MigrateTo(ctx, clickhouse.VersionOpens-1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	Generate(t, c, "demo.example", 8000, now, 7)
	Generate(t, c, "other.example", 1000, now, 8)
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if cutoff, ok, err := c.OpensCutoff(ctx); err != nil || !ok || !cutoff.After(now) {
		t.Fatalf("cut-off %v %v %v, want one ahead", cutoff, ok, err)
	}
	e := &Engine{Src: c}
	check := func(phase, wantSource string) {
		t.Helper()
		for _, f := range []url.Values{{}, {"mail_open": {"person"}}, {"signature": {"verified"}, "bots": {"exclude"}}} {
			for _, rng := range []string{"today", "30d"} {
				q := url.Values{"site": {"demo.example"}, "range": {rng}}
				for k, v := range f {
					q[k] = v
				}
				req, err := ParseRequest(q, now)
				if err != nil {
					t.Fatal(err)
				}
				name := phase + " " + q.Encode()
				cond := eventsCond(req, req.Range.From, req.Range.To)
				src := wantSource
				if table, _ := clickhouse.OpensTable(req.Range.Total); src != "events" {
					src = table
				}
				if len(f) > 0 {
					st, err := e.Stats(ctx, req)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for _, m := range st.Metrics {
						what := map[string]string{"events": "count()", "pageviews": "countIf(name = 'pageview')", "visitors": "uniqExactIf(visitor_id, visitor_id != 0)"}[m.Name]
						if what != "" {
							if want := float64(one(t, c, "SELECT "+what+" FROM q.events WHERE "+cond)); *m.Value != want {
								t.Errorf("%s: %s = %v, raw events say %v [source %s]", name, m.Name, *m.Value, want, st.Source)
							}
						}
					}
					if st.Source != src || st.Pending != "" {
						t.Errorf("%s: read %s (pending %q), want %s", name, st.Source, st.Pending, src)
					}
				}
				for _, dim := range clickhouse.OpenDims {
					top, err := e.Top(ctx, req, dim, 10)
					if err != nil {
						t.Fatalf("%s top %s: %v", name, dim, err)
					}
					rows, err := c.Query(ctx, "SELECT toString("+dim+") AS v, countIf(name = 'pageview'), count() AS n, uniqExactIf(visitor_id, visitor_id != 0) FROM q.events WHERE "+
						cond+" GROUP BY v ORDER BY n DESC, v LIMIT 10")
					if err != nil {
						t.Fatal(err)
					}
					var got [][]string
					for _, r := range top.Rows {
						got = append(got, []string{r.Value, strconv.FormatUint(r.Pageviews, 10), strconv.FormatUint(r.Events, 10), strconv.FormatUint(r.Visitors, 10)})
					}
					if fmt.Sprint(got) != fmt.Sprint(rows) || len(rows) == 0 {
						t.Errorf("%s top %s: %v, raw %v [source %s]", name, dim, got, rows, top.Source)
					}
					if top.Source != src {
						t.Errorf("%s top %s: read %s, want %s", name, dim, top.Source, src)
					}
				}
			}
		}
	}
	check("before the backfill", "events")
	if res, err := c.BackfillOpens(ctx); err != nil || len(res.Rebuilt) == 0 {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	check("after the backfill", "rollups")
}

// The mean visit duration is in seconds to the millisecond, with no
// float noise in its JSON (a tester's 142.27590909999998).
func TestVisitDurationMilliseconds(t *testing.T) {
	if d := (VisitStats{Visits: 11, DurationMS: 1565038}).duration(); strconv.FormatFloat(d, 'f', -1, 64) != "142.276" {
		t.Errorf("duration %v, want 142.276", d)
	}
	if d := (VisitStats{}).duration(); d != 0 {
		t.Errorf("no visits: %v", d)
	}
}
