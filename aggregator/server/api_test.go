package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Wrong requests to the dashboard's API answer a JSON error that says
// what is wrong, after authentication: a wrong method on an API path
// 405 with Allow, an unknown path 404, a repeated parameter and from/to
// without range=custom 400. None needs a store that answers history.
func TestAPIRefusals(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	do := func(method, path, tok string) (int, http.Header, map[string]string) {
		t.Helper()
		var hdr http.Header
		if tok != "" {
			hdr = http.Header{"Authorization": {"Bearer " + tok}}
		}
		code, h, b := a.askDash(t, method, path, hdr)
		var e map[string]string
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("%s %s: %d, not JSON: %q", method, path, code, b)
		}
		return code, h, e
	}
	for _, c := range []struct {
		method, path string
		code         int
		allow        string // the Allow header wanted
		reason, err  string // err: a part of the error wanted
	}{
		{"POST", "/api/top?site=demo&dim=page", 405, "GET, HEAD", "method_not_allowed", "POST is not allowed on /api/top"},
		{"DELETE", "/api/stats", 405, "GET, HEAD", "method_not_allowed", "use GET or HEAD"},
		{"PUT", "/api/shares", 405, "GET, HEAD, POST", "method_not_allowed", "PUT is not allowed"},
		{"GET", "/api/shares/abc", 405, "DELETE", "method_not_allowed", "use DELETE"},
		{"GET", "/api/nope", 404, "", "not_found", "no such endpoint: /api/nope"},
		{"POST", "/api/nope", 404, "", "not_found", "no such endpoint"},
		{"GET", "/api/top?site=demo&dim=page&page=/a&page=/b", 400, "", "bad_request", "parameter page given more than once: give it once"},
		{"GET", "/api/stats?site=a&site=b", 400, "", "bad_request", "parameter site given more than once"},
		{"GET", "/api/top?site=demo&dim=page&limit=5&limit=6", 400, "", "bad_request", "parameter limit given more than once"},
		{"GET", "/api/history?site=demo&minutes=5&minutes=6", 400, "", "bad_request", "parameter minutes given more than once"},
		{"GET", "/api/stats?site=demo&range=7d&from=2026-01-01&to=2026-01-31", 400, "", "bad_request", "from and to need range=custom"},
		{"GET", "/api/top?site=demo&dim=page&from=2026-01-01", 400, "", "bad_request", "from and to need range=custom"},
		// A pair that does not parse: left out, it answered unfiltered
		// figures.
		{"GET", "/api/stats?site=demo&country=D%ZZE", 400, "", "bad_request", `malformed query: invalid URL escape "%ZZ"; escape a literal % as %25`},
		{"GET", "/api/top.csv?site=demo&dim=page&country=DE;x", 400, "", "bad_request", "malformed query: invalid semicolon separator in query"},
		{"GET", "/api/stats?site=demo&bots=exclude%", 400, "", "bad_request", "malformed query"},
		{"GET", "/api/loss?site=", 400, "", "bad_request", "site is empty: give a site, or leave site out for all sites"},
	} {
		code, hdr, e := do(c.method, c.path, testToken)
		if code != c.code || hdr.Get("Allow") != c.allow || e["reason"] != c.reason || !strings.Contains(e["error"], c.err) {
			t.Errorf("%s %s: %d Allow %q %v; want %d Allow %q, reason %s, error with %q", c.method, c.path, code, hdr.Get("Allow"), e, c.code, c.allow, c.reason, c.err)
		}
		// A stranger learns nothing of the API: 401 first.
		if code, hdr, _ := do(c.method, c.path, ""); code != 401 || hdr.Get("Allow") != "" {
			t.Errorf("%s %s without credentials: %d Allow %q, want 401", c.method, c.path, code, hdr.Get("Allow"))
		}
	}
	// HEAD, which Allow names beside GET, is served where GET is.
	if code, _, _ := a.askDash(t, "HEAD", "/api/me", authHeader()); code != 200 {
		t.Errorf("HEAD /api/me: %d, want 200", code)
	}
}

