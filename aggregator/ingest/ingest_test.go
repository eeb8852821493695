package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

var secret = []byte("test-secret")

// memSpool records appends; it stands in for the spool in these unit tests.
type memSpool struct {
	mu   sync.Mutex
	recs [][]byte
	err  error
}

func (m *memSpool) Append(_ context.Context, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.recs = append(m.recs, bytes.Clone(p))
	return nil
}

func newEvent(t testing.TB, site string) event.Event {
	now := time.Now().UnixMilli()
	id, err := event.NewID(now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{ID: id, Time: now, Site: site, Name: "pageview", URL: "https://example.com/"}
}

func request(body []byte, ts int64, key []byte) *http.Request {
	r := httptest.NewRequest("POST", "/ingest", bytes.NewReader(body))
	r.Header.Set("Content-Type", wire.ContentType)
	if key != nil {
		r.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
		r.Header.Set(wire.HeaderSignature, wire.Sign(key, ts, body))
	}
	return r
}

func TestIngest(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	h := New(Config{Secret: secret, Spool: sp, Metrics: m, MaxBody: 64 << 10})
	now := time.Now().Unix()
	good := wire.Append(nil, []event.Event{newEvent(t, "demo"), newEvent(t, "demo")})
	old := newEvent(t, "demo")
	old.Time -= 30 * 24 * 3600 * 1000
	invalid := newEvent(t, "")
	many := append([]byte(wire.Magic), 0xff, 0xff, 0x03) // a count over MaxEvents

	for _, c := range []struct {
		name   string
		req    *http.Request
		status int
		reason string
	}{
		{"ok", request(good, now, secret), 200, ""},
		{"GET", httptest.NewRequest("GET", "/ingest", nil), 405, ReasonMethod},
		{"content type", func() *http.Request {
			r := request(good, now, secret)
			r.Header.Set("Content-Type", "application/json")
			return r
		}(), 415, ReasonContentType},
		{"no signature", request(good, now, nil), 401, ReasonBadSignature},
		{"wrong secret", request(good, now, []byte("nope")), 401, ReasonBadSignature},
		{"stale", request(good, now-3600, secret), 401, ReasonStale},
		{"from the future", request(good, now+3600, secret), 401, ReasonStale},
		{"malformed", request([]byte("EPB1\x05garbage"), now, secret), 400, ReasonMalformed},
		{"not a batch", request([]byte("hello"), now, secret), 400, ReasonMalformed},
		{"too many events", request(many, now, secret), 413, ReasonTooManyEvents},
		{"too large", request(bytes.Repeat([]byte("x"), 65<<10), now, secret), 413, ReasonTooLarge},
		{"invalid event", request(wire.Append(nil, []event.Event{invalid}), now, secret), 400, ReasonInvalidEvent},
		{"old event", request(wire.Append(nil, []event.Event{old}), now, secret), 400, ReasonBadTime},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, c.req)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			var res map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
				t.Fatalf("answer not JSON: %s", w.Body)
			}
			if c.reason == "" {
				if res["accepted"] != 2.0 {
					t.Errorf("answer %v", res)
				}
				return
			}
			if res["reason"] != c.reason || res["error"] == "" {
				t.Errorf("answer %v, want reason %s", res, c.reason)
			}
			if m.Dropped(c.reason) == 0 {
				t.Errorf("reason %s not counted", c.reason)
			}
		})
	}
	if len(sp.recs) != 1 || !bytes.Equal(sp.recs[0], good) {
		t.Errorf("spooled %d records, want only the good one", len(sp.recs))
	}
	if m.AcceptedEvents.Load() != 2 || m.AcceptedBatches.Load() != 1 {
		t.Errorf("accepted %d/%d", m.AcceptedEvents.Load(), m.AcceptedBatches.Load())
	}
	var out strings.Builder
	m.WriteTo(&out)
	if !strings.Contains(out.String(), `edgepixel_aggregator_dropped_total{reason="stale"} 2`) {
		t.Errorf("metrics:\n%s", out.String())
	}
}

func TestSpoolFull(t *testing.T) {
	h := New(Config{Secret: secret, Spool: &memSpool{err: spool.ErrFull}})
	body := wire.Append(nil, []event.Event{newEvent(t, "demo")})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(body, time.Now().Unix(), secret))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), ReasonSpoolFull) {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}

// FuzzHandler sends arbitrary bodies, correctly signed so that they reach
// the decoder, and arbitrary signature headers: the handler must never
// panic and must answer one of its documented statuses.
func FuzzHandler(f *testing.F) {
	f.Add(wire.Append(nil, []event.Event{newEvent(f, "demo")}), true, "")
	f.Add([]byte("EPB1\x05garbage"), true, "")
	f.Add([]byte("EPB1\x01\x10"), true, "")
	f.Add([]byte{}, false, "zz")
	sp := &memSpool{}
	h := New(Config{Secret: secret, Spool: sp, MaxBody: 1 << 20})
	f.Fuzz(func(t *testing.T, body []byte, sign bool, sig string) {
		now := time.Now().Unix()
		var r *http.Request
		if sign {
			r = request(body, now, secret)
		} else {
			r = request(body, now, nil)
			r.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(now, 10))
			r.Header.Set(wire.HeaderSignature, sig)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 401, 413:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w.Code == 200 {
			if _, err := wire.Decode(nil, body); err != nil {
				t.Fatalf("accepted a batch that does not decode: %v", err)
			}
		}
	})
}
