package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/aggregator/access"
	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/dashboard"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// openAccess builds the dashboard's credentials: the admin token from cfg
// or DataDir/dashboard-token, the session key from DataDir/session-key
// (both created at random on first start, mode 0600) and the share links
// in DataDir/shares.json.
func openAccess(cfg Config) (*access.Access, error) {
	tok := cfg.DashboardToken
	if tok == "" {
		b, err := ensureRandomFile(filepath.Join(cfg.DataDir, "dashboard-token"))
		if err != nil {
			return nil, fmt.Errorf("dashboard token: %w", err)
		}
		tok = string(b)
	}
	key, err := ensureRandomFile(filepath.Join(cfg.DataDir, "session-key"))
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	ac := access.Config{AdminToken: tok, Viewers: cfg.DashboardViewers, Key: key,
		Reserved:   map[string]string{"--admin-token": cfg.AdminToken, "--log-token": cfg.LogToken},
		SharesFile: filepath.Join(cfg.DataDir, "shares.json"), EndedFile: filepath.Join(cfg.DataDir, "ended-sessions.json"), Secure: cfg.SecureCookies}
	return access.New(ac)
}

// ensureRandomFile returns the trimmed content of path, first writing 32
// random bytes (hex) there if it does not exist.
func ensureRandomFile(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("%s is empty: delete it to have a new one made", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	var b [32]byte
	rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ensureRandomFile(path) // made meanwhile
	}
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(v + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return []byte(v), err
}

// checkOrigin lets a WebSocket be opened by scripts that send no Origin,
// by the dashboard's own pages (Origin's host is the request's Host) and
// by the extra origins listed.
func checkOrigin(extra []string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		if o == "" {
			return true
		}
		if slices.Contains(extra, o) {
			return true
		}
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
}

type grantKey struct{}

// grantOf returns the grant requireAuth found for r.
func grantOf(r *http.Request) access.Grant {
	g, _ := r.Context().Value(grantKey{}).(access.Grant)
	return g
}

// requireAuth answers 401 to requests without valid credentials, and
// 429 to addresses that failed too often (guard.AuthLimiter).
//
// Only bearer tokens go through the limiter: a token is what a guesser
// sends, and a limited address must get 429 whether its token is right
// or not, or the answer would tell a right guess apart at full speed. A
// session cookie is not a guess: it is HMAC-signed by this aggregator
// (package access) after a login that passed the limiter, cheap to check
// and never counted as a failure. So a logged-in owner keeps the
// dashboard while a stranger behind the same address is braked.
func (s *Server) requireAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer := r.Header.Get("Authorization") != ""
		if bearer && !s.allowAuth(w, r) {
			return
		}
		g, ok := s.access.Check(r)
		if !ok {
			if bearer {
				s.dashAuth.Fail(r.RemoteAddr, guard.CredDashboard)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgepixel"`)
			reply.JSON(w, http.StatusUnauthorized, map[string]string{"error": unauthorized(r), "reason": "unauthorized"})
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grantKey{}, g)))
	})
}

// allowAuth asks the dashboard's limiter whether r's token may be
// checked, and answers 429 when not.
func (s *Server) allowAuth(w http.ResponseWriter, r *http.Request) bool {
	ok, retry := s.dashAuth.Allow(r.RemoteAddr)
	if !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(retry.Seconds())+1))
		reply.JSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many failed logins; wait", "reason": "rate_limited"})
	}
	return ok
}

// unauthorized says what was wrong with a request requireAuth refused:
// someone who sent a token must learn that it is the token that is wrong,
// not be told to send one. It says no more than /login does.
func unauthorized(r *http.Request) string {
	h := r.Header.Get("Authorization")
	switch {
	case h != "" && !bearer(h):
		return "the Authorization header must be Bearer TOKEN"
	case h != "":
		// The admin token of /admin/erase is not one (a tester sent it
		// here, as README's "admin token" seemed to say).
		return "unknown token: this listener takes the dashboard's admin token (DATA-DIR/dashboard-token, or --dashboard-token-file) or a viewer token (--dashboard-viewers-file), not --admin-token, which is for /admin/erase and /admin/retention on the ingest listener"
	}
	if _, err := r.Cookie(access.Cookie); err == nil {
		return "the session has ended (expired, logged out, or its token or share link was removed): log in again, POST /login"
	}
	return "log in: send Authorization: Bearer TOKEN, or POST /login"
}

