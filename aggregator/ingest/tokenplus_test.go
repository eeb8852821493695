package ingest

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A --log-token with '+' in it, written unescaped in a POP's log
// endpoint URL, arrives with each '+' a space: every post got 401 and the
// log said only log_token=N (found by a new-user tester). The refusal
// stays, but a warning says why and what to do, at most once per
// plusWarnEvery, and never holds the token.
func TestLogTokenPlusDecodedAsSpace(t *testing.T) {
	const token = "+abc+def/ghi0123456789="
	var logs bytes.Buffer
	now := time.Unix(1_750_000_000, 0)
	h := NewNDJSON(Config{Secret: secret, Spool: &memSpool{}, LogToken: token,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	// The header as the POP makes it from its endpoint's query.
	header := func(query string) string {
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strings.CutPrefix(q.Get("header"), "Authorization:")
		return v
	}
	post := func(auth string) (int, string) {
		w := httptest.NewRecorder()
		body := []byte(fmt.Sprintf(`{"ts_ms":%d,"site":"demo","url":"/a"}`, now.UnixMilli()))
		h.ServeHTTP(w, ndjsonRequest(body, map[string]string{"Authorization": auth}))
		return w.Code, w.Body.String()
	}
	const warning = "with each '+' turned into a space"
	decoded := header("header=Authorization:Bearer%20" + token)
	if decoded != "Bearer  abc def/ghi0123456789=" {
		t.Fatalf("the query decodes to %q", decoded)
	}
	code, body := post(decoded)
	if code != 401 || !strings.Contains(body, "write it as %2B") {
		t.Errorf("the decoded token: %d %s; want 401 with the hint", code, body)
	}
	if n := strings.Count(logs.String(), warning); n != 1 || !strings.Contains(logs.String(), "%2B") || !strings.Contains(logs.String(), "tr '+/' '-_'") {
		t.Errorf("%d warnings, want 1 saying what to do:\n%s", n, logs.String())
	}
	for _, secretPart := range []string{token, "abc+def", "abc def", "ghi0123456789"} {
		if strings.Contains(logs.String(), secretPart) {
			t.Errorf("the log holds the token (%q):\n%s", secretPart, logs.String())
		}
	}
	// Retries within the interval: refused, not logged again.
	post(decoded)
	now = now.Add(plusWarnEvery - time.Second)
	post(decoded)
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Errorf("%d warnings within %v, want 1", n, plusWarnEvery)
	}
	now = now.Add(2 * time.Second)
	post(decoded)
	if n := strings.Count(logs.String(), warning); n != 2 {
		t.Errorf("%d warnings after %v, want 2", n, plusWarnEvery)
	}
	// Other wrong tokens are not taken for it; %2B is the fix.
	before := logs.Len()
	for _, auth := range []string{"Bearer nope", "Bearer  abc def/ghi0123456789", "Bearer -abc-def/ghi0123456789="} {
		if code, _ := post(auth); code != 401 {
			t.Errorf("%q: %d, want 401", auth, code)
		}
	}
	if strings.Contains(logs.String()[before:], warning) {
		t.Errorf("a wrong token was warned about as '+' decoded:\n%s", logs.String()[before:])
	}
	if code, body := post(header("header=Authorization:Bearer%20" + strings.ReplaceAll(token, "+", "%2B"))); code != 200 {
		t.Errorf("the token with %%2B: %d %s", code, body)
	}
	// A token without '+' has nothing to be confused with.
	logs.Reset()
	plain := NewNDJSON(Config{Secret: secret, Spool: &memSpool{}, LogToken: "abc-def_ghi0123456789",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	w := httptest.NewRecorder()
	plain.ServeHTTP(w, ndjsonRequest([]byte("{}"), map[string]string{"Authorization": "Bearer abc def_ghi0123456789"}))
	if w.Code != 401 || strings.Contains(logs.String(), warning) {
		t.Errorf("a token without '+': %d, log:\n%s", w.Code, logs.String())
	}
}
