package pixel

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/shared/etag"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/urlescape"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Hit is one visitor request as any platform (Fastly's ABI, a Workers
// runtime, a test) hands it to Serve. What costs a platform call to obtain
// is behind a function that Serve calls only when it is needed: a 404 or a
// CORS preflight never pays for a geo lookup or a body read.
type Hit struct {
	Method   string
	Path     string // without the query
	RawQuery string
	// Meta describes the visitor; called once, only when an event is built.
	Meta func() *Meta
	// Body reads the request body, at most max+1 bytes so that an oversized
	// body is recognised without reading all of it.
	Body func(max int) ([]byte, error)
	// Header returns a request header's value, "" if absent. Serve asks
	// only for what it needs (Origin and Idempotency-Key of an event
	// POST), so a pixel hit pays for no header lookup of its own.
	Header func(name string) string

	scratch scratch // working memory reused across the hits of one Hit
}

func (h *Hit) header(name string) string {
	if h.Header == nil {
		return ""
	}
	return h.Header(name)
}

// Config is what the platform configures once per instance (from
// Fastly's config store "edgepixel" for the edge module) and the
// platform services the edge logic calls. The zero value serves with the
// defaults: every origin and site, no visitor ids, no signature checks,
// no rate limits.
type Config struct {
	Origins *Origins // nil allows every origin
	Sites   *Sites   // nil: every site, default settings

	// Salts returns the visitor-id salts valid at now (edge/privacy; the
	// platform reads them from its secret store and may cache them for
	// the UTC day), nil when it has none: events then carry no visitor
	// id.
	Salts func(now time.Time) *privacy.Salts
	// PixelKeys returns site's pixel signing keys, current first, then
	// the previous one while rotating (shared/pixelsign); none: no
	// signed pixel verifies.
	PixelKeys func(site string) [][]byte
	// RateLimited counts n hits from client (its address) for site and
	// reports whether either is over its limit (Fastly's Edge Rate
	// Limiter); nil: no limits. One over its limit stays refused for
	// RateLimitPenalty. A pixel hit is one; a POST counts each event,
	// calling it once per site with that site's events.
	RateLimited func(client, site string, n uint32) bool
}

var defaultConfig Config

// Field is one response header.
type Field struct{ Name, Value string }

// Response is what Serve answers. A platform reuses one Response across
// requests, so serving a hit allocates no header storage.
type Response struct {
	Status int
	Header []Field
	Body   []byte
	// Drop is why the request's events were not all accepted (a wire.Drop*
	// constant), "" if they were; set only by drop.
	Drop string
	// refused is what a POST's body said about its drop: the site it is
	// counted for ("": the URL's site parameter), and a cip to name.
	refused refusal
}

// Set appends a header. Serve never sets one twice, so no lookup is needed.
func (r *Response) Set(name, value string) { r.Header = append(r.Header, Field{name, value}) }

// Get returns the first value of a header, for tests and logging.
func (r *Response) Get(name string) string {
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

func (r *Response) reset() {
	r.Status = 0
	r.Header = r.Header[:0]
	r.Body = nil
	r.Drop = ""
	r.refused = refusal{}
}

// drop records that the request's events were not accepted, and why. It is
// the one place every drop decision passes through: the reason goes to
// Response.Drop, which Serve counts (Batcher.Hit), and to the client in
// X-Edgepixel-Drop. Serve calls it at most once per request.
func (r *Response) drop(reason string) {
	r.Drop = reason
	r.Set(DropHeader, reason)
}

// DropHeader is the answer's header naming why a hit's events were not
// accepted (the reason Batcher counts), for the client and the tests.
const DropHeader = "X-Edgepixel-Drop"

// Paths the edge answers.
const (
	PathPixel  = "/p.gif" // also /p and /i, for blockers that match on .gif
	PathPost   = "/e"
	PathScript = "/s.js" // edge/tracker's script
)

// isPixelPath reports whether path is the pixel's, under one of its names.
func isPixelPath(path string) bool { return path == PathPixel || path == "/p" || path == "/i" }

// HitPath reports whether path is one the edge counts hits on, the
// pixel's or the event POST's: a request refused on another (a scanner's
// /wp-login.php) is no lost hit.
func HitPath(path string) bool { return isPixelPath(path) || path == PathPost }

// RateLimitPenalty is how long a client or site over its rate limit stays
// refused (the Edge Rate Limiter's penalty box duration), and what a
// refused POST's Retry-After says.
const RateLimitPenalty = time.Minute

var (
	notFoundBody = []byte("not found: the pixel is /p.gif, events go to POST /e\n")
	okBody       = []byte("ok\n")
)

// Serve answers one request and adds the events it carries to b. It is the
// whole pixel logic, free of any platform: the caller reads the request and
// writes resp back, then, with the visitor answered, flushes b when due.
func Serve(req *Hit, c *Config, b *Batcher, now time.Time, resp *Response) {
	resp.reset()
	if c == nil {
		c = &defaultConfig
	}
	switch path := req.Path; {
	case isPixelPath(path):
		servePixel(req, c, b, now, resp)
	case path == PathScript:
		serveScript(req, resp)
	case path == PathPost:
		servePost(req, c, b, now, resp)
	case path == "/healthz":
		resp.Status = statusOK
		resp.Set("Content-Type", "text/plain")
		resp.Body = okBody
	default:
		resp.Status = statusNotFound
		resp.Set("Content-Type", "text/plain")
		resp.Body = notFoundBody
	}
	// Accepted events were counted by b.Add; a drop is counted here, for
	// the site a POST's body names (refusal), or else the URL's (a POST's
	// body may not even parse), so that no drop is known only to the
	// answer's header.
	if resp.Drop != "" {
		site := resp.refused.site
		if site == "" {
			site = event.CleanSite(queryValue(req.RawQuery, "site"))
		}
		b.Hit(now, site, resp.Drop)
	}
}

var gifLength = strconv.Itoa(len(GIF))

func servePixel(req *Hit, c *Config, b *Batcher, now time.Time, resp *Response) {
	if req.Method != methodGet && req.Method != methodHead {
		resp.Set("Allow", "GET, HEAD")
		reject(resp, statusMethodNotAllowed, wire.DropBadMethod)
		return
	}
	// A HEAD is a link checker or a monitor, not a page view: it gets the
	// GIF's headers and costs no Meta.
	drop := wire.DropHeadRequest
	if req.Method == methodGet {
		sc := &req.scratch
		e, note := sc.events[:], sc.notes[:]
		note[0], drop = fromQuery(req.RawQuery, req.Meta(), c, sc)
		e[0].Method = methodGet
		if note[0] == "" {
			note = nil
		}
		if drop == "" && !b.add(now, e, note) {
			drop = wire.DropBufferFull
		}
	}
	// The visitor gets the GIF whatever happened to the hit: a broken image
	// on their page would be our failure made visible.
	resp.Status = statusOK
	if drop != "" {
		resp.drop(drop)
	}
	resp.Set("Content-Type", "image/gif")
	resp.Set("Content-Length", gifLength)
	noCache(resp)
	resp.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if req.Method == methodGet {
		resp.Body = GIF
	}
}

// serveScript answers GET and HEAD /s.js with edge/tracker's script:
// gzip-compressed to clients that accept it, each representation with its
// own ETag, 304 to a client that has the one it would get (If-None-Match,
// RFC 9110 section 13.1.2), cacheable. Not a hit: nothing
// is counted.
func serveScript(req *Hit, resp *Response) {
	if req.Method != methodGet && req.Method != methodHead {
		resp.Status = statusMethodNotAllowed
		resp.Set("Allow", "GET, HEAD")
		return
	}
	body, tag := tracker.Script, tracker.ETag
	gz := acceptsGzip(req.header("Accept-Encoding"))
	if gz {
		body, tag = tracker.Gzip, tracker.GzipETag
	}
	resp.Set("Cache-Control", tracker.CacheControl)
	resp.Set("ETag", tag)
	resp.Set("Vary", "Accept-Encoding")
	resp.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// A public script without credentials: any origin may read it, which
	// <script integrity=... crossorigin> needs to check its hash
	// (subresource integrity, https://www.w3.org/TR/SRI/ section 3.3.5).
	resp.Set("Access-Control-Allow-Origin", "*")
	if etag.Match(req.header("If-None-Match"), tag) {
		resp.Status = statusNotModified
		return
	}
	resp.Status = statusOK
	resp.Set("Content-Type", "text/javascript; charset=utf-8")
	if gz {
		resp.Set("Content-Encoding", "gzip")
	}
	resp.Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == methodGet {
		resp.Body = body
	}
}

// acceptsGzip reports whether an Accept-Encoding value accepts gzip: listed
// (or "*") without q=0 (RFC 9110 section 12.5.3).
func acceptsGzip(header string) bool {
	for _, c := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(c, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "x-gzip" && name != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.ToLower(params), " ", "")
		if strings.HasPrefix(q, "q=0") && strings.Trim(q[3:], ".0") == "" {
			return false
		}
		return true
	}
	return false
}

func noCache(resp *Response) {
	resp.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	resp.Set("Pragma", "no-cache")
	resp.Set("Expires", "0")
}

// allowCORS sets the headers of a cross-origin answer the browser may
// read: origin echoed, with credentials (see Origins). Without an Origin
// (not a browser's cross-origin request) "*" serves any other client.
func allowCORS(resp *Response, origin string) {
	if origin == "" {
		resp.Set("Access-Control-Allow-Origin", "*")
		return
	}
	resp.Set("Access-Control-Allow-Origin", origin)
	resp.Set("Access-Control-Allow-Credentials", "true")
}

// servePost answers an event POST and its CORS preflight. Which origins
// may post for a site is c.Origins; a preflight carries no body, so it is
// judged by the site in its URL (POST /e?site=S), or by the default when
// there is none. The POST itself is judged by the sites of its events.
func servePost(req *Hit, c *Config, b *Batcher, now time.Time, resp *Response) {
	resp.Set("Vary", "Origin")
	noCache(resp)
	origin := req.header("Origin")
	switch req.Method {
	case methodOptions:
		if origin != "" && !c.Origins.Allowed(event.CleanSite(queryValue(req.RawQuery, "site")), origin) {
			reject(resp, statusForbidden, wire.DropOriginNotAllowed)
			return
		}
		allowCORS(resp, origin)
		resp.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		resp.Set("Access-Control-Allow-Headers", "Content-Type, "+HeaderIdempotencyKey)
		resp.Set("Access-Control-Max-Age", "86400")
		resp.Status = statusNoContent
		return
	case methodPost:
	default:
		allowCORS(resp, origin)
		resp.Set("Allow", "POST, OPTIONS")
		reject(resp, statusMethodNotAllowed, wire.DropBadMethod)
		return
	}
	// A compressed body would be read as JSON and refused as bad_json
	// (or, labelled but plain, taken): say what is wrong instead.
	// Browsers' beacons and fetch never compress a request body.
	if ce := req.header("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		allowCORS(resp, origin)
		reject(resp, statusUnsupportedMediaType, wire.DropContentEncoding)
		return
	}
	body, err := req.Body(MaxPostBody)
	if err != nil {
		allowCORS(resp, origin)
		reject(resp, statusBadRequest, wire.DropReadError)
		return
	}
	evs, notes, drop := fromJSON(body, req.header(HeaderIdempotencyKey), req.RawQuery, req.Meta(), c, &resp.refused)
	if origin != "" {
		if ok, site := originAllowed(c.Origins, evs, req.RawQuery, origin); !ok {
			// A body refused for itself (a bad event_id) is judged
			// by the URL's site, as its preflight was, but counted
			// for the site it names, as its own drop would have been
			// (a tester's was counted under "").
			if site == "" {
				site = resp.refused.site
			}
			resp.refused = refusal{site: site}
			reject(resp, statusForbidden, wire.DropOriginNotAllowed)
			return
		}
	}
	allowCORS(resp, origin)
	for i := range evs {
		evs[i].Method = req.Method // POST, checked above
	}
	if drop == "" && !b.add(now, evs, notes) {
		drop = wire.DropBufferFull
	}
	switch drop {
	case "":
		resp.Status = statusNoContent
	case wire.DropUnknownSite: // answered as if counted, as the pixel is
		resp.Status = statusNoContent
		resp.drop(drop)
	case wire.DropRateLimited:
		// The penalty box refuses for its whole duration: a retry sooner
		// is refused again (RFC 9110 §10.2.3: seconds to wait).
		resp.Set("Retry-After", strconv.Itoa(int(RateLimitPenalty/time.Second)))
		reject(resp, statusTooManyRequests, drop)
	case wire.DropUnsigned, wire.DropBadSignature, wire.DropExpiredPixel: // the site's sign=reject
		reject(resp, statusForbidden, drop)
	case wire.DropTooLarge, wire.DropTooManyEvents, wire.DropPropsTooLarge:
		reject(resp, statusRequestEntityTooLarge, drop)
	case wire.DropBufferFull:
		resp.Set("Retry-After", "1")
		reject(resp, statusServiceUnavailable, drop)
	case wire.DropInternal:
		reject(resp, statusInternalServerError, drop)
	default:
		reject(resp, statusBadRequest, drop)
	}
}

// originAllowed reports whether origin may post evs: every event's site
// must allow it. A body that did not parse (or was refused) has no
// sites; it is judged as its preflight was, by the URL's site or the
// default. When it refuses, site is the site whose list refused, which
// the drop is counted for ("": the URL's).
func originAllowed(o *Origins, evs []event.Event, rawQuery, origin string) (ok bool, site string) {
	if len(evs) == 0 {
		return o.Allowed(event.CleanSite(queryValue(rawQuery, "site")), origin), ""
	}
	for i := range evs {
		if !o.Allowed(evs[i].Site, origin) {
			return false, evs[i].Site
		}
	}
	return true, ""
}

// reject answers an error with its drop reason in a header and a JSON body.
func reject(resp *Response, status int, reason string) {
	resp.Status = status
	resp.drop(reason)
	resp.Set("Content-Type", "application/json")
	msg := dropMessage(reason, status)
	if reason == wire.DropBadSignature && resp.refused.cip != "" {
		msg = outsideCIPMessage(resp.refused.cip)
	}
	if d := resp.refused.detail; d != "" {
		msg += " (" + d + ")"
	}
	resp.Body = fmt.Appendf(nil, "{\"error\":%q,\"reason\":%q}\n", msg, reason)
}

// outsideCIPMessage is bad_pixel_signature's error text when the URL's
// signature verified and only the client's address was outside the
// range its cip binds it to: a new signature would be refused the same
// way, so the text says which range the client was not in (or that the
// signed cip is no range at all).
func outsideCIPMessage(cip string) string {
	cip = event.Clean(cip, event.MaxEnumLen)
	if _, err := netip.ParsePrefix(cip); err != nil {
		if _, err := netip.ParseAddr(cip); err != nil {
			return "the URL's signature verifies, but its cip " + cip + " is not an IP address or CIDR range, so no client is in it: the site must bind the URL to an address or range (pixelsign's cip)"
		}
	}
	return "the URL's signature verifies, but this client's address is outside its cip range " + cip +
		": the site bound the URL to clients in that range (a page served through a proxy must bind the address the edge sees)"
}

// dropMessage is the error text of a refused request: what was wrong and
// what the sender can do, for a person reading the answer (the reason is
// for programs). A switch, not a map: nothing to build at start.
func dropMessage(reason string, status int) string {
	switch reason {
	case wire.DropMissingSite:
		// Where the site goes for each kind of hit: a POST's site is
		// its body's, which a tester's site in the query did not
		// reach. The query's parser skips a pair it cannot read, as
		// url.ParseQuery does: say so, or "site=demo;x=1" reads as no site.
		return "every event needs a non-empty site: a POST's in each JSON event (\"site\":\"demo\"), a pixel's in its query (site=demo), where a pair with a ';' or a bad %-escape is skipped (escape them: %3B, %25)"
	case wire.DropBadJSON:
		// finish defaults name to pageview and url to the Referer, for the
		// POST as for the pixel: only site is required.
		return "the body must be one JSON event object or an array of them: a site string; optional name (default \"pageview\"), url (default the Referer header), ref, event_id strings and a props object"
	case wire.DropBadURL:
		return "the page (url, else the Referer header) and ref must be addresses of pages (http(s)://host/path, or a path): a " + urlescape.NoPageSchemes + " URL names none"
	case wire.DropBadEventID:
		return "event_id and Idempotency-Key must be a UUIDv7 (RFC 9562) at most 24 h old and 10 min ahead of the edge's clock"
	case wire.DropReadError:
		return "the request body could not be read"
	case wire.DropContentEncoding:
		return "send the body uncompressed, without Content-Encoding: the edge reads JSON as it is sent"
	case wire.DropOriginNotAllowed:
		return "this Origin may not post events for the site (config store cors_origins, cors_default); a preflight is judged by ?site= in its URL"
	case wire.DropTooLarge:
		return fmt.Sprintf("the body is over %d bytes", MaxPostBody)
	case wire.DropTooManyEvents:
		return fmt.Sprintf("more than %d events in one request", MaxPostEvents)
	case wire.DropPropsTooLarge:
		return fmt.Sprintf("props is over %d bytes as compact JSON", event.MaxPropsLen)
	case wire.DropBadMethod:
		return "use GET or HEAD for the pixel, POST (or an OPTIONS preflight) for /e"
	case wire.DropRateLimited:
		return "too many hits from this client or for this site; slow down"
	case wire.DropBufferFull:
		return "the edge's buffer is full; retry shortly"
	case wire.DropUnsigned:
		return "the site counts signed posts only: post to the URL the site signed (/e?site=S&exp=E&sig=X, edgepixel-sign)"
	case wire.DropBadSignature:
		return "the URL's signature does not verify for the events' site: sign /e?site=S for that site with its key (edgepixel-sign)"
	case wire.DropExpiredPixel:
		return "the URL's signature has expired (exp): the site must issue a freshly signed URL"
	}
	return statusText(status)
}
