package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
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
		{"unknown encoding", func() *http.Request {
			r := request(good, now, secret)
			r.Header.Set("Content-Encoding", "br")
			return r
		}(), 415, ReasonContentEncoding},
		{"not gzip", func() *http.Request {
			r := request(good, now, secret)
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}(), 400, ReasonBadEncoding},
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

// A request without the signature headers is told what to send, not that
// a signature it never sent "does not match"; on /ingest/ndjson, also the
// bearer token it may send instead.
func TestUnsignedAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		h    http.Handler
		path string
		want []string
		not  string
	}{
		{"batch", New(Config{Secret: secret, Spool: &memSpool{}}), "/ingest", []string{wire.HeaderTimestamp, wire.HeaderSignature, "--secret"}, "Bearer"},
		{"ndjson", NewNDJSON(Config{Secret: secret, Spool: &memSpool{}, LogToken: "tok"}), "/ingest/ndjson", []string{wire.HeaderSignature, "Bearer", "--log-token"}, ""},
	} {
		r := httptest.NewRequest("POST", c.path, strings.NewReader("{}"))
		r.Header.Set("Content-Type", wire.ContentType)
		w := httptest.NewRecorder()
		c.h.ServeHTTP(w, r)
		res := answer(t, w)
		msg, _ := res["error"].(string)
		if w.Code != 401 || res["reason"] != ReasonBadSignature || strings.Contains(msg, "does not match") || c.not != "" && strings.Contains(msg, c.not) {
			t.Errorf("%s: %d %v", c.name, w.Code, res)
		}
		for _, want := range c.want {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q does not say %s", c.name, msg, want)
			}
		}
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

