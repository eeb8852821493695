package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// Per-site read access, share links (read only, one site, revocable) and
// the login cookie, on the private listener.
func TestDashboardAccess(t *testing.T) {
	viewer := "viewer-token-for-shop-0123456789"
	a := startAgg(t, Config{DataDir: t.TempDir(), DashboardViewers: map[string][]string{viewer: {"shop"}}})
	defer a.stop()
	a.send(mkEvents(t, "demo", 3))
	a.send(mkEvents(t, "shop", 2))
	var counts struct {
		Total uint64
		Sites map[string]uint64
	}
	for counts.Total != 5 {
		getJSON(t, a.dash.URL+"/api/counts", &counts)
	}

	get := func(c *http.Client, path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", a.dash.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	// The viewer reads shop only.
	if code, b := get(http.DefaultClient, "/api/counts", viewer); code != 200 || !strings.Contains(b, `"shop":2`) || strings.Contains(b, "demo") || !strings.Contains(b, `"total":2`) {
		t.Errorf("viewer counts: %d %s", code, b)
	}
	if code, _ := get(http.DefaultClient, "/api/history?site=demo", viewer); code != 403 {
		t.Errorf("viewer reading demo's history: %d, want 403", code)
	}
	if code, _ := get(http.DefaultClient, "/api/shares", viewer); code != 403 {
		t.Errorf("viewer listing shares: %d, want 403", code)
	}
	// /metrics holds totals over every site: the admin's only.
	if code, b := get(http.DefaultClient, "/metrics", viewer); code != 403 || strings.Contains(b, "edgepixel_aggregator_") {
		t.Errorf("viewer reading /metrics: %d, want 403", code)
	}
	if code, _ := get(http.DefaultClient, "/metrics", testToken); code != 200 {
		t.Errorf("admin reading /metrics: %d, want 200", code)
	}
	// A wrong token is told it is unknown, not to send one.
	if code, b := get(http.DefaultClient, "/api/counts", "wrong-token-0123456789"); code != 401 || !strings.Contains(b, "unknown token") || strings.Contains(b, "send Authorization") {
		t.Errorf("a wrong bearer token: %d %s", code, b)
	}
	if code, b := get(http.DefaultClient, "/api/counts", ""); code != 401 || !strings.Contains(b, "send Authorization") {
		t.Errorf("no token: %d %s", code, b)
	}

	// The scheme's name is case-insensitive (RFC 7235).
	req, _ := http.NewRequest("GET", a.dash.URL+"/api/counts", nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("lowercase bearer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A form over its bound is told so, not that a field is missing.
	if resp, err := http.PostForm(a.dash.URL+"/login", url.Values{"token": {strings.Repeat("x", 5000)}}); err != nil || resp.StatusCode != 413 {
		t.Errorf("a 5,000-byte token: %v %v, want 413", resp, err)
	} else {
		resp.Body.Close()
	}
	// Login sets a cookie that works without the token.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(a.dash.URL+"/login", url.Values{"token": {"wrong"}})
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("login with a wrong token: %v %v", resp, err)
	}
	resp.Body.Close()
	// No token at all (a JSON body, say) is told how to send one.
	resp, err = browser.Post(a.dash.URL+"/login", "application/json", strings.NewReader(`{"token":"`+testToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 400 || !strings.Contains(string(b), "form field token") {
		t.Errorf("login without the form field: %d %s", resp.StatusCode, b)
	}
	resp.Body.Close()
	// A link to /login finds the form on the page.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Get(a.dash.URL + "/login"); err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login: %v %v, want a redirect to /", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err = browser.PostForm(a.dash.URL+"/login", url.Values{"token": {testToken}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, b := get(browser, "/api/counts", ""); code != 200 || !strings.Contains(b, `"total":5`) {
		t.Errorf("counts with the session cookie: %d %s", code, b)
	}
	cookie := jar.Cookies(mustURL(a.dash.URL))[0]
	if cookie.Name != "edgepixel_session" {
		t.Fatalf("cookie %v", cookie)
	}
	// A cookie changed by hand is refused.
	tampered := &http.Client{Jar: mustJar(a.dash.URL, &http.Cookie{Name: cookie.Name, Value: "x" + cookie.Value})}
	if code, b := get(tampered, "/api/counts", ""); code != 401 || !strings.Contains(b, "session has ended") {
		t.Errorf("tampered cookie: %d %s, want 401 saying the session has ended", code, b)
	}

	// A share link asked for in JSON: the answer says the site is a form field.
	req, _ = http.NewRequest("POST", a.dash.URL+"/api/shares", strings.NewReader(`{"site":"shop"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 400 || !strings.Contains(string(b), "form field site") {
		t.Errorf("share from a JSON body: %d %s; want 400 naming the form field", resp.StatusCode, b)
	}
	resp.Body.Close()
	// Two sites for one link: refused, not a link for the first.
	req, _ = http.NewRequest("POST", a.dash.URL+"/api/shares", strings.NewReader("site=shop&site=demo"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("a share link for two sites: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}
	// A field the link does not read is refused, naming the ones it
	// reads, as an unknown query parameter is: not a link made without
	// what the misspelt field meant.
	req, _ = http.NewRequest("POST", a.dash.URL+"/api/shares", strings.NewReader("site=shop&bogus=1&nte=team"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `unknown form fields \"bogus\", \"nte\"; accepted: site, note`) {
			t.Errorf("a share link with unknown fields: %d %s", resp.StatusCode, b)
		}
	}
	// A share link for shop, its name with white space around it as a
	// form pasted into may send it: the share is shop's (a tester's
	// " demo " share read an empty site).
	created := a.createShare(t, "site=%20shop%20&note=team")
	jar2, _ := cookiejar.New(nil)
	guest := &http.Client{Jar: jar2}
	if code, _ := get(guest, created.Path, ""); code != 200 { // redirected to the page
		t.Fatalf("visit share link: %d", code)
	}
	if code, b := get(guest, "/api/counts", ""); code != 200 || !strings.Contains(b, `"shop":2`) || strings.Contains(b, "demo") {
		t.Errorf("share counts: %d %s", code, b)
	}
	if code, b := get(guest, "/api/history?site=%20shop", ""); code != 200 || !strings.Contains(b, `"site":"shop"`) {
		t.Errorf("share reading its site with a space before it: %d %s", code, b)
	}
	if code, _ := get(guest, "/api/history?site=demo", ""); code != 403 {
		t.Errorf("share reading demo: %d, want 403", code)
	}
	if code, _ := get(guest, "/metrics", ""); code != 403 {
		t.Errorf("share reading /metrics: %d, want 403", code)
	}
	u := "ws" + strings.TrimPrefix(a.dash.URL, "http") + "/live"
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {jar2.Cookies(mustURL(a.dash.URL))[0].String()}})
	if err != nil {
		t.Fatalf("share /live: %v", err)
	}
	var m struct {
		Type  string
		Sites map[string]uint64
	}
	if err := c.ReadJSON(&m); err != nil || m.Type != "snapshot" || len(m.Sites) != 1 || m.Sites["shop"] != 2 {
		t.Errorf("share snapshot %+v %v", m, err)
	}
	c.Close()
	// Revoked: the guest's session ends at once.
	req, _ = http.NewRequest("DELETE", a.dash.URL+"/api/shares/"+created.Share.ID, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	if code, _ := get(guest, "/api/counts", ""); code != 401 {
		t.Errorf("revoked share: %d, want 401", code)
	}
	// Revoking it again: 404 with a reason, like every other refusal.
	req, _ = http.NewRequest("DELETE", a.dash.URL+"/api/shares/"+created.Share.ID, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 404 || !strings.Contains(string(b), `"reason":"not_found"`) {
		t.Errorf("revoking a revoked share: %d %s; want 404 not_found", resp.StatusCode, b)
	}
	if code, _ := get(guest, created.Path, ""); code != 404 {
		t.Errorf("revoked share link: %d, want 404", code)
	}

	// Another site's page cannot open /live through a logged-in browser.
	hdr := authHeader()
	hdr.Set("Origin", "https://evil.example")
	if c, resp, err := websocket.DefaultDialer.Dial(u, hdr); err == nil {
		c.Close()
		t.Error("cross-origin /live opened")
	} else if resp == nil || resp.StatusCode != 403 {
		t.Errorf("cross-origin /live: %v, %v; want 403", resp, err)
	} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "--dashboard-origins") {
		t.Errorf("cross-origin /live answered %q, which does not say what allows an origin", b)
	}
	hdr.Set("Origin", a.dash.URL)
	if c, _, err := websocket.DefaultDialer.Dial(u, hdr); err != nil {
		t.Errorf("same-origin /live: %v", err)
	} else {
		c.Close()
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func mustJar(u string, c *http.Cookie) *cookiejar.Jar {
	j, _ := cookiejar.New(nil)
	j.SetCookies(mustURL(u), []*http.Cookie{c})
	return j
}

// A request that changes something with the session cookie from a page of
// another origin is refused: SameSite=Strict kept other sites out, not a
// sibling subdomain or another port of the host, from whose page a tester
// made share links and logged the owner out. The dashboard's own page,
// an origin given to --dashboard-origins, a bearer token and a script
// (no Origin, no Sec-Fetch-Site) pass; reading is not checked.
func TestCookieWritesFromOtherOrigins(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir(), DashboardOrigins: []string{"https://ops.example"}})
	defer a.stop()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(a.dash.URL+"/login", url.Values{"token": {testToken}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	own := a.dash.URL // http://127.0.0.1:PORT
	other := strings.Replace(own, "127.0.0.1", "localhost", 1)
	for _, c := range []struct {
		method string
		hdr    map[string]string
		code   int
	}{
		{"POST", map[string]string{"Origin": "https://evil.example"}, 403},
		{"POST", map[string]string{"Origin": "null"}, 403},
		{"POST", map[string]string{"Origin": other}, 403},
		{"POST", map[string]string{"Origin": other, "Sec-Fetch-Site": "same-site"}, 403},
		{"POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"POST", map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}, 201},
		{"POST", map[string]string{"Origin": own}, 201},
		{"POST", map[string]string{"Origin": "https://ops.example", "Sec-Fetch-Site": "cross-site"}, 201},
		{"POST", nil, 201},
		{"POST", map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer " + testToken}, 201},
		{"GET", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 200},
	} {
		req, _ := http.NewRequest(c.method, a.dash.URL+"/api/shares", strings.NewReader("site=demo"))
		if c.method == "POST" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || c.code == 403 && !strings.Contains(string(b), `"reason":"origin_not_allowed"`) {
			t.Errorf("%s /api/shares %v: %d %s, want %d", c.method, c.hdr, resp.StatusCode, b, c.code)
		}
	}
	// Logging in uses no session, and is let through from anywhere, so
	// a proxy that rewrites Host cannot lock the owner out.
	req, _ := http.NewRequest("POST", a.dash.URL+"/login", strings.NewReader(url.Values{"token": {testToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://dash.example")
	if resp, err := browser.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("login from another origin: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	// Logging out is a change too.
	req, _ = http.NewRequest("POST", a.dash.URL+"/logout", nil)
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := browser.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("logout from another origin: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := browser.Get(a.dash.URL + "/api/counts"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the session after a refused logout: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
