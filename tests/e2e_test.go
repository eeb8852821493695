package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/stack"
)

const ua = "edgepixel-e2e/1.0"

// TestEndToEnd drives the whole path on real processes: pixel hits and
// event POSTs through the POP running the edge .wasm, to the aggregator, Redis
// and ClickHouse, and live counts over the WebSocket. Every step counts rows.
func TestEndToEnd(t *testing.T) {
	s := startStack(t, stack.Options{})
	live := dialLive(t, s)
	live.waitFor(t, 0, 10*time.Second) // the snapshot sent on connect

	// Bad input first: none of it may store a row.
	t.Run("bad input at the POP", func(t *testing.T) { badInputAtPOP(t, s) })
	t.Run("bad input at the aggregator", func(t *testing.T) { badInputAtAggregator(t, s) })

	sentURLs := map[string]bool{}
	const pixels, workers = 120, 8
	start := time.Now()
	t.Run("pixel hits", func(t *testing.T) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < pixels; i += workers {
					page := fmt.Sprintf("https://example.com/p/%d?utm_source=e2e", i)
					resp, body := get(t, pixelURL(s.PopURL, "demo", page, "https://news.ycombinator.com/"), map[string]string{"User-Agent": ua})
					checkPixel(t, resp, body)
					mu.Lock()
					sentURLs[strings.TrimSuffix(page, "?utm_source=e2e")] = true // stored without campaign parameters
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
	})

	const posts = 10 + 10 + 5*4
	t.Run("event posts", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			resp, b := post(t, s.PopURL+"/e", "application/json", []byte(fmt.Sprintf(`{"site":"shop","name":"signup","url":"https://shop.example/j/%d","props":{"plan":"pro"}}`, i)), nil)
			wantStatus(t, resp, b, http.StatusNoContent)
		}
		for i := 0; i < 10; i++ { // navigator.sendBeacon sends text/plain
			resp, b := post(t, s.PopURL+"/e", "text/plain;charset=UTF-8", []byte(fmt.Sprintf(`{"site":"shop","name":"beacon","url":"https://shop.example/b/%d"}`, i)), nil)
			wantStatus(t, resp, b, http.StatusNoContent)
		}
		for i := 0; i < 5; i++ {
			var parts []string
			for j := 0; j < 4; j++ {
				parts = append(parts, fmt.Sprintf(`{"site":"shop","name":"batch","url":"https://shop.example/a/%d/%d"}`, i, j))
			}
			resp, b := post(t, s.PopURL+"/e", "application/json", []byte("["+strings.Join(parts, ",")+"]"), nil)
			wantStatus(t, resp, b, http.StatusNoContent)
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("no CORS header on /e")
			}
		}
	})
	total := pixels + posts

	t.Run("rows in clickhouse", func(t *testing.T) {
		eventually(t, 30*time.Second, "all events in ClickHouse", func() (bool, string) {
			n := chCount(t, s.ClickHouse.HTTPURL)
			return n >= total, strconv.Itoa(n)
		})
		t.Logf("all %d events in ClickHouse %v after the first hit was sent", total, time.Since(start).Round(time.Millisecond))
		if n := chCount(t, s.ClickHouse.HTTPURL); n != total {
			t.Fatalf("%d rows, want exactly %d", n, total)
		}
		evs := storedEvents(t, s.ClickHouse.HTTPURL)
		ids := map[event.ID]bool{}
		names := map[string]int{}
		for _, e := range evs {
			ids[e.ID] = true
			names[e.Site+"/"+e.Name]++
			if e.Site == "demo" {
				if !sentURLs[e.URL] || e.Referrer != "https://news.ycombinator.com/" || e.UserAgent != ua || e.ClientIP != "" || e.Pop != "local" {
					t.Errorf("pixel row has wrong fields: %+v", e)
				}
				delete(sentURLs, e.URL)
			}
			if e.Name == "signup" && e.Props != `{"plan":"pro"}` {
				t.Errorf("props lost: %+v", e)
			}
		}
		if len(ids) != total {
			t.Errorf("%d distinct ids, want %d", len(ids), total)
		}
		if len(sentURLs) != 0 {
			t.Errorf("%d pixel hits missing", len(sentURLs))
		}
		want := map[string]int{"demo/pageview": pixels, "shop/signup": 10, "shop/beacon": 10, "shop/batch": 20}
		for k, v := range want {
			if names[k] != v {
				t.Errorf("%s: %d rows, want %d", k, names[k], v)
			}
		}
	})

	t.Run("refusals by the POP counted", func(t *testing.T) { refusalsCounted(t, s) })

	t.Run("live count", func(t *testing.T) {
		live.waitFor(t, total, 10*time.Second)
	})

	t.Run("event properties on the dashboard", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.DashboardURL+"/api/top?site=shop&range=today&dim=props", nil)
		req.Header.Set("Authorization", "Bearer "+s.DashboardToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var top struct {
			Source string
			Rows   []struct {
				Value  string
				Events uint64
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&top); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v", resp.Status, err)
		}
		if len(top.Rows) != 1 || top.Rows[0].Value != "plan=pro" || top.Rows[0].Events != 10 {
			t.Errorf("props of the signups: %+v, want plan=pro in 10 events", top)
		}
	})

	t.Run("retried batches store nothing twice", func(t *testing.T) {
		evs := storedEvents(t, s.ClickHouse.HTTPURL)
		// The edge retrying whole batches, and a batch repeating an event.
		for _, batch := range [][]event.Event{evs[:total/2], evs[total/2:], evs, append(evs[:3:3], evs[0], evs[0])} {
			resp, b := signedBatch(t, s.AggregatorURL, s.Secret, batch)
			wantStatus(t, resp, b, http.StatusOK)
		}
		// One new event after the retries: the loader takes the spool in
		// order, so once it is stored every retry before it was processed.
		marker := newEvent(t, "marker")
		resp, b := signedBatch(t, s.AggregatorURL, s.Secret, []event.Event{marker})
		wantStatus(t, resp, b, http.StatusOK)
		eventually(t, 30*time.Second, "marker stored", func() (bool, string) {
			n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'marker'")
			return n == "1", n
		})
		total++
		if n := chCount(t, s.ClickHouse.HTTPURL); n != total {
			t.Fatalf("%d rows after retries, want exactly %d", n, total)
		}
		live.waitFor(t, total, 10*time.Second)
	})

	t.Run("dashboard in a browser", func(t *testing.T) {
		dashboardShowsLiveCount(t, s)
	})
}

