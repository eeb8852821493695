package server

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/aggregator/query"
)

// The history API over HTTP: events sent through ingest show in
// /api/stats and /api/top as the raw events table counts them, filters
// combine, the CSV export matches the JSON, and a viewer reads only its
// sites.
func TestStatsAPI(t *testing.T) {
	needServers(t)
	db, rurl := newDB(t)
	viewer := "viewer-token-for-shop-0123456789"
	a := startAgg(t, Config{DataDir: t.TempDir(), RedisURL: rurl, ClickHouseURL: chURL, ClickHouseDB: db,
		DashboardViewers: map[string][]string{viewer: {"shop"}}})
	defer a.stop()
	evs := mkEvents(t, "demo", 30)
	for i := range evs {
		evs[i].URL = fmt.Sprintf("https://demo.example/p%d", i%3)
		evs[i].Country = []string{"DE", "US"}[i%2]
		if i%5 == 0 {
			evs[i].Name = "signup"
		}
		evs[i].VisitorID = uint64(i%4) + 1
		evs[i].Browser = []string{"Firefox", "Chrome", "Safari"}[i%3]
		// Every sixth a bot's; a third in the aggregate consent tier.
		evs[i].BotScore = []uint8{90, 0, 0, 0, 0, 10}[i%6]
		evs[i].Tier = []string{"full", "full", "aggregate"}[i%3]
	}
	a.send(evs)
	eventually(t, "stored", func() bool {
		// EXISTS, not a scan of system.tables: 18.16 fails that scan when
		// the migration drops a table of the database meanwhile (step 7
		// drops step 4's views).
		return chQuery(t, "EXISTS TABLE "+db+".events") == "1" && a.rows() == 30
	})

	var st struct {
		Source  string
		Metrics []struct {
			Name      string
			Collected bool
			Value     *float64
		}
	}
	value := func(name string) float64 {
		for _, m := range st.Metrics {
			if m.Name == name && m.Value != nil {
				return *m.Value
			}
		}
		return -1
	}
	// Materialized views are filled just after the insert they come from.
	eventually(t, "rollups", func() bool {
		getJSON(t, a.dash.URL+"/api/stats?site=demo&range=today", &st)
		if value("events") != 30 {
			return false
		}
		getJSON(t, a.dash.URL+"/api/stats?site=demo&range=today&country=US", &st)
		return value("events") == 15
	})
	for _, q := range []string{"", "&country=DE", "&country=DE&page=/p1"} {
		cond := "site = 'demo'"
		if strings.Contains(q, "country") {
			cond += " AND country = 'DE'"
		}
		if strings.Contains(q, "page") {
			cond += " AND path(url) = '/p1'"
		}
		if code := getJSON(t, a.dash.URL+"/api/stats?site=demo&range=today"+q, &st); code != 200 {
			t.Fatalf("stats %s: %d", q, code)
		}
		for name, expr := range map[string]string{"events": "count()", "pageviews": "countIf(name = 'pageview')", "custom_events": "countIf(name != 'pageview')",
			"visitors": "uniqExactIf(visitor_id, visitor_id != 0)"} {
			want := float64(chInt(t, "SELECT "+expr+" FROM "+db+".events WHERE "+cond))
			if got := value(name); got != want {
				t.Errorf("stats%s: %s = %v, raw events %v (source %s)", q, name, got, want, st.Source)
			}
		}
	}
	// mkEvents' events are seconds apart: one visit per visitor.
	getJSON(t, a.dash.URL+"/api/stats?site=demo&range=today", &st)
	if got := value("visits"); got != 4 {
		t.Errorf("visits %v, want 4", got)
	}

	var top struct {
		Rows []struct {
			Value    string
			Events   uint64
			Visitors uint64
		}
	}
	getJSON(t, a.dash.URL+"/api/top?site=demo&range=today&dim=page", &top)
	raw := chQuery(t, "SELECT path(url) AS v, count() AS n FROM "+db+".events WHERE site = 'demo' GROUP BY v ORDER BY n DESC, v")
	var got []string
	for _, r := range top.Rows {
		got = append(got, r.Value+"\t"+strconv.FormatUint(r.Events, 10))
	}
	if strings.Join(got, "\n") != raw {
		t.Errorf("top pages %q, raw %q", got, raw)
	}
	resp, err := authGet(a.dash.URL + "/api/top.csv?site=demo&range=today&dim=page")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(resp.Header.Get("Content-Disposition"), "demo-page-") {
		t.Fatalf("csv: %v %v", resp.Header, err)
	}
	if len(recs) != len(top.Rows)+1 || recs[0][0] != "page" || recs[1][0] != top.Rows[0].Value {
		t.Errorf("csv %q", recs)
	}
	// A misspelt parameter is refused, not ignored (it answered the
	// unfiltered figures): 400 naming it and what the endpoint reads.
	for u, want := range map[string][]string{
		"/api/stats?site=demo&range=today&contry=DE": {`"contry"`, "country", "range"},
		"/api/top.csv?site=demo&dim=page&limits=5":   {`"limits"`, "limit", "dim"},
		"/api/quality?site=demo&rnage=7d":            {`"rnage"`, "range"},
		"/api/history?site=demo&minute=5":            {`"minute"`, "site, minutes"},
		"/api/loss?site=demo&form=1":                 {`"form"`, "site, from, to"},
		"/api/counts?site=demo":                      {`"site"`, "accepted: none"},
	} {
		var e struct{ Error, Reason string }
		if code := getJSON(t, a.dash.URL+u, &e); code != 400 || e.Reason != "bad_request" {
			t.Errorf("%s: %d %+v", u, code, e)
		}
		for _, w := range want {
			if !strings.Contains(e.Error, w) {
				t.Errorf("%s: %q lacks %q", u, e.Error, w)
			}
		}
	}
	if len(recs[0]) != 4 || recs[0][1] != "visitors" || recs[1][1] != strconv.FormatUint(top.Rows[0].Visitors, 10) {
		t.Errorf("csv header and first row %q, %q", recs[0], recs[1])
	}
	var browsers struct {
		Collected bool
		Rows      []struct{ Value string }
	}
	if getJSON(t, a.dash.URL+"/api/top?site=demo&range=today&dim=browser", &browsers); !browsers.Collected || len(browsers.Rows) != 3 {
		t.Errorf("browsers %+v", browsers)
	}
	var props struct {
		Collected bool
		Source    string
	}
	if getJSON(t, a.dash.URL+"/api/top?site=demo&range=today&dim=props", &props); !props.Collected || props.Source == "" {
		t.Errorf("event properties %+v", props)
	}
	var entries struct {
		Collected bool
		Rows      []struct {
			Value  string
			Visits uint64
		}
	}
	if getJSON(t, a.dash.URL+"/api/top?site=demo&range=today&dim=entry_page", &entries); !entries.Collected || len(entries.Rows) == 0 || entries.Rows[0].Visits == 0 {
		t.Errorf("entry pages %+v", entries)
	}
	for _, bad := range []string{"dim=page&range=fortnight", "dim=page&range=custom&from=2020-01-02&to=2020-01-01", "dim=nope", "dim=page&entry_page=/", "dim=page&limit=0"} {
		var e map[string]string
		if code := getJSON(t, a.dash.URL+"/api/top?site=demo&"+bad, &e); code != 400 {
			t.Errorf("%s: %d %v", bad, code, e)
		}
	}
	// No dim: told it is required and which there are, not that "" is unknown.
	var noDim struct{ Error, Reason string }
	if code := getJSON(t, a.dash.URL+"/api/top?site=demo&range=today", &noDim); code != 400 || !strings.HasPrefix(noDim.Error, "dim is required: one of page, ") {
		t.Errorf("top without dim: %d %+v", code, noDim)
	}
	var quality struct {
		Drift struct{ Live, Committed uint64 }
		Mix   query.Mix
	}
	eventually(t, "live count", func() bool {
		getJSON(t, a.dash.URL+"/api/quality?site=demo&range=today", &quality)
		return quality.Drift.Live == 30
	})
	if quality.Drift.Committed != 30 {
		t.Errorf("quality drift %+v", quality.Drift)
	}
	if m := quality.Mix; m.Events != 30 || m.Bots != 5 || m.BotShare != 5.0/30 || m.Tiers["full"] != 20 || m.Tiers["aggregate"] != 10 {
		t.Errorf("quality mix %+v, want 30 events, 5 of bots, 20 full, 10 aggregate", m)
	}
	// Without bots, every number leaves their events out.
	var nobots struct {
		Metrics []struct {
			Name  string
			Value float64
		}
	}
	if code := getJSON(t, a.dash.URL+"/api/stats?site=demo&range=today&bots=exclude", &nobots); code != 200 {
		t.Fatalf("bots=exclude: %d", code)
	}
	for _, m := range nobots.Metrics {
		if m.Name == "events" && m.Value != 25 {
			t.Errorf("events without bots: %v, want 25", m.Value)
		}
	}
	// A viewer of shop cannot read demo.
	req, _ := http.NewRequest("GET", a.dash.URL+"/api/stats?site=demo", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Errorf("viewer reading demo: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// The quality panel's aggregator section counts refusals and bad rows
	// over every site: the admin sees it, a viewer of shop does not.
	var all map[string]any
	getJSON(t, a.dash.URL+"/api/quality?site=demo&range=today", &all)
	if _, ok := all["aggregator"]; !ok {
		t.Errorf("admin's quality lacks the aggregator section: %v", all)
	}
	req, _ = http.NewRequest("GET", a.dash.URL+"/api/quality?site=shop&range=today", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var shop map[string]any
	json.NewDecoder(resp.Body).Decode(&shop)
	resp.Body.Close()
	if _, ok := shop["aggregator"]; resp.StatusCode != 200 || ok {
		t.Errorf("viewer's quality: %d %v, want no aggregator section", resp.StatusCode, shop)
	}
}

func TestCSVSafe(t *testing.T) {
	for v, want := range map[string]string{
		"/pricing": "/pricing", "": "", "a=b": "a=b", " plain": " plain",
		"=HYPERLINK(1)": "'=HYPERLINK(1)", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)",
		" =1+1": "' =1+1", "  @x": "'  @x", "\t1": "'\t1", "\r1": "'\r1", "\n=1": "'\n=1",
		"\uFF1D1+1": "'\uFF1D1+1", " \uFF0B1": "' \uFF0B1",
	} {
		if got := csvSafe(v); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", v, got, want)
		}
	}
}
