package pop

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"
)

// downstream is one client request on its way from ServeHTTP to a guest
// and the guest's answer on its way back. ServeHTTP owns r and the
// ResponseWriter; the instance goroutine owns the fields below ready. The
// only things crossing between them are the outcome channel and bodies.
type downstream struct {
	r     *http.Request
	ready chan outcome
	// taken is closed when an instance takes the request from its
	// program's queue (pool.go); nil unless it was queued.
	taken chan struct{}
	// servedBy is the instance that took it, for the access log (accesslog.go).
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
	if drainBody(w, r.Context(), o.body) {
		writeTrailers(w, o.body)
	}
}

// drainBody copies a (possibly streaming) body to the client, flushing
// whenever it has caught up with the guest. It reports whether the body
// was sent completely (and its trailers may follow).
func drainBody(w http.ResponseWriter, ctx context.Context, b *body) bool {
	var (
		segs []segment
		rc   *http.ResponseController
		bufp *[]byte
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
				releaseSegments(segs[i+1:])
				b.stop()
				return false
			}
		}
		clear(segs)
		if err != nil {
			b.stop()
			if ctx.Err() == nil {
				// The guest failed or abandoned the body mid-stream: abort
				// the exchange so the client sees it incomplete.
				panic(http.ErrAbortHandler)
			}
			return false
		}
		if done {
			return true
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
	var b *body
	if r.Body == nil || r.Body == http.NoBody {
		b = newBody()
	} else {
		b = newReaderBody(&clientBody{ReadCloser: r.Body, r: r}, r.ContentLength)
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

// fastly_http_req.body_downstream_get(req_out, body_out): the first client
// request of this instance. This is where a pre-warmed instance waits for
// traffic.
func reqBodyDownstreamGet(c *call) status {
	inst := c.inst
	if _, ok := c.bytes(c.u32(0), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(1), 4); !ok {
		return stInval
	}
	if inst.cur == nil {
		if inst.served > 0 {
			return stNone
		}
		ds, ok := inst.waitRequest(-1)
		if !ok {
			// Shut down before any traffic: end the instance without
			// running more guest code.
			inst.exitNow()
		}
		inst.bind(ds)
	}
	c.putU32(c.u32(0), inst.cur.reqH)
	c.putU32(c.u32(1), inst.cur.bodyH)
	return stOK
}

// promise is the object behind a request-promise handle.
type promise struct{ timeout time.Duration }

// next_request(options_mask, options_ptr, promise_out). Option bit 1 is a
// timeout in milliseconds (u64 at options_ptr). An instance may have one
// outstanding promise: asking again before waiting on or abandoning it is
// $limitexceeded (as in Viceroy).
func dsNextRequest(c *call) status {
	inst := c.inst
	if h := inst.http.promise; h != 0 {
		if _, ok := lookup[*promise](&inst.tab, h); ok {
			return stLimitExceeded
		}
		inst.http.promise = 0
	}
	mask := c.u32(0)
	p := &promise{timeout: -1}
	if mask&^3 != 0 {
		return stInval
	}
	if mask&2 != 0 {
		b, ok := c.bytes(c.u32(1), 8)
		if !ok {
			return stInval
		}
		ms := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if ms > uint64(time.Hour/time.Millisecond) {
			ms = uint64(time.Hour / time.Millisecond)
		}
		p.timeout = time.Duration(ms) * time.Millisecond
	}
	h := inst.tab.add(p, inst.gen, false)
	if st := c.putHandle(c.u32(2), h); st != stOK {
		return st
	}
	inst.http.promise = h
	return stOK
}

// next_request_wait(promise, req_out, body_out): blocks until the next
// client request; $none on timeout or shutdown, which ends ServeMany.
func dsNextRequestWait(c *call) status {
	inst := c.inst
	p, ok := take[*promise](&inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	inst.http.promise = 0
	if _, ok := c.bytes(c.u32(1), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(2), 4); !ok {
		return stInval
	}
	inst.endRequest(false)
	ds, ok := inst.waitRequest(p.timeout)
	if !ok {
		return stNone
	}
	inst.bind(ds)
	c.putU32(c.u32(1), ds.reqH)
	c.putU32(c.u32(2), ds.bodyH)
	return stOK
}

// next_request_abandon(promise)
func dsNextRequestAbandon(c *call) status {
	if _, ok := take[*promise](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	c.inst.http.promise = 0
	return stOK
}

// dsOf resolves a request handle that must be a client request.
func dsOf(c *call, h uint32) (*downstream, status) {
	r, ok := c.inst.getReq(h)
	if !ok {
		return nil, stBadf
	}
	if r.ds == nil {
		return nil, stNone
	}
	return r.ds, stOK
}

func clientAddr(r *http.Request) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr(), true
	}
	a, err := netip.ParseAddr(r.RemoteAddr)
	return a, err == nil
}

func serverAddr(r *http.Request) (netip.Addr, bool) {
	switch a := r.Context().Value(http.LocalAddrContextKey).(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr(), true
	case net.Addr:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// downstreamIP implements downstream_client_ip_addr and
// downstream_server_ip_addr, which differ only in the address they report.
// The fastly_http_downstream form takes the request handle first; the
// legacy handle-less fastly_http_req form asks about the current client
// request. Either way: (..., addr_out[16], nwritten_out).
func downstreamIP(addrOf func(*http.Request) (netip.Addr, bool), withHandle bool) hostFn {
	return func(c *call) status {
		ds, arg := c.inst.cur, 0
		if withHandle {
			var st status
			if ds, st = dsOf(c, c.u32(0)); st != stOK {
				return st
			}
			arg = 1
		}
		if ds == nil {
			return stNone
		}
		a, ok := addrOf(ds.r)
		if !ok {
			return stNone
		}
		return putIP(c, a, c.u32(arg), c.u32(arg+1))
	}
}

// downstream_client_request_id(req, out, max_len, nwritten_out): 32 hex
// digits, unique per client request of this POP.
func dsRequestID(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	id := requestIDHex(ds.id)
	return writeOut(c, id[:], c.u32(1), c.u32(2), c.u32(3))
}

// requestIDHex formats a request or sandbox id as Fastly does: 32 hex
// digits.
func requestIDHex(id uint64) [32]byte {
	var buf [32]byte
	for i := range buf {
		buf[i] = '0'
	}
	v := strconv.AppendUint(nil, id, 16)
	copy(buf[32-len(v):], v)
	return buf
}

func (ds *downstream) originalNames() []string {
	if !ds.origNamesSet {
		ds.origNamesSet = true
		names := make([]string, 0, len(ds.r.Header)+1)
		if ds.r.Host != "" {
			names = append(names, "host")
		}
		for k := range ds.r.Header {
			names = append(names, k)
		}
		sort.Strings(names[min(1, len(names)):])
		ds.origNames = names
	}
	return ds.origNames
}

// downstream_original_header_names(req, buf, buf_len, cursor, ending_out, nwritten_out)
func dsOriginalHeaderNames(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	names := ds.originalNames()
	return writeMulti(c, len(names), func(i int) string { return names[i] }, true,
		c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5))
}

// downstream_original_header_count(req, count_out)
func dsOriginalHeaderCount(c *call) status {
	ds, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	n := len(ds.r.Header)
	if ds.r.Host != "" {
		n++
	}
	if !c.putU32(c.u32(1), uint32(n)) {
		return stInval
	}
	return stOK
}

// dsAbsent answers metadata the local POP does not have (TLS details,
// fingerprints, compliance region): the handle is validated, then $none,
// which is what Fastly reports for a value that is absent.
func dsAbsent(c *call) status {
	_, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	return stNone
}

// dsFalse answers boolean metadata that is false locally (ddos detected,
// fastly key valid): (req, out u32).
func dsFalse(c *call) status {
	_, st := dsOf(c, c.u32(0))
	if st != stOK {
		return st
	}
	if !c.putU32(c.u32(1), 0) {
		return stInval
	}
	return stOK
}
