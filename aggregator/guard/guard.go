// Package guard protects the aggregator's HTTP server from hostile
// clients, below and around the handlers: it caps open connections in
// total and per client address, gives every phase of a request a
// deadline and counts the clients that miss one, closes the connection
// after requests whose framing could be read two ways, and brakes
// credential guessing per client address (AuthLimiter).
//
// A Guard is used in three places of one http.Server:
//
//	g := guard.New(cfg)
//	hs := &http.Server{Handler: g.Handler(h), ConnState: g.ConnState, ConnContext: g.ConnContext,
//		ReadHeaderTimeout: ..., IdleTimeout: ..., WriteTimeout: ..., MaxHeaderBytes: ...}
//	hs.Serve(g.Listener(ln))
//
// The header, idle and write deadlines are the http.Server's own
// (ReadHeaderTimeout, IdleTimeout, WriteTimeout); a client that misses the
// header or idle deadline is closed by net/http without an answer, and
// counted here. The body deadline is set by Handler for each request with
// a body; a handler that sees it pass (IsTimeout) answers 408.
package guard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/clientip"
)

// Reasons counted in edgepixel_aggregator_dropped_total for requests
// refused or cut off before a handler could answer them.
const (
	ReasonTooManyConns          = "too_many_connections"            // 503: MaxConns open
	ReasonTooManyConnsPerClient = "too_many_connections_per_client" // 429: MaxConnsPerClient open from the address
	ReasonHeaderTimeout         = "header_timeout"                  // closed: the header section did not arrive in time
	ReasonBodyTimeout           = "body_timeout"                    // 408: the body did not arrive in time (counted by the handler)
	ReasonWriteTimeout          = "write_timeout"                   // closed: the answer could not be written in time
	ReasonHeaderTooLarge        = "header_too_large"                // 431 from net/http: header section over MaxHeaderBytes
	ReasonBadFraming            = "bad_framing"                     // 400 or 501 from net/http: unreadable request line, headers or framing
)

// Config configures a Guard. Zero limits mean no limit.
type Config struct {
	// MaxConns caps open connections (WebSockets included); a connection
	// over it is answered 503 with Retry-After and closed.
	MaxConns int
	// MaxConnsPerClient caps open connections from one client address
	// (an IPv4 address, an IPv6 /64); over it: 429 with Retry-After.
	MaxConnsPerClient int
	// Trust is the reverse proxies believed about who the client is (nil:
	// none, the TCP peer is the client). Handler sets a request's
	// RemoteAddr to the client they name (shared/clientip's rule), so the
	// credential limiter and the per-client body budget count clients,
	// not the proxy. A trusted proxy's own connections are exempt from
	// MaxConnsPerClient: each carries many clients' requests, and the
	// client is only known per request, after the connection is admitted
	// (as the POP does, edge/pop/clientaddr.go). They count towards
	// MaxConns like any other.
	Trust *clientip.Trust
	// BodyTimeout bounds the time from a request's header to the end of
	// its body.
	BodyTimeout time.Duration
	// RetryAfter is sent with refusals; default 1 s.
	RetryAfter time.Duration
	// FailAfter: when accepting connections fails for lack of file
	// descriptors for this long, OnFail is called (a restart frees them).
	// Default 1 min.
	FailAfter time.Duration
	OnFail    func(error)
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
}

// Guard holds the connection counts. Create it with New.
type Guard struct {
	cfg Config
	log *slog.Logger
	m   *metrics.Metrics

	mu       sync.Mutex
	open     int
	perKey   map[string]int
	refusing chan struct{} // bounds the goroutines answering refused connections

	acceptFails atomic.Uint64 // out-of-files accept errors since the last summary
}

// New returns a Guard.
func New(cfg Config) *Guard {
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = time.Minute
	}
	if cfg.OnFail == nil {
		cfg.OnFail = func(error) {}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	cfg.Metrics.DeclareDrops(ReasonTooManyConns, ReasonTooManyConnsPerClient, ReasonHeaderTimeout, ReasonBodyTimeout,
		ReasonWriteTimeout, ReasonHeaderTooLarge, ReasonBadFraming)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{cfg: cfg, log: cfg.Logger.With("component", "http"), m: cfg.Metrics,
		perKey: map[string]int{}, refusing: make(chan struct{}, 64)}
	g.m.OpenConns = g.Conns
	return g
}

