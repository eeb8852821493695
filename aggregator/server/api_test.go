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
		// The listener's own routes, with another method: 405 naming
		// the method, not "no such page" (found by a new-user tester).
		{"POST", "/metrics", 405, "GET, HEAD", "method_not_allowed", "POST is not allowed on /metrics: use GET or HEAD"},
		{"PUT", "/healthz", 405, "GET, HEAD", "method_not_allowed", "use GET or HEAD"},
		{"DELETE", "/live", 405, "GET, HEAD", "method_not_allowed", "use GET or HEAD"},
		{"PUT", "/login", 405, "GET, HEAD, POST", "method_not_allowed", "use GET or HEAD or POST"},
		{"GET", "/logout", 405, "POST", "method_not_allowed", "use POST"},
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
	// /api without its slash: a 404 naming where the API is, not a
	// redirect to /api/, itself a 404; behind credentials as /api/ is.
	if code, _, b := a.askDash(t, "GET", "/api", authHeader()); code != 404 || !strings.Contains(string(b), "under /api/") {
		t.Errorf("GET /api: %d %s", code, b)
	}
	if code, _, _ := a.askDash(t, "GET", "/api", nil); code != 401 {
		t.Errorf("GET /api without credentials: %d, want 401", code)
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
// share is a share link as POST /api/shares answers it.
type share struct {
	Share struct{ ID string }
	Path  string
}

// createShare makes a share link with the admin token from form (site=...),
// failing t unless it is created.
func (a *agg) createShare(t *testing.T, form string) share {
	t.Helper()
	req, _ := http.NewRequest("POST", a.dash.URL+"/api/shares", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create share: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var created share
	json.NewDecoder(resp.Body).Decode(&created)
	return created
}

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

// A share link that is unknown or was revoked answers 404 in the JSON
// form of the listener's other refusals (it was plain text), with no
// session cookie; another method than GET or HEAD on a share link 405
// with Allow. A live link still redirects to the page.
func TestShareLinkRefusals(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	created := a.createShare(t, "site=demo")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(a.dash.URL + created.Path)
	if err != nil || resp.StatusCode != 303 || resp.Header.Get("Location") != "/?site=demo" || len(resp.Cookies()) != 1 {
		t.Fatalf("a live share link: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _, _ := a.askDash(t, "DELETE", "/api/shares/"+created.Share.ID, authHeader()); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	// A browser gets the same words as a page.
	code, h, b := a.askDash(t, "GET", created.Path, http.Header{"Accept": {"text/html,application/xhtml+xml"}})
	if code != 404 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "unknown or was revoked") || h.Get("Set-Cookie") != "" {
		t.Errorf("a revoked link in a browser: %d %s %q; want 404, an HTML page saying so", code, h.Get("Content-Type"), b)
	}
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
		reason, err  string
	}{
		{"GET", "/share/no-such-link", 404, "", "not_found", "this share link is unknown or was revoked: ask whoever sent it for a new one"},
		{"GET", created.Path, 404, "", "not_found", "this share link is unknown or was revoked"},
		{"HEAD", created.Path, 404, "", "", ""},
		{"POST", created.Path, 405, "GET, HEAD", "method_not_allowed", "POST is not allowed on a share link"},
		{"DELETE", "/share/no-such-link", 405, "GET, HEAD", "method_not_allowed", "open it with GET"},
	} {
		// Credentials or none: a share link needs none, and the answer
		// is the same.
		for _, hdr := range []http.Header{nil, authHeader()} {
			code, h, b := a.askDash(t, c.method, c.path, hdr)
			if code != c.code || h.Get("Allow") != c.allow || h.Get("Content-Type") != "application/json" || h.Get("Set-Cookie") != "" {
				t.Errorf("%s %s (credentials %v): %d Allow %q %s cookie %q; want %d Allow %q JSON, no cookie", c.method, c.path, hdr != nil, code, h.Get("Allow"), h.Get("Content-Type"), h.Get("Set-Cookie"), c.code, c.allow)
			}
			if c.method == "HEAD" {
				continue
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil || e["reason"] != c.reason || !strings.Contains(e["error"], c.err) {
				t.Errorf("%s %s: %q; want JSON, reason %s, error with %q", c.method, c.path, b, c.reason, c.err)
			}
		}
	}
}

// A share link of a site without stored events is made, with a warning
// naming the nearest known site and how to revoke the link; one of a site
// that --sites does not list is refused.
func TestShareOfUnseenSite(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir()})
	defer a.stop()
	live := a.live()
	waitTotal(t, live, 0)
	a.send(mkEvents(t, "mysite", 2))
	waitTotal(t, live, 2)
	for form, want := range map[string]string{
		"site=mysite":  "",
		"site=mysitee": `no events of site "mysitee" are stored yet, so the link shows an empty dashboard until its first hit; did you mean mysite? (if the site is misspelt, revoke the link: DELETE /api/shares/`,
	} {
		req, _ := http.NewRequest("POST", a.dash.URL+"/api/shares", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Share   struct{ ID string }
			Warning string
		}
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 201 || got.Share.ID == "" || !strings.HasPrefix(got.Warning, want) || (want == "") != (got.Warning == "") || want != "" && !strings.HasSuffix(got.Warning, got.Share.ID+")") {
			t.Errorf("POST /api/shares %s: %d %+v; want 201, warning %q", form, resp.StatusCode, got, want)
		}
	}
	b := startAgg(t, Config{DataDir: t.TempDir(), Sites: []string{"shop", "news"}})
	defer b.stop()
	req, _ := http.NewRequest("POST", b.dash.URL+"/api/shares", strings.NewReader("site=newss"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), `site \"newss\" is not one this aggregator accepts (--sites: shop, news); did you mean news?`) {
		t.Errorf("a share of a site --sites does not list: %d %s; want 400 naming --sites", resp.StatusCode, body)
	}
	// The admin reads every configured site, before its first event too
	// (a tester's /api/me left out one that had none yet).
	if code, _, body := b.askDash(t, "GET", "/api/me", authHeader()); code != 200 || !strings.Contains(string(body), `"sites":["news","shop"]`) {
		t.Errorf("/api/me with --sites shop,news and no events: %d %s", code, body)
	}
}

// /api/counts keeps the sites summed up beyond --max-sites apart from a
// site named "other": the sum is the top-level other, a site is a key of
// sites, so one named other is sites.other and never takes the sum in.
// A viewer of that site reads its count, and no sum (other 0): the sum
// is of sites it may not read.
func TestCountsOverflowApartFromSiteOther(t *testing.T) {
	viewer := "viewer-token-for-other-0123456789"
	a := startAgg(t, Config{DataDir: t.TempDir(), MaxSites: 1, DashboardViewers: map[string][]string{viewer: {"other"}}})
	defer a.stop()
	live := a.live()
	waitTotal(t, live, 0)
	a.send(mkEvents(t, "other", 3)) // the one site listed: the first seen
	waitTotal(t, live, 3)
	a.send(mkEvents(t, "demo", 2)) // beyond --max-sites: summed up
	waitTotal(t, live, 5)
	type counts struct {
		Total uint64            `json:"total"`
		Sites map[string]uint64 `json:"sites"`
		Other *uint64           `json:"other"`
		Ready bool              `json:"ready"`
	}
	for _, c := range []struct {
		tok          string
		sites        map[string]uint64
		other, total uint64
	}{
		{testToken, map[string]uint64{"other": 3}, 2, 5},
		{viewer, map[string]uint64{"other": 3}, 0, 3},
	} {
		code, _, b := a.askDash(t, "GET", "/api/counts", http.Header{"Authorization": {"Bearer " + c.tok}})
		var got counts
		if err := json.Unmarshal(b, &got); err != nil || code != 200 || got.Other == nil || *got.Other != c.other || got.Total != c.total ||
			!got.Ready || len(got.Sites) != len(c.sites) || got.Sites["other"] != c.sites["other"] {
			t.Errorf("token %s: %d %s; want sites %v, other %d, total %d", c.tok[:6], code, b, c.sites, c.other, c.total)
		}
	}
}