// An aggregator that fails answers 503 until it exits; when its spool
// failed, the answer says so and why (a full disk: tester86 saw only
// shutting_down), without the spool's paths.
func TestFailing(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		say    string
	}{
		{fmt.Errorf("%w: append to /var/spool: %w", spool.ErrFailed, syscall.ENOSPC), ReasonSpoolError, "spool cannot write (no space left on device)"},
		{errors.New("loader: gave up"), ReasonShuttingDown, "failing and restarts"},
	} {
		h := New(Config{Secret: secret, Spool: &memSpool{}, Failing: func() error { return c.err }})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(wire.Append(nil, []event.Event{newEvent(t, "demo")}), time.Now().Unix(), secret))
		res := answer(t, w)
		msg, _ := res["error"].(string)
		if w.Code != 503 || res["reason"] != c.reason || !strings.Contains(msg, c.say) || strings.Contains(msg, "/var/spool") {
			t.Errorf("%v: %d %v", c.err, w.Code, res)
		}
	}
	// The batch whose append failed, before the aggregator knows it fails
	// (the only answer a POP sees when each restart fails at once: tester89).
	h := New(Config{Secret: secret, Spool: &memSpool{err: fmt.Errorf("%w: append to /var/spool: %w", spool.ErrFailed, syscall.ENOSPC)}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(wire.Append(nil, []event.Event{newEvent(t, "demo")}), time.Now().Unix(), secret))
	res := answer(t, w)
	if msg, _ := res["error"].(string); w.Code != 503 || res["reason"] != ReasonSpoolError || !strings.Contains(msg, "no space left on device") || strings.Contains(msg, "/var/spool") {
		t.Errorf("the failed append: %d %v", w.Code, res)
	}
	// A disk with no room does not fail the spool: the answer does not
	// promise a restart.
	h = New(Config{Secret: secret, Spool: &memSpool{err: fmt.Errorf("%w: append to /var/spool: %w", spool.ErrNoSpace, syscall.ENOSPC)}})
	w = httptest.NewRecorder()
	h.ServeHTTP(w, request(wire.Append(nil, []event.Event{newEvent(t, "demo")}), time.Now().Unix(), secret))
	res = answer(t, w)
	if msg, _ := res["error"].(string); w.Code != 503 || res["reason"] != ReasonSpoolError || !strings.Contains(msg, "no space left on device") ||
		strings.Contains(msg, "restarts") || strings.Contains(msg, "/var/spool") {
		t.Errorf("an append the disk had no room for: %d %v", w.Code, res)
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

// answer decodes a JSON answer.
func answer(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var res map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("answer not JSON: %s", w.Body)
	}
	return res
}

// TestBadRows: invalid events and events with times far from now no longer
// reject the batch; the valid events are spooled, the others are spooled
// beside them as bad rows, in the same record.
func TestBadRows(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	h := New(Config{Secret: secret, Spool: sp, Metrics: m})
	ok1, ok2 := newEvent(t, "demo"), newEvent(t, "demo")
	old := newEvent(t, "demo")
	old.Time -= 30 * 24 * 3600 * 1000
	invalid := newEvent(t, "")
	body := wire.Append(nil, []event.Event{ok1, invalid, ok2, old})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(body, time.Now().Unix(), secret))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != 2.0 || res["bad"] != 2.0 {
		t.Fatalf("%d %v", w.Code, res)
	}
	if len(sp.recs) != 1 {
		t.Fatalf("%d records", len(sp.recs))
	}
	evs, bad, err := decodeRecord(sp.recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0] != ok1 || evs[1] != ok2 {
		t.Fatalf("spooled events %+v", evs)
	}
	if len(bad) != 2 || bad[0].Reason != ReasonInvalidEvent || bad[1].Reason != ReasonBadTime ||
		bad[1].Site != "demo" || bad[0].Source != record.SourceWire || !strings.Contains(bad[0].Error, "missing site") {
		t.Fatalf("bad rows %+v", bad)
	}
	// The raw payload of a binary event is its JSON form.
	var back event.Event
	if err := json.Unmarshal([]byte(bad[1].Raw), &back); err != nil || back != old {
		t.Fatalf("raw %s: %v", bad[1].Raw, err)
	}
	// Bad rows are counted by the loader, once per row id (a body sent
	// again has the same ones), not here.
	if m.BadRows(ReasonInvalidEvent) != 0 || m.BadRows(ReasonBadTime) != 0 || m.AcceptedEvents.Load() != 2 {
		t.Errorf("counters: invalid %d bad_time %d accepted %d", m.BadRows(ReasonInvalidEvent), m.BadRows(ReasonBadTime), m.AcceptedEvents.Load())
	}
	// All bad: still one record (of bad rows only) and a 200, so the edge
	// does not retry what can never succeed.
	body = wire.Append(nil, []event.Event{invalid})
	w = httptest.NewRecorder()
	h.ServeHTTP(w, request(body, time.Now().Unix(), secret))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != 0.0 || res["bad"] != 1.0 {
		t.Fatalf("%d %v", w.Code, res)
	}
	if evs, bad, err := decodeRecord(sp.recs[1]); err != nil || len(evs) != 0 || len(bad) != 1 {
		t.Fatalf("%v %v %v", evs, bad, err)
	}
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdEnc is shared: building an encoder costs far more than using one
// (EncodeAll is safe for concurrent use), which matters to the fuzzer.
var zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

func zstded(t testing.TB, b []byte) []byte { return zstdEnc.EncodeAll(b, nil) }

// TestCompressed: gzip and zstd bodies are signed as sent and spooled
// decompressed; the size limit holds for the body and for what it
// decompresses to.
func TestCompressed(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	const limit = 64 << 10
	h := New(Config{Secret: secret, Spool: sp, Metrics: m, MaxBody: limit})
	batch := wire.Append(nil, []event.Event{newEvent(t, "demo"), newEvent(t, "demo")})
	send := func(coding string, body []byte) (int, map[string]any) {
		r := request(body, time.Now().Unix(), secret)
		r.Header.Set("Content-Encoding", coding)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, answer(t, w)
	}
	for _, c := range []struct {
		coding string
		body   []byte
	}{{"gzip", gzipped(t, batch)}, {"x-gzip", gzipped(t, batch)}, {"zstd", zstded(t, batch)}, {"identity", batch}, {"ZSTD", zstded(t, batch)}} {
		n := len(sp.recs)
		if code, res := send(c.coding, c.body); code != 200 || res["accepted"] != 2.0 {
			t.Fatalf("%s: %d %v", c.coding, code, res)
		}
		if len(sp.recs) != n+1 || !bytes.Equal(sp.recs[n], batch) {
			t.Fatalf("%s: spooled record is not the decompressed batch", c.coding)
		}
	}
	// A bomb: a few hundred bytes that decompress past the limit.
	zeros := make([]byte, 10*limit)
	for _, c := range []struct {
		coding string
		body   []byte
	}{{"gzip", gzipped(t, zeros)}, {"zstd", zstded(t, zeros)}} {
		if len(c.body) > limit/4 {
			t.Fatalf("%s bomb is %d bytes", c.coding, len(c.body))
		}
		before := m.Dropped(ReasonTooLarge)
		if code, res := send(c.coding, c.body); code != 413 || res["reason"] != ReasonTooLarge {
			t.Fatalf("%s bomb: %d %v", c.coding, code, res)
		}
		if m.Dropped(ReasonTooLarge) != before+1 {
			t.Errorf("%s bomb not counted", c.coding)
		}
	}
	// The signature covers the compressed bytes: a signature of the
	// decompressed batch does not authenticate a compressed body.
	r := httptest.NewRequest("POST", "/ingest", bytes.NewReader(gzipped(t, batch)))
	r.Header.Set("Content-Type", wire.ContentType)
	r.Header.Set("Content-Encoding", "gzip")
	ts := time.Now().Unix()
	r.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
	r.Header.Set(wire.HeaderSignature, wire.Sign(secret, ts, batch))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 401 {
		t.Fatalf("signature over the decompressed body: %d %s", w.Code, w.Body)
	}
	for _, bad := range []string{"br", "gzip, zstd", "deflate"} {
		if code, res := send(bad, batch); code != 415 || res["reason"] != ReasonContentEncoding {
			t.Errorf("%q: %d %v", bad, code, res)
		}
	}
}

// FuzzDecompress: arbitrary bytes under either coding never panic and
// never decompress past the limit; valid compressed data round-trips.
func FuzzDecompress(f *testing.F) {
	const limit = 4 << 10
	sample := []byte(`{"site":"demo","ts_ms":1}` + "\n")
	f.Add(true, gzipped(f, sample))
	f.Add(false, zstded(f, sample))
	f.Add(true, gzipped(f, make([]byte, 3*limit)))
	f.Add(false, zstded(f, make([]byte, 3*limit)))
	f.Add(false, []byte("\x28\xb5\x2f\xfd\x00\x58\x00\x00"))
	f.Fuzz(func(t *testing.T, gz bool, data []byte) {
		coding := EncodingZstd
		if gz {
			coding = EncodingGzip
		}
		buf := newBuffer(nil, "")
		err := decompress(coding, data, limit, buf)
		if out := buf.Bytes(); err == nil && len(out) > limit {
			t.Fatalf("%d bytes out, limit %d", len(out), limit)
		}
		buf.free()
		// Round trip of the input itself when it fits.
		if len(data) <= limit {
			enc := zstded(t, data)
			if gz {
				enc = gzipped(t, data)
			}
			buf := newBuffer(nil, "")
			err := decompress(coding, enc, limit, buf)
			if err != nil || !bytes.Equal(buf.Bytes(), data) {
				t.Fatalf("round trip: %v", err)
			}
			buf.free()
		}
	})
}

// A body that is not what its Content-Encoding says: the error names the
// coding once ("gzip: gzip: invalid header" before).
func TestDecompressErrors(t *testing.T) {
	for coding, want := range map[string]string{EncodingGzip: "gzip: invalid header", EncodingZstd: "zstd: "} {
		buf := newBuffer(nil, "")
		err := decompress(coding, []byte(`{"site":"demo"}`), 4<<10, buf)
		buf.free()
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), coding+": ") != 1 {
			t.Errorf("%s: %v, want one %q first", coding, err, want)
		}
	}
}
