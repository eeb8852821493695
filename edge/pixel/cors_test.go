package pixel

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

func TestParseOrigins(t *testing.T) {
	o, err := ParseOrigins("shop=https://Shop.example/ https://www.shop.example;\n blog = https://blog.example:8443 ; closed= ; any=*", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		site, origin string
		want         bool
	}{
		{"shop", "https://shop.example", true}, // configured with a capital and a slash
		{"shop", "https://www.shop.example", true},
		{"shop", "https://evil.example", false},
		{"shop", "http://shop.example", false}, // another scheme is another origin
		{"blog", "https://blog.example:8443", true},
		{"blog", "https://blog.example", false},
		{"closed", "https://closed.example", false},
		{"any", "https://whatever.example", true},
		{"unlisted", "https://whatever.example", true}, // the default is any origin
		{"", "https://whatever.example", true},
	} {
		if got := o.Allowed(c.site, c.origin); got != c.want {
			t.Errorf("Allowed(%q, %q) = %v", c.site, c.origin, got)
		}
	}
	o, err = ParseOrigins("shop=https://shop.example", "none")
	if err != nil || o.Allowed("unlisted", "https://shop.example") || o.Allowed("", "https://shop.example") || !o.Allowed("shop", "https://shop.example") {
		t.Errorf("cors_default none: %v", err)
	}
	o, err = ParseOrigins("shop=https://shop.example", "https://hub.example null")
	if err != nil || !o.Allowed("x", "https://hub.example") || !o.Allowed("x", "null") || o.Allowed("x", "https://shop.example") {
		t.Errorf("cors_default list: %v", err)
	}
	// Mistakes are reported, and skipped without touching the rest.
	o, err = ParseOrigins("shop=https://shop.example/path ftp:// https://ok.example; nosite; =https://x.example", "")
	if err == nil || strings.Count(err.Error(), "\n") != 3 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	if !o.Allowed("shop", "https://ok.example") || o.Allowed("shop", "https://shop.example") {
		t.Error("a bad origin changed the rest of its site's list")
	}
	var none *Origins
	if !none.Allowed("x", "https://a.example") {
		t.Error("nil Origins must allow every origin")
	}
}

// A list that is all typos is not an empty list (which allows no origin):
// it is as if it were not set, and the report says what applies instead.
func TestParseOriginsAllMalformed(t *testing.T) {
	o, err := ParseOrigins("", "notanorigin")
	if err == nil || !strings.Contains(err.Error(), `cors_default: "notanorigin" is not an origin`) || !strings.Contains(err.Error(), "cors_default stays *") {
		t.Errorf("cors_default notanorigin: error %v", err)
	}
	if !o.Allowed("shop", "https://shop.example") || !o.Allowed("", "https://shop.example") {
		t.Error("a malformed cors_default closed every site")
	}

	o, err = ParseOrigins("shop=https//shop.example shop.example; blog=https://blog.example", "https://hub.example")
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `cors_origins shop: "https//shop.example", "shop.example" are not origins`) || !strings.Contains(err.Error(), "shop follows cors_default") {
		t.Errorf("one line for shop's list, saying what applies: %v", err)
	}
	if !o.Allowed("shop", "https://hub.example") || o.Allowed("shop", "https://evil.example") || !o.Allowed("blog", "https://blog.example") {
		t.Error("a site whose list is all malformed must follow cors_default")
	}

	// A duplicate entry that is all typos leaves the earlier one.
	o, err = ParseOrigins("shop=https://shop.example; shop=https//shop.example", "")
	if err == nil || !strings.Contains(err.Error(), "shop keeps its earlier entry") || !o.Allowed("shop", "https://shop.example") || o.Allowed("shop", "https://evil.example") {
		t.Errorf("duplicate entry: %v", err)
	}

	// Lists that ask for no origin, in words, still do; a list with one
	// good origin keeps it, whatever else is wrong with it.
	for _, c := range []struct{ perSite, def, site string }{
		{"", "none", "shop"},
		{"", "none notanorigin", "shop"},
		{"shop=", "", "shop"},
		{"shop=none https//x", "", "shop"},
		{"shop=https//x https://ok.example", "", "shop"},
	} {
		if o, _ := ParseOrigins(c.perSite, c.def); o.Allowed(c.site, "https://evil.example") {
			t.Errorf("ParseOrigins(%q, %q) allows any origin for %s", c.perSite, c.def, c.site)
		}
	}
}

// corsHit is a browser's request from origin, with hdr's other headers.
func corsHit(method, query, body, origin string, hdr map[string]string) *Hit {
	h, _ := hit(method, "/e", query, body)
	h.Header = func(name string) string {
		if name == "Origin" {
			return origin
		}
		return hdr[name]
	}
	return h
}

