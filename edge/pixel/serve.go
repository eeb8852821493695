package pixel

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
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
}

// Field is one response header.
type Field struct{ Name, Value string }

// Response is what Serve answers. A platform reuses one Response across
// requests, so serving a hit allocates no header storage.
type Response struct {
	Status int
	Header []Field
	Body   []byte
}

// Set appends a header. Serve never sets one twice, so no lookup is needed.
func (r *Response) Set(name, value string) { r.Header = append(r.Header, Field{name, value}) }

// Get returns the first value of a header, for tests and logging.
func (r *Response) Get(name string) string {
	for _, f := range r.Header {
		if http.CanonicalHeaderKey(f.Name) == http.CanonicalHeaderKey(name) {
			return f.Value
		}
	}
	return ""
}

func (r *Response) reset() {
	r.Status = 0
	r.Header = r.Header[:0]
	r.Body = nil
}

// Paths the edge answers.
const (
	PathPixel = "/p.gif" // also /p and /i, for blockers that match on .gif
	PathPost  = "/e"
)

var (
	notFoundBody = []byte("not found: the pixel is /p.gif, events go to POST /e\n")
	okBody       = []byte("ok\n")
)

// Serve answers one request and adds the events it carries to b. It is the
// whole pixel logic, free of any platform: the caller reads the request and
// writes resp back, then, with the visitor answered, flushes b when due.
func Serve(req *Hit, b *Batcher, now time.Time, resp *Response) {
	resp.reset()
	switch req.Path {
	case PathPixel, "/p", "/i":
		servePixel(req, b, now, resp)
	case PathPost:
		servePost(req, b, now, resp)
	case "/healthz":
		resp.Status = http.StatusOK
		resp.Set("Content-Type", "text/plain")
		resp.Body = okBody
	default:
		resp.Status = http.StatusNotFound
		resp.Set("Content-Type", "text/plain")
		resp.Body = notFoundBody
	}
}

var gifLength = strconv.Itoa(len(GIF))

func servePixel(req *Hit, b *Batcher, now time.Time, resp *Response) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		resp.Set("Allow", "GET, HEAD")
		reject(resp, http.StatusMethodNotAllowed, DropBadMethod)
		return
	}
	e, drop := FromQuery(req.RawQuery, req.Meta())
	e.Method = req.Method // GET or HEAD, checked above
	if drop == "" && !b.Add(now, e) {
		drop = DropBufferFull
	}
	// The visitor gets the GIF whatever happened to the hit: a broken image
	// on their page would be our failure made visible.
	resp.Status = http.StatusOK
	if drop != "" {
		resp.Set("X-Edgepixel-Drop", drop)
	}
	resp.Set("Content-Type", "image/gif")
	resp.Set("Content-Length", gifLength)
	noCache(resp)
	resp.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if req.Method == http.MethodGet {
		resp.Body = GIF
	}
}

func noCache(resp *Response) {
	resp.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	resp.Set("Pragma", "no-cache")
	resp.Set("Expires", "0")
}

func servePost(req *Hit, b *Batcher, now time.Time, resp *Response) {
	// Any origin may post: the events name their site, and trust comes from
	// the edge's enrichment, not from the browser.
	resp.Set("Access-Control-Allow-Origin", "*")
	noCache(resp)
	switch req.Method {
	case http.MethodOptions:
		resp.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		resp.Set("Access-Control-Allow-Headers", "Content-Type")
		resp.Set("Access-Control-Max-Age", "86400")
		resp.Status = http.StatusNoContent
		return
	case http.MethodPost:
	default:
		resp.Set("Allow", "POST, OPTIONS")
		reject(resp, http.StatusMethodNotAllowed, DropBadMethod)
		return
	}
	body, err := req.Body(MaxPostBody)
	if err != nil {
		reject(resp, http.StatusBadRequest, DropReadError)
		return
	}
	evs, drop := FromJSON(body, req.Meta())
	for i := range evs {
		evs[i].Method = req.Method // POST, checked above
	}
	if drop == "" && !b.Add(now, evs...) {
		drop = DropBufferFull
	}
	switch drop {
	case "":
		resp.Status = http.StatusNoContent
	case DropTooLarge, DropTooManyEvents:
		reject(resp, http.StatusRequestEntityTooLarge, drop)
	case DropBufferFull:
		resp.Set("Retry-After", "1")
		reject(resp, http.StatusServiceUnavailable, drop)
	default:
		reject(resp, http.StatusBadRequest, drop)
	}
}

// reject answers an error with its drop reason in a header and a JSON body.
func reject(resp *Response, status int, reason string) {
	resp.Status = status
	resp.Set("X-Edgepixel-Drop", reason)
	resp.Set("Content-Type", "application/json")
	resp.Body = fmt.Appendf(nil, "{\"error\":%q,\"reason\":%q}\n", http.StatusText(status), reason)
}
