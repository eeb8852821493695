package pop

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// Defaults mirroring Fastly's backend timeouts.
const (
	defaultConnectTimeout      = 1 * time.Second
	defaultFirstByteTimeout    = 15 * time.Second
	defaultBetweenBytesTimeout = 10 * time.Second
)

// backend is a resolved [local_server.backends] entry, or a dynamic
// backend a guest registered (see dynbackend.go).
type backend struct {
	name string
	cfg  fastlytoml.Backend
	// base is scheme://host[:port]/prefix/ : request paths are appended
	// to it (the backend url's path is a prefix, as in Viceroy).
	base                string
	connectTimeout      time.Duration
	firstByteTimeout    time.Duration
	betweenBytesTimeout time.Duration
	dynamic             bool
	// tlsMin and tlsMax are the $tls_version bounds the backend's TLS
	// connections use (only meaningful for https backends).
	tlsMin, tlsMax uint32
	// transport, if set, replaces the shared one: a dynamic backend with
	// its own TLS settings or connection pooling turned off.
	transport *http.Transport
}

func (be *backend) isTLS() bool { return be.cfg.URL.Scheme == "https" }

func newBackends(m *fastlytoml.Manifest) map[string]*backend {
	out := map[string]*backend{}
	if m == nil {
		return out
	}
	for name, b := range m.LocalServer.Backends {
		prefix := b.URL.EscapedPath()
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		be := &backend{
			name:             name,
			cfg:              b,
			base:             b.URL.Scheme + "://" + b.URL.Host + prefix,
			connectTimeout:   b.ConnectTimeout,
			firstByteTimeout: b.FirstByteTimeout,
		}
		if be.connectTimeout <= 0 {
			be.connectTimeout = defaultConnectTimeout
		}
		if be.firstByteTimeout <= 0 {
			be.firstByteTimeout = defaultFirstByteTimeout
		}
		be.betweenBytesTimeout = b.BetweenBytesTimeout
		if be.betweenBytesTimeout <= 0 {
			be.betweenBytesTimeout = defaultBetweenBytesTimeout
		}
		// Go's TLS client defaults, which is what the shared transport
		// negotiates with.
		be.tlsMin, be.tlsMax = tls12, tls13
		out[name] = be
	}
	return out
}

type connectTimeoutKey struct{}

// newTransport is the one keep-alive transport all backend sends share.
// Per-backend connect timeouts travel in the request context.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: defaultConnectTimeout, KeepAlive: 30 * time.Second}
			if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok {
				d.Timeout = t
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Fastly does not add Accept-Encoding or decompress on its own;
		// see auto_decompress_response_set.
		DisableCompression: true,
	}
}

// hopHeaders are connection-specific and never forwarded to a backend.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Host": true,
}

// pendingReq is the object behind a pending-request handle: a backend
// request running on its own goroutine, so polling never blocks the guest.
type pendingReq struct {
	backend *backend
	done    chan struct{}
	cancel  context.CancelFunc

	// Set by the sending goroutine before done is closed.
	resp *http.Response
	err  error
	tag  uint32

	mu        sync.Mutex
	abandoned bool
}

// abandon cancels the request and frees its response, if any.
func (p *pendingReq) abandon() {
	p.mu.Lock()
	p.abandoned = true
	p.mu.Unlock()
	p.cancel()
	select {
	case <-p.done:
		if p.resp != nil {
			p.resp.Body.Close()
		}
	default:
	}
}

