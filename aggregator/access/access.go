// Package access decides who may read the dashboard, /api, /live and
// /metrics, and which sites they may read.
//
// Credentials, checked on every request:
//
//   - an admin token (Config.AdminToken): every site, and managing share
//     links; sent as "Authorization: Bearer TOKEN" or exchanged for a
//     session cookie at POST /login;
//   - a viewer token (Config.Viewers, replaced by SetViewers, e.g. from
//     WatchViewers): the sites listed for it, read only;
//   - a session cookie (Cookie) that POST /login or a share link sets. It
//     is signed with HMAC-SHA256 (Config.Key) and names the token it came
//     from by a hash, or the share link, so removing the token or revoking
//     the link ends every session made with it at once; and a random id
//     of its own, so that POST /logout ends that session on the server
//     too (Logout), not only in the browser that sent it;
//   - a share link GET /share/ID: one site, read only, until revoked.
//
// A connection that outlives the request that opened it (/live) is told
// of every revocation, logout and viewers reload (OnChange) and checks
// its credential again, so those end it too.
//
// Cookies are HttpOnly and SameSite=Strict, so another site's page can
// neither read them nor send them with a request that changes anything.
package access

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Cookie is the session cookie's name.
const Cookie = "edgepixel_session"

// Grant is what a request may read.
type Grant struct {
	Admin bool     // every site, and share links
	Sites []string // the readable sites; nil with Admin (all)
	Share string   // the share link's id, for a share session
	// Kind is how the request authenticated: "admin", "viewer", "share".
	Kind string
	// Expires is when the session cookie it came from ends; zero for a
	// bearer token.
	Expires time.Time
}

// Same reports whether g and o read the same: the same kind, share and
// sites (in the same order), whatever their expiry.
func (g Grant) Same(o Grant) bool {
	return g.Admin == o.Admin && g.Kind == o.Kind && g.Share == o.Share && slices.Equal(g.Sites, o.Sites)
}

// CanRead reports whether g may read site.
func (g Grant) CanRead(site string) bool {
	return g.Admin || slices.Contains(g.Sites, site)
}

// All reports whether g may read every site.
func (g Grant) All() bool { return g.Admin }

// Share is a read-only link to one site's dashboard.
type Share struct {
	ID      string    `json:"id"`
	Site    string    `json:"site"`
	Created time.Time `json:"created"`
	Note    string    `json:"note,omitempty"`
}

// Config configures Access.
type Config struct {
	// AdminToken reads every site and manages share links; required.
	AdminToken string
	// Viewers maps a viewer token to the sites it may read.
	Viewers map[string][]string
	// Reserved are the process's other tokens by their flag's name
	// (--admin-token, --log-token): a viewer holding one would have its
	// powers too (erasing data, ingesting), so no viewer may (a
	// re-tester's). Empty ones are ignored.
	Reserved map[string]string
	// Key signs session cookies; at least 32 bytes.
	Key []byte
	// SharesFile keeps the share links (JSON), so they survive restarts;
	// "" keeps them in memory.
	SharesFile string
	// EndedFile keeps the ids of the sessions Logout ended, until they
	// would have expired (JSON), so that a copy of a logged-out cookie
	// stays refused after a restart; "" keeps them in memory.
	EndedFile string
	// SessionTTL is how long a login lasts; default 30 days.
	SessionTTL time.Duration
	// Secure marks cookies Secure (the dashboard is served over HTTPS,
	// directly or behind a proxy).
	Secure bool
	Now    func() time.Time // for tests
}

// minTokenLen is the shortest admin or viewer token accepted.
const minTokenLen = 16

// Access checks credentials. Safe for concurrent use.
type Access struct {
	cfg Config
	// tokens are the grants by tokenID. SetViewers replaces the map while
	// requests read it.
	tokens atomic.Pointer[map[string]Grant]
	mu     sync.Mutex
	shares map[string]Share
	// ended are the sessions Logout ended: id to expiry (unix seconds).
	ended map[string]int64
	// changed is called after a change that may end or narrow
	// credentials (OnChange).
	changed atomic.Pointer[func()]
}

