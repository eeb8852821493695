package pop

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Client request bodies are read whole by the POP before any guest sees
// the request, so a client that sends its body slowly, or stalls, holds a
// goroutine and a buffer but never a guest instance (of which there are
// few). Reading has a deadline for the whole body (BodyTimeout) and one
// between reads (BodyIdleTimeout); a client that misses either gets 408
// and its connection is closed.
//
// Memory follows the bytes that actually arrive, not what the client
// declares: the body goes into pooled chunks taken one at a time as data
// comes in, and all bodies together may hold at most BodyMemory (a request
// that would need more gets 503 and its connection is closed). A body over
// MaxRequestBody gets 413: at once if its Content-Length says so, else
// when it gets there. A body stays charged until the guest is done with
// the request (it asks for the next one or ends), or, if the guest passed
// it to a backend, until that send has read it.
//
// Differs from Fastly, which streams the client body into the guest as it
// arrives (so a guest could answer before the upload is complete): here
// the guest gets it once it has all arrived. Its Content-Length is then
// always known to the guest.

// bodyChunkSize is the unit request bodies are buffered and charged in.
const bodyChunkSize = 8 << 10

type bodyChunk = [bodyChunkSize]byte

var bodyChunks = sync.Pool{New: func() any { return new(bodyChunk) }}

// reqBody is a client request body read whole. It is read once (by the
// guest, or by a backend send it was passed to) and closed, which returns
// its chunks and its charge. Read and Close may come from different
// goroutines (net/http's transport may close a request body while another
// goroutine reads it), hence the lock; Read copies out under it, so a
// chunk is never back in the pool while being read.
type reqBody struct {
	s       *Server
	mu      sync.Mutex
	chunks  []*bodyChunk
	n, off  int64
	trailer http.Header
	closed  bool
}

// Errors of reading a client body, and how each is answered.
var (
	errBodyTooLarge = errors.New("request body larger than the limit")
	errBodyMemory   = errors.New("request body memory exhausted")
	errBodyTimeout  = errors.New("request body not received in time")
	errBodyBad      = errors.New("request body malformed")
	errBodyGone     = errors.New("client went away while sending the body")
)

// readBody reads r's body whole (nil for none). On failure the error says
// which answer the client gets (bodyAnswer), and the connection is to be
// closed after it: what remains of the body is not read.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (_ *reqBody, err error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	rc := http.NewResponseController(w)
	deadlines := s.bodyTimeout > 0 || s.bodyIdleTimeout > 0
	defer func() {
		switch {
		case err != nil:
			dropBody(w, r)
		case deadlines:
			// net/http's read for the next request (or its check for the
			// client going away) must not inherit the body's deadline.
			rc.SetReadDeadline(time.Time{})
		}
	}()
	if r.ContentLength > s.maxBody {
		return nil, errBodyTooLarge
	}
	began := time.Now()
	var end time.Time
	if s.bodyTimeout > 0 {
		end = began.Add(s.bodyTimeout)
	}
	b := &reqBody{s: s}
	var buf []byte // free part of the last chunk
	for {
		if len(buf) == 0 {
			if b.n >= s.maxBody+1 {
				b.Close()
				return nil, errBodyTooLarge
			}
			if !s.chargeBody() {
				b.Close()
				return nil, errBodyMemory
			}
			c := bodyChunks.Get().(*bodyChunk)
			b.chunks = append(b.chunks, c)
			buf = c[:]
		}
		if deadlines {
			d := end
			if s.bodyIdleTimeout > 0 {
				if idle := time.Now().Add(s.bodyIdleTimeout); d.IsZero() || idle.Before(d) {
					d = idle
				}
			}
			rc.SetReadDeadline(d)
		}
		n, err := r.Body.Read(buf[:min(int64(len(buf)), s.maxBody+1-b.n)])
		b.n += int64(n)
		buf = buf[n:]
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Close()
			switch {
			case isTimeout(err) || errors.Is(err, os.ErrDeadlineExceeded):
				return nil, errBodyTimeout
			case r.Context().Err() != nil:
				return nil, errBodyGone
			}
			return nil, errBodyBad
		}
		if b.n > s.maxBody {
			b.Close()
			return nil, errBodyTooLarge
		}
		if b.n == r.ContentLength {
			break // no need for another chunk to see the end
		}
	}
	if b.n == 0 {
		b.Close()
		return nil, nil
	}
	if len(r.Trailer) > 0 {
		b.trailer = r.Trailer
	}
	return b, nil
}

// dropBody makes sure a request body that will not be read costs nothing
// more: the connection closes after the answer, and net/http, which would
// otherwise read up to 256 KiB of the rest to reuse the connection, with
// no deadline, finds the read deadline already passed. The close lingers
// (lingerClose), so that a client still sending gets the answer.
func dropBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	if rec, ok := w.(*recorder); ok && r.ProtoMajor == 1 {
		rec.closeConn = true
		if c := clientConnOf(r); c != nil {
			c.linger.Store(true)
		}
	}
	http.NewResponseController(w).SetReadDeadline(time.Now())
}

// bodyAnswer is the status and the reject reason (clients.go) for a
// readBody error: status 0 when the client is gone and nothing can be
// answered, reason -1 for a timeout (counted as one).
func bodyAnswer(err error) (status int, reason int) {
	switch err {
	case errBodyTooLarge:
		return http.StatusRequestEntityTooLarge, rejectBodyTooLarge
	case errBodyMemory:
		return http.StatusServiceUnavailable, rejectBodyMemory
	case errBodyTimeout:
		return http.StatusRequestTimeout, -1
	case errBodyGone:
		return 0, rejectBodyIncomplete
	}
	return http.StatusBadRequest, rejectBodyIncomplete
}

// chargeBody takes one chunk from the body memory budget.
func (s *Server) chargeBody() bool {
	if s.bodyBytes.Add(bodyChunkSize) > s.bodyMemory {
		s.bodyBytes.Add(-bodyChunkSize)
		return false
	}
	return true
}

// Len is the body's total length.
func (b *reqBody) Len() int64 { return b.n }

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.off >= b.n {
		return 0, io.EOF
	}
	total := 0
	for len(p) > 0 && b.off < b.n {
		c := b.chunks[b.off/bodyChunkSize]
		i := b.off % bodyChunkSize
		k := copy(p, c[i:min(bodyChunkSize, i+b.n-b.off)])
		p = p[k:]
		b.off += int64(k)
		total += k
	}
	return total, nil
}

// Close returns the chunks to the pool and their charge to the budget.
func (b *reqBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for i, c := range b.chunks {
		bodyChunks.Put(c)
		b.chunks[i] = nil
	}
	b.s.bodyBytes.Add(-int64(len(b.chunks)) * bodyChunkSize)
	b.chunks = nil
	return nil
}

// Trailer makes the client's trailers (complete, since the body was read
// to its end) reach the guest like a network body's (trailers.go).
func (b *reqBody) Trailer() http.Header { return b.trailer }
