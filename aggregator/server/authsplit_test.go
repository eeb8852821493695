package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/shared/clientip"
)

// TestAuthLimitPerListener: failed bearer tokens on the public listener
// (anyone's) do not lock the same address out of the dashboard, and a
// signed session cookie still works from an address the dashboard's own
// limiter brakes, while a bearer token from it gets 429 right or wrong.
func TestAuthLimitPerListener(t *testing.T) {
	const logToken = "log-token-0123456789abcdef"
	s, err := Open(Config{DataDir: t.TempDir(), Secret: secret, DashboardToken: testToken, LogToken: logToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, dash := httptest.NewServer(s.Handler()), httptest.NewServer(s.DashboardHandler())
	defer pub.Close()
	defer dash.Close()
	do := func(method, u, token string, body io.Reader, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		return request(t, method, u, token, body, nil, cookies...)
	}
	for range 30 {
		do(http.MethodPost, pub.URL+"/ingest/ndjson", "wrong-token", strings.NewReader("{}\n"))
	}
	if got := do(http.MethodPost, pub.URL+"/ingest/ndjson", logToken, strings.NewReader("")).StatusCode; got != http.StatusTooManyRequests {
		t.Fatalf("public listener after 30 failures: %d, want 429 (the brake)", got)
	}
	if got := do(http.MethodGet, dash.URL+"/api/me", testToken, nil).StatusCode; got != http.StatusOK {
		t.Fatalf("dashboard, right token, after failures on the public listener: %d, want 200", got)
	}

	login := do(http.MethodPost, dash.URL+"/login", "", strings.NewReader(url.Values{"token": {testToken}}.Encode()))
	if login.StatusCode != http.StatusOK || len(login.Cookies()) == 0 {
		t.Fatalf("login: %d, cookies %v", login.StatusCode, login.Cookies())
	}
	for range 30 {
		do(http.MethodGet, dash.URL+"/api/me", "wrong-token", nil)
	}
	if got := do(http.MethodGet, dash.URL+"/api/me", testToken, nil).StatusCode; got != http.StatusTooManyRequests {
		t.Errorf("dashboard, right token, after 30 failures there: %d, want 429 (a limited address's answer must not tell a right guess)", got)
	}
	if got := do(http.MethodGet, dash.URL+"/api/me", "", nil, login.Cookies()...).StatusCode; got != http.StatusOK {
		t.Errorf("dashboard, signed session, after 30 failures there: %d, want 200", got)
	}
}

// request sends one request with a bearer token (if any), extra headers
// and cookies, and returns the answer, its body read.
func request(t *testing.T, method, u, token string, body io.Reader, h http.Header, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestAuthLimitBehindProxy: behind a trusted reverse proxy (loopback
// here), the failed-credential limit is per client X-Forwarded-For names,
// not one for the proxy's address that every client shares.
func TestAuthLimitBehindProxy(t *testing.T) {
	const logToken = "log-token-0123456789abcdef"
	trust, err := clientip.NewTrust([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{DataDir: t.TempDir(), Secret: secret, LogToken: logToken, TrustedProxies: trust,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub := httptest.NewServer(s.Handler())
	defer pub.Close()
	from := func(client string) http.Header { return http.Header{"X-Forwarded-For": {client}} }
	for range 30 {
		request(t, http.MethodPost, pub.URL+"/ingest/ndjson", "wrong-token", strings.NewReader("{}\n"), from("203.0.113.5"))
	}
	if got := request(t, http.MethodPost, pub.URL+"/ingest/ndjson", logToken, strings.NewReader(""), from("203.0.113.5")).StatusCode; got != http.StatusTooManyRequests {
		t.Fatalf("the guessing client: %d, want 429", got)
	}
	if got := request(t, http.MethodPost, pub.URL+"/ingest/ndjson", logToken, strings.NewReader(""), from("198.51.100.9")).StatusCode; got == http.StatusTooManyRequests {
		t.Fatalf("another client behind the same proxy: 429, want its own limit")
	}
}
