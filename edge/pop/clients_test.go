package pop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func TestScanFraming(t *testing.T) {
	head := "POST /e HTTP/1.1\r\nHost: x\r\ntransfer-Encoding: chunked\r\nCONTENT-LENGTH: 4\r\n\r\n"
	// Every split of the head into two reads, so a name cut in two is
	// still seen.
	for i := range len(head) {
		c := &clientConn{scan: true}
		c.scanFraming([]byte(head[:i]))
		c.scanFraming([]byte(head[i:]))
		if !c.sawCL.Load() || !c.sawTE.Load() {
			t.Fatalf("split at %d: CL %v TE %v", i, c.sawCL.Load(), c.sawTE.Load())
		}
	}
	// One byte at a time.
	c := &clientConn{scan: true}
	for i := range len(head) {
		c.scanFraming([]byte{head[i]})
	}
	if !c.sawCL.Load() || !c.sawTE.Load() || c.scan {
		t.Errorf("byte by byte: CL %v TE %v scanning %v", c.sawCL.Load(), c.sawTE.Load(), c.scan)
	}
	// Names not at the start of a line, or other names, are not framing.
	c = &clientConn{scan: true}
	c.scanFraming([]byte("GET /?content-length HTTP/1.1\r\nX-Content-Length: 1\r\nX: transfer-encoding\r\nContent-Lengthy\r\n"))
	if c.sawTE.Load() {
		t.Error("Transfer-Encoding seen where there is none")
	}
	if !c.sawCL.Load() {
		t.Error("a line starting with content-length not noted (the rule errs toward closing)")
	}
}

func TestAmbiguousFraming(t *testing.T) {
	req := func(minor int, te bool) *http.Request {
		r := &http.Request{ProtoMajor: 1, ProtoMinor: minor}
		if te {
			r.TransferEncoding = []string{"chunked"}
		}
		return r
	}
	seen := func(cl, te bool) *clientConn {
		c := &clientConn{scans: true}
		c.sawCL.Store(cl)
		c.sawTE.Store(te)
		return c
	}
	for _, tc := range []struct {
		name  string
		r     *http.Request
		c     *clientConn
		close bool
	}{
		{"chunked, no Content-Length seen", req(1, true), seen(false, true), false},
		{"chunked with Content-Length", req(1, true), seen(true, true), true},
		{"Content-Length only", req(1, false), seen(true, false), false},
		{"HTTP/1.0 with Transfer-Encoding", req(0, false), seen(true, true), true},
		{"HTTP/1.0 plain", req(0, false), seen(true, false), false},
		{"chunked over TLS (bytes unseen)", req(1, true), &clientConn{}, true},
		{"chunked without the listener", req(1, true), nil, true},
		{"HTTP/2", &http.Request{ProtoMajor: 2}, nil, false},
	} {
		if got := ambiguousFraming(tc.r, tc.c); got != tc.close {
			t.Errorf("%s: close %v, want %v", tc.name, got, tc.close)
		}
	}
}

// fakeConn is a connection from addr that records being closed.
type fakeConn struct {
	net.Conn
	addr   string
	closed atomic.Bool
}

