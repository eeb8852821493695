package pop

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Per-request observation: the latency histogram, responses by status
// class and the optional NDJSON access log. ServeHTTP wraps the
// ResponseWriter to learn the final status and the body size, and times
// the request until its response body is complete (which, for a guest that
// keeps working after responding, is before the guest's handler returns).

// ServeHTTP hands the request to a warm instance and relays its response
// (Server.serve), then records it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	start := time.Now()
	// Deferred so a request aborted mid-body (serve panics with
	// http.ErrAbortHandler) is counted too.
	defer s.observe(rec, r, start)
	s.serve(rec, r)
}

// servedBy is the id of the instance that took a client request and the
// request id it gave it, set by the instance (bind) and read by
// ServeHTTP's goroutine afterwards.
type servedBy struct{ id, req atomic.Uint64 }

func (sb *servedBy) set(id, req uint64) { sb.id.Store(id); sb.req.Store(req) }

// recorder is the ResponseWriter serve writes to.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	ds     *downstream // set by serve once the request has one
}

func (w *recorder) WriteHeader(code int) {
	// 1xx responses are interim; the status that counts is the final one.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's ReadFrom (sendfile, splice for
// backend bodies) available to io.Copy.
func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }

// statusClientGone is what a request that ended without a response
// because the client went away is recorded as (nginx's convention).
const statusClientGone = 499

func (s *Server) observe(rec *recorder, r *http.Request, start time.Time) {
	d := time.Since(start)
	status := rec.status
	if status == 0 {
		if r.Context().Err() != nil {
			status = statusClientGone
		} else {
			status = http.StatusOK // net/http sends an empty 200
		}
	}
	s.m.duration.observe(d)
	s.m.observeStatus(status)
	if s.access != nil {
		var inst, id uint64
		if rec.ds != nil {
			inst, id = rec.ds.servedBy.id.Load(), rec.ds.servedBy.req.Load()
		}
		s.access.add(start, r, status, rec.bytes, d, inst, id)
	}
}

// accessLog writes one JSON object per request:
//
//	{"time":"2026-01-02T15:04:05.123Z","remote":"127.0.0.1:51234","method":"GET",
//	 "uri":"/p?x=1","proto":"HTTP/2.0","status":200,"bytes":43,"duration_ms":0.412,
//	 "instance":3,"request_id":"0000000000000000000000000000002a"}
//
// time is when the request arrived and duration_ms how long until its
// response was complete; status 499 means the client went away first;
// instance is the guest instance that served the request (0: none did);
// request_id is what the guest saw as downstream_client_request_id. Lines
// are encoded by hand into a buffer that is written out when it holds 64
// KiB, every second, and at Shutdown, always in whole lines, so a request
// costs an append under a mutex, not a write system call.
type accessLog struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	failed bool
	err    error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

const (
	accessLogBufferBytes = 64 << 10
	accessLogFlushEvery  = time.Second
)

func newAccessLog(w io.Writer) *accessLog {
	a := &accessLog{w: w, buf: make([]byte, 0, accessLogBufferBytes+1024),
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(accessLogFlushEvery)
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

func (a *accessLog) add(start time.Time, r *http.Request, status int, n int64, d time.Duration, inst, id uint64) {
	a.mu.Lock()
	b := a.buf
	b = append(b, `{"time":"`...)
	b = start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","remote":`...)
	b = appendJSONString(b, r.RemoteAddr)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.RequestURI)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"instance":`...)
	b = strconv.AppendUint(b, inst, 10)
	if id != 0 {
		b = append(b, `,"request_id":"`...)
		var hex [32]byte
		for i := range hex {
			hex[i] = '0'
		}
		var digits [16]byte
		v := strconv.AppendUint(digits[:0], id, 16)
		copy(hex[32-len(v):], v)
		b = append(b, hex[:]...)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	a.buf = b
	if len(a.buf) >= accessLogBufferBytes {
		a.flushLocked()
	}
	a.mu.Unlock()
}

func (a *accessLog) flushLocked() {
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.w.Write(a.buf); err != nil && !a.failed {
		// Keep serving; the error is reported once, at Shutdown.
		a.failed = true
		a.err = err
	}
	a.buf = a.buf[:0]
}

// close writes out what is buffered and stops the flusher. The writer
// itself belongs to the caller.
func (a *accessLog) close() error {
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

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so every line is valid JSON whatever a
// client sent.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// openOutputs sets up the log endpoint destinations and the access log
// before any instance starts (a guest may log during its start-up).
func (s *Server) openOutputs(cfg Config) error {
	sinks, err := newLogSinks(cfg.LogEndpoints, s.stdout, s.log)
	if err != nil {
		return err
	}
	s.sinks = sinks
	if cfg.AccessLog != nil {
		s.access = newAccessLog(cfg.AccessLog)
	}
	return nil
}

// closeOutputs flushes them at Shutdown, after the guests have ended, so
// entries logged after a ServeMany loop are delivered. HTTP log endpoints
// may take until ctx ends.
func (s *Server) closeOutputs(ctx context.Context) error {
	var err error
	if s.sinks != nil {
		err = s.sinks.close(ctx)
	}
	if s.access != nil {
		err = errors.Join(err, s.access.close())
	}
	return err
}
