package ingest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// untouched is a body that fails the test if read.
type untouched struct {
	t    *testing.T
	read atomic.Bool
}

func (u *untouched) Read([]byte) (int, error) {
	u.read.Store(true)
	return 0, errors.New("the body was read")
}

// Everything that can be judged without the body is judged before any of
// it is read.
func TestRefusedBeforeTheBody(t *testing.T) {
	now := time.Now().Unix()
	sig := wire.Sign(secret, now, []byte("x"))
	lim := guard.NewAuthLimiter(guard.AuthConfig{Burst: 1000})
	h := New(Config{Secret: secret, Spool: &memSpool{}, MaxBody: 1 << 20, Limiter: lim})
	nd := NewNDJSON(Config{Secret: secret, Spool: &memSpool{}, MaxBody: 1 << 20, LogToken: "token-0123456789abcdef", Limiter: lim})
	for _, c := range []struct {
		name    string
		h       http.Handler
		cl      int64
		hdr     map[string]string
		status  int
		reason  string
		noCType bool
	}{
		{"declared too large", h, 4 << 20, map[string]string{wire.HeaderTimestamp: strconv.FormatInt(now, 10), wire.HeaderSignature: sig}, 413, ReasonTooLarge, false},
		{"no signature", h, 100, nil, 401, ReasonBadSignature, false},
		{"stale", h, 100, map[string]string{wire.HeaderTimestamp: strconv.FormatInt(now-3600, 10), wire.HeaderSignature: sig}, 401, ReasonStale, false},
		{"signature not hex", h, 100, map[string]string{wire.HeaderTimestamp: strconv.FormatInt(now, 10), wire.HeaderSignature: "zz"}, 401, ReasonBadSignature, false},
		{"content type", h, 100, nil, 415, ReasonContentType, true},
		{"encoding", h, 100, map[string]string{"Content-Encoding": "br"}, 415, ReasonContentEncoding, false},
		{"ndjson wrong token", nd, 100, map[string]string{"Authorization": "Bearer nope"}, 401, ReasonBadToken, false},
		{"ndjson stale", nd, 100, map[string]string{wire.HeaderTimestamp: strconv.FormatInt(now+3600, 10), wire.HeaderSignature: sig}, 401, ReasonStale, false},
	} {
		body := &untouched{t: t}
		r := httptest.NewRequest("POST", "/ingest", body)
		r.ContentLength = c.cl
		if !c.noCType {
			r.Header.Set("Content-Type", wire.ContentType)
		}
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		c.h.ServeHTTP(w, r)
		if w.Code != c.status || !strings.Contains(w.Body.String(), `"reason":"`+c.reason+`"`) {
			t.Errorf("%s: %d %s, want %d %s", c.name, w.Code, w.Body, c.status, c.reason)
		}
		if body.read.Load() {
			t.Errorf("%s: the body was read", c.name)
		}
	}
}

// slowBody delivers its bytes, then blocks until released (a client that
// declared more than it sends).
type slowBody struct {
	data    []byte
	release chan struct{}
}

func (s *slowBody) Read(p []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	<-s.release
	return 0, errors.New("client went away")
}