// OnChange has f called after every change that may end credentials or
// change what they read: a share link revoked, a session logged out, the
// viewer tokens replaced. f must not block; it is how the holders of
// long-lived connections made with a credential (/live) learn to check it
// again (Check), since a request is checked only when it starts.
func (a *Access) OnChange(f func()) { a.changed.Store(&f) }

// notify calls the OnChange function, if any.
func (a *Access) notify() {
	if f := a.changed.Load(); f != nil && *f != nil {
		(*f)()
	}
}

// New returns an Access with the share links of cfg.SharesFile. It fails
// without an admin token or key, or when the shares file cannot be read.
func New(cfg Config) (*Access, error) {
	if len(cfg.AdminToken) < minTokenLen {
		return nil, errors.New("access: the admin token must be at least 16 bytes")
	}
	if len(cfg.Key) < 32 {
		return nil, errors.New("access: the session key must be at least 32 bytes")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Access{cfg: cfg, shares: map[string]Share{}, ended: map[string]int64{}}
	if err := a.SetViewers(cfg.Viewers); err != nil {
		return nil, err
	}
	var list []Share
	if err := readJSON(cfg.SharesFile, &list); err != nil {
		return nil, err
	}
	for _, s := range list {
		a.shares[s.ID] = s
	}
	if err := readJSON(cfg.EndedFile, &a.ended); err != nil {
		return nil, err
	}
	if a.ended == nil { // the file held null: Logout writes to the map
		a.ended = map[string]int64{}
	}
	return a, nil
}

// readJSON decodes the file at path into v; a path of "" or a file that
// does not exist leaves v as it is.
func readJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("access: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("access: %s: %w", path, err)
	}
	return nil
}

// SetViewers replaces the viewer tokens (token to sites). A token that is
// gone stops working at once, as bearer and in the sessions made with it,
// since those name their token. The admin token listed as a viewer's is
// an error: it would have lost its admin grant without a word (a
// tester's). On error the tokens stay as they were.
func (a *Access) SetViewers(viewers map[string][]string) error {
	admin := tokenID(a.cfg.AdminToken)
	tokens := map[string]Grant{admin: {Admin: true, Kind: "admin"}}
	for tok, sites := range viewers {
		if len(tok) < minTokenLen {
			return fmt.Errorf("access: viewer token for %v is shorter than %d bytes", sites, minTokenLen)
		}
		id := tokenID(tok)
		if id == admin {
			return fmt.Errorf("access: the admin token is listed as a viewer of %v: it reads every site already; remove its line, or give the viewer a token of its own", sites)
		}
		for flag, r := range a.cfg.Reserved {
			if r != "" && id == tokenID(r) {
				return fmt.Errorf("access: the viewer token of %v is %s's, which a viewer must not hold: give the viewer a token of its own", sites, flag)
			}
		}
		tokens[id] = Grant{Sites: slices.Clone(sites), Kind: "viewer"}
	}
	a.tokens.Store(&tokens)
	a.notify()
	return nil
}

