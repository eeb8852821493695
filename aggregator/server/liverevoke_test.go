package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/dashboard"
)

// liveFollower reads one /live socket: its messages, then how it ended.
type liveFollower struct {
	name string
	msgs chan live.Message
	end  chan error // the read error that ended it, then closed
}

func followLive(t *testing.T, a *agg, name string, hdr http.Header) *liveFollower {
	t.Helper()
	hdr = hdr.Clone()
	hdr.Set("Origin", a.dash.URL)
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.dash.URL, "http")+"/live", hdr)
	if err != nil {
		t.Fatalf("%s: open /live: %v %v", name, resp, err)
	}
	t.Cleanup(func() { c.Close() })
	f := &liveFollower{name: name, msgs: make(chan live.Message, 1000), end: make(chan error, 1)}
	go func() {
		defer close(f.end)
		for {
			var m live.Message
			if err := c.ReadJSON(&m); err != nil {
				f.end <- err
				return
			}
			f.msgs <- m
		}
	}()
	return f
}

// closedRevoked waits up to 10 s for f's socket to be closed with 1008
// and live.CloseRevoked.
func (f *liveFollower) closedRevoked(t *testing.T) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case <-f.msgs: // sent before the revocation was seen
		case err := <-f.end:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != live.CloseRevoked {
				t.Errorf("%s: /live ended with %v; want close 1008 %q", f.name, err, live.CloseRevoked)
			}
			return
		case <-timeout:
			t.Errorf("%s: /live still open 10 s after its credential was revoked", f.name)
			return
		}
	}
}

// until waits up to 10 s for a message of f's that ok accepts, failing t
// on a message that bad refuses (nil: none) or the socket's end.
func (f *liveFollower) until(t *testing.T, what string, ok func(live.Message) bool, bad func(live.Message) string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-f.msgs:
			if bad != nil {
				if why := bad(m); why != "" {
					t.Fatalf("%s: %s: %+v", f.name, why, m)
				}
			}
			if ok(m) {
				return
			}
		case err := <-f.end:
			t.Fatalf("%s: /live ended (%v) waiting for %s", f.name, err, what)
		case <-timeout:
			t.Fatalf("%s: no %s in 10 s", f.name, what)
		}
	}
}

