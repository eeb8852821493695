package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// parityCase is one request of the parity table, and how many rows it
// stores (declared, so that two builds that both lose a hit do not pass).
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
// edge fills, event POSTs (one, an array, text/plain beacons, props),
// truncation and non-ASCII text, and what it refuses.
func parityCases() []parityCase {
	q := func(v url.Values) string { return v.Encode() }
	// Over the URL limit in bytes, under the POP's 8 KB request-line limit
	// percent-encoded; truncation must not cut a rune.
	long := strings.Repeat("ü", event.MaxURLLen/2+50)
	return []parityCase{
		{name: "pixel", method: "GET", path: "/p.gif?" + q(url.Values{"site": {"par"}, "url": {"https://par.example/a?utm_source=news&utm_medium=email&utm_campaign=launch"}, "ref": {"https://news.ycombinator.com/"}}),
			hdr: map[string]string{"User-Agent": "parity/1.0"}, rows: 1},
		{name: "pixel, url from Referer", method: "GET", path: "/p?site=par",
			hdr: map[string]string{"Referer": "https://par.example/from-referer", "User-Agent": "parity/1.0"}, rows: 1},
		{name: "pixel /i with an event name", method: "GET", path: "/i?site=par&e=signup&url=https%3A%2F%2Fpar.example%2Fi", rows: 1},
		{name: "pixel HEAD", method: "HEAD", path: "/p.gif?site=par&url=https%3A%2F%2Fpar.example%2Fhead", rows: 1},
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
// of its own, and requires the same answers and the same stored rows, field
// by field, ids and times aside.
func TestToolchainParity(t *testing.T) {
	cases := parityCases()
	want := 0
	for _, c := range cases {
		want += c.rows
	}
	type result struct {
		answers []parityAnswer
		rows    []string // each row's fields as JSON, sorted
	}
	var mu sync.Mutex
	results := map[build.Toolchain]result{}
	t.Run("serve", func(t *testing.T) {
		for _, tc := range build.Toolchains {
			t.Run(string(tc), func(t *testing.T) {
				t.Parallel()
				b := bin
				b.Wasm = wasm[tc]
				s := startStack(t, stack.Options{Bin: b})
				var res result
				for _, c := range cases {
					res.answers = append(res.answers, send(t, s.PopURL, c))
				}
				// Whatever arrives is compared below, even when rows are
				// missing: which ones tells what went wrong.
				deadline := time.Now().Add(30 * time.Second)
				for chCount(t, s.ClickHouse.HTTPURL) < want && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(500 * time.Millisecond) // nothing more arrives
				res.rows = parityRows(t, s.ClickHouse.HTTPURL)
				if len(res.rows) != want {
					var short []string
					for _, r := range res.rows {
						short = append(short, trim([]byte(r)))
					}
					t.Errorf("%d rows stored, want %d:\n    %s", len(res.rows), want, strings.Join(short, "\n    "))
				}
				mu.Lock()
				results[tc] = res
				mu.Unlock()
			})
		}
	})
	a, b := results[build.TinyGo], results[build.Go]
	if len(a.answers) != len(cases) || len(b.answers) != len(cases) {
		t.Fatal("a build did not answer every request")
	}
	for i, c := range cases {
		x, y := a.answers[i], b.answers[i]
		if x.Status != y.Status || !bytes.Equal(x.Body, y.Body) || fmt.Sprint(x.Header) != fmt.Sprint(y.Header) {
			t.Errorf("%s: the builds answer differently:\n  tinygo: %d %v %q\n  go:     %d %v %q", c.name,
				x.Status, x.Header, trim(x.Body), y.Status, y.Header, trim(y.Body))
		}
	}
	if strings.Join(a.rows, "\n") != strings.Join(b.rows, "\n") {
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
		t.Errorf("the builds stored different rows:\n  only TinyGo's:\n    %s\n  only Go's:\n    %s",
			strings.Join(only(a.rows, b.rows), "\n    "), strings.Join(only(b.rows, a.rows), "\n    "))
	}
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
		if f.Kind != event.KindID && f.Kind != event.KindTime {
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
