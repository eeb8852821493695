package server

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Edge counters sent with batches show on /api/loss, per site and for all
// sites, against the events stored, and on /metrics, with bounded labels.
func TestLossAPI(t *testing.T) {
	needServers(t)
	db, redis := newDB(t)
	a := startAgg(t, Config{DataDir: t.TempDir(), ClickHouseURL: chURL, ClickHouseDB: db, RedisURL: redis})
	defer a.stop()
	evs := mkEvents(t, "demo", 10)
	now := time.Now()
	inst, _ := event.NewID(now.UnixMilli(), rand.Reader)
	c := wire.Counters{Instance: inst, Pop: "test", Sites: []wire.SiteCounts{
		{Site: "demo", Time: now.UnixMilli(), Hits: 13, Events: 12, Drops: []wire.Drop{{Reason: "buffer_full", N: 1}}, Notes: []wire.Drop{{Reason: "no_salt", N: 3}}},
		{Site: "", Time: now.UnixMilli(), Hits: 2, Drops: []wire.Drop{{Reason: "missing_site", N: 2}}}}}
	body := wire.AppendWithCounters(nil, evs, &c)
	for range 2 { // a retry changes nothing
		if code, b := a.post(body, signed(secret, time.Now().Unix(), body)); code != 200 {
			t.Fatalf("ingest: %d %s", code, b)
		}
	}
	eventually(t, "events stored", func() bool { return chQueryAt(t, chURL, "SELECT count() FROM "+db+".events") == "10" })
	var l store.Loss
	u := fmt.Sprintf("%s/api/loss?site=demo&from=%d&to=%s", a.dash.URL, now.Add(-time.Minute).UnixMilli(), now.Add(time.Minute).UTC().Format(time.RFC3339))
	eventually(t, "counters stored", func() bool {
		l = store.Loss{}
		return getJSON(t, u, &l) == 200 && l.Hits == 13
	})
	if l.Events != 12 || l.Stored != 10 || l.Lost != 2 || l.Dropped["buffer_full"] != 1 || l.Noted["no_salt"] != 3 || l.Site != "demo" {
		t.Fatalf("%+v", l)
	}
	var all store.Loss
	getJSON(t, a.dash.URL+"/api/loss", &all)
	if all.Hits != 15 || all.Dropped["missing_site"] != 2 || all.Stored != 10 {
		t.Fatalf("all sites: %+v", all)
	}
	// The admin's quality panel of any site has the drops of requests
	// that named no site, which no site's own figures hold.
	var q struct {
		Edge       store.Loss
		Aggregator struct {
			EdgeNoSite map[string]uint64 `json:"edge_no_site"`
		}
	}
	if code := getJSON(t, a.dash.URL+"/api/quality?site=demo&range=today", &q); code != 200 || q.Aggregator.EdgeNoSite["missing_site"] != 2 || q.Edge.Dropped["missing_site"] != 0 {
		t.Errorf("quality: %d %+v", code, q)
	}
	// Out of ClickHouse's DateTime: wrapped around, ClickHouse refused it
	// (503) or answered for another time.
	for _, q := range []string{"?from=x", "?from=10&to=5", "?to=-1", "?from=1969-12-31T23:00:00Z&to=1970-01-01T00:00:01Z", "?from=2106-06-01T00:00:00Z&to=2106-06-02T00:00:00Z"} {
		var e map[string]string
		if code := getJSON(t, a.dash.URL+"/api/loss"+q, &e); code != 400 {
			t.Errorf("%s: %d %v", q, code, e)
		}
	}
	// Unix seconds where milliseconds are read are refused and named,
	// also when both are seconds: that range was in January 1970 and
	// was answered (with nothing) as if asked.
	for q, want := range map[string]string{
		"?site=demo&from=1796256000":                "from: 1796256000 looks like Unix seconds (2026-12-03T00:00:00Z); give Unix milliseconds (add 000)",
		"?site=demo&from=1796256000&to=1796259600":  "to: 1796259600 looks like Unix seconds (2026-12-03T01:00:00Z)",
		"?site=demo&from=2026-12-03T00:00:00+05:00": `from: "2026-12-03T00:00:00 05:00" has a space where RFC 3339 has '+'`,
	} {
		var e map[string]string
		if code := getJSON(t, a.dash.URL+"/api/loss"+q, &e); code != 400 || !strings.Contains(e["error"], want) {
			t.Errorf("%s: %d %v, want %q", q, code, e, want)
		}
	}
	// The first milliseconds ClickHouse's DateTime holds: the counters
	// read from an instance's life before them answered 503.
	if code := getJSON(t, a.dash.URL+"/api/loss?site=demo&from=1&to=2", &map[string]any{}); code != 200 {
		t.Errorf("from=1&to=2: %d", code)
	}
	resp, err := authGet(a.dash.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"edgepixel_aggregator_edge_hits_total 15\n", "edgepixel_aggregator_edge_events_total 12\n",
		`edgepixel_aggregator_edge_drops_total{reason="missing_site"} 2` + "\n", `edgepixel_aggregator_edge_drops_total{reason="buffer_full"} 1` + "\n",
		`edgepixel_aggregator_edge_notes_total{reason="no_salt"} 3` + "\n"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(m), `site="`) {
		t.Error("/metrics has per-site labels")
	}
}