// A request that declares 4 MiB and sends a few bytes holds one small
// buffer, not 4 MiB (one that sends nothing holds none); the memory of all bodies in progress is bounded by
// the budget, past which requests get 503 overloaded.
func TestBodyMemoryGrowsAsBytesArrive(t *testing.T) {
	budget := NewBudget(64<<10, 0)
	m := metrics.New()
	h := New(Config{Secret: secret, Spool: &memSpool{}, MaxBody: 4 << 20, Budget: budget, Metrics: m})
	now := time.Now().Unix()
	hdr := map[string]string{wire.HeaderTimestamp: strconv.FormatInt(now, 10), wire.HeaderSignature: wire.Sign(secret, now, []byte("x"))}
	release := make(chan struct{})
	done := make(chan int, 8)
	for i := range 5 {
		data := []byte("EPB1abc")
		if i == 4 {
			data = nil // declares 4 MiB, sends nothing: holds nothing
		}
		r := httptest.NewRequest("POST", "/ingest", &slowBody{data: data, release: release})
		r.ContentLength = 4 << 20
		r.Header.Set("Content-Type", wire.ContentType)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			done <- w.Code
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for budget.Used() != 4*minBuf {
		if time.Now().After(deadline) {
			t.Fatalf("budget in use %d, want 4 small buffers (%d)", budget.Used(), 4*minBuf)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The budget is full: a fifth body that needs room is refused at once.
	r := httptest.NewRequest("POST", "/ingest", bytes.NewReader(make([]byte, 100)))
	r.Header.Set("Content-Type", wire.ContentType)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), ReasonOverloaded) {
		t.Errorf("over the budget: %d %s", w.Code, w.Body)
	}
	close(release)
	for range 5 {
		if code := <-done; code != 400 {
			t.Errorf("a client that went away: %d", code)
		}
	}
	if budget.Used() != 0 {
		t.Errorf("%d bytes of budget still held", budget.Used())
	}
	if m.Dropped(ReasonOverloaded) != 1 || m.Dropped(ReasonReadError) != 5 {
		t.Errorf("drops: overloaded %d, read_error %d", m.Dropped(ReasonOverloaded), m.Dropped(ReasonReadError))
	}
}

func TestBufferGrowth(t *testing.T) {
	budget := NewBudget(0, 0)
	for _, n := range []int{0, 1, minBuf - 1, minBuf, minBuf + 1, 3 << 20, 4 << 20} {
		b := newBuffer(budget, "c")
		data := bytes.Repeat([]byte{7}, n)
		if err := b.readAll(io.MultiReader(bytes.NewReader(data[:n/2]), bytes.NewReader(data[n/2:])), 4<<20); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(b.Bytes(), data) || cap(b.Bytes()) > max(2*n, minBuf) {
			t.Fatalf("%d bytes: got %d, cap %d", n, len(b.Bytes()), cap(b.Bytes()))
		}
		if budget.Used() != int64(cap(b.Bytes())) && n > 0 {
			t.Fatalf("%d bytes: budget %d, cap %d", n, budget.Used(), cap(b.Bytes()))
		}
		b.free()
		if budget.Used() != 0 {
			t.Fatalf("%d bytes: %d still charged", n, budget.Used())
		}
	}
	b := newBuffer(budget, "c")
	if err := b.readAll(bytes.NewReader(make([]byte, 4<<20+1)), 4<<20); !errors.Is(err, errTooLarge) || cap(b.Bytes()) > 4<<20 {
		t.Fatalf("one byte over: %v, cap %d", err, cap(b.Bytes()))
	}
	b.free()
}

// Repeated failed signatures from one address are braked: 429 with
// Retry-After, before the body is read; other addresses are unaffected.
func TestSignatureGuessingBraked(t *testing.T) {
	m := metrics.New()
	lim := guard.NewAuthLimiter(guard.AuthConfig{Rate: 0.01, Burst: 2, Metrics: m})
	h := New(Config{Secret: secret, Spool: &memSpool{}, Limiter: lim, Metrics: m})
	body := wire.Append(nil, []event.Event{newEvent(t, "demo")})
	now := time.Now().Unix()
	send := func(addr string, key []byte) *httptest.ResponseRecorder {
		r := request(body, now, key)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 2 {
		if w := send("192.0.2.9:1", []byte("guess")); w.Code != 401 {
			t.Fatalf("guess: %d", w.Code)
		}
	}
	if w := send("192.0.2.9:2", secret); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Errorf("after the burst, even the right secret: %d %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := send("192.0.2.10:1", secret); w.Code != 200 {
		t.Errorf("another address: %d %s", w.Code, w.Body)
	}
	if m.AuthFailures(guard.CredSignature) != 2 || m.Dropped(ReasonRateLimited) != 1 {
		t.Errorf("failures %d, rate limited %d", m.AuthFailures(guard.CredSignature), m.Dropped(ReasonRateLimited))
	}
}

// With a site list, events for other sites are kept as bad rows
// (unknown_site), in both formats.
func TestUnknownSiteIsABadRow(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	cfg := Config{Secret: secret, Spool: sp, Metrics: m, Sites: []string{"shop"}, LogToken: "token-0123456789abcdef"}
	body := wire.Append(nil, []event.Event{newEvent(t, "shop"), newEvent(t, "made-up")})
	w := httptest.NewRecorder()
	New(cfg).ServeHTTP(w, request(body, time.Now().Unix(), secret))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != 1.0 || res["bad"] != 1.0 {
		t.Fatalf("wire: %d %v", w.Code, res)
	}
	evs, bad, err := decodeRecord(sp.recs[0])
	if err != nil || len(evs) != 1 || evs[0].Site != "shop" || len(bad) != 1 || bad[0].Reason != ReasonUnknownSite || bad[0].Site != "made-up" {
		t.Fatalf("%+v %+v %v", evs, bad, err)
	}
	ms := time.Now().UnixMilli()
	lines := []byte(`{"site":"shop","ts_ms":` + strconv.FormatInt(ms, 10) + "}\n" + `{"site":"other","ts_ms":` + strconv.FormatInt(ms, 10) + "}\n")
	w = httptest.NewRecorder()
	NewNDJSON(cfg).ServeHTTP(w, ndjsonRequest(lines, map[string]string{"Authorization": "Bearer token-0123456789abcdef"}))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != 1.0 || res["bad"] != 1.0 {
		t.Fatalf("ndjson: %d %v", w.Code, res)
	}
}

// The repro, scaled down: a signed NDJSON request of a great many
// tiny lines becomes records of bounded size, all of them spooled, and a
// 200: never one record the spool cannot take, never a 5xx.
func TestManyTinyLinesSplit(t *testing.T) {
	sp := &memSpool{}
	const lines = 200_000
	body := bytes.Repeat([]byte("{}\n"), lines) // each a bad row (no time)
	h := NewNDJSON(Config{Secret: secret, Spool: sp, MaxBody: 4 << 20, RecordBytes: 256 << 10})
	ts := time.Now().Unix()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, ndjsonRequest(body, signed(secret, ts, body)))
	if res := answer(t, w); w.Code != 200 || res["bad"] != float64(lines) {
		t.Fatalf("%d %v", w.Code, res)
	}
	var nbad, biggest int
	for _, rec := range sp.recs {
		_, bad, err := decodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		nbad += len(bad)
		biggest = max(biggest, len(rec))
	}
	if nbad != lines || biggest > 2*(256<<10) {
		t.Fatalf("%d bad rows in %d records, the biggest %d bytes", nbad, len(sp.recs), biggest)
	}
	t.Logf("%d bytes of lines: %d records, the biggest %d bytes", len(body), len(sp.recs), biggest)
}

// One client's unauthenticated bodies get only its share of the budget;
// another client still gets room.
func TestBudgetPerClient(t *testing.T) {
	budget := NewBudget(1<<20, 128<<10)
	m := metrics.New()
	h := New(Config{Secret: secret, Spool: &memSpool{}, MaxBody: 1 << 20, Budget: budget, Metrics: m})
	now := time.Now().Unix()
	post := func(addr string, body []byte) int {
		r := request(body, now, secret)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	big := bytes.Repeat([]byte("x"), 200<<10) // needs a 256 KiB buffer
	if code := post("192.0.2.1:1", big); code != 503 {
		t.Errorf("a body over the client's share: %d", code)
	}
	if code := post("192.0.2.2:1", wire.Append(nil, []event.Event{newEvent(t, "demo")})); code != 200 {
		t.Errorf("another client: %d", code)
	}
	if budget.Used() != 0 {
		t.Errorf("%d bytes still charged", budget.Used())
	}
}