// startSend validates the send and starts it. body may be nil. With
// streaming the guest keeps the body handle and writes it while the
// request is in flight.
func (inst *instance) startSend(ro *reqObj, b *body, beName string, streaming bool) (*pendingReq, status, uint32) {
	s := inst.s
	be, ok := inst.backend(beName)
	if !ok {
		return nil, stInval, sendErrDestinationNotFound
	}
	if headTooLarge(ro) {
		return nil, stHTTPHeadTooLarge, sendErrUninitialized
	}
	u, err := url.Parse(ro.uri)
	if err != nil {
		return nil, stInval, sendErrURIInvalid
	}
	rest := u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		rest += "?" + u.RawQuery
	}
	target, err := url.Parse(be.base + strings.TrimPrefix(rest, "/"))
	if err != nil {
		return nil, stInval, sendErrURIInvalid
	}

	ctx, cancel := context.WithCancel(context.WithValue(inst.ctx, connectTimeoutKey{}, be.connectTimeout))
	req := &http.Request{
		Method:     ro.method,
		URL:        target,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(ro.header)),
	}
	req = req.WithContext(ctx)
	ro.header.toHTTP(req.Header, func(k string) bool {
		if hopHeaders[k] {
			return true
		}
		if !ro.manualFraming && (k == "Content-Length" || k == "Transfer-Encoding") {
			return true
		}
		return false
	})
	// Host: the backend's override_host, else the request's own Host
	// header, else the authority of its URI (Viceroy's rule).
	switch {
	case be.cfg.OverrideHost != "":
		req.Host = be.cfg.OverrideHost
	case len(ro.header.get("Host")) > 0:
		req.Host = ro.header.get("Host")[0]
	case u.Host != "":
		req.Host = u.Host
	default:
		req.Host = target.Host
	}
	if ro.manualFraming {
		if cl := req.Header.Get("Content-Length"); cl != "" {
			req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
		}
	}

	if b != nil {
		if streaming {
			b.makeStreaming()
			req.ContentLength = -1
		} else {
			b.finish(nil)
			// A body with trailers must go chunked to carry them.
			if n, ok := b.knownLength(); ok && !ro.manualFraming && !b.hasTrailers() {
				req.ContentLength = n
			} else if !ro.manualFraming {
				req.ContentLength = -1
			}
		}
		if n, ok := b.knownLength(); ok && n == 0 && !streaming && !b.hasTrailers() {
			req.Body = http.NoBody
		} else {
			br := &bodyReader{b: b, ctx: ctx}
			if req.ContentLength < 0 {
				// A chunked body can end with trailers; bodyReader
				// fills this map in when it reaches the end, before
				// net/http writes the trailer section.
				req.Trailer = http.Header{}
				br.trailer = req.Trailer
			}
			req.Body = br
		}
	}

	p := &pendingReq{backend: be, done: make(chan struct{}), cancel: cancel}
	s.m.backendSends.Add(1)
	go s.roundTrip(p, req, ro.autoGzip)
	return p, stOK, 0
}

// roundTrip performs the request with the backend's first-byte timeout.
func (s *Server) roundTrip(p *pendingReq, req *http.Request, autoGzip bool) {
	timedOut := make(chan struct{})
	timer := time.AfterFunc(p.backend.firstByteTimeout, func() { close(timedOut); p.cancel() })
	rt := s.transport
	if p.backend.transport != nil {
		rt = p.backend.transport
	}
	resp, err := rt.RoundTrip(req)
	timer.Stop()
	if err != nil {
		p.err = err
		select {
		case <-timedOut:
			p.tag = sendErrHTTPResponseTimeout
		default:
			p.tag = classifySendError(err)
		}
		s.m.backendErrors.Add(1)
		s.log.Warn("backend request failed", "backend", p.backend.name, "url", req.URL.String(), "err", err)
	} else {
		if autoGzip {
			if ce := resp.Header.Get("Content-Encoding"); ce == "gzip" || ce == "x-gzip" {
				resp.Header.Del("Content-Encoding")
				resp.Header.Del("Content-Length")
				resp.ContentLength = -1
				resp.Body = &gunzipBody{src: resp.Body}
			}
		}
		// Cancelling the context once the body is done releases it. The
		// wrapper also enforces the between-bytes timeout and hands the
		// response's trailers to the body once it has been read.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: p.cancel, resp: resp, idle: p.backend.betweenBytesTimeout}
		p.resp = resp
	}
	close(p.done)
	p.mu.Lock()
	abandoned := p.abandoned
	p.mu.Unlock()
	if abandoned && resp != nil {
		resp.Body.Close()
	}
}

func classifySendError(err error) uint32 {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return sendErrDNSError
	case errors.Is(err, syscall.ECONNREFUSED):
		return sendErrConnectionRefused
	case errors.As(err, &opErr) && opErr.Op == "dial":
		if opErr.Timeout() {
			return sendErrConnectionTimeout
		}
		return sendErrConnectionRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return sendErrConnectionTerminate
	case errors.Is(err, context.DeadlineExceeded):
		return sendErrHTTPResponseTimeout
	case strings.Contains(err.Error(), "certificate"):
		return sendErrTLSCertificateError
	}
	return sendErrHTTPProtocolError
}