func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(f.addr), Port: 1234}
}
func (f *fakeConn) Close() error                     { f.closed.Store(true); return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (f *fakeConn) isClosed() bool                   { return f.closed.Load() }

func TestConnTableEvictsLongestWaiting(t *testing.T) {
	tab := &connTable{max: 3, maxPerAddr: 2}
	admit := func(addr string) (*fakeConn, *clientConn, int) {
		f := &fakeConn{addr: addr}
		c, refusal := tab.admit(f, true)
		return f, c, refusal
	}
	f1, c1, _ := admit("10.0.0.1")
	_, c2, _ := admit("10.0.0.2")
	_, c3, _ := admit("10.0.0.3")
	if _, _, r := admit("10.0.0.1"); r != -1 {
		t.Fatalf("second connection of an address refused (%d) under a per-address limit of 2", r)
	}
	// The table was full: the longest waiting (c1) made room.
	if !f1.isClosed() || tab.evicted[refusalMaxConns].Load() != 1 {
		t.Fatalf("c1 closed %v, evictions %d", f1.isClosed(), tab.evicted[refusalMaxConns].Load())
	}
	c1.Close() // as net/http does after the eviction: counted once
	if open, _ := tab.counts(); open != 3 {
		t.Fatalf("%d open, want 3", open)
	}
	// Connections with a request in progress are never closed to make
	// room; with all busy a new one is refused.
	for _, c := range []*clientConn{c2, c3} {
		tab.connState(c, http.StateActive)
	}
	f5, c5, _ := admit("10.0.0.5") // evicts the fourth, the only one waiting
	if c5 == nil || f5.isClosed() {
		t.Fatal("a connection was refused while one was waiting")
	}
	tab.connState(c5, http.StateActive)
	if _, c, r := admit("10.0.0.6"); c != nil || r != refusalMaxConns {
		t.Fatalf("full of busy connections: admitted %v refusal %d", c != nil, r)
	}
	// Idle again: evictable again, longest waiting first.
	tab.connState(c3, http.StateIdle)
	tab.connState(c2, http.StateIdle)
	if _, c, _ := admit("10.0.0.7"); c == nil || !c3.Conn.(*fakeConn).isClosed() || c2.Conn.(*fakeConn).isClosed() {
		t.Fatal("the connection idle longest was not the one closed")
	}
	// Per address.
	tab2 := &connTable{max: -1, maxPerAddr: 1}
	if c, _ := tab2.admit(&fakeConn{addr: "10.0.0.9"}, true); c == nil {
		t.Fatal("first connection refused")
	}
	if c, r := tab2.admit(&fakeConn{addr: "::ffff:10.0.0.9"}, true); c != nil || r != refusalPerAddr {
		t.Fatalf("second connection from one address (IPv4-mapped): admitted %v refusal %d", c != nil, r)
	}
}

// flakyListener fails Accept with err n times, then returns a connection.
type flakyListener struct {
	net.Listener
	err   error
	n     int
	calls int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.calls++
	if l.calls <= l.n {
		return nil, l.err
	}
	return &fakeConn{addr: "10.1.0.1"}, nil
}
func (l *flakyListener) Close() error { return nil }

func TestAcceptBacksOffWhenOutOfFiles(t *testing.T) {
	tab := &connTable{max: -1, maxPerAddr: -1}
	idle := &fakeConn{addr: "10.2.0.1"}
	if c, _ := tab.admit(idle, true); c == nil {
		t.Fatal("not admitted")
	}
	inner := &flakyListener{err: &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, n: 4}
	l := &clientListener{Listener: inner, t: tab, done: make(chan struct{})}
	began := time.Now()
	c, err := l.Accept()
	if err != nil || c == nil {
		t.Fatalf("Accept: %v", err)
	}
	// One call per failure and one that succeeds; the first retry came at
	// once, after closing the waiting connection, the others after a
	// back-off (5, 10, 20 ms) since there was nothing left to close.
	if inner.calls != 5 || tab.acceptErrors[0].Load() != 4 {
		t.Errorf("%d accept calls, %d fd errors counted", inner.calls, tab.acceptErrors[0].Load())
	}
	if !idle.isClosed() || tab.evicted[refusalFDLimit].Load() != 1 {
		t.Errorf("the waiting connection was not closed to free a descriptor (evictions %d)", tab.evicted[refusalFDLimit].Load())
	}
	if took := time.Since(began); took < 35*time.Millisecond {
		t.Errorf("4 failures with 1 connection to close took %s: it did not back off", took)
	}
	// A permanent failure ends Accept: the server's Serve returns it.
	l = &clientListener{Listener: &flakyListener{err: net.ErrClosed, n: 1}, t: tab, done: make(chan struct{})}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("permanent failure: %v", err)
	}
}

