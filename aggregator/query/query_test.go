package query

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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
	if _, err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// Generate inserts n events for site spread over the last 70 days, a
// share of them in the last half hour, with a few values per dimension.
func Generate(t testing.TB, c *clickhouse.Client, site string, n int, now time.Time, seed uint64) {
	r := mrand.New(mrand.NewPCG(seed, 1))
	pages := []string{"/", "/pricing", "/blog/a", "/blog/b", "/docs"}
	refs := []string{"", "https://news.ycombinator.com/item", "https://www.google.com/", "https://t.co/x"}
	countries := []string{"DE", "US", "FR", ""}
	utm := []string{"", "newsletter", "spring"}
	names := []string{event.KindPageview, event.KindPageview, event.KindPageview, "signup", "download"}
	var evs []event.Event
	for i := range n {
		var at time.Time
		if i%10 == 0 {
			at = now.Add(-time.Duration(r.Int64N(int64(30 * time.Minute))))
		} else {
			at = now.Add(-time.Duration(r.Int64N(int64(70 * 24 * time.Hour))))
		}
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		evs = append(evs, event.Event{ID: id, Time: at.UnixMilli(), Site: site, Name: names[r.IntN(len(names))],
			URL: "https://" + site + pages[r.IntN(len(pages))] + "?q=" + strconv.Itoa(r.IntN(3)), Referrer: refs[r.IntN(len(refs))],
			Country: countries[r.IntN(len(countries))], UTMSource: utm[r.IntN(len(utm))], UTMMedium: utm[r.IntN(len(utm))],
			UTMCampaign: utm[r.IntN(len(utm))]})
		if len(evs) == 50000 {
			if err := c.InsertEvents(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	if err := c.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
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
	Generate(t, c, "demo.example", 20000, now, 1)
	Generate(t, c, "other.example", 3000, now, 2) // must not leak into demo's numbers
	waitRollups(t, c, "q")
	e := &Engine{Src: c}
	ctx := context.Background()
	filters := []url.Values{
		{},
		{"country": {"DE"}},
		{"page": {"/pricing"}},
		{"country": {"US"}, "utm_source": {"newsletter"}},
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
			// The raw question, written independently of the engine.
			cond := func(from, to time.Time) string {
				s := fmt.Sprintf("site = 'demo.example' AND ts >= toDateTime(%d) AND ts < toDateTime(%d)", from.Unix(), to.Unix())
				for k := range f {
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
			if len(f) == 0 && st.Source == "events" || len(f) == 1 && rng != "realtime" && st.Source != clickhouse.DimTable {
				t.Errorf("%s: read %s, want a rollup", name, st.Source)
			}
			if checked != 3 {
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
				rows, err := c.Query(ctx, "SELECT "+d.Expr+" AS v, countIf(name = 'pageview'), count() AS n FROM q.events WHERE "+
					cond(req.Range.From, req.Range.To)+" GROUP BY v ORDER BY n DESC, v LIMIT 5")
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != len(top.Rows) {
					t.Errorf("%s top %s: %d rows, raw %d", name, d.Name, len(top.Rows), len(rows))
					continue
				}
				for i, r := range rows {
					if got := top.Rows[i]; got.Value != r[0] || strconv.FormatUint(got.Pageviews, 10) != r[1] || strconv.FormatUint(got.Events, 10) != r[2] {
						t.Errorf("%s top %s row %d: %+v, raw %q", name, d.Name, i, got, r)
					}
				}
			}
		}
	}
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
		qs = append(qs, "SELECT sum(events) FROM "+db+"."+g.Table)
	}
	for _, d := range clickhouse.Dimensions {
		if d.Collected {
			qs = append(qs, "SELECT sum(events) FROM "+db+"."+clickhouse.DimTable+" WHERE dim = "+clickhouse.Quote(d.Name))
		}
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
