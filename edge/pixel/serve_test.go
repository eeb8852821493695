package pixel

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

func hit(method, path, query, body string) (*Hit, *int) {
	metaCalls := new(int)
	return &Hit{
		Method: method, Path: path, RawQuery: query,
		Meta: func() *Meta { *metaCalls++; return meta() },
		Body: func(max int) ([]byte, error) {
			if body == "\x00fail" {
				return nil, errors.New("reset by peer")
			}
			return []byte(body[:min(len(body), max+1)]), nil
		},
	}, metaCalls
}

func TestServe(t *testing.T) {
	now := time.UnixMilli(1_763_800_000_000)
	for _, tc := range []struct {
		name                     string
		method, path, q, body    string
		status, events           int
		drop, contentType, body2 string
		metaCalls                int
	}{
		{name: "pixel", method: "GET", path: "/p.gif", q: "site=a.com&url=https://a.com/x", status: 200, events: 1, contentType: "image/gif", metaCalls: 1},
		{name: "pixel alias", method: "GET", path: "/i", q: "site=a.com", status: 200, events: 1, contentType: "image/gif", metaCalls: 1},
		{name: "pixel HEAD answered, not counted", method: "HEAD", path: "/p.gif", q: "site=a.com", status: 200, drop: wire.DropHeadRequest, contentType: "image/gif"},
		{name: "pixel without site still a GIF", method: "GET", path: "/p.gif", q: "url=x", status: 200, drop: wire.DropMissingSite, contentType: "image/gif", metaCalls: 1},
		{name: "pixel with an unknown open value still a GIF", method: "GET", path: "/p.gif", q: "site=a.com&open=0", status: 200, drop: wire.DropBadOpen, contentType: "image/gif", metaCalls: 1},
		{name: "pixel POST refused", method: "POST", path: "/p.gif", status: 405, drop: wire.DropBadMethod, contentType: "application/json"},
		{name: "post", method: "POST", path: "/e", body: `[{"site":"a.com","url":"https://a.com/"},{"site":"a.com","name":"signup"}]`, status: 204, events: 2, metaCalls: 1},
		{name: "post bad json", method: "POST", path: "/e", body: `{`, status: 400, drop: wire.DropBadJSON, contentType: "application/json", metaCalls: 1},
		{name: "post too large", method: "POST", path: "/e", body: strings.Repeat(" ", MaxPostBody+10), status: 413, drop: wire.DropTooLarge, contentType: "application/json", metaCalls: 1},
		{name: "post unreadable", method: "POST", path: "/e", body: "\x00fail", status: 400, drop: wire.DropReadError, contentType: "application/json"},
		{name: "preflight costs nothing", method: "OPTIONS", path: "/e", status: 204},
		{name: "post GET refused", method: "GET", path: "/e", status: 405, drop: wire.DropBadMethod, contentType: "application/json"},
		{name: "health", method: "GET", path: "/healthz", status: 200, contentType: "text/plain", body2: "ok\n"},
		{name: "unknown", method: "GET", path: "/favicon.ico", status: 404, contentType: "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
			h, calls := hit(tc.method, tc.path, tc.q, tc.body)
			resp := &Response{Header: []Field{{"Stale", "from a previous hit"}}}
			Serve(h, nil, b, now, resp)
			if resp.Status != tc.status {
				t.Errorf("status %d, want %d", resp.Status, tc.status)
			}
			if b.Len() != tc.events {
				t.Errorf("%d events buffered, want %d", b.Len(), tc.events)
			}
			if got := resp.Get("X-Edgepixel-Drop"); got != tc.drop {
				t.Errorf("drop %q, want %q", got, tc.drop)
			}
			if got := resp.Get("Content-Type"); got != tc.contentType {
				t.Errorf("content type %q, want %q", got, tc.contentType)
			}
			if resp.Get("Stale") != "" {
				t.Error("a header from the previous response survived")
			}
			if *calls != tc.metaCalls {
				t.Errorf("Meta called %d times, want %d", *calls, tc.metaCalls)
			}
			if tc.contentType == "image/gif" {
				wantBody := tc.method == http.MethodGet
				if (len(resp.Body) == len(GIF)) != wantBody || resp.Get("Content-Length") != "43" {
					t.Errorf("GIF body %d bytes, Content-Length %q", len(resp.Body), resp.Get("Content-Length"))
				}
				if !strings.Contains(resp.Get("Cache-Control"), "no-store") {
					t.Error("the pixel must not be cached: a cached hit is a lost hit")
				}
			}
			if tc.body2 != "" && string(resp.Body) != tc.body2 {
				t.Errorf("body %q, want %q", resp.Body, tc.body2)
			}
			// A refusal says what was wrong, not only the status's name.
			if tc.contentType == "application/json" {
				var ans struct{ Error, Reason string }
				if err := json.Unmarshal(resp.Body, &ans); err != nil || ans.Reason != tc.drop || ans.Error == "" || ans.Error == http.StatusText(tc.status) {
					t.Errorf("refusal %s: %v", resp.Body, err)
				}
			}
		})
	}
}

func TestServeBufferFull(t *testing.T) {
	b := &Batcher{MaxEvents: 10, MaxAge: time.Second, MaxBuffered: 1}
	now := time.Now()
	resp := &Response{}
	h, _ := hit("GET", "/p.gif", "site=a.com", "")
	Serve(h, nil, b, now, resp)
	Serve(h, nil, b, now, resp)
	if resp.Status != 200 || resp.Get("X-Edgepixel-Drop") != wire.DropBufferFull {
		t.Errorf("pixel over a full buffer: %d %q", resp.Status, resp.Get("X-Edgepixel-Drop"))
	}
	h, _ = hit("POST", "/e", "", `{"site":"a.com"}`)
	Serve(h, nil, b, now, resp)
	if resp.Status != 503 || resp.Get("Retry-After") == "" {
		t.Errorf("post over a full buffer: %d, Retry-After %q", resp.Status, resp.Get("Retry-After"))
	}
}

// A POST body with a Content-Encoding is refused, 415 and counted, not
// read as JSON (a gzip body was bad_json; a plain one labelled gzip was
// taken).
func TestPostContentEncoding(t *testing.T) {
	for ce, status := range map[string]int{"gzip": 415, "br, gzip": 415, "identity": 204, "": 204} {
		b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
		h, _ := hit("POST", "/e", "", `{"site":"a.com"}`)
		h.Header = func(name string) string {
			if name == "Content-Encoding" {
				return ce
			}
			return ""
		}
		resp := &Response{}
		Serve(h, nil, b, time.UnixMilli(1_763_800_000_000), resp)
		drop := ""
		if status == 415 {
			drop = wire.DropContentEncoding
		}
		if resp.Status != status || resp.Get("X-Edgepixel-Drop") != drop || b.Len() != map[bool]int{true: 0, false: 1}[status == 415] {
			t.Errorf("Content-Encoding %q: %d drop %q, %d events; want %d", ce, resp.Status, resp.Get("X-Edgepixel-Drop"), b.Len(), status)
		}
	}
}