// credential returns a request that carries only r's credentials (its
// Authorization and Cookie headers), to check them again later with
// access.Check while r's connection lasts.
func credential(r *http.Request) *http.Request {
	h := http.Header{}
	for _, k := range []string{"Authorization", "Cookie"} {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = slices.Clone(v)
		}
	}
	return &http.Request{Header: h}
}

// liveReader is what a /live client whose request's credentials were
// cred and granted g may read. The socket outlives the request's check,
// so the hub checks cred again with access.Check, the same check as every
// request's, whenever access says credentials changed (access.OnChange:
// a share link revoked, a logout, the viewers file reloaded): the socket
// is closed once cred grants nothing (a tester's sockets streamed on
// after all three), and given the sites it reads now when they changed.
// A session's socket closes at its expiry too (Until).
func (s *Server) liveReader(cred *http.Request, g access.Grant) live.Reader {
	return live.Reader{All: g.All(), Read: g.CanRead, Until: g.Expires,
		Recheck: func() (live.Reader, bool, bool) {
			now, ok := s.access.Check(cred)
			switch {
			case !ok:
				return live.Reader{}, false, false
			case now.Same(g):
				return live.Reader{}, false, true
			}
			return s.liveReader(cred, now), true, true
		}}
}

// adminOnly answers 403 unless the grant is the admin's.
func adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !grantOf(r).Admin {
			reply.JSON(w, http.StatusForbidden, map[string]string{"error": "admin token required", "reason": "forbidden"})
			return
		}
		h(w, r)
	}
}

// canRead answers 403 and returns false when the grant may not read site.
func canRead(w http.ResponseWriter, r *http.Request, site string) bool {
	if grantOf(r).CanRead(site) {
		return true
	}
	reply.JSON(w, http.StatusForbidden, map[string]string{"error": "no read access to site " + site, "reason": "forbidden"})
	return false
}

