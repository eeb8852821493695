package pop

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// downstream is one client request on its way from ServeHTTP to a guest
// and the guest's answer on its way back. ServeHTTP owns r and the
// ResponseWriter; the instance goroutine owns the fields below ready. The
// only things crossing between them are the outcome channel and bodies.
type downstream struct {
	r     *http.Request
	body  *reqBody // the request body, read whole (reqbody.go); nil: none
	ready chan outcome
	// taken is closed when an instance takes the request from its
	// program's queue (pool.go); nil unless it was queued.
	taken chan struct{}
	// servedBy is the instance that took it, for the access log.
	servedBy servedBy

	mu   sync.Mutex
	gone bool // ServeHTTP gave up (client went away); answers are discarded

	// Guest side.
	id           uint64 // downstream_client_request_id, given by bind
	responded    bool
	stream       *body // the streaming response body, if any
	reqH, bodyH  uint32
	origNames    []string
	origNamesSet bool
}

// outcome is what the guest decided for a downstream request.
type outcome struct {
	status int
	header headerList
	manual bool
	body   *body
	failed bool   // no response: the guest trapped, panicked or never sent one
	limit  string // with failed: the execution limit the guest exceeded (limits.go)
}

func newDownstream(r *http.Request) *downstream {
	return &downstream{r: r, ready: make(chan outcome, 4)}
}

// send delivers an outcome without ever blocking the guest: the channel
// keeps room for the final outcome by dropping surplus informational ones.
func (d *downstream) send(o outcome) {
	d.mu.Lock()
	gone := d.gone
	if !gone && (o.status >= 200 || o.failed || len(d.ready) < cap(d.ready)-1) {
		select {
		case d.ready <- o:
		default:
		}
	}
	d.mu.Unlock()
	if gone && o.body != nil {
		o.body.stop()
	}
}

// abandon is called by ServeHTTP when the client went away before the
// guest answered: an answer sent later is discarded.
func (d *downstream) abandon() {
	d.mu.Lock()
	d.gone = true
	d.mu.Unlock()
	for {
		select {
		case o := <-d.ready:
			if o.body != nil {
				o.body.stop()
			}
		default:
			return
		}
	}
}

// requestID is the 32 hex digits a client request is known by: to the
// guest (downstream_client_request_id) and in the access log.
func requestID(id uint64) string {
	var buf [32]byte
	for i := range buf {
		buf[i] = '0'
	}
	v := strconv.AppendUint(buf[:0:0], id, 16)
	copy(buf[32-len(v):], v)
	return string(buf[:])
}

// servedBy is the id of the instance that took a client request and the
// request id it gave it, set by the instance (bind) and read by
// ServeHTTP's goroutine afterwards.
type servedBy struct{ id, req atomic.Uint64 }

func (sb *servedBy) set(id, req uint64) { sb.id.Store(id); sb.req.Store(req) }

// --- ServeHTTP side ---

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// How long a streamed response's head may wait for its body; see body.settle.
const (
	settleBytes = 16 << 10
	settleWait  = 2 * time.Millisecond
)

// writeResponse sends an outcome to the client and returns when the body is
// complete: for a streaming body that is when the guest closes it, which may
// be long before the guest's handler returns.
func writeResponse(w http.ResponseWriter, r *http.Request, o *outcome) {
	h := w.Header()
	isHead := r.Method == http.MethodHead
	o.header.toHTTP(h, func(k string) bool {
		if o.manual {
			return false
		}
		// Automatic framing: the host derives Content-Length and
		// Transfer-Encoding from the body (HEAD keeps the guest's length).
		switch k {
		case "Content-Length":
			return !isHead
		case "Transfer-Encoding":
			return true
		}
		return false
	})
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // Fastly does not sniff content types
	}
	bodyAllowed := o.status >= 200 && o.status != http.StatusNoContent && o.status != http.StatusNotModified
	if o.body != nil && !o.manual && !isHead && bodyAllowed {
		o.body.settle(r.Context(), settleBytes, settleWait)
		// A body with trailers goes out chunked: HTTP/1.1 has no trailer
		// section after a Content-Length body.
		if n, ok := o.body.knownLength(); ok && !o.body.hasTrailers() {
			h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		}
	}
	w.WriteHeader(o.status)
	if o.body == nil {
		return
	}
	if isHead || !bodyAllowed {
		o.body.stop()
		return
	}
	drainBody(w, r.Context(), o.body)
	writeTrailers(w, o.body)
}

