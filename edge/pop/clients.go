package pop

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client connections. The POP faces the internet, so what a client (or a
// crowd of them) can make it hold is bounded by configuration, not by what
// strangers send, and every phase of a request has a deadline:
//
//   - connections: at most MaxConns open, MaxConnsPerAddr per client IP.
//     When the total is reached, the connection that has waited longest
//     without a request in progress (an idle keep-alive connection, or one
//     that has not finished sending its first request head) is closed to
//     make room, so a crowd of idle connections never locks out a new
//     visitor; only when every connection has a request in progress is the
//     new one refused. A refused connection gets a 503 (cleartext) or is
//     closed (TLS). accept failing for lack of file descriptors (EMFILE)
//     closes the longest-waiting connection too and tries again, backing
//     off when there is none, so the accept loop neither spins nor dies.
//   - request head: HeaderTimeout to arrive; net/http refuses a head larger
//     than Fastly's URL and header section limits allow while reading it
//     (431), so a client cannot make the POP buffer more (maxHeadBytes).
//   - keep-alive: IdleTimeout between requests.
//   - request body: read whole before any guest sees it, with BodyTimeout
//     for all of it and BodyIdleTimeout between reads, into pooled buffers
//     that grow as bytes arrive; MaxRequestBody per request (413 beyond),
//     BodyMemory for all of them (reqbody.go). A slow or stalled sender
//     costs a goroutine and a buffer, never a guest instance.
//   - response: each write must complete within WriteTimeout.
//
// A request whose framing is ambiguous (Content-Length with
// Transfer-Encoding, or Transfer-Encoding on HTTP/1.0) is answered and its
// connection closed, as RFC 9112 sections 6.1 and 6.3 require (framing.go).
//
// Every refusal, eviction and timeout is counted by reason in /metrics.

// ClientLimits bounds what clients can make the POP hold. In each field 0
// means the default; for the counts and durations a negative value means
// none.
type ClientLimits struct {
	MaxConns        int           // open client connections; 0 = 4096 lowered to fit RLIMIT_NOFILE
	MaxConnsPerAddr int           // open connections per client IP address; 0 = 256
	HeaderTimeout   time.Duration // to receive a request head; 0 = 10s
	IdleTimeout     time.Duration // a kept-alive connection waits this long for its next request; 0 = 30s
	BodyTimeout     time.Duration // to receive a whole request body; 0 = 30s
	BodyIdleTimeout time.Duration // between two reads of a request body; 0 = 10s
	WriteTimeout    time.Duration // for each write of a response to the client; 0 = 30s
	MaxRequestBody  int64         // bytes per request body; 0 = 1 MiB; at least 64 KiB; larger bodies get 413
	BodyMemory      int64         // bytes of request bodies held at once, all clients together; 0 = 64 MiB; at least MaxRequestBody
}

// Defaults of ClientLimits.
const (
	DefaultMaxConns        = 4096
	DefaultMaxConnsPerAddr = 256
	DefaultHeaderTimeout   = 10 * time.Second
	DefaultIdleTimeout     = 30 * time.Second
	DefaultBodyTimeout     = 30 * time.Second
	DefaultBodyIdleTimeout = 10 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	DefaultMaxRequestBody  = 1 << 20
	DefaultBodyMemory      = 64 << 20
	// MinMaxRequestBody is the least MaxRequestBody can be: what a
	// browser's sendBeacon may send.
	MinMaxRequestBody = 64 << 10
)

// maxHeadBytes is http.Server.MaxHeaderBytes: a request head (request line
// and header section) of Fastly's maximum URL and header section fits, with
// room for the method and version, and nothing much larger is read.
// net/http reads up to MaxHeaderBytes+4096 before answering 431, so the
// 4096 is taken off here. Heads within the bound but beyond Fastly's limits
// get their exact answer (414 or 431) from overLimits.
const maxHeadBytes = maxURLLen + maxHeaderSection + requestLineSlack - netHTTPHeadSlack

const (
	requestLineSlack = 64   // method, spaces, "HTTP/1.1", CRLFs
	netHTTPHeadSlack = 4096 // what net/http adds to MaxHeaderBytes (initialReadLimitSize)
)

// applyClientLimits fills in the defaults; none is stored as 0 (durations)
// or -1 (counts).
func (s *Server) applyClientLimits(l ClientLimits) {
	dur := func(d, def time.Duration) time.Duration {
		if d < 0 {
			return 0
		}
		return cmp.Or(d, def)
	}
	count := func(n, def int) int {
		if n < 0 {
			return -1
		}
		return cmp.Or(n, def)
	}
	s.headerTimeout = dur(l.HeaderTimeout, DefaultHeaderTimeout)
	s.keepAlive = dur(l.IdleTimeout, DefaultIdleTimeout)
	s.bodyTimeout = dur(l.BodyTimeout, DefaultBodyTimeout)
	s.bodyIdleTimeout = dur(l.BodyIdleTimeout, DefaultBodyIdleTimeout)
	s.writeTimeout = dur(l.WriteTimeout, DefaultWriteTimeout)
	s.maxBody = max(cmp.Or(l.MaxRequestBody, DefaultMaxRequestBody), MinMaxRequestBody)
	// A body at the limit (and the byte that shows it is over) must fit
	// in whole chunks (reqbody.go).
	s.bodyMemory = max(cmp.Or(l.BodyMemory, DefaultBodyMemory), (s.maxBody/bodyChunkSize+1)*bodyChunkSize)
	s.conns.maxPerAddr = count(l.MaxConnsPerAddr, DefaultMaxConnsPerAddr)
	s.conns.max = count(l.MaxConns, 0)
	if s.conns.max == 0 {
		s.conns.max = DefaultMaxConns
		if fit := connsForFileLimit(); fit > 0 && fit < s.conns.max {
			s.conns.max = fit
		}
	}
}

// connsForFileLimit is how many client connections fit in the open-file
// limit (which Go raises to the hard limit at start) with room left for
// everything else the POP opens: listeners, backend connections, log
// files. 0: unknown.
func connsForFileLimit() int {
	n := openFileLimit()
	if n <= 0 {
		return 0
	}
	reserve := min(max(64, n/8), 1024)
	return max(n-reserve, 16)
}

// ConfigureHTTPServer sets what srv must have for the client limits to
// hold: the handler (if unset), the head size and timeouts, and the
// connection tracking hooks Listener relies on. Serve srv on a listener
// from Listener.
func (s *Server) ConfigureHTTPServer(srv *http.Server) {
	if srv.Handler == nil {
		srv.Handler = s
	}
	srv.MaxHeaderBytes = maxHeadBytes
	srv.ReadHeaderTimeout = s.headerTimeout
	srv.IdleTimeout = s.keepAlive
	// The body and write deadlines are per read and per write (reqbody.go,
	// writeResponse), not net/http's whole-request ones, which would also
	// cut off a long stream that makes progress.
	srv.ReadTimeout, srv.WriteTimeout = 0, 0
	prevState, prevCtx := srv.ConnState, srv.ConnContext
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.conns.connState(c, st)
		if prevState != nil {
			prevState(c, st)
		}
	}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if cc := asClientConn(c); cc != nil {
			ctx = context.WithValue(ctx, clientConnKey{}, cc)
		}
		return ctx
	}
}

