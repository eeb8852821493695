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

// clientBody is a client request body; net/http fills r.Trailer in at EOF.
type clientBody struct {
	io.ReadCloser
	r *http.Request
}

func (c *clientBody) Trailer() http.Header { return c.r.Trailer }

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

// trailerBody resolves the body handle of a trailer getter: $badf for a
// bad handle, $inval for a streaming body, $again until the body has been
// read to its end.
func trailerBody(c *call) (*body, status) {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return nil, stBadf
	}
	b.mu.Lock()
	streaming, ready := b.streaming, b.trailersReady
	b.mu.Unlock()
	if streaming {
		return nil, stInval
	}
	if !ready {
		return nil, stAgain
	}
	return b, stOK
}

// trailer_append(h, name_ptr, name_len, value_ptr, value_len): allowed on
// any body, streaming ones included (that is how a guest ends a streamed
// response or backend request with trailers).
func bodyTrailerAppend(c *call) status {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return stBadf
	}
	name, ok1 := c.argBytes(1)
	val, ok2 := c.argBytes(3)
	if !ok1 || !ok2 || !validHeaderName(name) || !validHeaderValue(val) {
		return stInval
	}
	b.mu.Lock()
	b.trailers.appendValue(string(name), string(val))
	b.mu.Unlock()
	return stOK
}

// trailer_names_get(h, buf, buf_len, cursor, ending_cursor_out, nwritten_out)
func bodyTrailerNamesGet(c *call) status {
	b, st := trailerBody(c)
	if st != stOK {
		return st
	}
	t := b.trailerSnapshot()
	return writeMulti(c, len(t), func(i int) string { return t[i].name }, true,
		c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5))
}

// trailerAndName is trailerBody plus the name in arguments 1-2.
func trailerAndName(c *call) (headerList, []byte, status) {
	b, st := trailerBody(c)
	if st != stOK {
		return nil, nil, st
	}
	name, ok := c.argBytes(1)
	if !ok || len(name) > maxHeaderNameLen {
		return nil, nil, stInval
	}
	return b.trailerSnapshot(), name, stOK
}

// trailer_value_get(h, name_ptr, name_len, value, value_max_len, nwritten_out)
func bodyTrailerValueGet(c *call) status {
	t, name, st := trailerAndName(c)
	if st != stOK {
		return st
	}
	i := t.index(name)
	if i < 0 || len(t[i].vals) == 0 {
		return stNone
	}
	return writeOut(c, t[i].vals[0], c.u32(3), c.u32(4), c.u32(5))
}

// trailer_values_get(h, name_ptr, name_len, buf, buf_len, cursor, ending_cursor_out, nwritten_out)
func bodyTrailerValuesGet(c *call) status {
	t, name, st := trailerAndName(c)
	if st != stOK {
		return st
	}
	var vals []string
	if i := t.index(name); i >= 0 {
		vals = t[i].vals
	}
	return writeMulti(c, len(vals), func(i int) string { return vals[i] }, false,
		c.u32(3), c.u32(4), c.u32(5), c.u32(6), c.u32(7))
}
