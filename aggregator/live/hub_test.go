package live

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/event"
)

func dial(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *websocket.Conn) Message {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m Message
	if err := c.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSnapshotThenDeltas(t *testing.T) {
	h := NewHub(Options{Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c := dial(t, srv)
	// Nothing before the counts come from the store.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("got a message before Set")
	}
	c = dial(t, srv)
	waitClients(t, h, 2)
	h.Set(map[string]uint64{"demo": 5}, 5)
	m := read(t, c)
	if m.Type != TypeSnapshot || m.Seq != 1 || m.Total != 5 || m.Sites["demo"] != 5 || m.TS == 0 {
		t.Fatalf("first message %+v", m)
	}
	// Bursts are coalesced into deltas that carry the changed sites only,
	// numbered one after another.
	for i := 0; i < 100; i++ {
		h.Add(map[string]uint64{"demo": 1, "shop": 1})
	}
	h.Observe([]event.Event{{Site: "shop", Name: event.KindPageview, URL: "https://shop.example/cart?x=1", Time: time.Now().UnixMilli()}})
	n, seq := 0, m.Seq
	var added uint64
	var pages []Page
	// A delta names only what changed since the one before, so the sites'
	// counts are merged; the page may come in a delta of its own.
	sites := map[string]uint64{}
	for {
		m = read(t, c)
		n++
		if m.Type != TypeDelta || m.Seq != seq+1 {
			t.Fatalf("message %d: %+v, want delta seq %d", n, m, seq+1)
		}
		seq = m.Seq
		added += m.Add["shop"]
		for k, v := range m.Sites {
			sites[k] = v
		}
		if p, ok := m.Pages["shop"]; ok {
			pages = p
		}
		if m.Total == 205 && pages != nil {
			break
		}
	}
	if n > 10 {
		t.Errorf("%d messages for one burst, want them coalesced", n)
	}
	if sites["shop"] != 100 || sites["demo"] != 105 || added != 100 {
		t.Errorf("sites %v, added to shop %d", sites, added)
	}
	if len(pages) != 1 || pages[0] != (Page{"/cart", 1}) {
		t.Errorf("pages now %+v", pages)
	}
	// A client connecting now gets the current counts at once, with the
	// last minute's events per second and the pages viewed now.
	c2 := dial(t, srv)
	m = read(t, c2)
	if m.Type != TypeSnapshot || m.Total != 205 || len(m.Recent["shop"]) != RecentSeconds || len(m.Pages["shop"]) != 1 {
		t.Errorf("snapshot on connect %+v", m)
	}
	var sum uint64
	for _, v := range m.Recent["shop"] {
		sum += v
	}
	if sum != 100 {
		t.Errorf("recent events of shop sum to %d, want 100", sum)
	}
	if h.Clients() != 3 { // the silent first one, c and c2
		t.Errorf("%d clients", h.Clients())
	}
	h.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c2.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("after Close: %v", err)
	}
}

func waitClients(t *testing.T, h *Hub, n int) {
	t.Helper()
	for i := 0; h.Clients() != n; i++ {
		if i == 500 {
			t.Fatalf("%d clients, want %d", h.Clients(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client may read only its sites: a reader limited to "shop" sees
// neither "demo" nor the other sites' sum.
func TestReaderSeesItsSitesOnly(t *testing.T) {
	h := NewHub(Options{})
	h.Set(map[string]uint64{"demo": 5, "shop": 2}, 9)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, Reader{Read: func(s string) bool { return s == "shop" }})
	}))
	defer srv.Close()
	c := dial(t, srv)
	m := read(t, c)
	if len(m.Sites) != 1 || m.Sites["shop"] != 2 || m.Total != 2 || m.Other != 0 {
		t.Fatalf("snapshot for shop only: %+v", m)
	}
	h.Add(map[string]uint64{"demo": 3})
	h.publish(false) // nothing for this reader
	h.Add(map[string]uint64{"shop": 1})
	h.publish(false)
	m = read(t, c)
	if m.Seq != 2 || len(m.Sites) != 1 || m.Sites["shop"] != 3 || m.Total != 3 {
		t.Fatalf("delta for shop only: %+v", m)
	}
	// The once-a-second beat reaches it with nothing changed for it.
	h.Add(map[string]uint64{"demo": 1})
	h.publish(true)
	m = read(t, c)
	if m.Type != TypeDelta || m.Seq != 3 || len(m.Sites) != 0 || len(m.Add) != 0 || m.Total != 3 {
		t.Fatalf("beat for shop only: %+v", m)
	}
}

// A client that does not read is dropped with CloseSlow once its queue is
// full, while another client keeps receiving every delta in order, and
// publishing never waits for either.
func TestSlowClientDropped(t *testing.T) {
	m := metrics.New()
	h := NewHub(Options{QueueLen: 4, Metrics: m, WriteTimeout: time.Minute})
	h.Set(map[string]uint64{}, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()
	slow := dial(t, srv)
	fast := dial(t, srv)
	waitClients(t, h, 2)
	got := make(chan Message, 1<<16)
	go func() {
		defer close(got)
		for {
			var msg Message
			if err := fast.ReadJSON(&msg); err != nil {
				return
			}
			got <- msg
		}
	}()
	// Large deltas (many sites) fill the slow client's socket buffers, then
	// its queue.
	delta := map[string]uint64{}
	for i := range 500 {
		delta[fmt.Sprintf("site-%03d.example", i)] = 1
	}
	// The fast client reads each delta before the next is published; the
	// slow one reads nothing.
	next := func() Message {
		msg, ok := <-got
		if !ok {
			t.Fatal("the fast client was disconnected")
		}
		return msg
	}
	if msg := next(); msg.Type != TypeSnapshot || msg.Seq != 1 {
		t.Fatalf("fast client first got %+v", msg)
	}
	published := 0
	for m.LiveDropped.Load() == 0 {
		if published == 20000 {
			t.Fatal("the slow client was never dropped")
		}
		h.Add(delta)
		h.publish(false)
		published++
		if msg := next(); msg.Type != TypeDelta || msg.Seq != uint64(published)+1 {
			t.Fatalf("fast client got %+v after %d deltas", msg, published)
		}
	}
	// The fast client keeps receiving.
	h.Add(delta)
	h.publish(false)
	if msg := next(); msg.Seq != uint64(published)+2 {
		t.Fatalf("fast client after the drop got seq %d", msg.Seq)
	}
	if h.Clients() != 1 {
		t.Errorf("%d clients after the drop, want 1", h.Clients())
	}
	// The slow client, reading at last, finds the close reason after what
	// was sent before.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	var err error
	for err == nil {
		_, _, err = slow.ReadMessage()
	}
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.ClosePolicyViolation || ce.Text != CloseSlow {
		t.Errorf("slow client ended with %v, want close 1008 %q", err, CloseSlow)
	}
	t.Logf("slow client dropped after %d deltas", published)
	// Reconnecting (as the page does, after a backoff) starts again from a
	// snapshot of the current counts.
	again := dial(t, srv)
	_, _, total, _ := h.Snapshot()
	if m := read(t, again); m.Type != TypeSnapshot || m.Seq != 1 || m.Total != total || len(m.Sites) != 500 {
		t.Errorf("after reconnecting: %s seq %d total %d (want %d), %d sites", m.Type, m.Seq, m.Total, total, len(m.Sites))
	}
}

func TestPingKeepsAliveAndSilentClientDropped(t *testing.T) {
	h := NewHub(Options{PingInterval: 20 * time.Millisecond, PongWait: 100 * time.Millisecond})
	h.Set(nil, 0)
	go h.Run(context.Background())
	srv := httptest.NewServer(h)
	defer srv.Close()
	// gorilla answers pings automatically while the client reads.
	c := dial(t, srv)
	pings := 0
	c.SetPingHandler(func(string) error {
		pings++
		return c.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
	})
	read(t, c)
	// No message comes for a second (the beat): the pings are the
	// fallback's, half an interval after the last.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	c.ReadMessage() // times out; pings were answered meanwhile
	if pings == 0 {
		t.Error("no pings")
	}
	// A client that never reads (so never answers pings) is dropped.
	dial(t, srv)
	deadline := time.Now().Add(3 * time.Second)
	for h.Clients() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h.Clients() > 1 {
		t.Errorf("silent client not dropped: %d clients", h.Clients())
	}
}

// Another site's page must not read the counts through a visitor's browser;
// the dashboard itself (same origin) and Origin-less clients may.
func TestCrossOriginRefused(t *testing.T) {
	h := NewHub(Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	h.Set(map[string]uint64{"demo": 1}, 1)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for origin, ok := range map[string]bool{
		"https://evil.example": false,
		srv.URL:                true,
	} {
		c, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {origin}})
		if ok != (err == nil) {
			t.Errorf("Origin %s: err %v (status %v), want allowed=%v", origin, err, resp, ok)
		}
		if c != nil {
			c.Close()
		}
	}
}

// A flood of made-up site names does not grow the counts: past MaxSites
// (or off the site list) events are summed up as Other, Total still adds
// up, and the overflow is counted.
func TestSitesBounded(t *testing.T) {
	m := metrics.New()
	h := NewHub(Options{MaxSites: 3, Metrics: m})
	h.Set(map[string]uint64{"a": 10, "b": 5, "c": 1, "d": 7}, 30) // the store knows more sites
	sites, other, total, _ := h.Snapshot()
	if len(sites) != 3 || sites["a"] != 10 || sites["d"] != 7 || sites["b"] != 5 || other != 8 || total != 30 {
		t.Fatalf("after Set: %v other %d total %d", sites, other, total)
	}
	delta := map[string]uint64{"a": 1}
	for i := range 5000 {
		delta[fmt.Sprintf("junk-%d", i)] = 1
	}
	h.Add(delta)
	sites, other, total, _ = h.Snapshot()
	if len(sites) != 3 || sites["a"] != 11 || other != 8+5000 || total != 30+5001 {
		t.Fatalf("after the flood: %d sites, other %d, total %d", len(sites), other, total)
	}
	if m.LiveOtherEvents.Load() != 5000 {
		t.Errorf("overflow counted %d, want 5000", m.LiveOtherEvents.Load())
	}

	// With a site list, only those, whatever MaxSites says.
	h = NewHub(Options{Sites: []string{"shop", "blog"}, MaxSites: 1})
	h.Set(map[string]uint64{"shop": 2, "old": 3}, 5)
	h.Add(map[string]uint64{"blog": 1, "other.example": 4})
	sites, other, total, _ = h.Snapshot()
	if len(sites) != 2 || sites["shop"] != 2 || sites["blog"] != 1 || other != 7 || total != 10 {
		t.Fatalf("with a site list: %v other %d total %d", sites, other, total)
	}
}

// Visitors: distinct non-zero ids, counted while in the 5-minute window,
// in the snapshot and then in deltas (also when they leave the window),
// bounded by MaxVisitors with the overflow flagged and counted.
func TestVisitorsWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := metrics.New()
	h := NewHub(Options{MaxVisitors: 5, Metrics: m, Now: func() time.Time { return now }})
	h.Set(map[string]uint64{"shop": 0, "blog": 0}, 0)
	ev := func(site string, id uint64) event.Event {
		return event.Event{Site: site, Name: "signup", VisitorID: id, Time: now.UnixMilli()}
	}
	h.Observe([]event.Event{ev("shop", 1), ev("shop", 1), ev("shop", 2), ev("shop", 0), ev("blog", 1)})
	if n, capped, ok := h.RecentVisitors("shop"); n != 2 || capped || !ok {
		t.Fatalf("shop: %d capped %v listed %v, want 2 (id 0 is no visitor)", n, capped, ok)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dial(t, srv)
	if s := read(t, c); s.Visitors["shop"] != 2 || s.Visitors["blog"] != 1 || s.VisitorsTotal != 3 || s.VisitorsCapped {
		t.Fatalf("snapshot visitors %v total %d", s.Visitors, s.VisitorsTotal)
	}
	// Id 1 seen again later stays one visitor, and keeps it in the window.
	now = now.Add(200 * time.Second)
	h.Observe([]event.Event{ev("shop", 1), ev("shop", 3)})
	h.publish(false)
	if d := read(t, c); d.Type != TypeDelta || d.Visitors["shop"] != 3 || d.VisitorsTotal != 4 {
		t.Fatalf("delta visitors %v total %d", d.Visitors, d.VisitorsTotal)
	}
	// At 301 s id 2 (and blog's 1) left the window; ids 1 and 3 stay.
	now = now.Add(101 * time.Second)
	h.publish(false)
	if d := read(t, c); d.Visitors["shop"] != 2 || d.Visitors["blog"] != 0 || d.VisitorsTotal != 2 {
		t.Fatalf("after sliding: visitors %v total %d", d.Visitors, d.VisitorsTotal)
	}
	// The cap: 5 ids kept at once over all sites (4 now, with the
	// expired ones swept when full): 3 more fit after a sweep, the rest
	// are dropped and flagged.
	h.Observe([]event.Event{ev("shop", 10), ev("shop", 11), ev("shop", 12), ev("shop", 13), ev("shop", 14)})
	n, capped, _ := h.RecentVisitors("shop")
	if n != 5 || !capped || m.LiveVisitorsCapped.Load() != 2 {
		t.Fatalf("at the cap: %d capped %v dropped %d, want 5, true, 2", n, capped, m.LiveVisitorsCapped.Load())
	}
	h.publish(false)
	if d := read(t, c); !d.VisitorsCapped || d.Visitors["shop"] != 5 {
		t.Fatalf("capped delta %+v", d)
	}
	// Once everything has left the window the count is 0 and exact again.
	now = now.Add(VisitorsWindow * time.Second)
	if n, capped, _ := h.RecentVisitors("shop"); n != 0 || capped {
		t.Fatalf("after the window: %d capped %v", n, capped)
	}
}

// TestRestore: the windows rebuilt from stored events equal the windows
// the same events make live, each at its own second: visitors, pages and
// the per-second series, with events older than the window and counts
// left alone; and they slide on as live ones do.
func TestRestore(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := NewHub(Options{Now: func() time.Time { return now }})
	h.Set(map[string]uint64{"shop": 100}, 130)
	at := func(ago int64, name string, id uint64, url string) event.Event {
		return event.Event{Site: "shop", Name: name, VisitorID: id, URL: url, Time: (now.Unix() - ago) * 1000}
	}
	evs := []event.Event{
		at(2, event.KindPageview, 1, "https://shop.example/cart"),
		at(400, event.KindPageview, 9, "https://shop.example/old"), // before the window
		at(250, event.KindPageview, 2, "https://shop.example/"),
		at(2, "signup", 3, ""),
		at(-30, event.KindPageview, 4, "https://shop.example/cart"), // a fast edge clock: counts now
		at(30, event.KindPageview, 0, "https://shop.example/"),
		at(70, event.KindPageview, 0, ""),                                             // no page: "", as ClickHouse's path('')
		{Site: "blog", Name: event.KindPageview, VisitorID: 5, Time: now.UnixMilli()}, // not listed
	}
	h.Restore(evs)

	if n, _, _ := h.RecentVisitors("shop"); n != 4 {
		t.Fatalf("visitors %d, want 4 (ids 1-4; 9 is older than the window, 0 is none)", n)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dial(t, srv)
	s := read(t, c)
	if s.Sites["shop"] != 100 || s.Total != 130 {
		t.Fatalf("counts changed: %v total %d", s.Sites, s.Total)
	}
	if s.VisitorsTotal != 5 {
		t.Fatalf("visitors total %d, want 5 (blog's id among the others)", s.VisitorsTotal)
	}
	rec := s.Recent["shop"]
	if len(rec) != RecentSeconds || rec[RecentSeconds-1] != 1 || rec[RecentSeconds-3] != 2 || rec[RecentSeconds-31] != 1 {
		t.Fatalf("recent %v: want 1 now, 2 at -2 s, 1 at -30 s", rec)
	}
	var sum uint64
	for _, n := range rec {
		sum += n
	}
	if sum != 4 {
		t.Fatalf("recent sums to %d, want the 4 events of the last %d s", sum, RecentSeconds)
	}
	pages := map[string]uint64{}
	for _, p := range s.Pages["shop"] {
		pages[p.Path] = p.N
	}
	if pages["/cart"] != 2 || pages["/"] != 2 || pages[""] != 1 || pages["/old"] != 0 {
		t.Fatalf("pages %v", s.Pages["shop"])
	}

	// 60 s on, the visitor seen 250 s before the restore has left.
	now = now.Add(60 * time.Second)
	if n, _, _ := h.RecentVisitors("shop"); n != 3 {
		t.Fatalf("60 s later: visitors %d, want 3", n)
	}
}

// TestSetAgain: counts read again from the store (after an erasure) reach
// every connected client as a new snapshot, lower counts included.
func TestSetAgain(t *testing.T) {
	h := NewHub(Options{})
	h.Set(map[string]uint64{"shop": 10}, 12)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dial(t, srv)
	if s := read(t, c); s.Type != TypeSnapshot || s.Total != 12 || s.Seq != 1 {
		t.Fatalf("first message %+v", s)
	}
	h.Set(map[string]uint64{"shop": 7}, 8)
	if s := read(t, c); s.Type != TypeSnapshot || s.Total != 8 || s.Sites["shop"] != 7 || s.Seq != 2 {
		t.Fatalf("after the recount %+v, want a snapshot of 8 (shop 7), seq 2", s)
	}
}

// TestRestoreBeforeSet: the loader hands over the stored events before
// the counts; a client that connected before either gets one snapshot
// that already shows them.
func TestRestoreBeforeSet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := NewHub(Options{Now: func() time.Time { return now }})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dial(t, srv)
	waitClients(t, h, 1)
	h.Restore([]event.Event{{Site: "shop", Name: event.KindPageview, VisitorID: 1, URL: "https://shop.example/cart", Time: now.UnixMilli() - 5000}})
	h.Set(map[string]uint64{"shop": 1}, 1)
	s := read(t, c)
	if s.Type != TypeSnapshot || s.Seq != 1 || len(s.Pages["shop"]) != 1 || s.Pages["shop"][0].Path != "/cart" || s.Visitors["shop"] != 1 {
		t.Fatalf("first message %+v, want a snapshot with /cart and 1 visitor", s)
	}
}

// TestEncodedMessage checks that a delta encoded once and given each
// client's sequence number is byte for byte what encoding it per client
// gives, also with sites named like the field.
func TestEncodedMessage(t *testing.T) {
	m := Message{Type: TypeDelta, Total: 7, Sites: map[string]uint64{"seq": 0, `"seq":0`: 3, "shop": 4},
		Add: map[string]uint64{"shop": 1}, Pages: map[string][]Page{"shop": {{Path: `/"seq":0`, N: 2}}},
		Visitors: map[string]uint64{"shop": 1}, VisitorsTotal: 1, TS: 1700000000000}
	enc, err := encodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 9, 10, 12345, 1<<64 - 1} {
		m.Seq = seq
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := enc.with(seq); !bytes.Equal(got, want) {
			t.Errorf("seq %d:\n got %s\nwant %s", seq, got, want)
		}
	}
}

// A request the upgrader refuses is answered in JSON ({"error", "reason"},
// as the dashboard's other errors) with the upgrader's status: 400 to one
// that is no handshake, 403 to an origin not allowed, 405 with Allow to a
// method other than GET. It was a bare "Bad Request" or "Forbidden".
func TestHandshakeRefusedInJSON(t *testing.T) {
	h := NewHub(Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	ws := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	with := func(extra ...string) http.Header {
		hd := ws.Clone()
		for i := 0; i < len(extra); i += 2 {
			hd.Set(extra[i], extra[i+1])
		}
		return hd
	}
	for _, c := range []struct {
		name, method string
		hdr          http.Header
		code         int
		reason       string
		allow        string
		err          string // a part of the error wanted
	}{
		{"plain GET", "GET", nil, 400, "bad_request", "", "is a WebSocket: open it with a WebSocket client"},
		{"no Upgrade header", "GET", http.Header{"Connection": {"Upgrade"}}, 400, "bad_request", "", "'websocket' token not found in 'Upgrade' header"},
		{"old version", "GET", with("Sec-Websocket-Version", "8"), 400, "bad_request", "", "unsupported version"},
		{"foreign origin", "GET", with("Origin", "https://evil.example"), 403, "origin_not_allowed", "", "a page from origin https://evil.example may not open /"},
		{"POST", "POST", ws, 405, "method_not_allowed", "GET", "request method is not GET"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL, nil)
		if c.hdr != nil {
			req.Header = c.hdr
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e map[string]string
		if resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow || resp.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(b, &e) != nil || e["reason"] != c.reason || !strings.Contains(e["error"], c.err) {
			t.Errorf("%s: %d Allow %q %s %q; want %d Allow %q, JSON with reason %s, error with %q", c.name, resp.StatusCode, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), b, c.code, c.allow, c.reason, c.err)
		}
		if resp.Header.Get("Sec-Websocket-Version") != "13" {
			t.Errorf("%s: Sec-WebSocket-Version %q, want 13", c.name, resp.Header.Get("Sec-Websocket-Version"))
		}
	}
}

// TestPageviewsWindow: a pageview counts in RecentPageviews for exactly
// PagesWindow, as its visitor counts in RecentVisitors for VisitorsWindow
// (whole minutes kept it up to a minute longer), and in "pages viewed now"
// never longer than PagesWindow.
func TestPageviewsWindow(t *testing.T) {
	now := time.Unix(1_800_000_007, 0) // not on a bucket's edge
	h := NewHub(Options{Now: func() time.Time { return now }})
	h.Set(map[string]uint64{"shop": 0}, 0)
	h.Observe([]event.Event{{Site: "shop", Name: event.KindPageview, VisitorID: 1, URL: "https://shop.example/a", Time: now.UnixMilli()}})
	start := now
	pages := func() []Page {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.live["shop"].topPages(now)
	}
	for _, c := range []struct {
		after       int64
		pv, vis     uint64
		pagesAtMost int
	}{
		{0, 1, 1, 1},
		{pagesSeconds - 1, 1, 1, 1},
		{pagesSeconds, 0, 0, 0},
		{pagesSeconds + 59, 0, 0, 0},
	} {
		now = start.Add(time.Duration(c.after) * time.Second)
		pv, _ := h.RecentPageviews("shop")
		vis, _, _ := h.RecentVisitors("shop")
		if pv != c.pv || vis != c.vis || len(pages()) > c.pagesAtMost {
			t.Errorf("%d s after: pageviews %d, visitors %d, pages %v; want %d, %d, at most %d pages", c.after, pv, vis, pages(), c.pv, c.vis, c.pagesAtMost)
		}
	}
	if now = start; len(pages()) != 1 {
		t.Errorf("pages at once: %v", pages())
	}
	// A second pageview 100 s on: both count until the first leaves.
	now = start.Add(100 * time.Second)
	h.Observe([]event.Event{{Site: "shop", Name: event.KindPageview, VisitorID: 2, URL: "https://shop.example/b", Time: now.UnixMilli()}})
	now = start.Add(time.Duration(pagesSeconds) * time.Second)
	if pv, _ := h.RecentPageviews("shop"); pv != 1 {
		t.Errorf("after the first left: pageviews %d, want 1", pv)
	}
	// An event stored now whose own time is older than the window (a
	// spool's late delivery, a client's backdated id) is not of now: a
	// tester's yesterday's pageview was a page viewed now.
	h.Observe([]event.Event{{Site: "shop", Name: event.KindPageview, VisitorID: 3, URL: "https://shop.example/old", Time: now.Add(-time.Hour).UnixMilli()}})
	pv, _ := h.RecentPageviews("shop")
	vis, _, _ := h.RecentVisitors("shop")
	if pv != 1 || vis != 1 {
		t.Errorf("after an hour-old event: pageviews %d, visitors %d; want 1, 1", pv, vis)
	}
}