// Conns returns the number of open connections.
func (g *Guard) Conns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// ClientKey returns the key connections and credential failures are
// counted under for a remote address ("ip:port"): the IPv4 address, or
// the /64 prefix of an IPv6 address (one host commonly holds a whole /64).
// It is the TCP peer, or the client a trusted proxy named (Config.Trust,
// applied by Handler): X-Forwarded-For from anyone else is ignored.
func ClientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Listener wraps ln: connections over the caps are answered and closed
// without reaching the http.Server, and the others are tracked until
// closed.
func (g *Guard) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	g := l.g
	var wait time.Duration
	var since time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				return nil, err
			}
			// net/http would retry this too, but log every attempt. Count
			// it, say so once, and give up after FailAfter.
			if since.IsZero() {
				since = time.Now()
				g.log.Error("cannot accept connections: out of file descriptors; retrying", "err", err,
					"open_connections", g.Conns(), "fails_after", g.cfg.FailAfter)
			} else if time.Since(since) >= g.cfg.FailAfter {
				g.cfg.OnFail(errors.New("accept: out of file descriptors for " + g.cfg.FailAfter.String() + " (a restart frees them): " + err.Error()))
				since = time.Now() // OnFail stops the server; until then, keep trying
			}
			g.m.AcceptErrors.Add(1)
			wait = min(max(wait*2, 5*time.Millisecond), time.Second)
			time.Sleep(wait)
			continue
		}
		if !since.IsZero() {
			// At WARN, as the failure was (an ERROR): both ends are read in one place.
			g.log.Warn("accepting connections again", "after", time.Since(since).Round(time.Millisecond))
			since, wait = time.Time{}, 0
		}
		key := g.connKey(c.RemoteAddr())
		if reason := g.admit(key); reason != "" {
			g.refuse(c, reason)
			continue
		}
		g.m.AcceptedConns.Add(1)
		return &conn{Conn: c, g: g, key: key}, nil
	}
}

// connKey is the key a connection from addr is counted under for
// MaxConnsPerClient: its ClientKey, or "" (not counted) for a trusted
// proxy (Config.Trust).
func (g *Guard) connKey(addr net.Addr) string {
	if g.cfg.Trust != nil {
		if ap, err := netip.ParseAddrPort(addr.String()); err == nil && g.cfg.Trust.Trusts(ap.Addr()) {
			return ""
		}
	}
	return ClientKey(addr.String())
}

// admit counts a new connection from key ("": only towards MaxConns), or
// returns why it is refused.
func (g *Guard) admit(key string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.cfg.MaxConns > 0 && g.open >= g.cfg.MaxConns:
		return ReasonTooManyConns
	case key != "" && g.cfg.MaxConnsPerClient > 0 && g.perKey[key] >= g.cfg.MaxConnsPerClient:
		return ReasonTooManyConnsPerClient
	}
	g.open++
	if key != "" {
		g.perKey[key]++
	}
	return ""
}

func (g *Guard) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if key == "" {
		return
	}
	if g.perKey[key]--; g.perKey[key] <= 0 {
		delete(g.perKey, key)
	}
}