// dashboardRoutes are the private listener's endpoints. The page's static
// files hold no data and load without credentials (they show the login
// form); everything with data needs them.
func (s *Server) dashboardRoutes() http.Handler {
	mux := http.NewServeMux()
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.requireAuth(h)) }
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("POST /login", s.login)
	// The page at / holds the login form; a link or bookmark to /login
	// finds it there.
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := s.access.Logout(w, r); err != nil {
			// The cookie is cleared; only a copy of it outlives a restart.
			s.log.Error("logout: could not save the ended session", "err", err)
		}
		reply.JSON(w, http.StatusOK, map[string]string{"status": "logged out"})
	})
	// A share link's 404 is in JSON, as every other refusal here, but for
	// a browser (Accept: text/html), whose user is someone the link was
	// sent to: a short page with the same words, where the raw JSON read
	// as a fault (found by a new-user tester). Sent to /, they would find
	// a login form asking for a token they do not have.
	mux.HandleFunc("GET /share/{id}", func(w http.ResponseWriter, r *http.Request) {
		site, ok := s.access.Visit(w, r, r.PathValue("id"))
		if !ok {
			const msg = "This share link is unknown or was revoked: ask whoever sent it for a new one."
			if strings.Contains(r.Header.Get("Accept"), "text/html") {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, "<!doctype html>\n<meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>edgepixel: share link not found</title>\n<p>%s</p>\n", msg)
				return
			}
			reply.JSON(w, http.StatusNotFound, map[string]string{"error": "this share link is unknown or was revoked: ask whoever sent it for a new one", "reason": "not_found"})
			return
		}
		http.Redirect(w, r, "/?site="+url.QueryEscape(site), http.StatusSeeOther)
	})
	mux.HandleFunc("/share/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		reply.JSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " is not allowed on a share link: open it with GET (a browser)", "reason": "method_not_allowed"})
	})
	originOK := checkOrigin(s.cfg.DashboardOrigins)
	auth("GET /live", func(w http.ResponseWriter, r *http.Request) {
		// The hub's upgrader refuses such an origin too, with a bare
		// "Forbidden"; this says why and what allows it.
		if !originOK(r) {
			reply.JSON(w, http.StatusForbidden, map[string]string{"error": "a page from origin " + r.Header.Get("Origin") + " may not open /live: only the dashboard's own origin may, and those given to --dashboard-origins", "reason": "origin_not_allowed"})
			return
		}
		s.hub.Serve(w, r, s.liveReader(credential(r), grantOf(r)))
	})
	// /metrics holds totals over every site (edge hits, drops, bad rows),
	// so a viewer token or a share link, which read their sites only, may
	// not read it.
	auth("GET /metrics", adminOnly(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.WriteTo(w)
	}))
	// The public /readyz with the errors it leaves out (readyz).
	auth("GET /readyz", adminOnly(s.readyzDetail))
	// Every /api endpoint refuses a query parameter it does not read or
	// one given twice (params), so that neither is silently ignored.
	auth("GET /api/me", params(func(w http.ResponseWriter, r *http.Request) {
		g := grantOf(r)
		sites := g.Sites
		if g.All() {
			// The sites with live counts, and every configured one,
			// also before its first event (a tester's had none yet).
			names, _, _, _ := s.hub.Snapshot()
			sites = slices.Clone(s.cfg.Sites)
			for n := range names {
				sites = append(sites, n)
			}
		}
		slices.Sort(sites)
		sites = slices.Compact(sites)
		reply.JSON(w, http.StatusOK, map[string]any{"kind": g.Kind, "admin": g.Admin, "sites": sites})
	}))
	auth("GET /api/shares", adminOnly(params(func(w http.ResponseWriter, r *http.Request) {
		reply.JSON(w, http.StatusOK, map[string]any{"shares": s.access.Shares()})
	})))
	auth("POST /api/shares", adminOnly(params(s.createShare)))
	auth("DELETE /api/shares/{id}", adminOnly(params(func(w http.ResponseWriter, r *http.Request) {
		ok, err := s.access.Revoke(r.PathValue("id"))
		switch {
		case err != nil:
			reply.JSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error(), "reason": "internal_error"})
		case !ok:
			reply.JSON(w, http.StatusNotFound, map[string]string{"error": "no such share link: GET /api/shares lists their ids", "reason": "not_found"})
		default:
			reply.JSON(w, http.StatusOK, map[string]string{"status": "revoked"})
		}
	})))
	auth("GET /api/counts", params(s.counts))
	auth("GET /api/history", params(s.history, "site", "minutes"))
	auth("GET /api/loss", params(s.loss, "site", "from", "to"))
	s.statsRoutes(mux, auth)
	// Everything else under /api/ is unknown, but only those with
	// credentials learn that.
	auth("/api/", apiFallback(mux))
	// Without the slash: the mux would redirect it to /api/, a 404.
	auth("/api", func(w http.ResponseWriter, r *http.Request) {
		reply.JSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: /api (the API's endpoints are under /api/, e.g. /api/stats: see README, The API)", "reason": "not_found"})
	})
	mux.Handle("/", staticFiles(mux))
	return s.sameOrigin(mux)
}

