package admin

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/guard"
)

// fakeStore records calls. The real store is tested against ClickHouse in
// package clickhouse and through the server in package server; this covers
// the HTTP layer: auth, validation, audit lines.
type fakeStore struct {
	mu      sync.Mutex
	erased  []clickhouse.Erasure
	cutoffs []time.Time
	err     error
	// running: Erase answers that its mutations still run;
	// WaitMutations waits for finish to close.
	running bool
	finish  chan struct{}
}

func (f *fakeStore) WaitMutations(ctx context.Context, _ time.Duration) (bool, error) {
	if f.finish == nil {
		return true, nil
	}
	select {
	case <-f.finish:
		return true, nil
	case <-ctx.Done():
		return false, nil
	}
}

func (f *fakeStore) DropPartitionsBefore(_ context.Context, cutoff time.Time) ([]clickhouse.Partition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutoffs = append(f.cutoffs, cutoff)
	return []clickhouse.Partition{{Table: "events", ID: "20200101"}}, f.err
}

func (f *fakeStore) Erase(_ context.Context, e clickhouse.Erasure, _ time.Duration) (clickhouse.ErasureResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The checks of clickhouse.Erase that need no server.
	e, err := e.Checked()
	if err != nil {
		return clickhouse.ErasureResult{}, err
	}
	f.erased = append(f.erased, e)
	return clickhouse.ErasureResult{Statements: []string{"ALTER ..."}, Done: !f.running}, f.err
}

const token = "admin-token-0123456789"

func do(h http.Handler, path, auth, body string) (int, map[string]any) {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var res map[string]any
	json.Unmarshal(w.Body.Bytes(), &res)
	return w.Code, res
}