// cancelOnClose is a backend response body. Reading it enforces the
// backend's between-bytes timeout (a read that waits longer than idle for
// data cancels the request, as Fastly's between_bytes_timeout does), and
// once it has reached EOF its trailers are available through Trailer.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
	resp   *http.Response
	idle   time.Duration
	timer  *time.Timer
}

func (c *cancelOnClose) Read(p []byte) (int, error) {
	if c.idle > 0 {
		if c.timer == nil {
			c.timer = time.AfterFunc(c.idle, c.cancel)
		} else {
			c.timer.Reset(c.idle)
		}
	}
	n, err := c.ReadCloser.Read(p)
	if c.timer != nil {
		c.timer.Stop()
	}
	return n, err
}

// Trailer implements trailerSource: net/http fills resp.Trailer in when
// the body reaches EOF.
func (c *cancelOnClose) Trailer() http.Header { return c.resp.Trailer }

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.cancel()
	return err
}

type gunzipBody struct {
	src io.ReadCloser
	zr  *gzip.Reader
}

func (g *gunzipBody) Read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.src)
		if err != nil {
			return 0, err
		}
		g.zr = zr
	}
	return g.zr.Read(p)
}

func (g *gunzipBody) Close() error { return g.src.Close() }

// complete turns a finished pendingReq into response and body handles.
func (inst *instance) complete(p *pendingReq) (rh, bh uint32) {
	resp := p.resp
	ro := &respObj{
		status:  resp.StatusCode,
		version: versionOf(resp.ProtoMajor, resp.ProtoMinor),
		header:  fromHTTP(resp.Header),
	}
	if ap, err := netip.ParseAddrPort(p.backend.cfg.URL.Host); err == nil {
		ro.remote = ap
	} else if a, err := netip.ParseAddr(p.backend.cfg.URL.Hostname()); err == nil {
		ro.remote = netip.AddrPortFrom(a, uint16(p.backend.cfg.Port()))
	}
	n := resp.ContentLength
	if resp.Body == http.NoBody {
		n = 0
	}
	b := newReaderBody(resp.Body, n)
	if n == 0 {
		resp.Body.Close()
	}
	return inst.tab.add(ro, inst.gen, false), inst.tab.add(b, inst.gen, false)
}

// putSendError fills a $send_error_detail (tag u32, mask u32, ...) if ptr
// is valid. Only the tag is reported, so the mask is cleared.
func putSendError(c *call, ptr uint32, tag uint32) {
	if _, ok := c.bytes(ptr, 8); ok {
		c.putU32(ptr, tag)
		c.putU32(ptr+4, 0)
	}
}

// sendArgs resolves the (req, body, backend_ptr, backend_len) prefix the
// send hostcalls share; the request and (non-streaming) body are consumed.
func (c *call) sendArgs(streaming bool) (*pendingReq, status, uint32) {
	inst := c.inst
	rh, bh := c.u32(0), c.u32(1)
	ro, ok1 := inst.getReq(rh)
	b, ok2 := inst.getBody(bh)
	if !ok1 || !ok2 {
		return nil, stBadf, sendErrInternalError
	}
	if b.streaming {
		return nil, stInval, sendErrInternalError
	}
	name, ok := c.argBytes(2)
	if !ok {
		return nil, stInval, sendErrInternalError
	}
	if _, known := inst.backend(string(name)); !known {
		return nil, stInval, sendErrDestinationNotFound
	}
	if !inst.countSend() {
		// Not a failure of the send itself, so no detail: the guest
		// sees the status ("limit exceeded").
		return nil, stLimitExceeded, sendErrUninitialized
	}
	p, st, tag := inst.startSend(ro, b, string(name), streaming)
	if st != stOK {
		return nil, st, tag
	}
	inst.tab.free(rh)
	if !streaming {
		inst.tab.free(bh)
	}
	return p, stOK, 0
}

