package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
)

// These tests run a real http.Server on loopback behind a Guard and talk
// to it with raw TCP clients: a handful of connections, each bounded in
// time.

type rig struct {
	t    *testing.T
	g    *Guard
	m    *metrics.Metrics
	addr string
}

// bodyHandler reads the body and answers its length, or 408 when the body
// deadline passed (what package ingest does).
var bodyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if IsTimeout(err) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestTimeout)
		return
	}
	fmt.Fprintf(w, "%d", n)
})

func start(t *testing.T, cfg Config, srv *http.Server, h http.Handler) *rig {
	t.Helper()
	m := metrics.New()
	cfg.Metrics = m
	g := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Handler, srv.ConnState, srv.ConnContext = g.Handler(h), g.ConnState, g.ConnContext
	go srv.Serve(g.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return &rig{t: t, g: g, m: m, addr: ln.Addr().String()}
}

// dial connects from a loopback source address of choice (Linux routes
// all of 127/8 to lo), so tests can play several clients.
func (r *rig) dial(from string) net.Conn {
	r.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // no test waits longer
	return c
}

func (r *rig) do(c net.Conn, br *bufio.Reader, req string) *http.Response {
	r.t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		r.t.Fatalf("no answer to %q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closed reports whether the server closes c within d (reading nothing
// else).
func closed(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	return errors.Is(err, io.EOF) || err != nil && !errors.Is(err, net.ErrClosed) && !IsTimeout(err)
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached", what)
		}
	}
}

const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

func TestConnectionCaps(t *testing.T) {
	r := start(t, Config{MaxConns: 4, MaxConnsPerClient: 2}, &http.Server{}, bodyHandler)
	held := []net.Conn{r.dial("127.0.0.1"), r.dial("127.0.0.1")}
	for _, c := range held { // admitted: they are served
		r.do(c, bufio.NewReader(c), get)
	}
	refused := func(from string, status int, reason string) {
		t.Helper()
		c := r.dial(from)
		resp := r.do(c, bufio.NewReader(c), get)
		if resp.StatusCode != status || resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Errorf("from %s: %d Retry-After %q close %v, want %d", from, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, status)
		}
		if r.m.Dropped(reason) == 0 {
			t.Errorf("%s not counted", reason)
		}
	}
	refused("127.0.0.1", 429, ReasonTooManyConnsPerClient)
	held = append(held, r.dial("127.0.0.2"), r.dial("127.0.0.2")) // another client has its own share
	for _, c := range held[2:] {
		r.do(c, bufio.NewReader(c), get)
	}
	refused("127.0.0.3", 503, ReasonTooManyConns)
	if n := r.g.Conns(); n != 4 {
		t.Errorf("%d connections counted, want 4", n)
	}
	held[0].Close()
	eventually(t, "a closed connection frees its place", func() bool { return r.g.Conns() == 3 })
	c := r.dial("127.0.0.3")
	if resp := r.do(c, bufio.NewReader(c), get); resp.StatusCode != 200 {
		t.Errorf("after a close: %d", resp.StatusCode)
	}
}

