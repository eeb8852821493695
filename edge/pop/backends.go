package pop

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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
	"github.com/edgepixel/edgepixel/shared/redact"
)

// Defaults mirroring Fastly's backend timeouts.
const (
	defaultConnectTimeout      = 1 * time.Second
	defaultFirstByteTimeout    = 15 * time.Second
	defaultBetweenBytesTimeout = 10 * time.Second
)

// backend is a resolved [local_server.backends] entry, or a dynamic
// backend a guest registered (register_dynamic_backend).
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

// target is where a request for u goes through the backend: u's path and
// query after the backend URL's path, which is a prefix (as in Viceroy);
// u's scheme and host only name the request.
func (be *backend) target(u *url.URL) (*url.URL, error) {
	rest := u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		rest += "?" + u.RawQuery
	}
	return url.Parse(be.base + strings.TrimPrefix(rest, "/"))
}

// host is the Host a request for u sent to target through the backend
// carries: the backend's override_host, else the request's own Host
// header (header, "" when it has none), else the authority of its URI
// (Viceroy's rule).
func (be *backend) host(header string, u, target *url.URL) string {
	switch {
	case be.cfg.OverrideHost != "":
		return be.cfg.OverrideHost
	case header != "":
		return header
	case u.Host != "":
		return u.Host
	}
	return target.Host
}

// Probe sends a request to the static backend name (a [local_server.backends]
// entry) as a guest's send of the same request would go: rawURL's path and
// query after the backend URL's prefix, its host as the Host header unless
// the backend overrides it, the backend's connect and first-byte timeouts
// and TLS settings. Its outcome is recorded with the guests' requests
// (Degraded, edgepixel_pop_backend_failing). It returns the response's
// status and the first probeBody bytes of its body (the rest is read and
// discarded), or the error when no response came; an unknown backend or a
// URL that does not parse is an error too. A host checks with it what its
// guest depends on (edgepixel-pop: that the aggregator takes the module's
// secret) before a visitor's event does.
func (s *Server) Probe(ctx context.Context, name, method, rawURL string, header http.Header, body []byte) (status int, answer []byte, err error) {
	be, ok := s.backends[name]
	if !ok {
		return 0, nil, fmt.Errorf("no backend %q in [local_server.backends]", name)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, nil, err
	}
	target, err := be.target(u)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, connectTimeoutKey{}, be.connectTimeout), be.firstByteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if header != nil {
		req.Header = header.Clone()
	}
	req.Host = be.host(header.Get("Host"), u, target)
	resp, err := s.send(be, req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, _ = io.ReadAll(io.LimitReader(resp.Body, probeBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, answer, nil
}

// probeBody is how much of an answer's body Probe returns.
const probeBody = 4 << 10

// newBackends resolves m's backends. One whose TLS needs settings of its
// own (ca_certificate's roots, cert_host's name) gets a clone of shared
// with them, as a dynamic backend does (register_dynamic_backend);
// before, a static backend's ca_certificate was read and checked, then
// ignored (a tester's self-signed aggregator was refused as unknown
// authority).
func newBackends(m *fastlytoml.Manifest, shared *http.Transport) map[string]*backend {
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
		if be.isTLS() && (len(b.CACertPEM) > 0 || b.CertHost != "") {
			tc := &tls.Config{ServerName: b.CertHost}
			if len(b.CACertPEM) > 0 {
				tc.RootCAs = x509.NewCertPool()
				tc.RootCAs.AppendCertsFromPEM(b.CACertPEM) // fastlytoml checked it holds one
			}
			be.transport = shared.Clone()
			be.transport.TLSClientConfig = tc
		}
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
	target, err := be.target(u)
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
	host := ""
	if h := ro.header.get("Host"); len(h) > 0 {
		host = h[0]
	}
	req.Host = be.host(host, u, target)
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

// send round-trips req through be's transport (its own TLS settings, else
// the shared one) and records the outcome for Degraded and
// edgepixel_pop_backend_failing: a guest's request and a host's Probe
// count alike.
func (s *Server) send(be *backend, req *http.Request) (*http.Response, error) {
	rt := s.transport
	if be.transport != nil {
		rt = be.transport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		s.backendFails.record(be.name, 0, err)
		return nil, err
	}
	s.backendFails.record(be.name, resp.StatusCode, nil)
	return resp, nil
}

// roundTrip performs the request with the backend's first-byte timeout.
func (s *Server) roundTrip(p *pendingReq, req *http.Request, autoGzip bool) {
	timedOut := make(chan struct{})
	timer := time.AfterFunc(p.backend.firstByteTimeout, func() { close(timedOut); p.cancel() })
	resp, err := s.send(p.backend, req)
	timer.Stop()
	if err != nil {
		select {
		case <-timedOut:
			// The timer cancels the request, so the transport says
			// "context canceled": say which timeout it was.
			err = fmt.Errorf("no answer within the backend's first-byte timeout (%v): %w", p.backend.firstByteTimeout, err)
			p.tag = sendErrHTTPResponseTimeout
		default:
			p.tag = classifySendError(err)
		}
		p.err = err
		s.m.backendErrors.Add(1)
		s.log.Warn("backend request failed", "backend", p.backend.name, "url", redact.URL(req.URL.String()), "err", err)
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

// httpState is the per-instance state of the HTTP hostcalls that outlives
// a single hostcall: the dynamic backends the guest registered, how many
// backend requests the current execution has made, and the outstanding
// next_request promise.
type httpState struct {
	// dynamic backends live as long as the instance (Viceroy keeps them
	// per sandbox too): a ServeMany guest registers a backend once and
	// uses it for every request it serves.
	dynamic map[string]*backend

	sendsGen uint32 // the generation sends counts for
	sends    int

	promise uint32 // handle of the outstanding next_request promise, 0 if none
}

// $tls_version values.
const (
	tls10 = 0
	tls11 = 1
	tls12 = 2
	tls13 = 3
)

// backend resolves a backend name: static backends first, then the
// dynamic ones of this instance (names never collide, see
// register_dynamic_backend).
func (inst *instance) backend(name string) (*backend, bool) {
	if be, ok := inst.s.backends[name]; ok {
		return be, true
	}
	be, ok := inst.http.dynamic[name]
	return be, ok
}