// rawConn is a client connection driven byte by byte.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// response reads one response within 10 s.
func (c *rawConn) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// status reads the head of one response within 10 s.
func (c *rawConn) status(t *testing.T) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp.StatusCode
}

// closed reports whether the server closed the connection (within 10 s).
func (c *rawConn) closed(t *testing.T) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.br.ReadByte()
	if err == nil {
		t.Logf("read %q where the connection should have ended", b)
	}
	return err != nil && !isTimeout(err)
}

func metricValue(s *Server, series string) string {
	var b strings.Builder
	s.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return "absent"
}

// TestStalledBodiesHoldNoInstance is issue 9's repro: clients that
// declare a body and send none used to hold every guest instance until the
// wall budget; now the POP waits for the bodies itself.
func TestStalledBodiesHoldNoInstance(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		c.Instances, c.MaxInstances = 1, 1
		c.Clients.BodyIdleTimeout = time.Second
	})
	var stalled []*rawConn
	for range 8 {
		c := dialRaw(t, p.URL)
		c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
		stalled = append(stalled, c)
	}
	time.Sleep(100 * time.Millisecond) // all eight wait in the POP
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/counter", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a normal hit with the only instance's clients stalled: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("normal hit: %d", resp.StatusCode)
	}
	// Each stalled sender gets 408 once the body idle timeout passes, and
	// its connection is closed.
	for i, c := range stalled {
		resp, _ := c.response(t, "POST")
		if resp.StatusCode != http.StatusRequestTimeout || !c.closed(t) || resp.Header.Get("X-Edgepixel-Drop") != "body_incomplete" {
			t.Errorf("stalled sender %d: %d %s, connection closed %v", i, resp.StatusCode, resp.Header.Get("X-Edgepixel-Drop"), c.closed(t))
		}
	}
	if v := metricValue(p.Server, `edgepixel_pop_client_timeouts_total{phase="body"}`); v != "8" {
		t.Errorf("body timeouts counted: %s, want 8", v)
	}
	// Each is a refused hit too, which the aggregator's loss counts.
	if n := p.Server.HitRejects()["body_incomplete"]; n != 8 {
		t.Errorf("body timeouts counted as refused hits: %d, want 8", n)
	}
	// A body sent slowly but steadily meets the idle deadline and the
	// whole-body one decides: here it is long enough.
	c := dialRaw(t, p.URL)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
	for _, b := range "abcdef" {
		time.Sleep(150 * time.Millisecond)
		c.send(t, string(b))
	}
	if resp, body := c.response(t, "POST"); resp.StatusCode != 201 || body != "abcdef" {
		t.Errorf("slow but steady body: %d %q", resp.StatusCode, body)
	}
}

func TestSlowBodyMeetsTotalDeadline(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		c.Instances, c.MaxInstances = 1, 1
		c.Clients.BodyTimeout = 500 * time.Millisecond
	})
	c := dialRaw(t, p.URL)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	began := time.Now()
	for time.Since(began) < 3*time.Second {
		if _, err := io.WriteString(c, "1\r\nx\r\n"); err != nil {
			break // closed after the 408
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("a body trickling past the body timeout: %d", resp.StatusCode)
	}
}