// WatchViewers keeps the viewer tokens those of the file at path
// (ParseViewers' format) until ctx ends. It reads the file before it
// returns, so that the tokens are the file's from the start (a file not
// there gives none, with a warning: removing it is how every viewer is
// revoked, and a restart then must not fail), and then watches it in a
// goroutine of its own, whose end the returned channel tells. A file
// that cannot be read or parsed, at the start or later, is logged once
// and leaves the tokens as they were (none at the start): a file only
// the dashboard reads must not keep the aggregator, and its ingest, from
// starting (a tester's restart under Restart=on-failure failed so).
//
// It looks at the file's size and modification time every interval and,
// when either changed, reads it again once they are the same at the next
// look, so that removing a token from the file ends its sessions within
// two intervals, with no restart. Waiting for a look without change
// keeps it from reading a file an editor is still writing (truncated,
// then written): a partial file can parse, without the tokens not
// written yet. A file gone at two looks in a row was removed, and every
// viewer token with it; gone at one look only, it is an editor's save
// (delete, then rename a new file in), which must not lock every viewer
// out meanwhile. After a read that failed it reads the file again every
// other look, changed or not, since a fix need not change its size or
// time (chmod, chown: a re-tester's), logging each failure once.
func (a *Access) WatchViewers(ctx context.Context, path string, interval time.Duration, log *slog.Logger) <-chan struct{} {
	var seen, pending os.FileInfo
	changed := func(a, b os.FileInfo) bool {
		return b == nil || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime())
	}
	gone := 0         // looks in a row that found no file
	var failed string // the last read's error, "" after one that worked
	look := func(first bool) {
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			gone++
		} else {
			gone = 0
		}
		switch {
		case first && gone > 0:
			log.Warn("dashboard viewers file not there: no viewer tokens until it is written (a line per viewer, TOKEN SITE[,SITE...]); check the path if you meant to give some", "file", path)
		case gone == 2 && len(*a.tokens.Load()) > 1: // viewers beside the admin token
			if err := a.SetViewers(nil); err != nil { // cannot fail: no tokens to refuse
				log.Error("dashboard viewers file removed, but the viewer tokens could not be revoked", "file", path, "err", err)
			} else {
				log.Warn("dashboard viewers file removed: every viewer token is revoked; write the file again to give them back", "file", path)
			}
			seen, pending = nil, nil
		case gone > 0:
		case err != nil:
			switch {
			case first:
				log.Error("dashboard viewers file not taken: cannot read it; no viewer tokens until it is fixed (the aggregator reads it again when it changes)", "file", path, "err", err)
			case seen != nil:
				log.Error("dashboard viewers file: cannot read it; the viewer tokens stay as they were", "file", path, "err", err)
			}
			seen, pending = nil, nil
		case !changed(fi, seen) && failed == "":
			pending = nil
		case !first && changed(fi, pending):
			pending = fi // still being written, perhaps: read it at the next look
		default:
			seen, pending = fi, nil
			switch err := a.readViewers(path); {
			case err == nil:
				failed = ""
				log.Info("dashboard viewers file read", "file", path)
			case err.Error() != failed:
				failed = err.Error()
				msg := "dashboard viewers file: the viewer tokens stay as they were until it is fixed"
				if first {
					msg = "dashboard viewers file not taken: no viewer tokens until it is fixed (the aggregator reads it again when it changes)"
				}
				log.Error(msg, "file", path, "err", err)
			}
		}
	}
	look(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			look(false)
		}
	}()
	return done
}

func (a *Access) readViewers(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	viewers, err := ParseViewers(string(b))
	if err != nil {
		return err
	}
	return a.SetViewers(viewers)
}

// tokenID names a token in cookies without revealing it.
func tokenID(tok string) string {
	h := sha256.Sum256([]byte("edgepixel token\x00" + tok))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// Token returns the grant of a bearer token.
func (a *Access) Token(tok string) (Grant, bool) {
	// Compare through the hash: constant time in the token's content.
	g, ok := (*a.tokens.Load())[tokenID(tok)]
	return g, ok
}

// BearerToken returns the token of an Authorization header value of the
// Bearer scheme, whose name is case-insensitive (RFC 7235 section 2.1,
// RFC 6750 section 2.1); found is false for any other.
func BearerToken(h string) (tok string, found bool) {
	scheme, tok, found := strings.Cut(strings.TrimSpace(h), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// Check returns what r may read: by its bearer token, else its session
// cookie. ok is false without valid credentials.
func (a *Access) Check(r *http.Request) (g Grant, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, found := BearerToken(h)
		if !found {
			return Grant{}, false
		}
		return a.Token(tok)
	}
	c, err := r.Cookie(Cookie)
	if err != nil {
		return Grant{}, false
	}
	return a.session(c.Value)
}

// session is a cookie's payload: who ("t" token id, or "s" share id),
// until when (unix seconds), and the session's own random id (none in
// cookies made before sessions had one: Logout cannot end those on the
// server, only removing their token or link can).
type session struct {
	Kind string `json:"k"`
	ID   string `json:"i"`
	Exp  int64  `json:"e"`
	SID  string `json:"n,omitempty"`
}

// newSession returns a session of kind and id from now for the
// configured time, with a random id of its own.
func (a *Access) newSession(kind, id string) session {
	var b [16]byte
	rand.Read(b[:])
	return session{Kind: kind, ID: id, Exp: a.cfg.Now().Add(a.cfg.SessionTTL).Unix(), SID: base64.RawURLEncoding.EncodeToString(b[:])}
}

func (a *Access) sign(s session) string {
	b, _ := json.Marshal(s)
	p := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, a.cfg.Key)
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// parse returns the session of a cookie's value: signed with the key,
// not expired and not ended by Logout.
func (a *Access) parse(v string) (session, bool) {
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, false
	}
	// The signature is compared as text, not decoded: Go's base64 decoders
	// skip '\r' and '\n' even in strict mode, so decoding would accept more
	// than one spelling of the same signature.
	m := hmac.New(sha256.New, a.cfg.Key)
	m.Write([]byte(p))
	want := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return session{}, false
	}
	b, err := b64.DecodeString(p)
	if err != nil {
		return session{}, false
	}
	var s session
	if json.Unmarshal(b, &s) != nil || a.cfg.Now().Unix() >= s.Exp {
		return session{}, false
	}
	if s.SID != "" {
		a.mu.Lock()
		_, ended := a.ended[s.SID]
		a.mu.Unlock()
		if ended {
			return session{}, false
		}
	}
	return s, true
}

