package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The embeddable counter: only for the sites opted in, on the public
// listener, JSON and SVG, cacheable, 304 on a matching ETag.
func TestCounter(t *testing.T) {
	a := startAgg(t, Config{DataDir: t.TempDir(), PublicCounters: []string{"shop", "one"}})
	defer a.stop()
	shop := mkEvents(t, "shop", 4)
	for i, id := range []uint64{7, 7, 9, 0} { // two visitors; 0 is the aggregate tier's, no visitor
		shop[i].VisitorID = id
	}
	a.send(shop)
	a.send(mkEvents(t, "demo", 2))
	a.send(mkEvents(t, "one", 1))
	get := func(path, etag string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", a.http.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	var resp *http.Response
	var body string
	eventually(t, "counter shows 4", func() bool {
		resp, body = get("/counter/shop.json", "")
		return strings.Contains(body, `"pageviews":4,`) && strings.Contains(body, `"visitors":2,`)
	})
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=15" || resp.Header.Get("ETag") == "" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("json: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// As a browser sends it back through a proxy that compressed the
	// body (weakened) or with other tags it holds.
	for _, inm := range []string{resp.Header.Get("ETag"), "W/" + resp.Header.Get("ETag"), `"old", ` + resp.Header.Get("ETag")} {
		if r, _ := get("/counter/shop.json", inm); r.StatusCode != 304 {
			t.Errorf("revalidation with %s: %d, want 304", inm, r.StatusCode)
		}
	}
	resp, body = get("/counter/shop.svg", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(body, ">4 views, last 5 min<") {
		t.Errorf("svg: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	eventually(t, "one's badge says 1 view", func() bool {
		_, body := get("/counter/one.svg", "")
		return strings.Contains(body, ">1 view, last 5 min<")
	})
	for _, p := range []string{"/counter/demo.json", "/counter/demo.svg", "/counter/shop.html", "/counter/shop"} {
		if r, _ := get(p, ""); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404 (not opted in)", p, r.StatusCode)
		}
	}
}