// Listener wraps ln to enforce the connection limits; tls says srv serves
// TLS on it (a refused connection then gets no 503, which it could not
// read, and framing is judged without looking at the bytes). The server
// must be configured by ConfigureHTTPServer.
func (s *Server) Listener(ln net.Listener, tls bool) net.Listener {
	return &clientListener{Listener: ln, t: &s.conns, tls: tls, done: make(chan struct{})}
}

// connTable tracks the open client connections of all listeners.
type connTable struct {
	max, maxPerAddr int // -1: none

	// Behind a load balancer (clientaddr.go): trusted proxies are exempt
	// from maxPerAddr, and with the PROXY protocol their connections
	// start with a PROXY header, read within headerTimeout.
	trust         *proxyTrust
	headerTimeout time.Duration

	mu      sync.Mutex
	open    int
	perAddr map[netip.Addr]int
	waiting list.List // *clientConn with no request in progress, longest waiting first

	lingering atomic.Int32 // refused connections being answered

	accepted     atomic.Uint64
	refused      [numRefusals]atomic.Uint64
	evicted      [numRefusals]atomic.Uint64 // by what made room necessary
	acceptErrors [2]atomic.Uint64           // fd limit, other
	timeouts     [numPhases]atomic.Uint64
	rejects      [numRejects]atomic.Uint64
	hitRejects   [numRejects]atomic.Uint64 // of rejects, those on a Config.HitPath
}