func (a *Access) session(v string) (Grant, bool) {
	s, ok := a.parse(v)
	if !ok {
		return Grant{}, false
	}
	switch s.Kind {
	case "t":
		g, ok := (*a.tokens.Load())[s.ID]
		g.Expires = time.Unix(s.Exp, 0)
		return g, ok
	case "s":
		a.mu.Lock()
		sh, ok := a.shares[s.ID]
		a.mu.Unlock()
		if !ok {
			return Grant{}, false // revoked
		}
		return Grant{Sites: []string{sh.Site}, Share: sh.ID, Kind: "share", Expires: time.Unix(s.Exp, 0)}, true
	}
	return Grant{}, false
}

func (a *Access) setCookie(w http.ResponseWriter, s session) {
	http.SetCookie(w, &http.Cookie{
		Name: Cookie, Value: a.sign(s), Path: "/", HttpOnly: true, Secure: a.cfg.Secure,
		SameSite: http.SameSiteStrictMode, Expires: time.Unix(s.Exp, 0),
	})
}

// Login sets a session cookie for tok, if it is a token, and returns its
// grant.
func (a *Access) Login(w http.ResponseWriter, tok string) (Grant, bool) {
	g, ok := a.Token(tok)
	if !ok {
		return Grant{}, false
	}
	a.setCookie(w, a.newSession("t", tokenID(tok)))
	return g, true
}

// Logout ends r's session, if it has one, on the server (a copy of the
// cookie is refused from then on, across restarts with EndedFile) and
// clears the cookie. The cookie is cleared even when the ended session
// could not be saved, which the error reports.
func (a *Access) Logout(w http.ResponseWriter, r *http.Request) error {
	var err error
	if c, cerr := r.Cookie(Cookie); cerr == nil {
		if s, ok := a.parse(c.Value); ok && s.SID != "" {
			a.mu.Lock()
			now := a.cfg.Now().Unix()
			for id, exp := range a.ended {
				if now >= exp { // refused as expired anyway
					delete(a.ended, id)
				}
			}
			a.ended[s.SID] = s.Exp
			err = writeJSON(a.cfg.EndedFile, a.ended, "ended sessions")
			a.mu.Unlock()
			a.notify()
		}
	}
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/", HttpOnly: true, Secure: a.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return err
}

// Visit sets a share session for the link id and returns its site; ok is
// false for an unknown or revoked link. A session of r that already
// reads the site is kept (a logged-in owner opening a link stays the
// owner), and so is any for a request that is no page's navigation
// (Sec-Fetch-Dest other than document: an <img> or fetch of the link
// from another page, which would otherwise log its visitor out).
func (a *Access) Visit(w http.ResponseWriter, r *http.Request, id string) (site string, ok bool) {
	a.mu.Lock()
	sh, ok := a.shares[id]
	a.mu.Unlock()
	if !ok {
		return "", false
	}
	if g, ok := a.Check(r); ok && g.CanRead(sh.Site) {
		return sh.Site, true
	}
	if d := r.Header.Get("Sec-Fetch-Dest"); d != "" && d != "document" {
		return sh.Site, true
	}
	a.setCookie(w, a.newSession("s", id))
	return sh.Site, true
}

