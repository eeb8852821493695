package access

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newAccess(t testing.TB, file string) *Access {
	a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)),
		Viewers: map[string][]string{"viewer-token-0123456789": {"shop"}}, SharesFile: file})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A cookie from Login works until it expires; changing any byte of it
// makes it worthless.
func TestSessionCookie(t *testing.T) {
	a := newAccess(t, "")
	now := time.Now()
	a.cfg.Now = func() time.Time { return now }
	w := httptest.NewRecorder()
	if _, ok := a.Login(w, "viewer-token-0123456789"); !ok {
		t.Fatal("login refused")
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v", c)
	}
	g, ok := a.session(c.Value)
	if !ok || g.Admin || !g.CanRead("shop") || g.CanRead("demo") {
		t.Fatalf("grant %+v %v", g, ok)
	}
	for i := range c.Value {
		b := []byte(c.Value)
		b[i] ^= 1
		if _, ok := a.session(string(b)); ok {
			t.Fatalf("cookie changed at byte %d still valid", i)
		}
	}
	now = now.Add(31 * 24 * time.Hour)
	if _, ok := a.session(c.Value); ok {
		t.Error("expired cookie valid")
	}
}

// Share links survive a restart (the file) and revoking one ends it.
func TestSharesPersistAndRevoke(t *testing.T) {
	file := filepath.Join(t.TempDir(), "shares.json")
	a := newAccess(t, file)
	sh, err := a.CreateShare("shop", "team")
	if err != nil {
		t.Fatal(err)
	}
	b := newAccess(t, file)
	w := httptest.NewRecorder()
	if site, ok := b.Visit(w, httptest.NewRequest("GET", "/share/"+sh.ID, nil), sh.ID); !ok || site != "shop" {
		t.Fatalf("share after restart: %q %v", site, ok)
	}
	cookie := w.Result().Cookies()[0].Value
	// A session that reads the site already is kept, and so is any where
	// the link is fetched by another page (an <img>), not navigated to:
	// from another origin's page it logged the owner out (review).
	for _, h := range []http.Header{{"Authorization": {"Bearer admin-token-0123456789"}}, {"Sec-Fetch-Dest": {"image"}}} {
		r := httptest.NewRequest("GET", "/share/"+sh.ID, nil)
		r.Header = h
		w := httptest.NewRecorder()
		if site, ok := b.Visit(w, r, sh.ID); !ok || site != "shop" || len(w.Result().Cookies()) != 0 {
			t.Errorf("visit with %v: %q %v, cookies %v; want the site and no new session", h, site, ok, w.Result().Cookies())
		}
	}
	if g, ok := b.session(cookie); !ok || g.Kind != "share" || !g.CanRead("shop") || g.CanRead("demo") {
		t.Fatalf("share grant %+v", g)
	}
	if ok, err := b.Revoke(sh.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok := b.session(cookie); ok {
		t.Error("revoked share's session still valid")
	}
	if len(newAccess(t, file).Shares()) != 0 {
		t.Error("revocation not saved")
	}
}

// Logout ends its session on the server: a copy of the cookie is refused
// from then on, after a restart too (EndedFile), while another session
// of the same token goes on; an ended session is forgotten once it would
// have expired anyway.
func TestLogoutEndsTheSession(t *testing.T) {
	ended := filepath.Join(t.TempDir(), "ended.json")
	open := func() *Access {
		a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)), EndedFile: ended})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := open()
	now := time.Now()
	a.cfg.Now = func() time.Time { return now }
	login := func() string {
		w := httptest.NewRecorder()
		if _, ok := a.Login(w, "admin-token-0123456789"); !ok {
			t.Fatal("login refused")
		}
		return w.Result().Cookies()[0].Value
	}
	first, second := login(), login()
	r := httptest.NewRequest("POST", "/logout", nil)
	r.AddCookie(&http.Cookie{Name: Cookie, Value: first})
	w := httptest.NewRecorder()
	if err := a.Logout(w, r); err != nil {
		t.Fatal(err)
	}
	if c := w.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("the cookie is not cleared: %+v", c)
	}
	if _, ok := a.session(first); ok {
		t.Error("a copy of the logged-out cookie still reads")
	}
	if _, ok := a.session(second); !ok {
		t.Error("the token's other session ended too")
	}
	if _, ok := open().session(first); ok {
		t.Error("the logged-out cookie reads again after a restart")
	}
	// Past its expiry the ended session is dropped at the next logout.
	now = now.Add(31 * 24 * time.Hour)
	third := login()
	r = httptest.NewRequest("POST", "/logout", nil)
	r.AddCookie(&http.Cookie{Name: Cookie, Value: third})
	if err := a.Logout(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(ended); strings.Count(string(b), ":") != 1 {
		t.Errorf("ended sessions kept: %s", b)
	}
}