// Why a connection was refused, or another was closed to make room.
const (
	refusalMaxConns = iota
	refusalPerAddr
	refusalFDLimit
	numRefusals
)

var refusalNames = [numRefusals]string{"max_conns", "max_conns_per_addr", "fd_limit"}

// The phases of a request that have deadlines.
const (
	phaseIdle = iota
	phaseHeader
	phaseBody
	phaseWrite
	numPhases
)

var phaseNames = [numPhases]string{"idle", "header", "body", "write"}

// Requests refused, or connections closed after the answer, by reason
// (the metric's label). net/http's own refusals, given before any handler
// runs, are recognised on cleartext connections only.
const (
	rejectURLTooLong     = iota // 414
	rejectHeaderTooLarge        // 431, by overLimits or by net/http while reading
	rejectBodyTooLarge          // 413
	rejectBodyMemory            // 503: all clients' bodies hold BodyMemory
	rejectBodyIncomplete        // 400, 408 or none: malformed, not sent in time, or the client went away
	rejectFraming               // answered, then the connection closed (framing.go)
	rejectBadRequest            // 400 from net/http: a malformed head
	rejectUnsupportedTE         // 501 from net/http: a transfer coding other than chunked
	rejectOtherHTTP             // another answer net/http gave by itself
	rejectProxyHeader           // closed: a trusted proxy's PROXY header missing or malformed (proxyproto.go)
	numRejects
)

var rejectNames = [numRejects]string{"url_too_long", "header_too_large", "body_too_large", "body_memory",
	"body_incomplete", "ambiguous_framing", "bad_request", "unsupported_transfer_encoding", "other", "proxy_header"}

// ClientRejects returns, by reason (the label of
// edgepixel_pop_client_rejects_total), how many client requests the
// server refused, or whose connection it closed after the answer, since
// it started. Reasons with no count are left out.
func (s *Server) ClientRejects() map[string]uint64 { return rejectCounts(&s.conns.rejects) }

// HitRejects is ClientRejects for the requests the server refused on a
// path Config.HitPath takes: the hits a guest never saw. It leaves out
// what net/http refused before a request was read (a malformed head, an
// unsupported Transfer-Encoding, a head over its own limit), which has no
// path to tell a hit by, and the connections closed after the guest
// answered (ambiguous_framing), which the guest counted.
func (s *Server) HitRejects() map[string]uint64 { return rejectCounts(&s.conns.hitRejects) }

func rejectCounts(c *[numRejects]atomic.Uint64) map[string]uint64 {
	out := map[string]uint64{}
	for i := range c {
		if n := c[i].Load(); n > 0 {
			out[rejectNames[i]] = n
		}
	}
	return out
}

// countReject counts a request refused with reason, and as a refused hit
// when Config.HitPath takes its path.
func (s *Server) countReject(r *http.Request, reason int) {
	s.conns.rejects[reason].Add(1)
	if s.hitPath == nil || s.hitPath(r.URL.Path) {
		s.conns.hitRejects[reason].Add(1)
	}
}

// WriteLog writes msg, one entry without its newline, to the log
// endpoint named endpoint as a guest's fastly_log write would: to its
// --log-endpoint destination, or to stdout for a name not configured. It
// returns the destination's error when the entry was not taken (a disk
// queue that cannot write). Not after Shutdown.
func (s *Server) WriteLog(endpoint string, msg []byte) error {
	return s.sinks.Lookup(endpoint).Write(endpoint, msg)
}