// The on-disk store keeps counters too.
func TestLossAPIDisk(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	now := time.Now()
	inst, _ := event.NewID(now.UnixMilli(), rand.Reader)
	c := wire.Counters{Instance: inst, Sites: []wire.SiteCounts{{Site: "demo", Time: now.UnixMilli(), Hits: 3, Events: 3}}}
	body := wire.AppendWithCounters(nil, mkEvents(t, "demo", 3), &c)
	if code, b := a.post(body, signed(secret, time.Now().Unix(), body)); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	var l store.Loss
	eventually(t, "counted", func() bool {
		l = store.Loss{}
		return getJSON(t, a.dash.URL+"/api/loss?site=demo", &l) == 200 && l.Hits == 3 && l.Stored == 3
	})
}

// An unescaped '+' of an RFC 3339 offset arrives as a space (a query
// string decodes '+' so): the refusal says so and how to write it, and
// the value is not read as if the '+' were there (the space may have
// been meant otherwise). A space that a '+' would not mend gets the
// plain refusal.
func TestParseTimePlusAsSpace(t *testing.T) {
	q, err := url.ParseQuery("from=2026-12-03T00:00:00+05:00")
	if err != nil {
		t.Fatal(err)
	}
	_, err = parseTime(q.Get("from"), time.Time{}, false)
	if err == nil || !strings.Contains(err.Error(), `"2026-12-03T00:00:00 05:00" has a space where RFC 3339 has '+'`) ||
		!strings.HasSuffix(err.Error(), "a '+' in a URL query reads as a space: write it as %2B") {
		t.Errorf("an unescaped '+': %v", err)
	}
	q, _ = url.ParseQuery("from=2026-12-03T00:00:00%2B05:00")
	if got, err := parseTime(q.Get("from"), time.Time{}, false); err != nil || !got.Equal(time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)) {
		t.Errorf("%%2B: %v %v", got, err)
	}
	for _, v := range []string{"2026-12-03 00:00:00Z", "2026-12-03T00:00:00 x"} {
		if _, err := parseTime(v, time.Time{}, false); err == nil || err.Error() != "want RFC 3339, unix milliseconds or a date (YYYY-MM-DD)" {
			t.Errorf("%q: %v, want the plain refusal", v, err)
		}
	}
	// A date, as /api/stats takes them (a tester's from=2026-12-05 was
	// refused): the day's start, and as the range's end the next day's.
	for _, c := range []struct {
		end  bool
		want time.Time
	}{{false, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}, {true, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}} {
		if got, err := parseTime("2026-12-05", time.Time{}, c.end); err != nil || !got.Equal(c.want) {
			t.Errorf("2026-12-05 (end %v): %v %v, want %v", c.end, got, err, c.want)
		}
	}
	if _, err := parseTime("2026-02-30", time.Time{}, false); err == nil || err.Error() != "2026-02-30 is no date of the calendar" {
		t.Errorf("2026-02-30: %v", err)
	}
}