// sameOrigin refuses (403 origin_not_allowed) a request that changes
// something (a method other than GET, HEAD or OPTIONS) sent by a browser
// page of another origin than the dashboard's own and those given to
// --dashboard-origins, unless it carries a bearer token: the session
// cookie is sent by the browser whatever page asks, and SameSite=Strict
// keeps only other sites from it, not other origins of the same site (a
// sibling subdomain, another port of the host), whose pages a tester
// made share links and logged the owner out from. The check is
// net/http's CrossOriginProtection: Sec-Fetch-Site, which browsers send
// over HTTPS and to localhost, else Origin against Host, which a proxy
// that rewrites Host (nginx's default) makes differ: its refusal says
// so. POST /login is let through, as it uses no session: a proxy's
// rewrite must not lock the owner out.
func (s *Server) sameOrigin(h http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	for _, o := range s.cfg.DashboardOrigins {
		if err := p.AddTrustedOrigin(o); err != nil {
			s.log.Warn("--dashboard-origins: an origin is scheme://host[:port], without a path or a trailing slash; this one allows nothing", "origin", o, "err", err)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.URL.Path == "/login" || p.Check(r) == nil {
			h.ServeHTTP(w, r)
			return
		}
		msg := "a page from origin " + r.Header.Get("Origin") + " may not " + r.Method + " " + r.URL.Path + " with the session cookie: only the dashboard's own origin may (the request's Host, " + r.Host + "), and those given to --dashboard-origins"
		if r.Header.Get("Sec-Fetch-Site") == "" {
			msg += "; behind a proxy that rewrites Host, pass it on (nginx: proxy_set_header Host $host) or list the page's origin in --dashboard-origins"
		}
		reply.JSON(w, http.StatusForbidden, map[string]string{"error": msg, "reason": "origin_not_allowed"})
	})
}

// staticFiles serves the dashboard's page (package dashboard) and answers,
// in JSON as the API does, a request that is not for one of its files: 404
// when the path names no file nor a route of mux, 405 with Allow when the
// method is not GET or HEAD, or not one a route of mux takes for the path
// (POST /metrics, PUT /healthz: the routes are documented, so saying they
// exist tells a stranger nothing). The file server alone answered 500 to
// a path that is not valid UTF-8 (/%ff: fs.FS refuses such a name as
// invalid, not as absent) and served the page to POST or DELETE.
func staticFiles(mux *http.ServeMux) http.HandlerFunc {
	files, page := dashboard.FS(), dashboard.Handler()
	return func(w http.ResponseWriter, r *http.Request) {
		// The name the file server opens (it cleans the path and serves
		// the root's index.html for /).
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "."
		}
		_, err := fs.Stat(files, name)
		if !fs.ValidPath(name) || err != nil {
			if allow := allowed(mux, r, "/"); len(allow) > 0 {
				notAllowed(w, r, allow)
				return
			}
			notFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			notAllowed(w, r, []string{http.MethodGet, http.MethodHead})
			return
		}
		page.ServeHTTP(w, r)
	}
}

// allowed returns the methods for which mux has a route of r's path other
// than the catch-all pattern fallback (GET with HEAD, which a GET route
// serves too), in order.
func allowed(mux *http.ServeMux, r *http.Request, fallback string) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != fallback && pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return allow
}

// notAllowed answers 405 with Allow, in JSON, naming the methods to use.
func notAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	reply.JSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " is not allowed on " + r.URL.Path + ": use " + strings.Join(allow, " or "), "reason": "method_not_allowed"})
}

// notFound answers 404 to a path of the dashboard listener that no route
// or file takes.
func notFound(w http.ResponseWriter, r *http.Request) {
	reply.JSON(w, http.StatusNotFound, map[string]string{"error": "no such page: " + r.URL.Path + " (the dashboard is at /, its API under /api/)", "reason": "not_found"})
}

// apiFallback answers, in JSON, a request under /api/ that no route of mux
// took: 405 with Allow when the path has routes for other methods (POST
// /api/top), else 404. The mux would answer the 405 itself, but in plain
// text and before requireAuth, were it not for this catch-all.
func apiFallback(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(mux, r, "/api/"); len(allow) > 0 {
			notAllowed(w, r, allow)
			return
		}
		reply.JSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.URL.Path + " (see README, The API)", "reason": "not_found"})
	}
}

// maxForm bounds the form bodies the dashboard listener reads (a token,
// a share's site and note).
const maxForm = 4096

