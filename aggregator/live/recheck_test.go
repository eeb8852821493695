package live

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closedWith reads c until it ends, failing t unless it ends with close
// code 1008 and reason within 10 s.
func closedWith(t *testing.T, c *websocket.Conn, reason string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m Message
		err := c.ReadJSON(&m)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != reason {
			t.Errorf("ended with %v; want close 1008 %q", err, reason)
		}
		return
	}
}

// Hub.Recheck has each client's credential checked again: a client whose
// Recheck says it grants nothing is closed with CloseRevoked, one whose
// sites changed gets a snapshot of its new sites and deltas of those
// only, one unchanged keeps receiving; a client is closed with
// CloseExpired once its Until passes. Nothing is checked per message.
func TestRecheck(t *testing.T) {
	h := NewHub(Options{Interval: 10 * time.Millisecond})
	h.Set(map[string]uint64{"demo": 5, "shop": 2}, 7)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)

	var revoked, narrowed atomic.Bool
	var checks atomic.Int64
	shopOnly := Reader{Read: func(s string) bool { return s == "shop" }}
	readers := map[string]Reader{
		"/revoked": {All: true, Recheck: func() (Reader, bool, bool) {
			checks.Add(1)
			return Reader{}, false, !revoked.Load()
		}},
		"/narrowed": {All: true, Recheck: func() (Reader, bool, bool) {
			if narrowed.Load() {
				return shopOnly, true, true
			}
			return Reader{}, false, true
		}},
		"/valid":   {All: true, Recheck: func() (Reader, bool, bool) { return Reader{}, false, true }},
		"/expired": {All: true, Until: time.Now().Add(500 * time.Millisecond)},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, readers[r.URL.Path])
	}))
	defer srv.Close()
	conn := map[string]*websocket.Conn{}
	for p := range readers {
		c, _, err := websocket.DefaultDialer.Dial("ws"+srv.URL[len("http"):]+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if m := read(t, c); m.Type != TypeSnapshot {
			t.Fatalf("%s: first %+v", p, m)
		}
		conn[p] = c
	}
	closedWith(t, conn["/expired"], CloseExpired)

	// Messages cost no check: only connecting and Recheck do.
	before := checks.Load()
	for range 5 {
		h.Add(map[string]uint64{"shop": 1})
		read(t, conn["/revoked"])
	}
	if n := checks.Load(); n != before {
		t.Errorf("%d credential checks for 5 messages, want none", n-before)
	}

	revoked.Store(true)
	narrowed.Store(true)
	h.Recheck()
	closedWith(t, conn["/revoked"], CloseRevoked)
	for {
		m := read(t, conn["/narrowed"])
		if m.Type == TypeSnapshot {
			if _, ok := m.Sites["demo"]; ok || m.Sites["shop"] != 7 || m.Total != 7 || m.Other != 0 {
				t.Fatalf("snapshot after the sites shrank to shop: %+v", m)
			}
			break
		}
	}
	h.Add(map[string]uint64{"demo": 1})
	h.Add(map[string]uint64{"shop": 1})
	for _, p := range []string{"/narrowed", "/valid"} {
		for {
			m := read(t, conn[p])
			if _, ok := m.Sites["demo"]; ok && p == "/narrowed" {
				t.Fatalf("demo sent after the sites shrank to shop: %+v", m)
			}
			if m.Sites["shop"] == 8 {
				break
			}
		}
	}
	waitClients(t, h, 2)
}

// A revocation is acted on at once, not after the wait between two
// publishes, however long --live-interval is.
func TestRecheckDuringTheInterval(t *testing.T) {
	h := NewHub(Options{Interval: time.Minute})
	h.Set(map[string]uint64{"demo": 5}, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	var revoked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, Reader{All: true, Recheck: func() (Reader, bool, bool) { return Reader{}, false, !revoked.Load() }})
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+srv.URL[len("http"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := read(t, c); m.Type != TypeSnapshot {
		t.Fatalf("first %+v", m)
	}
	h.Add(map[string]uint64{"demo": 1}) // a publish: the hub then waits a minute
	read(t, c)
	revoked.Store(true)
	h.Recheck()
	closedWith(t, c, CloseRevoked) // within 10 s, not a minute
}