// A client that starts a request and never finishes its header section
// (or says nothing at all) is closed at ReadHeaderTimeout and counted; a
// keep-alive connection with no next request is closed at IdleTimeout.
func TestHeaderAndIdleDeadlines(t *testing.T) {
	r := start(t, Config{}, &http.Server{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, bodyHandler)
	slow := r.dial("127.0.0.1")
	io.WriteString(slow, "POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	silent := r.dial("127.0.0.1")
	idle := r.dial("127.0.0.1")
	ibr := bufio.NewReader(idle)
	r.do(idle, ibr, get)
	// The waits are hang guards, far past the deadlines; that the server
	// closed them for these deadlines shows in the counts below.
	for name, c := range map[string]net.Conn{"slow header": slow, "silent": silent} {
		if !closed(c, bufio.NewReader(c), 30*time.Second) {
			t.Errorf("%s: not closed", name)
		}
	}
	if !closed(idle, ibr, 30*time.Second) {
		t.Error("idle keep-alive connection not closed")
	}
	eventually(t, "counted", func() bool {
		return r.m.Dropped(ReasonHeaderTimeout) == 2 && r.m.IdleTimeouts.Load() == 1 && r.g.Conns() == 0
	})
}

// A body that does not arrive by the body deadline, stalled or trickled,
// is answered 408 and the connection closed; one that arrives is served,
// and the keep-alive connection stays usable (the deadline is lifted).
func TestBodyDeadline(t *testing.T) {
	r := start(t, Config{BodyTimeout: 300 * time.Millisecond}, &http.Server{}, bodyHandler)
	stalled := r.dial("127.0.0.1")
	io.WriteString(stalled, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\nabc")
	trickle := r.dial("127.0.0.1")
	io.WriteString(trickle, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	go func() {
		for range 20 {
			if _, err := trickle.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for name, c := range map[string]net.Conn{"stalled": stalled, "trickle": trickle} {
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("%s: %v %v", name, resp, err)
		}
		if !closed(c, br, 2*time.Second) {
			t.Errorf("%s: connection kept after 408", name)
		}
	}
	ok := r.dial("127.0.0.1")
	br := bufio.NewReader(ok)
	if resp := r.do(ok, br, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"); resp.StatusCode != 200 {
		t.Fatalf("a prompt body: %d", resp.StatusCode)
	}
	time.Sleep(500 * time.Millisecond) // past the body deadline of the first request
	if resp := r.do(ok, br, get); resp.StatusCode != 200 {
		t.Fatalf("the next request on the connection: %d", resp.StatusCode)
	}
}

// An answer given before the body is read (the ingest refuses a declared
// length over its limit, or a bad token, at once) goes out at once, as
// net/http sends it without the guard: the body deadline (an hour here)
// does not hold it.
func TestEarlyAnswerNotHeld(t *testing.T) {
	r := start(t, Config{BodyTimeout: time.Hour}, &http.Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	for name, req := range map[string]string{
		"no body sent":        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
		"Expect 100-continue": "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
	} {
		c := r.dial("127.0.0.1") // gives up after 10 s
		br := bufio.NewReader(c)
		if resp := r.do(c, br, req); resp.StatusCode != 413 {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
}

// RFC 9112 section 6.3: after a request with both Content-Length and
// Transfer-Encoding the connection is closed. net/http alone answers such
// a request and keeps the connection.
func TestConflictingFramingCloses(t *testing.T) {
	r := start(t, Config{}, &http.Server{}, bodyHandler)
	for name, req := range map[string]string{
		"CL then TE":          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"TE then CL":          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 keep-alive": "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
	} {
		c := r.dial("127.0.0.1")
		br := bufio.NewReader(c)
		resp := r.do(c, br, req)
		if !resp.Close {
			t.Errorf("%s: answered %d without Connection: close", name, resp.StatusCode)
		}
		io.WriteString(c, get)
		if !closed(c, br, 2*time.Second) {
			t.Errorf("%s: the connection took another request", name)
		}
	}
	if n := r.m.FramingCloses.Load(); n != 3 {
		t.Errorf("%d framing closes counted, want 3", n)
	}
	// Content-Length alone keeps the connection.
	c := r.dial("127.0.0.1")
	br := bufio.NewReader(c)
	r.do(c, br, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if resp := r.do(c, br, get); resp.StatusCode != 200 {
		t.Errorf("keep-alive after a plain request: %d", resp.StatusCode)
	}
	// What net/http refuses itself is counted.
	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	} {
		c := r.dial("127.0.0.1")
		if resp := r.do(c, bufio.NewReader(c), req); resp.StatusCode/100 != 4 && resp.StatusCode != 501 || !resp.Close {
			t.Errorf("%q: %d close %v", req, resp.StatusCode, resp.Close)
		}
	}
	eventually(t, "bad framing counted", func() bool { return r.m.Dropped(ReasonBadFraming) == 2 })
}

// The header section is bounded while it is read: an unfinished huge
// header is refused (431) once it passes MaxHeaderBytes, not buffered.
func TestHeaderTooLarge(t *testing.T) {
	r := start(t, Config{}, &http.Server{MaxHeaderBytes: 4 << 10}, bodyHandler)
	c := r.dial("127.0.0.1")
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)) // never ends
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("%v %v", resp, err)
	}
	eventually(t, "counted", func() bool { return r.m.Dropped(ReasonHeaderTooLarge) == 1 })
}

// A client that does not read its answer is cut off at WriteTimeout and
// counted.
func TestWriteDeadline(t *testing.T) {
	big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 256 { // bounded: 256 MiB at most, far beyond socket buffers
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := start(t, Config{}, &http.Server{WriteTimeout: 300 * time.Millisecond}, big)
	c := r.dial("127.0.0.1")
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, get) // and never read
	eventually(t, "write timeout counted", func() bool { return r.m.Dropped(ReasonWriteTimeout) == 1 })
	eventually(t, "connection released", func() bool { return r.g.Conns() == 0 })
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:443":                 "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443":    "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:80":     "2001:db8:1:2::/64",
		"[::ffff:192.0.2.1]:80":         "192.0.2.1",
		"not an address":                "not an address",
		"[2001:db8:1:3:3:4:5:6]:443":    "2001:db8:1:3::/64",
		"198.51.100.255:1":              "198.51.100.255",
		"[fe80::1%eth0]:80":             "fe80::1%eth0",
		"[2001:db8::1]:1":               "2001:db8::/64",
		"[2001:db8:0:0:1::1]:1":         "2001:db8::/64",
		"[2001:db8:aaaa:bbbb:1::1]:443": "2001:db8:aaaa:bbbb::/64",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
