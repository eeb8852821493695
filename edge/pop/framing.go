package pop

import (
	"bytes"
	"net/http"
)

// Ambiguous request framing. RFC 9112 section 6.3: a request with both
// Transfer-Encoding and Content-Length "might indicate an attempt to
// perform request smuggling ... Regardless, the server MUST close the
// connection after responding to such a request"; section 6.1: a
// Transfer-Encoding on an HTTP/1.0 message means the framing is faulty,
// and the connection is closed after processing it.
//
// net/http (Go 1.26) frames such a request as the RFC allows (by its
// chunks, dropping the Content-Length; by Content-Length on HTTP/1.0),
// rejects what it cannot frame (several or unknown transfer codings: 501;
// differing Content-Lengths: 400; closing then), but keeps the connection
// open after a request that had both headers, and removes them before any
// handler runs, so the handler cannot tell. The connection's reader
// therefore notes whether a line starting with the header name
// Content-Length or Transfer-Encoding (in any case) ever came in on it, and
// serve closes the connection after a chunked HTTP/1.1 request on one that
// has seen a Content-Length, or an HTTP/1.0 request on one that has seen a
// Transfer-Encoding.
//
// The note is per connection, not per request: net/http reads ahead, so
// which request the bytes belonged to is not known. An earlier request's
// Content-Length, or such a line inside a body, also counts; that only
// ever closes a connection that could have stayed open, which a server
// may always do. A second parser deciding framing differently from
// net/http's would itself be the kind of disagreement smuggling feeds on;
// this one decides nothing but closing. Over TLS the reader sees
// ciphertext, so there every chunked HTTP/1.1 request and every HTTP/1.0
// request closes its connection.

var (
	nameCL = []byte("\ncontent-length")
	nameTE = []byte("\ntransfer-encoding")
)

// scanFraming notes the framing header names in p, the next bytes read.
func (c *clientConn) scanFraming(p []byte) {
	if c.nc > 0 {
		// A name may have begun at the end of the previous read.
		var buf [len("\ntransfer-encoding")]byte
		n := copy(buf[:], c.carry[:c.nc])
		n += copy(buf[n:], p)
		c.nc = 0
		c.matchName(buf[:n])
	}
	for i := 0; ; i++ {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		c.matchName(p[i:])
	}
	if c.sawCL.Load() && c.sawTE.Load() {
		c.scan = false // nothing left to learn
	}
}

// matchName looks for the names at the start of b (which begins with a
// newline); if b ends inside one, it is kept to be completed by the next
// read.
func (c *clientConn) matchName(b []byte) {
	for _, name := range [...][]byte{nameCL, nameTE} {
		if len(b) >= len(name) {
			if bytes.EqualFold(b[:len(name)], name) {
				if len(name) == len(nameCL) {
					c.sawCL.Store(true)
				} else {
					c.sawTE.Store(true)
				}
			}
		} else if bytes.EqualFold(b, name[:len(b)]) {
			c.nc = copy(c.carry[:], b)
		}
	}
}

// ambiguousFraming reports whether r's connection must close after the
// answer (see above).
func ambiguousFraming(r *http.Request, c *clientConn) bool {
	if r.ProtoMajor != 1 {
		return false // HTTP/2 and 3 frame by frames; Transfer-Encoding is not allowed
	}
	knows := c != nil && c.scans
	if r.ProtoMinor == 0 {
		return !knows || c.sawTE.Load()
	}
	if len(r.TransferEncoding) > 0 {
		return !knows || c.sawCL.Load()
	}
	return false
}