func FuzzSession(f *testing.F) {
	a := newAccess(f, "")
	w := httptest.NewRecorder()
	a.Login(w, "admin-token-0123456789")
	f.Add(w.Result().Cookies()[0].Value)
	f.Add("")
	f.Add(".")
	f.Add("eyJrIjoidCJ9.")
	f.Fuzz(func(t *testing.T, v string) {
		g, ok := a.session(v)
		if ok && a.sign(mustParse(t, v)) != v {
			t.Fatalf("unsigned cookie %q accepted: %+v", v, g)
		}
	})
}

// mustParse returns the session v claims, re-signed, so that a cookie the
// checker accepted can be compared with the one the key makes.
func mustParse(t *testing.T, v string) session {
	p, _, _ := strings.Cut(v, ".")
	var s session
	if err := jsonDecode(p, &s); err != nil {
		t.Fatalf("accepted cookie %q does not decode: %v", v, err)
	}
	return s
}

func TestParseViewers(t *testing.T) {
	const a, b = "TOKEN-A-0123456789", "TOKEN-B-0123456789"
	v, err := ParseViewers("# comment\n\n" + a + " shop,blog\n" + b + " demo\n")
	if err != nil || len(v) != 2 || len(v[a]) != 2 || v[b][0] != "demo" {
		t.Fatalf("%v %v", v, err)
	}
	// White space after a comma is part of the list, as a person
	// writes one ("demo, shop" was refused as not TOKEN SITE).
	if v, err := ParseViewers(a + " demo, shop\n" + b + "\tblog ,  news\n"); err != nil || fmt.Sprint(v[a]) != "[demo shop]" || fmt.Sprint(v[b]) != "[blog news]" {
		t.Errorf("lists with spaces: %v %v", v, err)
	}
	// Each refusal names the line to fix and what is wrong with it.
	for text, want := range map[string]string{
		"only-a-token-0123456789\n":                     "line 1: want TOKEN SITE",
		"# viewers\n" + a + " shop\nshort demo\n":       "line 3: the token is shorter than 16 bytes",
		a + " shop\n\n" + b + " demo\n" + a + " blog\n": "line 4: the same token as line 1",
		// An empty entry may hide a site meant, and two names without
		// a comma between them are no site (found by a new-user tester).
		a + " demo,,x\n":   "line 1: site list \"demo,,x\"",
		a + " demo,\n":     "line 1: site list",
		a + " demo shop\n": "line 1: site list \"demo shop\"",
	} {
		if _, err := ParseViewers(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", text, err, want)
		}
	}
}

// waitWatched waits up to 20 s for cond, which a WatchViewers running
// beside the test makes true, and fails with what and the watcher's log.
func waitWatched(t *testing.T, logs *syncBuffer, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; log:\n%s", what, logs.String())
		}
	}
}

// syncBuffer is a log's output, read while WatchViewers writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Removing a token from the viewers file ends its bearer use and its
// sessions without a restart; a file made invalid is logged and changes
// nothing; a token added back works again.
func TestWatchViewers(t *testing.T) {
	const gone, stays = "viewer-token-gone-0123456789", "viewer-token-stays-0123456789"
	file := filepath.Join(t.TempDir(), "viewers")
	// Each version replaces the file whole (a rename): at a look
	// every 10 ms a file being written can stay partial for two looks on
	// a loaded machine, which the watcher's one-look wait (for editors,
	// at 2 s) does not cover.
	write := func(text string) {
		t.Helper()
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(gone + " shop\n" + stays + " demo\n")
	viewers, err := ParseViewers(gone + " shop\n" + stays + " demo\n")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)), Viewers: viewers})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := a.WatchViewers(ctx, file, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	defer func() { cancel(); <-done }()

	w := httptest.NewRecorder()
	if _, ok := a.Login(w, gone); !ok {
		t.Fatal("login refused")
	}
	cookie := w.Result().Cookies()[0].Value
	if _, ok := a.session(cookie); !ok {
		t.Fatal("the session does not work")
	}
	waitFor := func(what string, cond func() bool) { t.Helper(); waitWatched(t, &logs, what, cond) }

	write(stays + " demo,shop\n")
	waitFor("the removed token refused", func() bool { _, ok := a.Token(gone); return !ok })
	if _, ok := a.session(cookie); ok {
		t.Error("a session of the removed token still works")
	}
	if g, ok := a.Token(stays); !ok || !g.CanRead("shop") {
		t.Errorf("the remaining token: %+v %v, want its new sites", g, ok)
	}
	if _, ok := a.Token("admin-token-0123456789"); !ok {
		t.Error("the admin token no longer works")
	}

	write(stays + " demo,shop\nshort demo\n")
	waitFor("the invalid file logged", func() bool { return strings.Contains(logs.String(), "line 2: the token is shorter") })
	if _, ok := a.Token(stays); !ok {
		t.Error("an invalid file dropped the tokens")
	}

	write(gone + " shop\n" + stays + " demo\n")
	waitFor("the token added back", func() bool { _, ok := a.Token(gone); return ok })
	if _, ok := a.session(cookie); !ok {
		t.Error("the token is back but its session is not")
	}

	// Removing the file revokes every viewer token; writing it again
	// gives them back.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	waitFor("the removed file's tokens refused", func() bool { _, ok := a.Token(stays); return !ok })
	if _, ok := a.Token(gone); ok {
		t.Error("a token of the removed file still works")
	}
	if _, ok := a.session(cookie); ok {
		t.Error("a session of the removed file's token still works")
	}
	if _, ok := a.Token("admin-token-0123456789"); !ok {
		t.Error("removing the viewers file revoked the admin token")
	}
	if !strings.Contains(logs.String(), "every viewer token is revoked") {
		t.Errorf("the removal is not logged:\n%s", logs.String())
	}
	write(stays + " demo\n")
	waitFor("the file written again", func() bool { _, ok := a.Token(stays); return ok })
}

