// Package attack is hostile traffic for edgepixel's tests and benchmarks
// (issue 9): crowds of raw TCP connections that stall, trickle, flood or
// confuse an HTTP server the way an attacker would; a normal-load generator
// that measures what ordinary clients get meanwhile (count, rate, p99); a
// process's resident memory and open files read from /proc; the memory
// bounds the README documents; and the scenarios a whole stack is attacked
// with (the end-to-end suite in tests and `make bench` run the same ones).
//
// Everything is bounded by its caller (a number of connections, a Stop or a
// context) and runs on loopback only: connections come from 127.x.y.z
// source addresses, so that a server's per-client limits see as many
// distinct clients as the attack wants.
package attack

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Addrs returns n loopback addresses from first on (127.0.1.1, 127.0.1.2,
// ...), skipping .0 and .255 as it carries into the next byte.
func Addrs(first string, n int) []string {
	v := binary.BigEndian.Uint32(net.ParseIP(first).To4())
	out := make([]string, n)
	for i := range out {
		for v&0xff == 0 || v&0xff == 0xff {
			v++
		}
		out[i] = net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
		v++
	}
	return out
}

// Dial connects to addr from the loopback address src, within 10 s.
func Dial(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// A Writer is what one attack connection sends: it writes to c until it
// has sent everything, a write fails, or stop is closed, and returns. It
// calls holds once the attack holds (its first bytes written), if it gets
// that far. The connection stays open until the crowd stops; the crowd
// reads what the server answers meanwhile.
type Writer func(c net.Conn, holds func(), stop <-chan struct{})

// Send writes parts in order, then holds the connection. The parts are
// written as they are, never copied, so a crowd can share one large body.
func Send(parts ...[]byte) Writer {
	return func(c net.Conn, holds func(), _ <-chan struct{}) {
		for _, p := range parts {
			if _, err := c.Write(p); err != nil {
				return
			}
		}
		holds()
	}
}

// Trickle writes head, then piece(i) every interval for i from 0 to n-1:
// a client that is never idle for long and never done.
func Trickle(head []byte, every time.Duration, n int, piece func(i int) []byte) Writer {
	return func(c net.Conn, holds func(), stop <-chan struct{}) {
		if _, err := c.Write(head); err != nil {
			return
		}
		holds()
		t := time.NewTicker(every)
		defer t.Stop()
		for i := range n {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := c.Write(piece(i)); err != nil {
				return
			}
		}
	}
}

// Crowd is a set of attack connections to one server, each writing its
// attack while the crowd reads and records the server's answers.
type Crowd struct {
	addr    string
	stop    chan struct{}
	once    sync.Once
	writers sync.WaitGroup
	readers sync.WaitGroup

	mu       sync.Mutex
	conns    []*conn
	dialErrs int
}

// conn is one attack connection and what the server did with it.
type conn struct {
	c        net.Conn
	statuses []int
	closed   bool // the server ended it (EOF, reset) before the crowd did
}

func newCrowd(addr string) *Crowd {
	return &Crowd{addr: addr, stop: make(chan struct{})}
}

// Open dials n connections to addr (64 at a time), spread over the source
// addresses srcs, and starts w on each. It returns once every connection
// holds (its writer has written what makes it hold, or ended), or after
// 10 s at the most: the attack then goes on until Stop.
func Open(addr string, srcs []string, n int, w Writer) *Crowd {
	cr := newCrowd(addr)
	sem := make(chan struct{}, 64)
	var holding sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		holding.Add(1)
		go func() {
			var once sync.Once
			holds := func() { once.Do(holding.Done) }
			defer func() { <-sem }()
			c, err := Dial(srcs[i%len(srcs)], addr)
			if err != nil {
				cr.mu.Lock()
				cr.dialErrs++
				cr.mu.Unlock()
				holds()
				return
			}
			cc := cr.add(c)
			cr.readers.Go(func() { cr.read(cc, bufio.NewReaderSize(c, 1024)) })
			cr.writers.Go(func() {
				defer holds()
				w(c, holds, cr.stop)
			})
		}()
	}
	held := make(chan struct{})
	go func() { holding.Wait(); close(held) }()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
	}
	return cr
}

func (cr *Crowd) add(c net.Conn) *conn {
	cc := &conn{c: c}
	cr.mu.Lock()
	cr.conns = append(cr.conns, cc)
	cr.mu.Unlock()
	return cc
}

// read records every answer on cc until the connection ends or the read
// deadline Stop sets passes.
func (cr *Crowd) read(cc *conn, br *bufio.Reader) {
	for cr.answer(cc, br) != nil {
	}
}