// The dashboard's static files answer what is not one of them as the API
// does, in JSON: a path that names no file 404, one that is not valid
// UTF-8 too (the file server answered it 500: fs.FS refuses such a name as
// invalid), and a method other than GET or HEAD on a file 405 with Allow
// (it was served the file). They need no credentials, so neither do these
// answers.
func TestStaticRefusals(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	for _, c := range []struct {
		method, path string
		code         int
		allow        string // the Allow header wanted
		reason, err  string // err: a part of the error wanted
	}{
		{"GET", "/%ff", 404, "", "not_found", "no such page: /\ufffd"},
		{"GET", "/healthz%ff", 404, "", "not_found", "no such page: /healthz\ufffd"},
		{"GET", "/index.html%ff", 404, "", "not_found", "no such page"},
		{"GET", "/%c3%28", 404, "", "not_found", "no such page"},
		{"GET", "/live%ff", 404, "", "not_found", "no such page"},
		{"GET", "/metrics%ff", 404, "", "not_found", "no such page"},
		{"HEAD", "/%ff", 404, "", "", ""},
		{"POST", "/%ff", 404, "", "not_found", "no such page"},
		{"GET", "/nope.js", 404, "", "not_found", "no such page: /nope.js"},
		{"DELETE", "/nope.js", 404, "", "not_found", "no such page: /nope.js"},
		{"POST", "/", 405, "GET, HEAD", "method_not_allowed", "POST is not allowed on /: use GET or HEAD"},
		{"DELETE", "/app.js", 405, "GET, HEAD", "method_not_allowed", "DELETE is not allowed on /app.js"},
		{"PUT", "/style.css", 405, "GET, HEAD", "method_not_allowed", "use GET or HEAD"},
		{"OPTIONS", "/index.html", 405, "GET, HEAD", "method_not_allowed", "use GET or HEAD"},
	} {
		for _, hdr := range []http.Header{nil, authHeader()} {
			code, h, b := a.askDash(t, c.method, c.path, hdr)
			if code != c.code || h.Get("Allow") != c.allow {
				t.Errorf("%s %s (credentials %v): %d Allow %q %q; want %d Allow %q", c.method, c.path, hdr != nil, code, h.Get("Allow"), b, c.code, c.allow)
			}
			if c.method == "HEAD" {
				continue // no body
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil || e["reason"] != c.reason || !strings.Contains(e["error"], c.err) {
				t.Errorf("%s %s: %q; want JSON, reason %s, error with %q", c.method, c.path, b, c.reason, c.err)
			}
		}
	}
	// The files themselves are still served, to GET and HEAD.
	for _, m := range []string{"GET", "HEAD"} {
		for _, p := range []string{"/", "/app.js", "/style.css", "/index.html"} {
			if code, _, _ := a.askDash(t, m, p, nil); code != 200 {
				t.Errorf("%s %s: %d, want 200", m, p, code)
			}
		}
	}
}

// /live opened without a WebSocket handshake (a browser tab, curl) answers
// 400 in the JSON form of the dashboard's other errors, saying it is a
// WebSocket; it answered a bare "Bad Request". A stranger gets 401 first.
func TestLiveWithoutUpgrade(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	for _, c := range []struct {
		hdr    http.Header
		code   int
		reason string
		err    string
	}{
		{authHeader(), 400, "bad_request", "/live is a WebSocket: open it with a WebSocket client"},
		{nil, 401, "unauthorized", "log in"},
	} {
		code, h, b := a.askDash(t, "GET", "/live", c.hdr)
		var e map[string]string
		if code != c.code || h.Get("Content-Type") != "application/json" || json.Unmarshal(b, &e) != nil || e["reason"] != c.reason || !strings.Contains(e["error"], c.err) {
			t.Errorf("GET /live (credentials %v): %d %s %q; want %d JSON, reason %s, error with %q", c.hdr != nil, code, h.Get("Content-Type"), b, c.code, c.reason, c.err)
		}
	}
}

// askDash sends method path to a's dashboard listener with the header hdr
// (nil: none) and returns the answer's status, header and body.
func (a *agg) askDash(t *testing.T, method, path string, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.dash.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hdr != nil {
		req.Header = hdr
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}