// smallForm reads r's form, answering 413 to a body over maxForm and 400
// to one that is not a form, and reports whether it did neither.
func smallForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	err := r.ParseForm()
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		reply.JSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("the form is over %d bytes", maxForm), "reason": "too_large"})
		return false
	}
	if err != nil {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "the body is not a form: " + err.Error(), "reason": "bad_request"})
		return false
	}
	return true
}

// bearer reports whether an Authorization header value is of the Bearer
// scheme (access.BearerToken).
func bearer(h string) bool {
	_, ok := access.BearerToken(h)
	return ok
}

// login exchanges a token (form field or JSON-less body "token") for a
// session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.allowAuth(w, r) {
		return
	}
	if !smallForm(w, r) {
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" {
		// Not a failed credential: nothing was tried.
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "no token: send it as the form field token (application/x-www-form-urlencoded), e.g. curl -d token=... /login", "reason": "bad_request"})
		return
	}
	g, ok := s.access.Login(w, tok)
	if !ok {
		s.dashAuth.Fail(r.RemoteAddr, guard.CredDashboard)
		reply.JSON(w, http.StatusUnauthorized, map[string]string{"error": "unknown token", "reason": "unauthorized"})
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"kind": g.Kind, "admin": g.Admin})
}

// shareFields are the form fields POST /api/shares reads.
var shareFields = []string{"site", "note"}

func (s *Server) createShare(w http.ResponseWriter, r *http.Request) {
	if !smallForm(w, r) {
		return
	}
	site := event.CleanSite(r.PostFormValue("site"))
	if len(r.PostForm["site"]) > 1 {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "one site per share link: site is given more than once", "reason": "bad_request"})
		return
	}
	if site == "" {
		// A JSON body is the likely mistake: say what is read.
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "no site: send it as the form field site (application/x-www-form-urlencoded), e.g. curl -d site=demo -d note=team /api/shares", "reason": "bad_request"})
		return
	}
	// Checked after the site, so that a body that is no form at all (JSON
	// sent as a form) gets the answer above, which says what is read.
	if err := query.CheckFields(r.PostForm, shareFields); err != nil {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "reason": "bad_request"})
		return
	}
	if len(s.cfg.Sites) > 0 && !slices.Contains(s.cfg.Sites, site) {
		msg := fmt.Sprintf("site %q is not one this aggregator accepts (--sites: %s)", site, strings.Join(s.cfg.Sites, ", "))
		if near := flaghint.Nearest(site, s.cfg.Sites); near != "" {
			msg += "; did you mean " + near + "?"
		}
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": msg, "reason": "bad_request"})
		return
	}
	sh, err := s.access.CreateShare(site, r.PostFormValue("note"))
	if err != nil {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "reason": "bad_request"})
		return
	}
	out := map[string]any{"share": sh, "path": "/share/" + sh.ID}
	if w := s.unseenSite(site, sh.ID); w != "" {
		out["warning"] = w
	}
	reply.JSON(w, http.StatusCreated, out)
}

// unseenSite is a warning for a share link of a site with no stored
// events that the live counts know of, "" for a known one: a link may be
// made before a site's first hit, so it is made, but a misspelt site
// would otherwise give an empty dashboard without a word (found by a
// new-user tester). The live counts list at most --max-sites sites: past
// that, a site they do not list may still have events, and nothing is
// said.
func (s *Server) unseenSite(site, id string) string {
	counts, _, _, ready := s.hub.Snapshot()
	if _, ok := counts[site]; ok || !ready || len(counts) >= s.cfg.MaxSites {
		return ""
	}
	msg := fmt.Sprintf("no events of site %q are stored yet, so the link shows an empty dashboard until its first hit", site)
	if near := flaghint.Nearest(site, slices.Collect(maps.Keys(counts))); near != "" {
		msg += "; did you mean " + near + "?"
	}
	return msg + " (if the site is misspelt, revoke the link: DELETE /api/shares/" + id + ")"
}
