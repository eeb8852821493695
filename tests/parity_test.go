package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// parityCase is one request of the parity table, and how many rows it
// stores (declared, so that two builds that both lose a hit do not pass).
// Whether the edge counts it as a hit follows from its path (parityHits).
type parityCase struct {
	name   string
	method string
	path   string // with the query
	ctype  string
	body   string
	hdr    map[string]string
	rows   int
}

// parityCases covers the edge's paths: pixel hits with every field the
// edge fills, event POSTs (one, an array, text/plain beacons, props, a
// client's event id and its retry), truncation and non-ASCII text, and
// what it refuses.
func parityCases(t *testing.T) []parityCase {
	q := func(v url.Values) string { return v.Encode() }
	// Over the URL limit in bytes, under the POP's 8 KB request-line limit
	// percent-encoded; truncation must not cut a rune.
	long := strings.Repeat("ü", event.MaxURLLen/2+50)
	// A client's event id must be a UUIDv7 of about now (event.ParseClientIDSkewed keeps it as it is).
	clientID, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withID := `{"site":"par","name":"retried","url":"https://par.example/r","event_id":"` + clientID.String() + `"}`
	return []parityCase{
		{name: "pixel", method: "GET", path: "/p.gif?" + q(url.Values{"site": {"par"}, "url": {"https://par.example/a?utm_source=news&utm_medium=email&utm_campaign=launch"}, "ref": {"https://news.ycombinator.com/"}}),
			hdr: map[string]string{"User-Agent": "parity/1.0"}, rows: 1},
		{name: "pixel, url from Referer", method: "GET", path: "/p?site=par",
			hdr: map[string]string{"Referer": "https://par.example/from-referer", "User-Agent": "parity/1.0"}, rows: 1},
		{name: "pixel /i with an event name", method: "GET", path: "/i?site=par&e=signup&url=https%3A%2F%2Fpar.example%2Fi", rows: 1},
		{name: "pixel HEAD", method: "HEAD", path: "/p.gif?site=par&url=https%3A%2F%2Fpar.example%2Fhead"},
		{name: "pixel, non-ASCII and too long", method: "GET", path: "/p.gif?" + q(url.Values{"site": {"pär ✓"}, "url": {"https://par.example/" + long}, "ref": {"https://例え.jp/パス"}}),
			hdr: map[string]string{"User-Agent": strings.Repeat("Mozilla/5.0 ", 80)}, rows: 1},
		{name: "pixel, no site", method: "GET", path: "/p.gif?url=https%3A%2F%2Fpar.example%2F"},
		{name: "pixel, bad query", method: "GET", path: "/p.gif?%zz"},
		{name: "pixel, POST", method: "POST", path: "/p.gif?site=par", ctype: "text/plain", body: "x"},
		{name: "event", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","name":"signup","url":"https://par.example/e","ref":"https://ref.example/","props":{"plan":"pro","seats":3,"nested":{"a":[1,2]}}}`, rows: 1},
		{name: "beacon", method: "POST", path: "/e", ctype: "text/plain;charset=UTF-8",
			body: `{"site":"par","name":"beacon","url":"https://par.example/b"}`, rows: 1},
		{name: "event array", method: "POST", path: "/e", ctype: "application/json",
			body: `[{"site":"par","name":"a","url":"https://par.example/1"},{"site":"par","name":"b","url":"https://par.example/2","props":{}},{"site":"other","url":"https://other.example/"}]`, rows: 3},
		{name: "event, non-ASCII", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","name":"événement ✓","url":"https://par.example/ü","props":{"emoji":"🎉","esc":"\u00e9\n"}}`, rows: 1},
		{name: "event with the client's id", method: "POST", path: "/e", ctype: "application/json", body: withID, rows: 1},
		{name: "event with the client's id, retried", method: "POST", path: "/e", ctype: "application/json", body: withID},
		{name: "event, Idempotency-Key", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","name":"keyed"}`, hdr: map[string]string{"Idempotency-Key": `"` + key.String() + `"`}, rows: 1},
		{name: "event, bad event_id", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","event_id":"6f1c2a4e-0000-4000-8000-000000000000"}`},
		{name: "event, props too large", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","props":{"big":"` + strings.Repeat("p", event.MaxPropsLen) + `"}}`},
		{name: "event preflight", method: "OPTIONS", path: "/e",
			hdr: map[string]string{"Origin": "https://par.example", "Access-Control-Request-Method": "POST"}},
		{name: "event, truncated JSON", method: "POST", path: "/e", ctype: "application/json", body: `{"site":`},
		{name: "event, no site", method: "POST", path: "/e", ctype: "application/json", body: `{"name":"x"}`},
		{name: "event, props not an object", method: "POST", path: "/e", ctype: "application/json", body: `{"site":"par","props":[1]}`},
		{name: "event, too many", method: "POST", path: "/e", ctype: "application/json",
			body: "[" + strings.Repeat(`{"site":"par"},`, pixel.MaxPostEvents) + `{"site":"par"}]`},
		{name: "event, too large", method: "POST", path: "/e", ctype: "application/json",
			body: `{"site":"par","url":"` + strings.Repeat("a", pixel.MaxPostBody) + `"}`},
		{name: "event, GET", method: "GET", path: "/e"},
		{name: "health", method: "GET", path: "/healthz"},
		{name: "unknown path", method: "GET", path: "/nope"},
	}
}

// parityAnswer is what a visitor sees of an answer.
type parityAnswer struct {
	Status int
	Header map[string]string
	Body   []byte
}

// parityHeaders are the answer headers compared.
var parityHeaders = []string{"Content-Type", "Content-Length", "Cache-Control", "X-Edgepixel-Drop", "Retry-After",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Allow"}

// TestToolchainParity sends the same table of requests through the POP
// running the edge module built by each toolchain, each with a whole stack
// of its own, once for each way the module delivers (signed batches, as on
// Fastly, and the journal, the POP's default), and requires the same
// answers, the same stored rows, field by field, ids and times aside, and
// the same edge counters (hits, events and drops by reason, per site).
func TestToolchainParity(t *testing.T) {
	cases := parityCases(t)
	want, wantHits := 0, parityHits(cases)
	for _, c := range cases {
		want += c.rows
	}
	type result struct {
		answers  []parityAnswer
		rows     []string // each row's fields as JSON, sorted
		counters []string // parityCounters
	}
	deliveries := []string{stack.DeliveryBatches, stack.DeliveryJournal}
	var mu sync.Mutex
	results := map[string]result{} // by delivery and toolchain
	t.Run("serve", func(t *testing.T) {
		for _, d := range deliveries {
			for _, tc := range build.Toolchains {
				t.Run(d+"/"+string(tc), func(t *testing.T) {
					t.Parallel()
					b := bin
					b.Wasm = wasm[tc]
					s := startStack(t, stack.Options{Bin: b, Delivery: d})
					var res result
					for _, c := range cases {
						res.answers = append(res.answers, send(t, s.PopURL, c))
					}
					// Whatever arrives is compared below, even when rows are
					// missing: which ones tells what went wrong. The counts
					// of drops ride on later deliveries, or alone after a
					// second (pixel.Batcher.Due).
					deadline := time.Now().Add(30 * time.Second)
					for (chCount(t, s.ClickHouse.HTTPURL) < want || counted(parityCounters(t, s.ClickHouse.HTTPURL), wire.CounterHits) < wantHits) &&
						time.Now().Before(deadline) {
						time.Sleep(100 * time.Millisecond)
					}
					time.Sleep(500 * time.Millisecond) // nothing more arrives
					res.rows = parityRows(t, s.ClickHouse.HTTPURL)
					res.counters = parityCounters(t, s.ClickHouse.HTTPURL)
					if len(res.rows) != want {
						var short []string
						for _, r := range res.rows {
							short = append(short, trim([]byte(r)))
						}
						t.Errorf("%d rows stored, want %d:\n    %s", len(res.rows), want, strings.Join(short, "\n    "))
					}
					if n := counted(res.counters, wire.CounterHits); n != wantHits {
						t.Errorf("the edge counted %d hits, want %d:\n    %s", n, wantHits, strings.Join(res.counters, "\n    "))
					}
					mu.Lock()
					results[d+"/"+string(tc)] = res
					mu.Unlock()
				})
			}
		}
	})
	for _, d := range deliveries {
		a, b := results[d+"/"+string(build.TinyGo)], results[d+"/"+string(build.Go)]
		if len(a.answers) != len(cases) || len(b.answers) != len(cases) {
			t.Errorf("%s: a build did not answer every request", d)
			continue
		}
		for i, c := range cases {
			x, y := a.answers[i], b.answers[i]
			if x.Status != y.Status || !bytes.Equal(x.Body, y.Body) || fmt.Sprint(x.Header) != fmt.Sprint(y.Header) {
				t.Errorf("%s: %s: the builds answer differently:\n  tinygo: %d %v %q\n  go:     %d %v %q", d, c.name,
					x.Status, x.Header, trim(x.Body), y.Status, y.Header, trim(y.Body))
			}
		}
		if only := parityDiff(a.rows, b.rows); only != "" {
			t.Errorf("%s: the builds stored different rows:\n%s", d, only)
		}
		if only := parityDiff(a.counters, b.counters); only != "" {
			t.Errorf("%s: the builds counted differently:\n%s", d, only)
		}
	}
}

// parityHits is how many of cases the edge counts as hits: requests on
// the pixel and event paths, not CORS preflights (pixel.Counts).
func parityHits(cases []parityCase) int {
	n := 0
	for _, c := range cases {
		path, _, _ := strings.Cut(c.path, "?")
		switch {
		case c.method == "OPTIONS":
		case path == "/p.gif" || path == "/p" || path == "/i" || path == "/e":
			n++
		}
	}
	return n
}

// parityDiff says which lines only TinyGo's (a) or only Go's (b) result
// has, "" when none.
func parityDiff(a, b []string) string {
	only := func(x, y []string) []string {
		in := map[string]int{}
		for _, r := range y {
			in[r]++
		}
		var out []string
		for _, r := range x {
			if in[r] > 0 {
				in[r]--
			} else {
				out = append(out, trim([]byte(r)))
			}
		}
		return out
	}
	x, y := only(a, b), only(b, a)
	if len(x) == 0 && len(y) == 0 {
		return ""
	}
	return fmt.Sprintf("  only TinyGo's:\n    %s\n  only Go's:\n    %s", strings.Join(x, "\n    "), strings.Join(y, "\n    "))
}

// parityCounters reads the edges' counters as the aggregator stored them:
// per site, counter and reason, the sum over instances of each one's
// largest value (they are cumulative per instance), one line each,
// "site\tcounter\treason\tvalue" (ClickHouse's TSV, escapes kept), sorted.
func parityCounters(t *testing.T, chURL string) []string {
	out := chQuery(t, chURL, `SELECT site, counter, reason, sum(v) FROM (
		SELECT instance, site, counter, reason, max(value) AS v FROM edge_counters
		GROUP BY instance, site, counter, reason)
		GROUP BY site, counter, reason ORDER BY site, counter, reason FORMAT TSV`)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// counted sums the values of counter in lines of parityCounters.
func counted(lines []string, counter string) int {
	n := 0
	for _, l := range lines {
		if f := strings.Split(l, "\t"); len(f) == 4 && f[1] == counter {
			v, _ := strconv.Atoi(f[3])
			n += v
		}
	}
	return n
}

// send makes one request of the table and records the answer.
func send(t *testing.T, base string, c parityCase) parityAnswer {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == "" {
		req.Body = http.NoBody
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	// A connection of its own: the POP closes a kept-alive connection
	// after answering a request whose body the guest left unread, without
	// saying so, and the client's next POST on it fails with EOF; that is
	// the POP's, the same for both builds, and not what this test compares.
	req.Close = true
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, body := do(t, req)
	a := parityAnswer{Status: resp.StatusCode, Header: map[string]string{}, Body: body}
	for _, h := range parityHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			a.Header[h] = strings.Join(v, ", ")
		}
	}
	return a
}

// parityRows reads every stored row's fields (event.Fields, so a field
// added later is compared too), without the id and the edge's time, each
// as one JSON object, sorted.
func parityRows(t *testing.T, chURL string) []string {
	var cols []string
	for _, f := range event.Fields {
		if f.Kind != event.KindID && f.Kind != event.KindTime && !f.Transit {
			cols = append(cols, f.JSON)
		}
	}
	out := chQuery(t, chURL, "SELECT "+strings.Join(cols, ", ")+" FROM events FORMAT JSONEachRow")
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		b, _ := json.Marshal(m) // keys sorted
		rows = append(rows, string(b))
	}
	sort.Strings(rows)
	return rows
}

// trim shortens what a failure prints: rows and bodies can be kilobytes.
func trim(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}
