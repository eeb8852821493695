// Package accesslog writes the POP's NDJSON access log: one JSON object
// per client request,
//
//	{"time":"2026-01-02T15:04:05.123Z","remote":"127.0.0.1:51234","method":"GET",
//	 "uri":"/p?x=1","proto":"HTTP/2.0","status":200,"bytes":43,"duration_ms":0.412,
//	 "instance":3,"request_id":"0000000000000000000000000000002a"}
//
// remote is the client's address: the connection's, or, behind a trusted
// proxy, the one the proxy gave (a header, or the PROXY protocol), with
// the proxy's own as "peer" (absent otherwise).
//
// time is when the request arrived and duration_ms how long until its
// response was complete; status 499 means the client went away first;
// instance is the guest instance that served the request (0: none did);
// request_id is what the guest saw as downstream_client_request_id (absent
// when no guest saw the request).
//
// Lines are encoded by hand into a buffer that is written out when it
// holds 64 KiB, every second, and at Close, always in whole lines, so a
// request costs an append under a mutex, not a write system call.
package accesslog

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// Entry is one request's line.
type Entry struct {
	Start     time.Time     // when the request arrived
	Request   *http.Request // remote address, method, URI and protocol come from it
	Peer      string        // the proxy that said who the client is; "": none
	Status    int           // the final status sent (499: none, the client went away)
	Bytes     int64         // response body bytes written
	Duration  time.Duration // until the response body was complete
	Instance  uint64        // the guest instance that served it; 0: none
	RequestID string        // downstream_client_request_id; "": none
}

// Log is an access log. Its methods are safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	w      io.Writer
	fail   func(error)
	buf    []byte
	failed bool
	err    error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

const (
	bufferBytes = 64 << 10
	flushEvery  = time.Second
)

// New starts a log writing to w. Close it to write out the last lines.
// fail (may be nil) is called once, at the first write error: the lines
// are being lost until the cause is fixed.
func New(w io.Writer, fail func(error)) *Log {
	if fail == nil {
		fail = func(error) {}
	}
	a := &Log{w: w, fail: fail, buf: make([]byte, 0, bufferBytes+1024),
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				a.mu.Lock()
				a.flushLocked()
				a.mu.Unlock()
			case <-a.stop:
				return
			}
		}
	}()
	return a
}

// Add appends e's line. A write error is reported to the fail function
// given to New, and by Close.
func (a *Log) Add(e Entry) {
	r := e.Request
	a.mu.Lock()
	b := a.buf
	b = append(b, `{"time":"`...)
	b = e.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","remote":`...)
	b = wire.AppendJSONString(b, r.RemoteAddr)
	if e.Peer != "" {
		b = append(b, `,"peer":`...)
		b = wire.AppendJSONString(b, e.Peer)
	}
	b = append(b, `,"method":`...)
	b = wire.AppendJSONString(b, r.Method)
	b = append(b, `,"uri":`...)
	b = wire.AppendJSONString(b, r.RequestURI)
	b = append(b, `,"proto":`...)
	b = wire.AppendJSONString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"instance":`...)
	b = strconv.AppendUint(b, e.Instance, 10)
	if e.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = wire.AppendJSONString(b, e.RequestID)
	}
	b = append(b, "}\n"...)
	a.buf = b
	if len(a.buf) >= bufferBytes {
		a.flushLocked()
	}
	a.mu.Unlock()
}

func (a *Log) flushLocked() {
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.w.Write(a.buf); err != nil && !a.failed {
		// Reported to fail once, and again at Close.
		a.failed = true
		a.err = err
		a.fail(fmt.Errorf("access log: %w", err))
	}
	a.buf = a.buf[:0]
}

// Close writes out what is buffered and stops the flusher; it reports the
// first write error, if any. The writer itself belongs to the caller.
func (a *Log) Close() error {
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		a.mu.Lock()
		a.flushLocked()
		a.mu.Unlock()
	})
	if a.err != nil {
		return errors.Join(errors.New("access log"), a.err)
	}
	return nil
}
