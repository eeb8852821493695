package live

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
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

func TestHub(t *testing.T) {
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
	h.Set(map[string]uint64{"demo": 5}, 5)
	m := read(t, c)
	if m.Type != "counts" || m.Total != 5 || m.Sites["demo"] != 5 || m.TS == 0 {
		t.Fatalf("first message %+v", m)
	}
	// Bursts are coalesced; the last message has the final counts.
	for i := 0; i < 100; i++ {
		h.Add(map[string]uint64{"demo": 1, "shop": 1})
	}
	n := 0
	for {
		m = read(t, c)
		n++
		if m.Total == 205 {
			break
		}
	}
	if n > 10 {
		t.Errorf("%d messages for one burst, want them coalesced", n)
	}
	if m.Sites["shop"] != 100 || m.Sites["demo"] != 105 {
		t.Errorf("sites %v", m.Sites)
	}
	// A client connecting now gets the current counts at once.
	c2 := dial(t, srv)
	if m := read(t, c2); m.Total != 205 {
		t.Errorf("snapshot on connect %+v", m)
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