// refuse answers a connection over a cap and closes it, in a goroutine of
// its own (at most cap(refusing) at once; beyond that it is closed
// without an answer). The answer follows the request's header section,
// so that a client that writes its request before it reads sees it.
func (g *Guard) refuse(c net.Conn, reason string) {
	g.m.Drop(reason)
	select {
	case g.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-g.refusing }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		readHeader(c, 16<<10)
		status, msg := http.StatusServiceUnavailable, "the aggregator has too many open connections; retry later"
		if reason == ReasonTooManyConnsPerClient {
			status, msg = http.StatusTooManyRequests, "too many open connections from your address; retry later"
		}
		body := `{"error":"` + msg + `","reason":"` + reason + "\"}\n"
		io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\n"+
			"Content-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\n"+
			"Retry-After: "+strconv.Itoa(int(max(1, g.cfg.RetryAfter.Seconds())))+"\r\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		// Read what else the client sent (a body) before closing, so the
		// close is a FIN, not a reset that could discard the answer.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// readHeader reads from c until the end of a header section (an empty
// line), max bytes, an error or the deadline.
func readHeader(c net.Conn, max int) {
	buf := make([]byte, 1024)
	var tail [4]byte // the last bytes read, to find \r\n\r\n across reads
	for n := 0; n < max; {
		k, err := c.Read(buf)
		for _, b := range buf[:k] {
			tail = [4]byte{tail[1], tail[2], tail[3], b}
			if tail == [4]byte{'\r', '\n', '\r', '\n'} || tail[2] == '\n' && tail[3] == '\n' {
				return
			}
		}
		n += k
		if err != nil {
			return
		}
	}
}

// conn is an admitted connection: it is counted until closed, and tells
// the Guard when a deadline passes.
type conn struct {
	net.Conn
	g       *Guard
	key     string
	once    sync.Once
	state   atomic.Int32 // the http.ConnState net/http last reported
	got     atomic.Bool  // bytes arrived since the connection went idle
	handled atomic.Bool  // a handler runs (or ran) for the current request
	missed  atomic.Bool  // a deadline was missed (counted once)
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.got.Store(true)
	}
	if err != nil && IsTimeout(err) && c.missed.CompareAndSwap(false, true) {
		switch http.ConnState(c.state.Load()) {
		case http.StateNew:
			c.g.m.Drop(ReasonHeaderTimeout)
		case http.StateIdle:
			if c.got.Load() {
				c.g.m.Drop(ReasonHeaderTimeout)
			} else {
				c.g.m.IdleTimeouts.Add(1)
			}
		default:
			// A body read by a handler: the handler answers 408 and counts.
			c.missed.Store(false)
		}
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	if !c.handled.Load() && len(b) >= 12 && string(b[:9]) == "HTTP/1.1 " {
		// net/http answering a request it could not read, before any
		// handler: count why.
		switch string(b[9:12]) {
		case "431":
			c.g.m.Drop(ReasonHeaderTooLarge)
		case "400", "501", "505":
			c.g.m.Drop(ReasonBadFraming)
		}
	}
	n, err := c.Conn.Write(b)
	if err != nil && IsTimeout(err) && c.missed.CompareAndSwap(false, true) {
		c.g.m.Drop(ReasonWriteTimeout)
	}
	return n, err
}

func (c *conn) Close() error {
	c.once.Do(func() { c.g.release(c.key) })
	return c.Conn.Close()
}

// ConnState is the http.Server's ConnState hook: it tells the
// connections which phase they are in, for counting missed deadlines.
func (g *Guard) ConnState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	if st == http.StateIdle {
		c.got.Store(false)
		c.handled.Store(false)
	}
	c.state.Store(int32(st))
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext hook: it lets Handler find
// the connection of a request.
func (g *Guard) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if c, ok := nc.(*conn); ok {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// Handler wraps h: it sets the body deadline of each request with a body
// (lifted once the body is read, so a slow handler's background read does
// not hit it), and closes the connection after requests framed by
// Transfer-Encoding or sent as HTTP/1.0. With Config.Trust, it first
// sets RemoteAddr to the client a trusted proxy names.
//
// RFC 9112 section 6.3 requires closing the connection after a request
// with both Content-Length and Transfer-Encoding (a smuggling attempt, or
// a broken intermediary). net/http reads such a request as chunked but
// keeps the connection, and drops Content-Length from the header before
// any handler runs, so the two cannot be told apart here: every request
// framed by Transfer-Encoding is answered with "Connection: close". On
// HTTP/1.0 net/http ignores Transfer-Encoding altogether (RFC 9112
// section 6.1 says to treat such framing as faulty and close), so
// HTTP/1.0 requests are closed too. Neither is how the edge or log
// shippers send batches; both cost those clients only a new connection.
func (g *Guard) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			c.handled.Store(true)
		}
		if g.cfg.Trust != nil {
			g.cfg.Trust.Apply(r)
		}
		if len(r.TransferEncoding) > 0 || !r.ProtoAtLeast(1, 1) {
			w.Header().Set("Connection", "close")
			g.m.FramingCloses.Add(1)
		}
		if g.cfg.BodyTimeout > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout)) == nil {
				// The handler gets a copy of the request with the
				// wrapped body: once it returns, net/http looks at the
				// body of the request it made to decide whether to
				// drain the rest or close the connection, and a body
				// of a type it does not know it drains, so an answer
				// given before the body (413 by the declared length,
				// 401 to an Expect: 100-continue) waited for the
				// client's body or the deadline.
				r = r.WithContext(r.Context())
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		h.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// IsTimeout reports whether err is a missed read or write deadline.
func IsTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
