package pop

import (
	"io"
	"net/http"
)

// HTTP trailers. A body carries its trailers (body.trailers): the guest
// appends them with trailer_append, and bodies that come from the network
// (client request, backend response) pick theirs up when their reader
// reaches EOF. They travel with the body: appended to another body, sent
// to a backend as a chunked request's trailer section, or to the client
// after a response body.
//
// Reading follows Viceroy's rules: the trailer getters answer $again until
// the body has been read to its end (trailers arrive after the content),
// and $inval on a streaming body, which the guest may only write.

// trailerSource is a body reader that has trailers once it reached EOF.
type trailerSource interface {
	Trailer() http.Header
}

// forbiddenTrailer reports names that may not be sent as trailers: framing
// and connection headers (net/http rejects some of them outright).
func forbiddenTrailer(canonical string) bool {
	return hopHeaders[canonical] || canonical == "Content-Length" || canonical == "Transfer-Encoding"
}

// collectTrailers moves the trailers of a reader that reached EOF into b.
func (b *body) collectTrailers(r io.Reader) {
	ts, ok := r.(trailerSource)
	if !ok {
		return
	}
	t := ts.Trailer()
	if len(t) == 0 {
		return
	}
	b.mu.Lock()
	for k, vals := range t {
		for _, v := range vals {
			b.trailers.appendValue(k, v)
		}
	}
	b.mu.Unlock()
}

// trailerSnapshot copies the current trailers.
func (b *body) trailerSnapshot() headerList {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.trailers.clone()
}

// hasTrailers reports whether the body has or will have trailers: ones
// already known, or ones a backend response announced (net/http puts the
// announced names in resp.Trailer before the body is read). A body with
// trailers must go out chunked, never with a Content-Length.
func (b *body) hasTrailers() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.trailers) > 0 {
		return true
	}
	for _, s := range b.segs {
		if ts, ok := s.r.(trailerSource); ok && len(ts.Trailer()) > 0 {
			return true
		}
	}
	return false
}

// writeTrailers sends b's trailers after a response body (net/http's
// TrailerPrefix form: the names need not be announced up front).
//
// Trailers need a chunked response. One without a Content-Length becomes
// chunked once net/http flushes it while the handler still runs; a small
// body that is still in net/http's buffer would instead get a computed
// Content-Length when the handler returns, and the trailers would be
// dropped. Flushing here settles it.
func writeTrailers(w http.ResponseWriter, b *body) {
	t := b.trailerSnapshot()
	if len(t) == 0 {
		return
	}
	h := w.Header()
	for _, f := range t {
		k := http.CanonicalHeaderKey(f.name)
		if forbiddenTrailer(k) {
			continue
		}
		h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], f.vals...)
	}
	http.NewResponseController(w).Flush()
}