func TestServeCORS(t *testing.T) {
	o, err := ParseOrigins("shop=https://shop.example", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{Origins: o}
	const shop, evil = "https://shop.example", "https://evil.example"
	for _, tc := range []struct {
		name                 string
		method, query, body  string
		origin               string
		status, events       int
		drop, allowOrigin    string
		credentials, methods bool
	}{
		{name: "preflight for the site", method: "OPTIONS", query: "site=shop", origin: shop, status: 204, allowOrigin: shop, credentials: true, methods: true},
		{name: "preflight from elsewhere", method: "OPTIONS", query: "site=shop", origin: evil, status: 403, drop: wire.DropOriginNotAllowed},
		{name: "preflight without a site: the default", method: "OPTIONS", origin: evil, status: 204, allowOrigin: evil, credentials: true, methods: true},
		{name: "beacon for the site", method: "POST", body: `{"site":"shop"}`, origin: shop, status: 204, events: 1, allowOrigin: shop, credentials: true},
		{name: "beacon from elsewhere", method: "POST", body: `{"site":"shop"}`, origin: evil, status: 403, drop: wire.DropOriginNotAllowed},
		{name: "one event of the array from elsewhere", method: "POST", body: `[{"site":"blog"},{"site":"shop"}]`, origin: evil, status: 403, drop: wire.DropOriginNotAllowed},
		{name: "another site, the default", method: "POST", body: `{"site":"blog"}`, origin: evil, status: 204, events: 1, allowOrigin: evil, credentials: true},
		{name: "the URL's site does not vouch for the body's", method: "POST", query: "site=blog", body: `{"site":"shop"}`, origin: evil, status: 403, drop: wire.DropOriginNotAllowed},
		{name: "bad JSON readable by an allowed origin", method: "POST", query: "site=shop", body: `{`, origin: shop, status: 400, drop: wire.DropBadJSON, allowOrigin: shop, credentials: true},
		{name: "bad JSON from elsewhere", method: "POST", query: "site=shop", body: `{`, origin: evil, status: 403, drop: wire.DropOriginNotAllowed},
		{name: "not a browser", method: "POST", body: `{"site":"shop"}`, status: 204, events: 1, allowOrigin: "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
			resp := &Response{}
			Serve(corsHit(tc.method, tc.query, tc.body, tc.origin, nil), c, b, time.Now(), resp)
			if resp.Status != tc.status || b.Len() != tc.events || resp.Drop != tc.drop || resp.Get("X-Edgepixel-Drop") != tc.drop {
				t.Errorf("status %d events %d drop %q/%q; want %d %d %q", resp.Status, b.Len(), resp.Drop, resp.Get("X-Edgepixel-Drop"), tc.status, tc.events, tc.drop)
			}
			if got := resp.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allowOrigin)
			}
			if got := resp.Get("Access-Control-Allow-Credentials") == "true"; got != tc.credentials {
				t.Errorf("Access-Control-Allow-Credentials %v, want %v", got, tc.credentials)
			}
			if resp.Get("Vary") != "Origin" {
				t.Error("no Vary: Origin: a cache could give one origin's answer to another")
			}
			if tc.methods && (!strings.Contains(resp.Get("Access-Control-Allow-Headers"), "Content-Type") || !strings.Contains(resp.Get("Access-Control-Allow-Headers"), HeaderIdempotencyKey) || !strings.Contains(resp.Get("Access-Control-Allow-Methods"), "POST")) {
				t.Errorf("preflight allows %q %q", resp.Get("Access-Control-Allow-Methods"), resp.Get("Access-Control-Allow-Headers"))
			}
		})
	}
}

// A body refused for itself and from an origin the URL's site does not
// allow is counted for the site the body names, not for none (a
// tester's origin_not_allowed went to site "").
func TestOriginRefusalCountedForBodySite(t *testing.T) {
	o, err := ParseOrigins("shop=https://shop.example", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{Origins: o}
	b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
	resp := &Response{}
	Serve(corsHit("POST", "site=shop", `{"site":"zj3","event_id":"bad"}`, "https://evil.example", nil), c, b, time.Now(), resp)
	if resp.Status != 403 || resp.Drop != wire.DropOriginNotAllowed || resp.refused.site != "zj3" {
		t.Errorf("status %d drop %q counted for %q; want 403 %s for zj3", resp.Status, resp.Drop, resp.refused.site, wire.DropOriginNotAllowed)
	}
}

// A refused POST's error says what in the body is wrong: which event of
// several, the JSON's mistake (a tester got one message for a dozen
// mistakes, and no event's place in a batch).
func TestPostErrorDetail(t *testing.T) {
	for _, tc := range []struct{ body, drop, detail string }{
		{`{"site":"s","name":5}`, wire.DropBadJSON, `("name" cannot be a JSON number)`},
		{`{"site":"s","props":[1]}`, wire.DropBadJSON, `(props: not a JSON object)`},
		{`[{"site":"s"},{"site":"s","props":"x"}]`, wire.DropBadJSON, `(event 2 of 2: props: not a JSON object)`},
		{strings.Repeat("[", 10001), wire.DropBadJSON, `(not JSON at byte 10001: invalid character '[' exceeded max depth)`},
		{`{"site":"s",`, wire.DropBadJSON, `(not JSON at byte `},
		{`[]`, wire.DropBadJSON, `(an array of no events)`},
		{`[{"site":"s"},{"name":"x"}]`, wire.DropMissingSite, `(event 2 of 2)`},
		{`[{"site":"s"},{"site":"s","event_id":"x"}]`, wire.DropBadEventID, `(event 2 of 2)`},
		{`[{"site":"s","url":"javascript:x"},{"site":"s"}]`, wire.DropBadURL, `(event 1 of 2)`},
		{`{"site":"s","event_id":"x"}`, wire.DropBadEventID, ``},
	} {
		b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
		resp := &Response{}
		Serve(corsHit("POST", "", tc.body, "", nil), &Config{}, b, time.Now(), resp)
		var got struct{ Error, Reason string }
		if err := json.Unmarshal(resp.Body, &got); err != nil || got.Reason != tc.drop {
			t.Errorf("%s: %d %s (%v), want %s", tc.body, resp.Status, resp.Body, err, tc.drop)
			continue
		}
		if tc.detail == "" && strings.HasSuffix(got.Error, ")") || !strings.Contains(got.Error, tc.detail) {
			t.Errorf("%s: error %q, want it to say %q", tc.body, got.Error, tc.detail)
		}
	}
}