// CreateShare makes a read-only link to site.
func (a *Access) CreateShare(site, note string) (Share, error) {
	if site == "" {
		return Share{}, errors.New("site is required")
	}
	var b [16]byte
	rand.Read(b[:])
	sh := Share{ID: base64.RawURLEncoding.EncodeToString(b[:]), Site: site, Created: a.cfg.Now().UTC().Truncate(time.Second), Note: note}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.shares[sh.ID] = sh
	if err := a.saveLocked(); err != nil {
		delete(a.shares, sh.ID)
		return Share{}, err
	}
	return sh, nil
}

// Revoke removes the link id; sessions made with it end at once. It
// reports whether the link existed.
func (a *Access) Revoke(id string) (bool, error) {
	ok, err := a.revoke(id)
	if ok {
		a.notify()
	}
	return ok, err
}

func (a *Access) revoke(id string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sh, ok := a.shares[id]
	if !ok {
		return false, nil
	}
	delete(a.shares, id)
	if err := a.saveLocked(); err != nil {
		a.shares[id] = sh
		return false, err
	}
	return true, nil
}

// Shares lists the links, oldest first.
func (a *Access) Shares() []Share {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Share, 0, len(a.shares))
	for _, s := range a.shares {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// saveLocked writes the shares file.
func (a *Access) saveLocked() error {
	list := make([]Share, 0, len(a.shares))
	for _, s := range a.shares {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return writeJSON(a.cfg.SharesFile, list, "share links")
}

// writeJSON writes v to the file at path atomically (temp file, fsync,
// rename); a path of "" writes nothing. Errors name what (the file's
// content).
func writeJSON(path string, v any, what string) error {
	if path == "" {
		return nil
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", what, err)
	}
	return nil
}

// ParseViewers reads viewer tokens, one per line: TOKEN SITE[,SITE...].
// Blank lines and lines starting with # are skipped. Errors name the line,
// since the file is written by hand: a short token (New refuses it) or a
// token given twice (one line would silently replace the other's sites).
func ParseViewers(text string) (map[string][]string, error) {
	out := map[string][]string{}
	lineOf := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The token, then the sites: white space after a comma ("demo,
		// shop") is part of the list, as a person writes one.
		sp := strings.IndexFunc(line, unicode.IsSpace)
		if sp < 0 || strings.Contains(line[:sp], ",") {
			return nil, fmt.Errorf("line %d: want TOKEN SITE[,SITE...]", i+1)
		}
		f := []string{line[:sp], strings.TrimSpace(line[sp:])}
		if len(f[0]) < minTokenLen {
			return nil, fmt.Errorf("line %d: the token is shorter than %d bytes; use a long random one, e.g. from head -c 24 /dev/urandom | base64", i+1, minTokenLen)
		}
		if j, dup := lineOf[f[0]]; dup {
			return nil, fmt.Errorf("line %d: the same token as line %d; give one line all its sites, comma-separated", i+1, j)
		}
		lineOf[f[0]] = i + 1
		var sites []string
		for _, s := range strings.Split(f[1], ",") {
			// An empty entry ("demo,,x", a trailing comma) is a slip
			// that may hide a site meant; a site with a space inside
			// is two names with a comma missing.
			if s = event.CleanSite(s); s == "" || strings.ContainsAny(s, " \t") {
				return nil, fmt.Errorf("line %d: site list %q: want SITE[,SITE...], sites separated by commas, none empty", i+1, f[1])
			}
			sites = append(sites, s)
		}
		out[f[0]] = sites
	}
	return out, nil
}

func jsonDecode(p string, v any) error {
	b, err := b64.DecodeString(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// b64 decodes a cookie's payload strictly. The payload's spelling is fixed
// anyway, since the signature covers its text.
var b64 = base64.RawURLEncoding.Strict()