// An editor's save that deletes the file and renames a new one in is no
// removal: the file gone at one look keeps every token.
func TestWatchViewersEditorSave(t *testing.T) {
	const tok = "viewer-token-stays-0123456789"
	file := filepath.Join(t.TempDir(), "viewers")
	if err := os.WriteFile(file, []byte(tok+" demo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)), Viewers: map[string][]string{tok: {"demo"}}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	// Gone at the first look, back long before the second (the looks as
	// far apart as the aggregator's).
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	done := a.WatchViewers(ctx, file, 2*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	time.Sleep(100 * time.Millisecond)
	if err := os.WriteFile(file, []byte(tok+" demo,shop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitWatched(t, &logs, "the saved file read", func() bool { g, ok := a.Token(tok); return ok && g.CanRead("shop") })
	cancel()
	<-done
	if strings.Contains(logs.String(), "revoked") {
		t.Errorf("a file gone at one look revoked the tokens:\n%s", logs.String())
	}
}

// OnChange is told of every change that may end a credential or change
// what it reads (a revoked link, a logout, viewer tokens replaced), so
// that a long-lived connection (/live) checks its credential again; and a
// session's grant says when it expires.
func TestOnChange(t *testing.T) {
	a := newAccess(t, "")
	var n int
	a.OnChange(func() { n++ })
	sh, err := a.CreateShare("shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("creating a share: %d changes told, want 0", n)
	}
	if ok, err := a.Revoke(sh.ID); !ok || err != nil || n != 1 {
		t.Errorf("revoke: %v %v, %d changes told; want 1", ok, err, n)
	}
	if ok, _ := a.Revoke(sh.ID); ok || n != 1 {
		t.Errorf("revoking an unknown link: %d changes told, want none more", n)
	}
	w := httptest.NewRecorder()
	a.Login(w, "viewer-token-0123456789")
	c := w.Result().Cookies()[0]
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	if g, ok := a.Check(r); !ok || !g.Expires.Equal(c.Expires) {
		t.Errorf("session grant %+v %v; want it to expire at %v", g, ok, c.Expires)
	}
	if g, ok := a.Token("viewer-token-0123456789"); !ok || !g.Expires.IsZero() {
		t.Errorf("bearer grant %+v %v; want no expiry", g, ok)
	}
	if err := a.Logout(httptest.NewRecorder(), r); err != nil || n != 2 {
		t.Errorf("logout: %v, %d changes told; want 2", err, n)
	}
	if err := a.SetViewers(nil); err != nil || n != 3 {
		t.Errorf("viewers replaced: %v, %d changes told; want 3", err, n)
	}
}

// The admin token listed as a viewer is refused, and stays the admin's:
// it lost its admin grant without a word (a tester's).
func TestAdminTokenListedAsViewer(t *testing.T) {
	a := newAccess(t, "")
	err := a.SetViewers(map[string][]string{"admin-token-0123456789": {"shop"}})
	if err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Errorf("SetViewers with the admin token: %v, want it refused", err)
	}
	if g, ok := a.Token("admin-token-0123456789"); !ok || !g.Admin {
		t.Errorf("admin token after: %+v %v, want the admin's grant", g, ok)
	}
	if g, ok := a.Token("viewer-token-0123456789"); !ok || g.Admin || g.Kind != "viewer" {
		t.Errorf("viewer token after: %+v %v, want it as it was", g, ok)
	}
	// Nor may a viewer hold the /admin/ API's token or the log token.
	b, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)),
		Viewers:  map[string][]string{"erase-token-0123456789": {"shop"}},
		Reserved: map[string]string{"--admin-token": "erase-token-0123456789", "--log-token": ""}})
	if err == nil || !strings.Contains(err.Error(), "--admin-token") {
		t.Errorf("a viewer holding --admin-token's token: %v %v, want refused", b, err)
	}
}