// send_async and send_async_streaming(req, body, backend_ptr, backend_len,
// pending_out): the same call, except that a streaming send leaves the
// body open for the guest to keep writing.
func reqSendAsync(streaming bool) hostFn {
	return func(c *call) status {
		if _, ok := c.bytes(c.u32(4), 4); !ok {
			return stInval
		}
		p, st, _ := c.sendArgs(streaming)
		if st != stOK {
			return st
		}
		return c.putHandle(c.u32(4), c.inst.tab.add(p, c.inst.gen, false))
	}
}

// send_async_v2(req, body, backend_ptr, backend_len, streaming, pending_out)
func reqSendAsyncV2(c *call) status {
	if _, ok := c.bytes(c.u32(5), 4); !ok {
		return stInval
	}
	p, st, _ := c.sendArgs(c.u32(4) != 0)
	if st != stOK {
		return st
	}
	return c.putHandle(c.u32(5), c.inst.tab.add(p, c.inst.gen, false))
}

// send (v1): (req, body, backend_ptr, backend_len, resp_out, body_out)
func reqSend(c *call) status { return sendSync(c, 0, 4) }

// send_v2 / send_v3: (req, body, backend_ptr, backend_len, err_detail, resp_out, body_out)
func reqSendV2(c *call) status { return sendSync(c, c.u32(4), 5) }

// sendSync starts a send and waits for it; the guest is blocked meanwhile
// (that is the API's contract), other instances are not.
func sendSync(c *call, detail uint32, outIdx int) status {
	if _, ok := c.bytes(c.u32(outIdx), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(outIdx+1), 4); !ok {
		return stInval
	}
	p, st, tag := c.sendArgs(false)
	if st != stOK {
		if detail != 0 {
			putSendError(c, detail, tag)
		}
		return st
	}
	return waitPending(c, p, detail, c.u32(outIdx), c.u32(outIdx+1))
}

func waitPending(c *call, p *pendingReq, detail, respOut, bodyOut uint32) status {
	select {
	case <-p.done:
	case <-c.inst.ctx.Done():
		p.abandon()
		if detail != 0 {
			putSendError(c, detail, sendErrInternalError)
		}
		return stError
	}
	return finishPending(c, p, detail, respOut, bodyOut)
}

func finishPending(c *call, p *pendingReq, detail, respOut, bodyOut uint32) status {
	if p.err != nil {
		if detail != 0 {
			putSendError(c, detail, p.tag)
		}
		return stError
	}
	rh, bh := c.inst.complete(p)
	c.putU32(respOut, rh)
	c.putU32(bodyOut, bh)
	if detail != 0 {
		putSendError(c, detail, sendErrOK)
	}
	return stOK
}

// pending_req_poll_v2(h, err_detail, is_done_out, resp_out, body_out):
// never blocks.
func reqPendingPollV2(c *call) status { return pendingPoll(c, c.u32(1), 2) }

// pending_req_poll (v1): (h, is_done_out, resp_out, body_out)
func reqPendingPoll(c *call) status { return pendingPoll(c, 0, 1) }

func pendingPoll(c *call, detail uint32, outIdx int) status {
	inst := c.inst
	h := c.u32(0)
	p, ok := lookup[*pendingReq](&inst.tab, h)
	if !ok {
		return stBadf
	}
	doneOut, respOut, bodyOut := c.u32(outIdx), c.u32(outIdx+1), c.u32(outIdx+2)
	for _, ptr := range []uint32{doneOut, respOut, bodyOut} {
		if _, ok := c.bytes(ptr, 4); !ok {
			return stInval
		}
	}
	select {
	case <-p.done:
	default:
		c.putU32(doneOut, 0)
		c.putU32(respOut, invalidHandle)
		c.putU32(bodyOut, invalidHandle)
		return stOK
	}
	inst.tab.free(h)
	c.putU32(doneOut, 1)
	return finishPending(c, p, detail, respOut, bodyOut)
}

// pending_req_wait_v2(h, err_detail, resp_out, body_out)
func reqPendingWaitV2(c *call) status { return pendingWait(c, c.u32(1), 2) }

// pending_req_wait (v1): (h, resp_out, body_out)
func reqPendingWait(c *call) status { return pendingWait(c, 0, 1) }