func TestAdminHTTP(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	fs := &fakeStore{}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	lim := guard.NewAuthLimiter(guard.AuthConfig{Logger: log})
	h := New(Config{Token: token, Store: fs, RetentionDays: 30, Logger: log, Limiter: lim, Now: func() time.Time { return now }})
	bearer := "Bearer " + token

	for _, c := range []struct {
		name, path, auth, body string
		status                 int
		reason                 string
	}{
		{"no token", "/admin/erase", "", `{"user_id":"u-123456","actor":"dpo"}`, 401, "bad_token"},
		{"wrong token", "/admin/erase", "Bearer nope", `{"user_id":"u-123456","actor":"dpo"}`, 401, "bad_token"},
		{"not json", "/admin/erase", bearer, `user_id=u`, 400, "bad_request"},
		{"misspelt field", "/admin/erase", bearer, `{"userid":"u-123456","actor":"dpo"}`, 400, "bad_request"},
		{"no actor", "/admin/erase", bearer, `{"user_id":"u-123456"}`, 400, "bad_request"},
		{"no identifier", "/admin/erase", bearer, `{"site":"demo","actor":"dpo"}`, 400, "bad_request"},
		{"visitor id as events show it", "/admin/erase", bearer, `{"visitor_id":18446744073709551557,"actor":"dpo"}`, 200, ""},
		{"visitor id not a value", "/admin/erase", bearer, `{"visitor_id":{"id":1},"actor":"dpo"}`, 400, "bad_request"},
		{"erase", "/admin/erase", bearer, `{"user_id":"u-123456","site":"demo","actor":"dpo@example.com"}`, 200, ""},
		{"retention default", "/admin/retention", bearer, `{"actor":"ops"}`, 200, ""},
		{"retention days", "/admin/retention", bearer, `{"days":7}`, 200, ""},
		{"retention negative", "/admin/retention", bearer, `{"days":-1}`, 400, "bad_request"},
		// Past 100 years the cut-off would fall before ClickHouse's DateTime.
		{"retention too long", "/admin/retention", bearer, `{"days":36501}`, 400, "bad_request"},
		{"retention overflowing", "/admin/retention", bearer, `{"days":100000000000}`, 400, "bad_request"},
		{"retention 100 years", "/admin/retention", bearer, `{"days":36500}`, 200, ""},
		{"retention days as text", "/admin/retention", bearer, `{"days":"7"}`, 400, "bad_request"},
		{"unknown path", "/admin/nothing", bearer, `{}`, 404, "not_found"},
	} {
		code, res := do(h, c.path, c.auth, c.body)
		if code != c.status || (c.reason != "" && res["reason"] != c.reason) {
			t.Errorf("%s: %d %v", c.name, code, res)
		}
	}
	if len(fs.erased) != 2 || fs.erased[0] != (clickhouse.Erasure{VisitorID: "18446744073709551557", AllSites: true}) || fs.erased[1] != (clickhouse.Erasure{UserID: "u-123456", Site: "demo"}) {
		t.Fatalf("erased %+v", fs.erased)
	}
	if len(fs.cutoffs) != 3 || !fs.cutoffs[0].Equal(now.Add(-30*24*time.Hour)) || !fs.cutoffs[1].Equal(now.Add(-7*24*time.Hour)) || !fs.cutoffs[2].Equal(now.AddDate(-100, 0, 25)) {
		t.Fatalf("cutoffs %v", fs.cutoffs)
	}
	// Audit: who, what, when; the erased identifier itself is not logged.
	lim.Summarize()
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	var erase map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "audit: erase submitted" {
			erase = m
		}
	}
	if erase == nil || erase["actor"] != "dpo@example.com" || erase["site"] != "demo" || erase["user_id_hmac"] == "" || erase["time"] == nil || erase["remote"] == "" {
		t.Fatalf("no complete audit line for the erasure:\n%s", out)
	}
	// The identifier's fingerprint is keyed by the admin token: a plain
	// hash of a user id or an address is reversed by trying every one.
	plain := sha256.Sum256([]byte("u-123456"))
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("u-123456"))
	if got := erase["user_id_hmac"]; got != hex.EncodeToString(m.Sum(nil)[:6]) || got == hex.EncodeToString(plain[:6]) {
		t.Errorf("user_id_hmac %v: want HMAC-SHA256 keyed by the admin token, cut to 6 bytes", got)
	}
	if strings.Contains(out, "u-123456") {
		t.Errorf("the erased identifier is in the log:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"audit: retention applied"`) || !strings.Contains(out, `"actor":"ops"`) || !strings.Contains(out, "events/20200101") {
		t.Errorf("no retention audit line:\n%s", out)
	}
	// Refused tokens: one summary line, not a line each.
	if strings.Count(out, `"msg":"credential failures"`) != 1 || !strings.Contains(out, `"by_kind":"admin_token=2"`) ||
		strings.Contains(out, "admin request refused") {
		t.Errorf("refused requests not summed up in one line:\n%s", out)
	}

	// A value of the wrong type names the field and what it takes.
	if _, res := do(h, "/admin/retention", bearer, `{"days":"7"}`); res["error"] != `field "days" must be a whole number, not a JSON string` {
		t.Errorf("days as text: %v", res)
	}
	if _, res := do(h, "/admin/retention", bearer, `{"actor":7}`); res["error"] != `field "actor" must be a string, not a JSON number` {
		t.Errorf("actor as a number: %v", res)
	}
	// Each refusal of a body says what is wrong with it: only a body that
	// is not a JSON object is told so (a new user's test: every refusal
	// began "body must be a JSON object:", a well-formed object's too).
	for body, want := range map[string]string{
		`user_id=u`:   "body must be a JSON object: invalid character 'u' looking for beginning of value",
		`["alice1"]`:  "body must be a JSON object: json: cannot unmarshal array",
		`{"user_id":`: "body must be a JSON object: unexpected EOF",
		``:            "body must be a JSON object, not empty",
		`{"user_id":"alice1","actor":"me","bogus":1}`: `unknown field "bogus" (known: actor, client_ip, site, user_id, visitor_id)`,
		`{"visitor_id":-1,"actor":"me"}`:              "visitor_id -1: a number must be the visitor_id column's",
		// Found by a tester: digits past the column's range matched
		// nothing (read as "nothing stored"), and an actor of white
		// space erased with an audit line naming nobody.
		`{"visitor_id":"18446744073709551616","actor":"me"}`: `visitor_id "18446744073709551616": digits must be the visitor_id column's`,
		`{"user_id":"alice1","actor":"   "}`:                 "actor is required",
		// Found by a second tester: padded ids matched nothing (" 42 "
		// was a props id, and skipped the range check), a blank
		// user_id ran, and 0 (no visitor) matched props' "0".
		`{"visitor_id":"  18446744073709551616 ","actor":"me"}`: `visitor_id "18446744073709551616": digits must be`,
		`{"user_id":"   ","actor":"me"}`:                        "erasure needs visitor_id, user_id or client_ip",
		`{"visitor_id":0,"actor":"me"}`:                         "visitor_id 0 is no visitor",
		`{"visitor_id":"0","actor":"me"}`:                       "visitor_id 0 is no visitor",
	} {
		_, res := do(h, "/admin/erase", bearer, body)
		if msg := fmt.Sprint(res["error"]); !strings.HasPrefix(msg, want) {
			t.Errorf("%q: %q, want %q", body, msg, want)
		}
	}
	if _, res := do(h, "/admin/retention", bearer, `{"dayz":7}`); res["error"] != `unknown field "dayz" (known: actor, days)` {
		t.Errorf("retention's unknown field: %v", res)
	}
	// An unknown path names the endpoints there are.
	if _, res := do(h, "/admin/nothing", bearer, `{}`); res["error"] != "no such endpoint: /admin/nothing (POST /admin/erase or /admin/retention)" {
		t.Errorf("unknown path: %v", res)
	}

	// Another method on a route: 405 in JSON, naming the method to use.
	for _, path := range []string{"/admin/erase", "/admin/retention"} {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", bearer)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var res map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || w.Code != 405 || w.Header().Get("Allow") != "POST" ||
			res["reason"] != "method_not_allowed" || !strings.Contains(fmt.Sprint(res["error"]), "use POST") {
			t.Errorf("GET %s: %d %q %s", path, w.Code, w.Header().Get("Allow"), w.Body)
		}
	}

	// Store errors are 503 and logged as failed.
	fs.err = errors.New("clickhouse down")
	if code, res := do(h, "/admin/retention", bearer, `{}`); code != 503 || res["reason"] != "store_error" {
		t.Errorf("store down: %d %v", code, res)
	}

	// Disabled without a token; unsupported without a store.
	if code, _ := do(New(Config{Store: fs}), "/admin/erase", "Bearer ", `{}`); code != 403 {
		t.Errorf("no token configured: %d", code)
	}
	if code, _ := do(New(Config{Token: token}), "/admin/erase", bearer, `{}`); code != 501 {
		t.Errorf("no store: %d", code)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Token guessing is braked per address: after Burst wrong tokens the
// address gets 429 with Retry-After, even with the right token (it is not
// evaluated), while another address is unaffected; one summary line
// covers them all.
func TestAdminGuessingBraked(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	lim := guard.NewAuthLimiter(guard.AuthConfig{Rate: 0.001, Burst: 3, Logger: log})
	h := New(Config{Token: token, Store: &fakeStore{}, Logger: log, Limiter: lim})
	from := func(addr, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/admin/retention", strings.NewReader(`{"days":7}`))
		r.RemoteAddr = addr
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := from("192.0.2.7:1000", "Bearer guess"); w.Code != 401 {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	for _, auth := range []string{"Bearer guess", "Bearer " + token} {
		w := from("192.0.2.7:1001", auth)
		if w.Code != 429 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "rate_limited") {
			t.Errorf("after the burst, %q: %d %s %q", auth, w.Code, w.Body, w.Header().Get("Retry-After"))
		}
	}
	if w := from("198.51.100.1:1000", "Bearer "+token); w.Code != 200 {
		t.Errorf("another address: %d %s", w.Code, w.Body)
	}
	lim.Summarize()
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "credential failures"); n != 1 || !strings.Contains(out, "refused_rate_limited=2") ||
		!strings.Contains(out, "192.0.2.7=3") {
		t.Errorf("want one summary line with the refusals and the address:\n%s", out)
	}
}

// TestRemovedCalled: Removed (the live counts read again) follows an
// erasure done in time at once, one still running once its mutations
// finish, and a retention run that dropped partitions.
func TestRemovedCalled(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	removed := make(chan struct{}, 4)
	fs := &fakeStore{}
	h := New(Config{Token: token, Store: fs, RetentionDays: 30, Logger: log, Removed: func() { removed <- struct{}{} }})
	bearer := "Bearer " + token
	wait := func(what string) {
		t.Helper()
		select {
		case <-removed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Removed not called", what)
		}
	}
	none := func(what string) {
		t.Helper()
		select {
		case <-removed:
			t.Fatalf("%s: Removed called", what)
		case <-time.After(50 * time.Millisecond):
		}
	}

	if code, _ := do(h, "/admin/erase", bearer, `{"user_id":"u-123456","actor":"dpo"}`); code != 200 {
		t.Fatalf("erase: %d", code)
	}
	wait("erasure done")

	fs.running, fs.finish = true, make(chan struct{})
	if code, _ := do(h, "/admin/erase", bearer, `{"user_id":"u-123456","actor":"dpo"}`); code != 202 {
		t.Fatalf("erase still running: %d", code)
	}
	none("mutations still running")
	close(fs.finish)
	wait("mutations finished")

	if code, _ := do(h, "/admin/erase", bearer, `{"actor":"dpo"}`); code != 400 {
		t.Fatalf("erase without an identifier: %d", code)
	}
	none("a refused erasure")

	if code, _ := do(h, "/admin/retention", bearer, `{"days":7,"actor":"ops"}`); code != 200 {
		t.Fatalf("retention: %d", code)
	}
	wait("partitions dropped")
}

// An erasure's "site" given empty (or blank, or null) is refused, not
// taken as every site; "site" left out still erases on every site (the
// handler sets Erasure.AllSites, which clickhouse.Erase requires for
// that), and a named site narrows. AllSites is not a body field.
func TestEraseEmptySiteRefused(t *testing.T) {
	fs := &fakeStore{}
	h := New(Config{Token: token, Store: fs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	bearer := "Bearer " + token
	for _, body := range []string{
		`{"user_id":"u-123456","actor":"dpo","site":""}`,
		`{"user_id":"u-123456","actor":"dpo","site":"   "}`,
		`{"user_id":"u-123456","actor":"dpo","site":"\t"}`,
		`{"user_id":"u-123456","actor":"dpo","site":null}`,
	} {
		code, res := do(h, "/admin/erase", bearer, body)
		if code != 400 || res["reason"] != "bad_request" || !strings.HasPrefix(fmt.Sprint(res["error"]), "site is required: name the site to erase from") {
			t.Errorf("%s: %d %v; want 400 site is required", body, code, res)
		}
	}
	if len(fs.erased) != 0 {
		t.Fatalf("an empty site erased: %+v", fs.erased)
	}
	for _, body := range []string{
		`{"user_id":"u-123456","actor":"dpo","AllSites":true}`,
		`{"user_id":"u-123456","actor":"dpo","all_sites":true}`,
	} {
		if code, res := do(h, "/admin/erase", bearer, body); code != 400 || !strings.HasPrefix(fmt.Sprint(res["error"]), "unknown field") {
			t.Errorf("%s: %d %v; want 400 unknown field", body, code, res)
		}
	}
	// A site of the wrong type names the field, as the other fields do.
	if _, res := do(h, "/admin/erase", bearer, `{"user_id":"u-123456","actor":"dpo","site":7}`); res["error"] != `field "site" must be a string, not a JSON number` {
		t.Errorf("site as a number: %v", res)
	}
	for _, c := range []struct {
		body string
		want clickhouse.Erasure
	}{
		{`{"user_id":"u-123456","actor":"dpo"}`, clickhouse.Erasure{UserID: "u-123456", AllSites: true}},
		{`{"user_id":"u-123456","actor":"dpo","site":"demo"}`, clickhouse.Erasure{UserID: "u-123456", Site: "demo"}},
		{`{"user_id":"u-123456","actor":"dpo","site":" demo "}`, clickhouse.Erasure{UserID: "u-123456", Site: "demo"}},
	} {
		if code, res := do(h, "/admin/erase", bearer, c.body); code != 200 {
			t.Errorf("%s: %d %v", c.body, code, res)
		}
		if n := len(fs.erased); n == 0 || fs.erased[n-1] != c.want {
			t.Errorf("%s: erased %+v, want %+v last", c.body, fs.erased, c.want)
		}
	}
}

// A body is one JSON object: data after it (a second object, text) is
// refused on every endpoint, and nothing runs, where the first object
// used to run as if it were all.
func TestBodyTrailingDataRefused(t *testing.T) {
	fs := &fakeStore{}
	h := New(Config{Token: token, Store: fs, RetentionDays: 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	bearer := "Bearer " + token
	for _, c := range []struct{ path, body string }{
		{"/admin/erase", `{"user_id":"x","actor":"me"} trailing`},
		{"/admin/erase", `{"user_id":"x","actor":"me"}{"user_id":"y","actor":"me"}`},
		{"/admin/erase", `{"user_id":"x","actor":"me"}}`},
		{"/admin/erase", `{"user_id":"x","actor":"me"} 1`},
		{"/admin/retention", `{"days":7} trailing`},
		{"/admin/retention", `{"days":7}{"days":1}`},
		{"/admin/retention", `{"days":7}]`},
	} {
		code, res := do(h, c.path, bearer, c.body)
		if code != 400 || res["reason"] != "bad_request" || !strings.HasPrefix(fmt.Sprint(res["error"]), "body must be one JSON object: data after it at offset ") {
			t.Errorf("%s %s: %d %v; want 400 naming the data after the object", c.path, c.body, code, res)
		}
	}
	if len(fs.erased) != 0 || len(fs.cutoffs) != 0 {
		t.Fatalf("a body with data after its object ran: erased %+v, cutoffs %v", fs.erased, fs.cutoffs)
	}
	// Whitespace after the object is not data.
	for _, c := range []struct{ path, body string }{
		{"/admin/erase", "{\"user_id\":\"x\",\"actor\":\"me\"}\n"},
		{"/admin/retention", "{\"days\":7} \r\n\t "},
	} {
		if code, res := do(h, c.path, bearer, c.body); code != 200 {
			t.Errorf("%s %q: %d %v", c.path, c.body, code, res)
		}
	}
}

// A body over MaxBody is refused 413 too_large, saying so, on every
// endpoint, and nothing runs: it was cut at the bound and refused as a
// broken object ("unexpected EOF") or, when the object fit and white
// space ran past the bound, as data after it. A body of exactly MaxBody
// is read.
func TestBodyTooLarge(t *testing.T) {
	fs := &fakeStore{}
	h := New(Config{Token: token, Store: fs, RetentionDays: 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	bearer := "Bearer " + token
	pad := func(obj string, size int) string { return obj + strings.Repeat(" ", size-len(obj)) }
	long := `{"user_id":"` + strings.Repeat("x", MaxBody) + `","actor":"me"}`
	for _, c := range []struct{ name, path, body string }{
		{"an object over the bound", "/admin/erase", long},
		{"an object within, white space past it", "/admin/erase", pad(`{"user_id":"u-123456","actor":"me"}`, MaxBody+1)},
		{"retention, white space past it", "/admin/retention", pad(`{"days":7}`, 2*MaxBody)},
		{"retention, an object over the bound", "/admin/retention", `{"actor":"` + strings.Repeat("x", MaxBody) + `"}`},
	} {
		code, res := do(h, c.path, bearer, c.body)
		if code != 413 || res["reason"] != "too_large" || res["error"] != fmt.Sprintf("body larger than %d bytes (64 KiB): an admin request is one small JSON object", MaxBody) {
			t.Errorf("%s: %d %v; want 413 too_large", c.name, code, res)
		}
	}
	if len(fs.erased) != 0 || len(fs.cutoffs) != 0 {
		t.Fatalf("a body over the bound ran: erased %+v, cutoffs %v", fs.erased, fs.cutoffs)
	}
	for _, c := range []struct{ path, body string }{
		{"/admin/erase", pad(`{"user_id":"u-123456","actor":"me"}`, MaxBody)},
		{"/admin/retention", pad(`{"days":7}`, MaxBody)},
	} {
		if code, res := do(h, c.path, bearer, c.body); code != 200 {
			t.Errorf("%s, a body of exactly %d bytes: %d %v", c.path, MaxBody, code, res)
		}
	}
}

// A compressed body is refused 415 with Accept-Encoding: identity, saying
// to send it uncompressed, and nothing runs; it was refused as a JSON
// object with an invalid character. identity is no compression.
func TestBodyEncoding(t *testing.T) {
	fs := &fakeStore{}
	h := New(Config{Token: token, Store: fs, RetentionDays: 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"user_id":"u-123456","actor":"me"}`))
	zw.Close()
	for _, path := range []string{"/admin/erase", "/admin/retention"} {
		r := httptest.NewRequest("POST", path, bytes.NewReader(gz.Bytes()))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var res map[string]any
		json.Unmarshal(w.Body.Bytes(), &res)
		if w.Code != 415 || res["reason"] != "unsupported_encoding" || !strings.Contains(fmt.Sprint(res["error"]), "uncompressed") || w.Header().Get("Accept-Encoding") != "identity" {
			t.Errorf("%s, a gzip body: %d %v %v; want 415 unsupported_encoding with Accept-Encoding: identity", path, w.Code, res, w.Header())
		}
	}
	if len(fs.erased) != 0 || len(fs.cutoffs) != 0 {
		t.Fatalf("a compressed body ran: erased %+v, cutoffs %v", fs.erased, fs.cutoffs)
	}
	r := httptest.NewRequest("POST", "/admin/erase", strings.NewReader(`{"user_id":"u-123456","actor":"me"}`))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Encoding", "Identity")
	w := httptest.NewRecorder()
	if h.ServeHTTP(w, r); w.Code != 200 {
		t.Errorf("Content-Encoding: identity: %d %s", w.Code, w.Body)
	}
}