// maxLingering bounds the connections being closed by lingerClose at
// once (refused ones, and those answered with their request body unread);
// beyond it they are closed at once, and their clients may get a reset
// rather than the answer.
const maxLingering = 64

type clientConnKey struct{}

// clientConn is one client connection.
type clientConn struct {
	net.Conn
	t    *connTable
	addr netip.Addr // the client's: the peer's, or its PROXY header's source

	// Under t.mu.
	elem    *list.Element // in t.waiting while no request is in progress
	closed  bool
	counted bool // in t.perAddr (a trusted proxy's own connection is not)

	// The PROXY protocol (proxyproto.go): proxied is set at admission
	// when the connection must start with a PROXY header; readProxy reads
	// it once, before anything else reads the connection, and leaves the
	// addresses it names (nil: the connection's own), the client bytes
	// read past it, or why the connection is refused.
	proxied   bool
	proxyOnce sync.Once
	proxyErr  error
	pre       []byte
	src, dst  net.Addr

	state    atomic.Int32 // http.ConnState
	linger   atomic.Bool  // closed by lingerClose: answered with its request body unread (dropBody)
	handlers atomic.Int32 // ServeHTTP calls in progress on it
	// headBytes counts bytes read since a request last began or ended: a
	// read that times out with none is an idle keep-alive connection, with
	// some a slow request head.
	headBytes atomic.Int64

	// Framing (framing.go). scans: the reader sees the request bytes
	// (cleartext); scan: it still looks at them (only the reading
	// goroutine touches scan, carry and nc).
	scans    bool
	scan     bool
	sawCL    atomic.Bool
	sawTE    atomic.Bool
	carry    [len("\ntransfer-encoding")]byte
	nc       int
	timedOut atomic.Bool // readTimedOut counted it
	// served is set once ServeHTTP took the connection's current request:
	// until then, what is written is net/http refusing the request itself.
	served atomic.Bool
}