func pendingWait(c *call, detail uint32, outIdx int) status {
	p, ok := take[*pendingReq](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	respOut, bodyOut := c.u32(outIdx), c.u32(outIdx+1)
	if _, ok := c.bytes(respOut, 4); !ok {
		p.abandon()
		return stInval
	}
	if _, ok := c.bytes(bodyOut, 4); !ok {
		p.abandon()
		return stInval
	}
	return waitPending(c, p, detail, respOut, bodyOut)
}

// --- fastly_backend: read-only facts about static and dynamic backends ---

// backendHostcalls is the fastly_backend module: every call takes the
// backend name first and answers $inval for an unknown backend (as
// Viceroy does), except exists.
func backendHostcalls() map[string]hostDef {
	u32 := func(f func(be *backend) (uint32, status)) hostDef { return hostDef{i32s(3), backendU32(f)} }
	ms := func(d time.Duration) uint32 { return uint32(d.Milliseconds()) }
	return map[string]hostDef{
		"exists": {i32s(3), backendExists},
		// The local POP runs no health checks: $unknown, or what the
		// manifest's health key says (Viceroy's rule).
		"is_healthy": u32(func(be *backend) (uint32, status) { return backendHealth[be.cfg.Health], stOK }),
		"is_dynamic": u32(func(be *backend) (uint32, status) { return b2u(be.dynamic), stOK }),
		"is_ssl":     u32(func(be *backend) (uint32, status) { return b2u(be.isTLS()), stOK }),
		"get_port":   u32(func(be *backend) (uint32, status) { return uint32(be.cfg.Port()), stOK }),
		"get_connect_timeout_ms": u32(func(be *backend) (uint32, status) {
			return ms(be.connectTimeout), stOK
		}),
		"get_first_byte_timeout_ms": u32(func(be *backend) (uint32, status) {
			return ms(be.firstByteTimeout), stOK
		}),
		"get_between_bytes_timeout_ms": u32(func(be *backend) (uint32, status) {
			return ms(be.betweenBytesTimeout), stOK
		}),
		// TLS versions only exist for TLS backends; for others the
		// value is absent.
		"get_ssl_min_version": u32(func(be *backend) (uint32, status) {
			if !be.isTLS() {
				return 0, stNone
			}
			return be.tlsMin, stOK
		}),
		"get_ssl_max_version": u32(func(be *backend) (uint32, status) {
			if !be.isTLS() {
				return 0, stNone
			}
			return be.tlsMax, stOK
		}),
		"get_host": {i32s(5), backendString(func(be *backend) (string, bool) { return be.cfg.URL.Hostname(), true })},
		"get_override_host": {i32s(5), backendString(func(be *backend) (string, bool) {
			return be.cfg.OverrideHost, be.cfg.OverrideHost != ""
		})},
	}
}

// backendHealth maps fastlytoml's health values to $backend_health.
var backendHealth = map[string]uint32{"unknown": 0, "healthy": 1, "unhealthy": 2}

func b2u(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}

func backendByArg(c *call) (*backend, status) {
	name, ok := c.argBytes(0)
	if !ok {
		return nil, stInval
	}
	be, ok := c.inst.backend(string(name))
	if !ok {
		return nil, stInval
	}
	return be, stOK
}

// exists(name_ptr, name_len, exists_out)
func backendExists(c *call) status {
	name, ok := c.argBytes(0)
	if !ok {
		return stInval
	}
	_, found := c.inst.backend(string(name))
	if !c.putU32(c.u32(2), b2u(found)) {
		return stInval
	}
	return stOK
}

// backendU32 answers the (name_ptr, name_len, u32_out) queries.
func backendU32(f func(be *backend) (uint32, status)) hostFn {
	return func(c *call) status {
		be, st := backendByArg(c)
		if st != stOK {
			return st
		}
		v, st := f(be)
		if st != stOK {
			return st
		}
		if !c.putU32(c.u32(2), v) {
			return stInval
		}
		return stOK
	}
}

// backendString answers the (name_ptr, name_len, buf, buf_len, nwritten_out) queries.
func backendString(f func(be *backend) (string, bool)) hostFn {
	return func(c *call) status {
		be, st := backendByArg(c)
		if st != stOK {
			return st
		}
		v, ok := f(be)
		if !ok {
			return stNone
		}
		return writeOut(c, v, c.u32(2), c.u32(3), c.u32(4))
	}
}