func TestRequestBodyLimits(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		c.Instances, c.MaxInstances = 1, 2
		c.Clients.MaxRequestBody = 100 << 10
		c.Clients.BodyMemory = 100 << 10 // one body at the limit fills it
	})
	// Declared too large: refused before a byte of it is read.
	c := dialRaw(t, p.URL)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusRequestEntityTooLarge || !c.closed(t) {
		t.Errorf("declared 200000 bytes: %d", resp.StatusCode)
	}
	// Chunked, found too large on the way. The POP answers without reading
	// the rest and closes, so the sender may meet a reset while it still
	// writes; net/http's client then reports the write error rather than
	// the answer (a race CI met), so this one is sent by hand, its answer
	// read while the body is still being written.
	c = dialRaw(t, p.URL)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	go func() {
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 10<<10, strings.Repeat("x", 10<<10))
		for range 15 {
			if _, err := io.WriteString(c, chunk); err != nil {
				return // refused and closed, as it should be
			}
		}
		io.WriteString(c, "0\r\n\r\n")
	}()
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Edgepixel-Drop") != "body_too_large" {
		t.Errorf("150 KiB chunked: %d, X-Edgepixel-Drop %q", resp.StatusCode, resp.Header.Get("X-Edgepixel-Drop"))
	}
	// At the limit: accepted.
	body := strings.Repeat("y", 100<<10)
	if resp, got := p.do(t, "POST", "/echo", strings.NewReader(body), nil); resp.StatusCode != 201 || got != body {
		t.Errorf("100 KiB: %d, %d bytes back", resp.StatusCode, len(got))
	}
	// A sender holding most of the body memory: the next body is refused
	// with 503 rather than waiting or growing memory.
	hog := dialRaw(t, p.URL)
	hog.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n"+strings.Repeat("z", 95<<10))
	waitFor(t, func() bool { return p.bodyBytes.Load() >= 95<<10 })
	if resp, _ := p.do(t, "POST", "/echo", strings.NewReader(strings.Repeat("w", 20<<10)), nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("body memory full: %d", resp.StatusCode)
	}
	hog.send(t, strings.Repeat("z", 5<<10))
	if resp, got := hog.response(t, "POST"); resp.StatusCode != 201 || len(got) != 100<<10 {
		t.Errorf("the large body, completed: %d, %d bytes", resp.StatusCode, len(got))
	}
	// Everything charged comes back once the guest is done with it.
	waitFor(t, func() bool { return p.bodyBytes.Load() == 0 })
	for _, m := range []string{
		`edgepixel_pop_client_rejects_total{reason="body_too_large"}`,
		`edgepixel_pop_client_rejects_total{reason="body_memory"}`,
	} {
		if v := metricValue(p.Server, m); v == "0" || v == "absent" {
			t.Errorf("%s = %s", m, v)
		}
	}
}

// TestRefusedBodyClosesInOrder: a connection whose body is refused unread
// ends with the server's FIN after its answer, not a reset (which would
// have come at once, the unread bytes being in the server's socket), so a
// client still sending can read the answer.
func TestRefusedBodyClosesInOrder(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.Clients.MaxRequestBody = 64 << 10 })
	c := dialRaw(t, p.URL)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"+strings.Repeat("x", 10<<10))
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 200000 bytes: %d", resp.StatusCode)
	}
	// Still sending after the answer: read and dropped, not reset.
	time.Sleep(100 * time.Millisecond)
	c.send(t, strings.Repeat("x", 10<<10))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want EOF (the server's FIN)", err)
	}
}