func asClientConn(c net.Conn) *clientConn {
	for c != nil {
		switch v := c.(type) {
		case *clientConn:
			return v
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func clientConnOf(r *http.Request) *clientConn {
	c, _ := r.Context().Value(clientConnKey{}).(*clientConn)
	return c
}

func (c *clientConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.proxied && c.readProxy() && c.proxyErr != nil {
		return 0, c.proxyErr
	}
	if len(c.pre) > 0 { // client bytes read with the PROXY header
		n = copy(p, c.pre)
		if c.pre = c.pre[n:]; len(c.pre) == 0 {
			c.pre = nil
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 {
		c.headBytes.Add(int64(n))
		if c.scan {
			c.scanFraming(p[:n])
		}
	}
	if err != nil && isTimeout(err) {
		c.readTimedOut()
	}
	return n, err
}

// readTimedOut counts a read deadline net/http set: the keep-alive wait
// or the request head. Only while no request is in progress (StateNew,
// StateIdle): a handler counts its own (the body), and net/http ends its
// check for the client going away with a deadline in the past. Once per
// connection: net/http may read again after the first timeout, and
// closes the connection then anyway.
func (c *clientConn) readTimedOut() {
	st := http.ConnState(c.state.Load())
	if c.handlers.Load() > 0 || (st != http.StateNew && st != http.StateIdle) || !c.timedOut.CompareAndSwap(false, true) {
		return
	}
	if c.headBytes.Load() == 0 && st == http.StateIdle {
		c.t.timeouts[phaseIdle].Add(1)
	} else {
		c.t.timeouts[phaseHeader].Add(1)
	}
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.scans && !c.served.Load() && len(p) >= 12 && string(p[:9]) == "HTTP/1.1 " {
		// No handler took the request: net/http is refusing it.
		reason := rejectOtherHTTP
		switch string(p[9:12]) {
		case "400":
			reason = rejectBadRequest
		case "431":
			reason = rejectHeaderTooLarge
		case "501":
			reason = rejectUnsupportedTE
		}
		c.t.rejects[reason].Add(1)
	}
	n, err := c.Conn.Write(p)
	if err != nil && isTimeout(err) {
		c.t.timeouts[phaseWrite].Add(1)
	}
	return n, err
}

func (c *clientConn) Close() error {
	c.t.remove(c)
	if c.linger.CompareAndSwap(true, false) && c.t.lingerBegin() {
		go func() {
			defer c.t.lingering.Add(-1)
			lingerClose(c.Conn)
		}()
		return nil
	}
	return c.Conn.Close()
}

// CloseWrite keeps net/http's half-close before it closes a connection
// after an error answer (so the client can read it rather than get a
// reset).
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// beginRequest and endRequest bracket ServeHTTP.
func (c *clientConn) beginRequest() {
	c.served.Store(true)
	c.handlers.Add(1)
	c.headBytes.Store(0)
}

func (c *clientConn) endRequest() {
	c.headBytes.Store(0)
	c.handlers.Add(-1)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// admit registers a new connection, closing the longest-waiting one if
// the table is full. It returns nil and the refusal if nc cannot be taken.
func (t *connTable) admit(nc net.Conn, scan bool) (*clientConn, int) {
	var addr netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	trusted := t.trust != nil && t.trust.Trusts(addr)
	t.mu.Lock()
	if !trusted && t.maxPerAddr > 0 && t.perAddr[addr] >= t.maxPerAddr {
		t.mu.Unlock()
		return nil, refusalPerAddr
	}
	var victim *clientConn
	if t.max > 0 && t.open >= t.max {
		if victim = t.oldestWaitingLocked(); victim == nil {
			t.mu.Unlock()
			return nil, refusalMaxConns
		}
		t.dropLocked(victim)
	}
	c := &clientConn{Conn: nc, t: t, addr: addr, scans: scan, scan: scan,
		proxied: trusted && t.trust.ProxyProtocol()}
	c.state.Store(int32(http.StateNew))
	t.open++
	if !trusted {
		t.countLocked(c)
	}
	c.elem = t.waiting.PushBack(c)
	t.mu.Unlock()
	t.accepted.Add(1)
	if victim != nil {
		t.evicted[refusalMaxConns].Add(1)
		victim.Conn.Close()
	}
	return c, -1
}

// evictOne closes the longest-waiting connection, to free its file
// descriptor; it reports whether there was one.
func (t *connTable) evictOne(why int) bool {
	t.mu.Lock()
	victim := t.oldestWaitingLocked()
	if victim != nil {
		t.dropLocked(victim)
	}
	t.mu.Unlock()
	if victim == nil {
		return false
	}
	t.evicted[why].Add(1)
	victim.Conn.Close()
	return true
}

func (t *connTable) oldestWaitingLocked() *clientConn {
	if e := t.waiting.Front(); e != nil {
		return e.Value.(*clientConn)
	}
	return nil
}

// dropLocked stops counting c (closed, or about to be).
func (t *connTable) dropLocked(c *clientConn) {
	if c.closed {
		return
	}
	c.closed = true
	if c.elem != nil {
		t.waiting.Remove(c.elem)
		c.elem = nil
	}
	t.open--
	t.uncountLocked(c)
}

// countLocked counts c against its address's cap.
func (t *connTable) countLocked(c *clientConn) {
	if t.perAddr == nil {
		t.perAddr = map[netip.Addr]int{}
	}
	t.perAddr[c.addr]++
	c.counted = true
}

func (t *connTable) uncountLocked(c *clientConn) {
	if !c.counted {
		return
	}
	c.counted = false
	if t.perAddr[c.addr]--; t.perAddr[c.addr] <= 0 {
		delete(t.perAddr, c.addr)
	}
}

// rekey counts c against the cap of addr, the client its PROXY header
// names, instead of its peer's; false if addr is at its cap.
func (t *connTable) rekey(c *clientConn, addr netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.closed {
		return true
	}
	if t.maxPerAddr > 0 && t.perAddr[addr] >= t.maxPerAddr {
		return false
	}
	t.uncountLocked(c)
	c.addr = addr
	t.countLocked(c)
	return true
}

func (t *connTable) remove(c *clientConn) {
	t.mu.Lock()
	t.dropLocked(c)
	t.mu.Unlock()
}

// connState follows net/http's view of each connection: only one without
// a request in progress may be closed to make room.
func (t *connTable) connState(nc net.Conn, st http.ConnState) {
	c := asClientConn(nc)
	if c == nil {
		return
	}
	c.state.Store(int32(st))
	switch st {
	case http.StateActive:
		t.mu.Lock()
		if c.elem != nil {
			t.waiting.Remove(c.elem)
			c.elem = nil
		}
		t.mu.Unlock()
	case http.StateIdle:
		c.headBytes.Store(0)
		c.served.Store(false)
		// The last response's write deadline must not cut net/http's own
		// writes for the next request (a 100 Continue, an error answer).
		nc.SetWriteDeadline(time.Time{})
		t.mu.Lock()
		if !c.closed && c.elem == nil {
			c.elem = t.waiting.PushBack(c)
		}
		t.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		t.remove(c)
	}
}

// counts returns the open connections and those without a request in
// progress.
func (t *connTable) counts() (open, waiting int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open, t.waiting.Len()
}

// clientListener admits connections into the table.
type clientListener struct {
	net.Listener
	t         *connTable
	tls       bool
	done      chan struct{}
	closeOnce sync.Once
}

// Accept backs off for a temporary failure (up to a second, as net/http
// would). When the process is out of file descriptors it closes the
// longest-waiting connection to get one back and tries again at once,
// backing off only when there is none to close, so it never spins: each
// retry either closed a connection or waited. Only a permanent failure
// (the listener closed or broken) is returned: net/http's Serve then
// returns it, and the POP exits.
func (l *clientListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			switch {
			case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
				l.t.acceptErrors[0].Add(1)
				if l.t.evictOne(refusalFDLimit) {
					// A descriptor is free again: take the next connection
					// now. Waiting here would leave visitors queued in the
					// backlog behind whoever exhausted the descriptors.
					continue
				}
			case errors.As(err, &te) && te.Temporary():
				l.t.acceptErrors[1].Add(1)
			default:
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
			}
			continue
		}
		delay = 0
		c, refusal := l.t.admit(nc, !l.tls)
		if c == nil {
			l.t.refused[refusal].Add(1)
			l.refuse(nc, refusal)
			continue
		}
		return c, nil
	}
}

func (l *clientListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// refusalAnswers are what a refused cleartext connection is told.
var refusalAnswers = [numRefusals]string{
	refusalMaxConns: refusalAnswer("edgepixel-pop: too many connections; retry shortly\n"),
	refusalPerAddr:  refusalAnswer("edgepixel-pop: too many connections from your address\n"),
}

func refusalAnswer(msg string) string {
	return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: " +
		strconv.Itoa(len(msg)) + "\r\n\r\n" + msg
}

// refuse answers a connection that cannot be taken. Closing a socket with
// the request unread would reset it, and the client could lose the 503:
// so the answer is written, the sending side shut, and what the client
// sends read and dropped for up to a second, by at most maxLingering
// goroutines at once (beyond that, or over TLS, it is just closed).
func (l *clientListener) refuse(nc net.Conn, why int) {
	if l.tls || !l.t.lingerBegin() {
		nc.Close()
		return
	}
	go func() {
		defer l.t.lingering.Add(-1)
		nc.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(nc, refusalAnswers[why]); err != nil {
			nc.Close()
			return
		}
		lingerClose(nc)
	}()
}

// lingerBegin takes a place among the maxLingering lingerClose calls
// (given back with lingering.Add(-1)), false when all are taken.
func (t *connTable) lingerBegin() bool {
	if t.lingering.Add(1) > maxLingering {
		t.lingering.Add(-1)
		return false
	}
	return true
}

// lingerClose closes nc, whose client may still be sending what will not
// be read, so that it gets the answer already written rather than a reset
// (closing a socket with data unread resets it, and a client that is still
// writing may then report its write error instead of the answer): the
// sending side is shut, and what arrives is read and dropped for up to a
// second, at most 64 KiB of it. As net/http's closeWriteAndWait, bounded.
func lingerClose(nc net.Conn) {
	defer nc.Close()
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
}
