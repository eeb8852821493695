package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/edgepixel/edgepixel/tests/stack"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// chQuery runs a query on ClickHouse's HTTP interface and returns the body.
func chQuery(t *testing.T, base, q string) string {
	t.Helper()
	resp, err := http.Post(base+"/?database=edgepixel", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("clickhouse: %s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

func chCount(t *testing.T, base string) int {
	n, err := strconv.Atoi(chQuery(t, base, "SELECT count() FROM events"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v (last: %s)", what, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveCounts follows the aggregator's WebSocket and records the newest
// total it announced.
type liveCounts struct {
	conn   *websocket.Conn
	totals chan int
}

func dialLive(t *testing.T, s *stack.Stack) *liveCounts {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.DashboardURL, "http") + "/live"
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + s.DashboardToken}})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	l := &liveCounts{conn: conn, totals: make(chan int, 1024)}
	go func() {
		last := -1
		for {
			var m struct {
				Type  string         `json:"type"`
				Total int            `json:"total"`
				Sites map[string]int `json:"sites"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				close(l.totals)
				return
			}
			// Only changes: the hub also sends a delta a second with
			// nothing new, which would fill totals in a long test.
			if (m.Type == "snapshot" || m.Type == "delta") && m.Total != last {
				last = m.Total
				l.totals <- m.Total
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return l
}

// waitFor waits until the live total reaches want and reports when it did.
func (l *liveCounts) waitFor(t *testing.T, want int, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	last := -1
	for {
		select {
		case n, ok := <-l.totals:
			if !ok {
				t.Fatalf("live socket closed at total %d, want %d", last, want)
			}
			last = n
			if n == want {
				return
			}
			if n > want {
				t.Fatalf("live total %d overshot %d", n, want)
			}
		case <-timeout:
			t.Fatalf("live total %d, want %d within %v", last, want, d)
		}
	}
}

func get(t *testing.T, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func post(t *testing.T, u, ctype string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// signedBatch posts events to the aggregator as the edge would.
func signedBatch(t *testing.T, aggURL string, secret []byte, evs []event.Event) (*http.Response, []byte) {
	body := wire.Append(nil, evs)
	ts := time.Now().Unix()
	return post(t, aggURL+"/ingest", wire.ContentType, body, map[string]string{
		wire.HeaderTimestamp: strconv.FormatInt(ts, 10),
		wire.HeaderSignature: wire.Sign(secret, ts, body),
	})
}

// storedEvents reads every stored event back from ClickHouse.
func storedEvents(t *testing.T, chURL string) []event.Event {
	out := chQuery(t, chURL, "SELECT toString(event_id), ts_ms, site, name, url, referrer, user_agent, client_ip, pop, props FROM events ORDER BY ts_ms FORMAT JSONCompact")
	var res struct {
		Data [][]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	evs := make([]event.Event, 0, len(res.Data))
	for _, r := range res.Data {
		id, err := event.ParseID(r[0].(string))
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := strconv.ParseInt(fmt.Sprint(r[1]), 10, 64)
		evs = append(evs, event.Event{ID: id, Time: ms, Site: r[2].(string), Name: r[3].(string), URL: r[4].(string),
			Referrer: r[5].(string), UserAgent: r[6].(string), ClientIP: r[7].(string), Pop: r[8].(string), Props: r[9].(string)})
	}
	return evs
}

func pixelURL(pop, site, page, ref string) string {
	return pop + "/p.gif?" + url.Values{"site": {site}, "url": {page}, "ref": {ref}}.Encode()
}