func TestBodyMemoryReturnedAfterGuestFailures(t *testing.T) {
	p := startPOP(t, nil, nil)
	for i := range 20 {
		path := "/echo"
		if i%3 == 0 {
			path = "/panic" // the instance dies holding the body
		}
		p.do(t, "POST", path, strings.NewReader(strings.Repeat("b", 20000)), nil)
	}
	waitFor(t, func() bool { return p.bodyBytes.Load() == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached within 10 s")
}

// TestFramingClosesConnection checks, over raw TCP, what RFC 9112 asks of
// requests with ambiguous framing, and that net/http's own refusals hold.
func TestFramingClosesConnection(t *testing.T) {
	p := startPOP(t, nil, nil)
	for _, tc := range []struct {
		name, req string
		status    int
		close     bool
	}{
		{"Content-Length with Transfer-Encoding",
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 201, true},
		{"Transfer-Encoding before Content-Length, smuggling a second request",
			"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /counter HTTP/1.1\r\nHost: x\r\n\r\n", 201, true},
		{"Transfer-Encoding on HTTP/1.0, kept alive",
			"POST /echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 201, true},
		{"two transfer codings", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, true},
		{"Transfer-Encoding twice", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, true},
		{"differing Content-Lengths", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, true},
		{"chunked alone", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 201, false},
		{"Content-Length alone", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 201, false},
	} {
		c := dialRaw(t, p.URL)
		c.send(t, tc.req)
		resp, _ := c.response(t, "POST")
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if !tc.close {
			// Still open: a second request on it is answered.
			c.send(t, "GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
				t.Errorf("%s: second request %d", tc.name, resp.StatusCode)
			}
			continue
		}
		if !c.closed(t) {
			t.Errorf("%s: connection left open", tc.name)
		}
	}
	if v := metricValue(p.Server, `edgepixel_pop_client_rejects_total{reason="ambiguous_framing"}`); v != "3" {
		t.Errorf("ambiguous framing counted %s times, want 3", v)
	}
	if v := metricValue(p.Server, `edgepixel_pop_client_rejects_total{reason="unsupported_transfer_encoding"}`); v != "2" {
		t.Errorf("net/http's 501s counted %s times, want 2", v)
	}
}

func TestHeadLimitsWhileReading(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.Clients.HeaderTimeout = 500 * time.Millisecond })
	// A header section that never ends is cut at the limit (431), not
	// buffered to a megabyte.
	c := dialRaw(t, p.URL)
	go func(c net.Conn) {
		io.WriteString(c, "GET /counter HTTP/1.1\r\nHost: x\r\nX-Fill: ")
		chunk := strings.Repeat("f", 16<<10)
		for range 64 { // 1 MiB
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	}(c.Conn)
	if code := c.status(t); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MiB header: %d", code)
	}
	// A URL over Fastly's 8 KB, within what is read: the exact answer.
	c = dialRaw(t, p.URL)
	c.send(t, "GET /counter?"+strings.Repeat("u", 9000)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.response(t, "GET"); resp.StatusCode != http.StatusRequestURITooLong || resp.Header.Get("X-Edgepixel-Drop") != "url_too_long" {
		t.Errorf("9000-byte URL: %d, X-Edgepixel-Drop %q", resp.StatusCode, resp.Header.Get("X-Edgepixel-Drop"))
	}
	// A head that stops coming is closed at the header timeout.
	c = dialRaw(t, p.URL)
	c.send(t, "GET /counter HTTP/1.1\r\nHost: x\r\n")
	if !c.closed(t) {
		t.Error("an unfinished head was not closed")
	}
	if v := metricValue(p.Server, `edgepixel_pop_client_timeouts_total{phase="header"}`); v != "1" {
		t.Errorf("header timeouts counted: %s", v)
	}
	if v := metricValue(p.Server, `edgepixel_pop_client_rejects_total{reason="header_too_large"}`); v != "1" {
		t.Errorf("431s counted: %s", v)
	}
}

// TestHitRejects: HitRejects counts the refusals on a path HitPath takes,
// ClientRejects all; net/http's own refusals have no path and are
// ClientRejects' alone.
func TestHitRejects(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.HitPath = func(path string) bool { return path == "/counter" } })
	for _, path := range []string{"/counter", "/counter", "/wp-login.php"} {
		c := dialRaw(t, p.URL)
		c.send(t, "GET "+path+"?"+strings.Repeat("u", 9000)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.response(t, "GET"); resp.StatusCode != http.StatusRequestURITooLong {
			t.Fatalf("9000-byte URL on %s: %d", path, resp.StatusCode)
		}
	}
	c := dialRaw(t, p.URL)
	c.send(t, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP\r\n\r\n") // a TLS ClientHello's start
	if code := c.status(t); code != http.StatusBadRequest {
		t.Fatalf("bytes that are not HTTP: %d", code)
	}
	waitFor(t, func() bool { return p.ClientRejects()["bad_request"] == 1 })
	if got, want := p.ClientRejects(), map[string]uint64{"url_too_long": 3, "bad_request": 1}; !maps.Equal(got, want) {
		t.Errorf("ClientRejects() = %v, want %v", got, want)
	}
	if got, want := p.HitRejects(), map[string]uint64{"url_too_long": 2}; !maps.Equal(got, want) {
		t.Errorf("HitRejects() = %v, want %v", got, want)
	}
}

// TestWriteTimeoutFreesInstance: a client that stops reading a streamed
// response loses its connection at the write timeout, and the guest
// streaming it is released for the next visitor.
func TestWriteTimeoutFreesInstance(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		c.Instances, c.MaxInstances = 1, 1
		c.Clients.WriteTimeout = 300 * time.Millisecond
	})
	c := dialRaw(t, p.URL)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	c.send(t, "GET /big?mb=64 HTTP/1.1\r\nHost: x\r\n\r\n")
	// Not read: the POP's writes block once the socket buffers are full.
	waitFor(t, func() bool {
		return metricValue(p.Server, `edgepixel_pop_client_timeouts_total{phase="write"}`) == "1"
	})
	if resp, body := p.get(t, "/counter"); resp.StatusCode != 200 || body == "" {
		t.Errorf("after the write timeout: %d %q", resp.StatusCode, body)
	}
}