// drainBody copies a (possibly streaming) body to the client, flushing
// whenever it has caught up with the guest. It returns once the body was
// sent completely (and its trailers may follow); a body the guest, a
// backend or the client cut short aborts the exchange
// (http.ErrAbortHandler).
func drainBody(w http.ResponseWriter, ctx context.Context, b *body) {
	var (
		first [2]segment // most bodies arrive in one take
		segs  = first[:0]
		rc    *http.ResponseController
		bufp  *[]byte
	)
	defer func() {
		if bufp != nil {
			copyBufPool.Put(bufp)
		}
	}()
	for {
		var done bool
		var err error
		segs, done, err = b.take(ctx, segs[:0])
		for i, s := range segs {
			var werr error
			if s.r == nil {
				_, werr = w.Write(s.data)
			} else {
				if bufp == nil {
					bufp = copyBufPool.Get().(*[]byte)
				}
				_, werr = io.CopyBuffer(w, s.r, *bufp)
				if werr == nil {
					b.collectTrailers(s.r)
				}
				closeReader(s.r)
			}
			if werr != nil {
				// A write to a client gone, or a backend's body that
				// failed mid-copy: abort as below, or net/http would end
				// a chunked body as if whole (review).
				releaseSegments(segs[i+1:])
				b.stop()
				panic(http.ErrAbortHandler)
			}
		}
		clear(segs)
		if err != nil {
			// The guest failed or abandoned the body mid-stream, or the
			// client went away (ctx; or half-closed, which reads the
			// same and may still be reading: see clientGone): abort the
			// exchange so the client sees it incomplete. Returning would
			// end a chunked body as if whole (a tester's half-closed
			// client read a 201 with none).
			b.stop()
			panic(http.ErrAbortHandler)
		}
		if done {
			return
		}
		if rc == nil {
			rc = http.NewResponseController(w)
		}
		rc.Flush()
	}
}

// absURI is the request URI as Fastly presents it to guests: absolute,
// with scheme and authority.
func absURI(r *http.Request) string {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	ru := r.RequestURI
	switch {
	case len(ru) > 0 && ru[0] == '/':
	case r.URL != nil && r.URL.IsAbs():
		return r.URL.String()
	default:
		ru = r.URL.RequestURI()
	}
	host := r.Host
	if host == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = a.String()
		} else {
			host = "localhost"
		}
	}
	return scheme + host + ru
}

// --- guest side ---

// bind makes ds the instance's current request: a new generation begins,
// old request-scoped handles are swept, the client request and its body
// get handles, and the request its id. The first request an instance
// serves gets the instance's sandbox id (its FASTLY_TRACE_ID), as on
// Fastly and in Viceroy, where the two are equal for a fresh sandbox;
// later ones get new ids from the same sequence.
func (inst *instance) bind(ds *downstream) {
	if inst.served == 0 {
		ds.id = inst.sandboxID
	} else {
		ds.id = inst.s.reqID.Add(1)
	}
	inst.gen++
	inst.tab.sweep(inst.gen, releaseObj)
	r := ds.r
	hdr := make(headerList, 0, len(r.Header)+1)
	if r.Host != "" {
		hdr = append(hdr, hfield{name: "Host", vals: []string{r.Host}})
	}
	for k, v := range r.Header {
		hdr = append(hdr, hfield{name: k, vals: v})
	}
	ro := &reqObj{
		method:  r.Method,
		uri:     absURI(r),
		version: versionOf(r.ProtoMajor, r.ProtoMinor),
		header:  hdr,
		ds:      ds,
	}
	b := newBody()
	if ds.body != nil {
		b = newReaderBody(ds.body, ds.body.Len())
	}
	ds.reqH = inst.tab.add(ro, inst.gen, false)
	ds.bodyH = inst.tab.add(b, inst.gen, false)
	inst.cur = ds
	ds.servedBy.set(inst.id, ds.id)
	inst.served++
}

// endRequest closes out the current request when the guest moves on (asks
// for the next one, or exits): a client still waiting gets a 500, and a
// streaming body the guest left open is ended.
func (inst *instance) endRequest(failed bool) {
	ds := inst.cur
	if ds == nil {
		return
	}
	inst.cur = nil
	// The client body is released now rather than swept with the other
	// handles later: it is charged to the body memory all clients share
	// (reqbody.go), and an idle instance must not keep it. What the guest
	// moved elsewhere (appended to a backend request) is no longer in it.
	if b, ok := take[*body](&inst.tab, ds.bodyH); ok {
		b.release()
	}
	if !ds.responded {
		ds.responded = true
		if k := inst.breachKind(); k != limitNone {
			// A wall or CPU breach was answered when it happened
			// (limits.go); a memory breach is answered here.
			ds.send(outcome{status: k.status(), failed: true, limit: k.String()})
		} else {
			ds.send(outcome{status: http.StatusInternalServerError, failed: true})
			inst.s.m.noResponse.Add(1)
		}
	}
	if ds.stream != nil {
		var err error
		if failed {
			err = errGuestFailed
		}
		ds.stream.finish(err)
	}
}

// releaseObj frees what a swept handle's object holds.
func releaseObj(o any) {
	switch o := o.(type) {
	case *body:
		if o.streaming {
			o.finish(nil)
		} else {
			o.release()
		}
	case *pendingReq:
		o.abandon()
	}
}