// answer reads and records one answer on cc, or how the connection ended
// (then it returns nil).
func (cr *Crowd) answer(cc *conn, br *bufio.Reader) *http.Response {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		cr.ended(cc, err)
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cr.mu.Lock()
	cc.statuses = append(cc.statuses, resp.StatusCode)
	cr.mu.Unlock()
	return resp
}

// ended records how a read on cc failed: the server ending the connection,
// or the crowd (its deadline or Close).
func (cr *Crowd) ended(cc *conn, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
		return
	}
	cr.mu.Lock()
	cc.closed = true
	cr.mu.Unlock()
}

// Stop ends the attack: writers stop, each connection has until wait from
// now to get the answer it is owed (or be closed by the server), then all
// are closed. It reports what the server did.
func (cr *Crowd) Stop(wait time.Duration) Report {
	cr.once.Do(func() { close(cr.stop) })
	deadline := time.Now().Add(wait)
	cr.mu.Lock()
	conns := slices.Clone(cr.conns)
	cr.mu.Unlock()
	for _, cc := range conns {
		cc.c.SetReadDeadline(deadline)
	}
	cr.readers.Wait()
	for _, cc := range conns {
		cc.c.Close()
	}
	cr.writers.Wait()
	return cr.report()
}

// Report is what a server did with a crowd's connections.
type Report struct {
	Conns      int         // connections opened
	DialErrors int         // connections that could not be opened
	First      map[int]int // each connection's first answer: status → connections (0: none)
	Answers    map[int]int // every answer: status → answers
	Closed     int         // connections the server ended before Stop
	More       int         // connections answered more than once
}

func (cr *Crowd) report() Report {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	r := Report{Conns: len(cr.conns), DialErrors: cr.dialErrs, First: map[int]int{}, Answers: map[int]int{}}
	for _, cc := range cr.conns {
		first := 0
		if len(cc.statuses) > 0 {
			first = cc.statuses[0]
		}
		r.First[first]++
		for _, s := range cc.statuses {
			r.Answers[s]++
		}
		if cc.closed {
			r.Closed++
		}
		if len(cc.statuses) > 1 {
			r.More++
		}
	}
	return r
}

// Open is how many connections the server left open until Stop.
func (r Report) Open() int { return r.Conns - r.Closed }

// String reads like "200 conns: first answers 408×200; closed by the server 200".
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d conns", r.Conns)
	if r.DialErrors > 0 {
		fmt.Fprintf(&b, " (+%d not opened)", r.DialErrors)
	}
	b.WriteString(": first answers")
	for _, s := range sortedKeys(r.First) {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "none"
		}
		fmt.Fprintf(&b, " %s×%d", name, r.First[s])
	}
	if n := sum(r.Answers); n > sum(r.First)-r.First[0] {
		fmt.Fprintf(&b, "; %d answers in all", n)
	}
	fmt.Fprintf(&b, "; closed by the server %d", r.Closed)
	if r.More > 0 {
		fmt.Fprintf(&b, "; %d answered more than once", r.More)
	}
	return b.String()
}

func sortedKeys(m map[int]int) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Repeat has n senders (over the source addresses srcs) each send up to
// count requests (0: no limit) back to back until Stop, each req's parts
// written while the answer is read: credential guessing, unsigned bodies.
// A connection the server closes, or whose request it answered without
// reading all of it, is replaced by a new one. Every connection and answer
// is in the Report.
func Repeat(addr string, srcs []string, n, count int, req func() [][]byte) *Crowd {
	cr := newCrowd(addr)
	for i := range n {
		cr.readers.Go(func() { cr.repeat(srcs[i%len(srcs)], count, req) })
	}
	return cr
}

func (cr *Crowd) repeat(src string, count int, req func() [][]byte) {
	sent := 0
	more := func() bool { return !cr.stopped() && (count == 0 || sent < count) }
	for more() {
		c, err := Dial(src, cr.addr)
		if err != nil {
			cr.mu.Lock()
			cr.dialErrs++
			cr.mu.Unlock()
			select {
			case <-cr.stop:
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		cc := cr.add(c)
		if cr.stopped() { // Stop may have set deadlines before cc was added
			c.Close()
			return
		}
		br := bufio.NewReader(c)
		for more() {
			sent++
			written := make(chan struct{})
			go func() {
				defer close(written)
				for _, p := range req() {
					if _, err := c.Write(p); err != nil {
						return
					}
				}
			}()
			resp := cr.answer(cc, br)
			if resp == nil {
				break
			}
			select {
			case <-written:
			case <-time.After(200 * time.Millisecond):
				resp.Close = true // the rest of the request was not read
			}
			if resp.Close {
				break
			}
		}
		c.Close()
	}
}

func (cr *Crowd) stopped() bool {
	select {
	case <-cr.stop:
		return true
	default:
		return false
	}
}