// TestPoolThatCannotStartFailsServer: when no instance can start any more
// the server fails, for the process to exit and be restarted, and Ready
// says so first.
func TestPoolThatCannotStartFailsServer(t *testing.T) {
	m, err := fastlytoml.Parse([]byte("[local_server.kv_stores]\npoison = []\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := startPOP(t, m, func(c *Config) {
		c.Instances, c.MaxInstances = 1, 1
		c.startFailAfter = 500 * time.Millisecond
	})
	if err := p.Ready(); err != nil {
		t.Fatal(err)
	}
	p.get(t, "/poison") // the guest's start-up dependency breaks
	select {
	case <-p.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not fail with no instance able to start")
	}
	if err := p.Ready(); err == nil || !strings.Contains(err.Error(), "could start") {
		t.Errorf("Ready after the failure: %v", err)
	}
	fmt.Fprint(io.Discard, p.Err())
}

// edgepixel-pop reports the refusals that are hits to the aggregator by
// their names here, which shared/wire's host drop reasons must keep.
func TestRejectNamesAreDropReasons(t *testing.T) {
	for _, r := range []string{wire.DropURLTooLong, wire.DropHeaderTooLarge, wire.DropBodyTooLarge, wire.DropBodyMemory,
		wire.DropBodyIncomplete, wire.DropBadRequest, wire.DropUnsupportedTE} {
		if !slices.Contains(rejectNames[:], r) {
			t.Errorf("shared/wire's %q is none of the POP's rejectNames %q", r, rejectNames)
		}
	}
}

// A client that half-closes after its request (shutdown(SHUT_WR), as nc
// -N and some proxies do) makes net/http cancel the request's context,
// as if it had gone. The POP then returned without an answer and
// net/http sent an empty 200 in its place, so a refused request read as
// accepted (a tester's bad POST /e got 200 22 times in 30). Such a
// client gets the guest's answer or none, never another.
func TestHalfClosedClientGetsNoFalseAnswer(t *testing.T) {
	p := startPOP(t, nil, nil)
	answered, closed := 0, 0
	for range 30 {
		c := dialRaw(t, p.URL)
		c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef")
		c.Conn.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("no answer and no close within 10 s: %v", err)
			}
			closed++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated || string(body) != "abcdef" {
			t.Fatalf("a half-closed client got %d %q, want the guest's 201 \"abcdef\" or nothing", resp.StatusCode, body)
		}
		answered++
	}
	t.Logf("%d answered, %d closed without an answer", answered, closed)
}
