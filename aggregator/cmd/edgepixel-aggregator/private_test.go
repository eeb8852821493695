package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// dashboardPaths are every path that shows traffic or internals.
var dashboardPaths = []string{
	"/", "/index.html", "/app.js", "/style.css",
	"/api/counts", "/api/history?site=demo", "/api/loss", "/api/me", "/api/shares",
	"/api/stats?site=demo&range=today", "/api/top?site=demo&dim=page&range=today", "/api/top.csv?site=demo&dim=page&range=today",
	"/api/quality?site=demo&range=today", "/api/no-such-thing",
	"/live", "/metrics", "/share/abc", "/counter/demo.json", "/counter/demo.svg",
}

// A stranger on the public ingest port reads nothing: every dashboard,
// API, live and metrics path is 404 there (405 would say it exists), and
// the WebSocket does not open. On the dashboard port, without
// credentials, every data path is 401; with the token it answers.
func TestStrangerOnIngestPortReadsNothing(t *testing.T) {
	needDeps(t)
	p := startAgg(t, "", "--auth-burst", "1000")
	ingest := "http://" + p.addr
	for _, path := range dashboardPaths {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			req, _ := http.NewRequest(method, ingest+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("ingest port: %s %s: %d %q, want 404", method, path, resp.StatusCode, body)
			}
		}
	}
	if c, resp, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/live", nil); err == nil {
		c.Close()
		t.Error("ingest port: /live opened a WebSocket")
	} else if resp == nil || resp.StatusCode != 404 {
		t.Errorf("ingest port: /live: %v %v, want 404", resp, err)
	}

	// The dashboard port: data only with credentials.
	for _, path := range dashboardPaths {
		if path == "/" || strings.HasSuffix(path, ".js") || strings.HasSuffix(path, ".css") || path == "/index.html" ||
			strings.HasPrefix(path, "/share/") || strings.HasPrefix(path, "/counter/") {
			continue // no data (the page asks for a login), or checked elsewhere
		}
		for _, hdr := range []string{"", "Bearer wrong-token-0123456789", "Basic YWRtaW46YWRtaW4="} {
			req, _ := http.NewRequest("GET", p.dash+path, nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			req.AddCookie(&http.Cookie{Name: "edgepixel_session", Value: "forged.cookie"})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("dashboard port: GET %s (Authorization %q): %d %q, want 401", path, hdr, resp.StatusCode, body)
			}
		}
	}
	if c, resp, err := websocket.DefaultDialer.Dial(strings.Replace(p.dash, "http", "ws", 1)+"/live", nil); err == nil {
		c.Close()
		t.Error("dashboard port: /live opened without credentials")
	} else if resp == nil || resp.StatusCode != 401 {
		t.Errorf("dashboard port: /live without credentials: %v %v, want 401", resp, err)
	}
	for _, path := range []string{"/api/counts", "/metrics", "/api/me"} {
		resp, err := p.dashGet(path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("dashboard port with the token: %s: %d", path, resp.StatusCode)
		}
	}
}

// Removing the viewers file revokes every viewer, and the aggregator
// must start again without it (a tester's restart failed, taking ingest
// down with it), as with a file it cannot take (a bad line): it logs it,
// and gives viewers access once the file is written or fixed.
func TestViewersFileMissingAtStart(t *testing.T) {
	needDeps(t)
	const tok = "viewer-token-0123456789abc"
	for _, c := range []struct {
		name, text, log string
		args            []string
	}{
		{"missing", "", "dashboard viewers file not there", nil},
		{"bad line", "short demo\n", "line 1: the token is shorter than 16 bytes", nil},
		{"the admin token", "admin-token-0123456789abc demo\n", "the viewer token of [demo] is --admin-token's",
			[]string{"--admin-token", "admin-token-0123456789abc"}},
	} {
		file := filepath.Join(t.TempDir(), "viewers")
		if c.text != "" {
			if err := os.WriteFile(file, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		p := startAgg(t, "", append([]string{"--dashboard-viewers-file", file}, c.args...)...)
		if !strings.Contains(p.log(), c.log) || !strings.Contains(p.log(), `"flag":"--dashboard-viewers-file"`) {
			t.Errorf("%s: the log does not say %q naming the flag:\n%s", c.name, c.log, p.log())
		}
		get := func() int {
			req, _ := http.NewRequest("GET", p.dash+"/api/counts", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(); code != http.StatusUnauthorized {
			t.Fatalf("%s: a viewer token before the file is right: %d, want 401", c.name, code)
		}
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(tok+" demo\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); get() != http.StatusOK; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the written viewers file not read within 30 s:\n%s", c.name, p.log())
			}
		}
		p.stop()
	}
}