// An open /live socket ends as soon as the credential it was opened with
// no longer grants access: a revoked share link, a logged-out session, a
// viewer token removed from the viewers file. A viewer whose sites shrink
// is sent a snapshot of the sites left and nothing of the others. The
// sockets of credentials still valid (the admin token, another login
// session, an unchanged viewer) keep receiving. The sockets streamed on
// after all three (found by a new-user tester, a privacy auditor).
func TestLiveEndsWithItsCredential(t *testing.T) {
	const (
		gone   = "viewer-token-removed-0123456789"
		shrunk = "viewer-token-shrunk-0123456789"
		kept   = "viewer-token-kept-0123456789"
	)
	viewersFile := filepath.Join(t.TempDir(), "viewers")
	writeViewers := func(text string) {
		t.Helper()
		if err := os.WriteFile(viewersFile, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeViewers(gone + " shop\n" + shrunk + " shop,demo\n" + kept + " shop\n")
	a := startAgg(t, Config{DataDir: t.TempDir(), DashboardViewers: map[string][]string{gone: {"shop"}, shrunk: {"shop", "demo"}, kept: {"shop"}}})
	defer a.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.srv.Access().WatchViewers(ctx, viewersFile, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.send(mkEvents(t, "shop", 2))
	a.send(mkEvents(t, "demo", 3))
	var counts struct{ Total uint64 }
	for counts.Total != 5 {
		getJSON(t, a.dash.URL+"/api/counts", &counts)
	}

	// A share session and two login sessions, as a browser gets them.
	sessionCookie := func(get func(*http.Client) (*http.Response, error)) http.Header {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		resp, err := get(&http.Client{Jar: jar})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("get a session: %v %v", resp, err)
		}
		resp.Body.Close()
		cs := jar.Cookies(mustURL(a.dash.URL))
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		return http.Header{"Cookie": {cs[0].String()}}
	}
	sh := a.createShare(t, "site=shop")
	shareHdr := sessionCookie(func(c *http.Client) (*http.Response, error) { return c.Get(a.dash.URL + sh.Path) })
	login := func(c *http.Client) (*http.Response, error) {
		return c.PostForm(a.dash.URL+"/login", url.Values{"token": {testToken}})
	}
	loginHdr, otherLoginHdr := sessionCookie(login), sessionCookie(login)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	revoked := []*liveFollower{
		followLive(t, a, "share session", shareHdr),
		followLive(t, a, "logged-out session", loginHdr),
		followLive(t, a, "removed viewer token", bearer(gone)),
	}
	admin := followLive(t, a, "admin token", bearer(testToken))
	otherLogin := followLive(t, a, "another login session", otherLoginHdr)
	viewer := followLive(t, a, "unchanged viewer token", bearer(kept))
	narrowed := followLive(t, a, "viewer token whose sites shrink", bearer(shrunk))
	isSnapshot := func(m live.Message) bool { return m.Type == live.TypeSnapshot }
	for _, f := range append(revoked, admin, otherLogin, viewer, narrowed) {
		f.until(t, "snapshot", isSnapshot, nil)
	}

	// Revoke the share, log one session out, remove a viewer token and
	// shrink another's sites, as the tester did.
	req, _ := http.NewRequest("DELETE", a.dash.URL+"/api/shares/"+sh.Share.ID, nil)
	req.Header = bearer(testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("POST", a.dash.URL+"/logout", nil)
	req.Header = loginHdr.Clone()
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("logout: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	writeViewers(shrunk + " shop\n" + kept + " shop\n")

	for _, f := range revoked {
		f.closedRevoked(t)
	}
	noDemo := func(m live.Message) string {
		if _, ok := m.Sites["demo"]; ok || m.Pages["demo"] != nil || m.Add["demo"] != 0 {
			return "demo sent to a viewer that may no longer read it"
		}
		return ""
	}
	narrowed.until(t, "snapshot without demo", func(m live.Message) bool { return isSnapshot(m) && noDemo(m) == "" }, nil)

	// The others keep receiving; the narrowed viewer gets shop's, never
	// demo's.
	a.send(mkEvents(t, "demo", 1))
	a.send(mkEvents(t, "shop", 1))
	shopNow := func(m live.Message) bool { return m.Sites["shop"] == 3 }
	for _, f := range []*liveFollower{otherLogin, viewer} {
		f.until(t, "shop's new count", shopNow, nil)
	}
	narrowed.until(t, "shop's new count", shopNow, noDemo)
	var shop, demo bool
	admin.until(t, "shop's and demo's new counts", func(m live.Message) bool {
		shop, demo = shop || shopNow(m), demo || m.Sites["demo"] == 4
		return shop && demo
	}, nil)

	// Their reconnects are refused: the page then shows the login.
	for i, hdr := range []http.Header{shareHdr, loginHdr, bearer(gone)} {
		hdr = hdr.Clone()
		hdr.Set("Origin", a.dash.URL)
		c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.dash.URL, "http")+"/live", hdr)
		if err == nil {
			c.Close()
		}
		if resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: reconnecting: %v %v; want 401", revoked[i].name, resp, err)
		}
	}
}

// The page knows the close reasons that mean its credential ended, and
// asks /api/me (whose 401 shows the login) instead of reconnecting.
func TestPageKnowsRevokedCloseReasons(t *testing.T) {
	f, err := dashboard.FS().Open("app.js")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, reason := range []string{live.CloseRevoked, live.CloseExpired} {
		if !strings.Contains(string(b), `"`+reason+`"`) {
			t.Errorf("app.js does not handle the close reason %q", reason)
		}
	}
}