// A viewers file missing from the start revokes nothing and says nothing
// of a removal (the aggregator warned at start): a tester's log said
// "every viewer token is revoked" 2 s after every start without it.
func TestWatchViewersNeverThere(t *testing.T) {
	a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	<-a.WatchViewers(ctx, filepath.Join(t.TempDir(), "viewers"), 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	if strings.Contains(logs.String(), "removed") {
		t.Errorf("a file never there reported removed:\n%s", logs.String())
	}
	if _, ok := a.Token("admin-token-0123456789"); !ok {
		t.Error("the admin token no longer works")
	}
}

// A file that failed to read is read again even when its fix changes
// neither its size nor its modification time, as chmod does not (a
// re-tester's unreadable file, fixed with chmod, was never read); its
// failure is logged once, not at every look.
func TestWatchViewersRetriesFailedRead(t *testing.T) {
	const tok = "viewer-token-0123456789"
	file := filepath.Join(t.TempDir(), "viewers")
	bad, good := tok+" demo,\n", tok+" demo1\n" // an empty entry is refused; the same size
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := a.WatchViewers(ctx, file, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	defer func() { cancel(); <-done }()
	waitWatched(t, &logs, "the bad file logged", func() bool { return strings.Contains(logs.String(), "until it is fixed") })
	time.Sleep(100 * time.Millisecond) // ten looks more
	if n := strings.Count(logs.String(), "until it is fixed"); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, logs.String())
	}
	// Renamed in whole: written in place, a look could read it empty
	// between the truncation and the write, a valid file of no viewers,
	// and the time put back would hide the change (a fix in place that
	// keeps the size and time changes no content: chmod).
	if err := os.WriteFile(file+".new", []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file+".new", fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	waitWatched(t, &logs, "the fixed file, same size and time, read", func() bool { g, ok := a.Token(tok); return ok && g.CanRead("demo1") })
}

// WatchViewers reads the file before it returns: the tokens are the
// file's from the aggregator's start. A file not there, or one it cannot
// take (a bad line, a viewer holding a reserved token, a directory), gives
// no viewer tokens and is logged once, not once by the start and again by
// the watcher's first look as before; the watcher takes the file once it
// is fixed.
func TestWatchViewersAtStart(t *testing.T) {
	const tok = "viewer-token-0123456789"
	for _, c := range []struct {
		name, text, log string
		dir             bool
	}{
		{"good", tok + " demo,shop\n", "dashboard viewers file read", false},
		{"missing", "", "dashboard viewers file not there", false},
		{"bad line", tok + " demo\nshort shop\n", "line 2: the token is shorter than 16 bytes", false},
		{"reserved", "log-token-0123456789abc demo\n", "is --log-token's", false},
		{"directory", "", "is a directory", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "viewers")
			switch {
			case c.dir:
				os.Mkdir(file, 0o700)
			case c.text != "":
				os.WriteFile(file, []byte(c.text), 0o600)
			}
			a, err := New(Config{AdminToken: "admin-token-0123456789", Key: []byte(strings.Repeat("k", 32)),
				Reserved: map[string]string{"--log-token": "log-token-0123456789abc"}})
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			done := a.WatchViewers(ctx, file, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
			defer func() { cancel(); <-done }()
			g, ok := a.Token(tok)
			if want := c.name == "good"; ok != want || ok && !g.CanRead("shop") {
				t.Errorf("right after the start the viewer's grant is %+v %v, want %v", g, ok, want)
			}
			if !strings.Contains(logs.String(), c.log) || !strings.Contains(logs.String(), file) {
				t.Errorf("the log does not say %q naming the file:\n%s", c.log, logs.String())
			}
			time.Sleep(100 * time.Millisecond) // ten looks
			if n := strings.Count(logs.String(), "level="); n != 1 {
				t.Errorf("%d lines logged, want one:\n%s", n, logs.String())
			}
			if c.name == "good" {
				return
			}
			if c.dir {
				os.Remove(file)
			}
			os.WriteFile(file, []byte(tok+" demo,shop\n"), 0o600)
			waitWatched(t, &logs, "the fixed file read", func() bool { g, ok := a.Token(tok); return ok && g.CanRead("shop") })
		})
	}
}