func newEvent(t *testing.T, site string) event.Event {
	now := time.Now()
	id, err := event.NewID(now.UnixMilli(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{ID: id, Time: now.UnixMilli(), Site: site, Name: event.KindPageview, URL: "https://example.com/"}
}

func checkPixel(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.Equal(body, pixel.GIF) {
		t.Errorf("pixel answered %s %q %d bytes", resp.Status, resp.Header.Get("Content-Type"), len(body))
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") || !strings.Contains(cc, "no-cache") {
		t.Errorf("pixel cacheable: Cache-Control %q", cc)
	}
	if d := resp.Header.Get("X-Edgepixel-Drop"); d != "" {
		t.Errorf("pixel hit dropped: %s", d)
	}
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Errorf("%s %s: %s, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, want, body)
	}
}

func badInputAtPOP(t *testing.T, s *stack.Stack) {
	// The pixel answers the GIF whatever it is sent, and says why it did not count.
	for _, q := range []string{"", "?%zz", "?url=https%3A%2F%2Fexample.com%2F", "?site=%20"} {
		resp, body := get(t, s.PopURL+"/p.gif"+q, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, pixel.GIF) || resp.Header.Get("X-Edgepixel-Drop") != wire.DropMissingSite {
			t.Errorf("%q: %s drop=%q", q, resp.Status, resp.Header.Get("X-Edgepixel-Drop"))
		}
	}
	for _, c := range []struct {
		body   string
		status int
		reason string
	}{
		{`{"site":`, 400, wire.DropBadJSON},
		{`not json`, 400, wire.DropBadJSON},
		{`{"name":"x"}`, 400, wire.DropMissingSite},
		{`{"site":"x","props":[1,2]}`, 400, wire.DropBadJSON},
		{"[" + strings.Repeat(`{"site":"x"},`, pixel.MaxPostEvents) + `{"site":"x"}]`, 413, wire.DropTooManyEvents},
		{`{"site":"x","url":"` + strings.Repeat("a", pixel.MaxPostBody) + `"}`, 413, wire.DropTooLarge},
	} {
		resp, b := post(t, s.PopURL+"/e", "application/json", []byte(c.body), nil)
		if resp.StatusCode != c.status || resp.Header.Get("X-Edgepixel-Drop") != c.reason || !strings.Contains(string(b), c.reason) {
			t.Errorf("POST %.30q: %s drop=%q body=%s", c.body, resp.Status, resp.Header.Get("X-Edgepixel-Drop"), b)
		}
	}
	resp, b := get(t, s.PopURL+"/e", nil)
	wantStatus(t, resp, b, http.StatusMethodNotAllowed)
	// The POP refuses a body over its --max-request-body itself: the
	// module never sees it (refusalsCounted).
	resp, b = post(t, s.PopURL+"/e", "application/json", bytes.Repeat([]byte{' '}, pop.DefaultMaxRequestBody+1), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Edgepixel-Drop") != wire.DropBodyTooLarge {
		t.Errorf("POST over --max-request-body: %s drop=%q body=%s", resp.Status, resp.Header.Get("X-Edgepixel-Drop"), b)
	}
	// The same on a path that is not the pixel's or the events': refused
	// alike, and no lost hit (refusalsCounted finds one, not two).
	resp, b = post(t, s.PopURL+"/upload", "application/json", bytes.Repeat([]byte{' '}, pop.DefaultMaxRequestBody+1), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /upload over --max-request-body: %s body=%s", resp.Status, b)
	}
}

// refusalsCounted: what the POP refused before the module saw it
// (badInputAtPOP's body over --max-request-body on /e) reaches /api/loss
// and the aggregator's /metrics as the module's drops do, under no site;
// the same refusal on /upload is no lost hit.
func refusalsCounted(t *testing.T, s *stack.Stack) {
	eventually(t, 30*time.Second, "the POP's refusal in /api/loss", func() (bool, string) {
		l := lossOf(t, s, "")
		return l.Dropped[wire.DropBodyTooLarge] == 1, fmt.Sprint(l.Dropped)
	})
	if l := lossOf(t, s, "demo"); l.Dropped[wire.DropBodyTooLarge] != 0 {
		t.Errorf("a refusal with no site counted for demo: %v", l.Dropped)
	}
	resp, err := s.DashboardGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want := `edgepixel_aggregator_edge_drops_total{reason="body_too_large"} 1`; !strings.Contains(string(b), want+"\n") {
		t.Errorf("the aggregator's /metrics has no %s", want)
	}
}

func badInputAtAggregator(t *testing.T, s *stack.Stack) {
	good := wire.Append(nil, []event.Event{newEvent(t, "forged")})
	now := time.Now().Unix()
	sign := func(secret []byte, ts int64, body []byte) map[string]string {
		return map[string]string{wire.HeaderTimestamp: strconv.FormatInt(ts, 10), wire.HeaderSignature: wire.Sign(secret, ts, body)}
	}
	garbage := []byte("EPB1\x05garbage")
	huge := bytes.Repeat([]byte{'x'}, 5<<20)
	for _, c := range []struct {
		name   string
		body   []byte
		hdr    map[string]string
		status int
	}{
		{"no signature", good, nil, 401},
		{"wrong secret", good, sign([]byte("not the secret"), now, good), 401},
		{"replayed outside the window", good, sign(s.Secret, now-3600, good), 401},
		{"malformed batch", garbage, sign(s.Secret, now, garbage), 400},
		{"oversized body", huge, sign(s.Secret, now, huge), 413},
	} {
		resp, b := post(t, s.AggregatorURL+"/ingest", wire.ContentType, c.body, c.hdr)
		if resp.StatusCode != c.status || !strings.Contains(string(b), "reason") {
			t.Errorf("%s: %s %s, want %d with a reason", c.name, resp.Status, b, c.status)
		}
	}
}
