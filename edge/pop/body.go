package pop

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// body is the object behind a body handle: a queue of segments, each either
// bytes the guest wrote or a reader the host attached (a client request
// body, a backend response body). Reading consumes from the front; writing
// appends (or prepends); appending one body to another moves its segments,
// so passing a backend response through to the client never copies it into
// guest memory.
//
// A body is "streaming" once another goroutine consumes it while the guest
// keeps writing: the downstream response after send_downstream(streaming),
// or a backend request body after send_async_streaming. Then mu guards the
// queue, wake tells the consumer there is more, and room throttles a guest
// that writes faster than the consumer drains (maxStreamBuffer).
type body struct {
	mu        sync.Mutex
	segs      []segment
	buffered  int  // bytes held in data segments
	streaming bool // consumed by another goroutine; the guest may only write
	closed    bool // the writer has finished
	err       error
	gone      bool // the consumer went away; further writes are discarded
	wake      chan struct{}
	room      chan struct{}

	// trailers are the body's HTTP trailers: appended by the guest, or
	// collected from readers (a client request or backend response body)
	// as they reach EOF. trailersReady is set once the body has been read
	// to its end; before that the trailer getters answer $again
	// (trailers.go).
	trailers      headerList
	trailersReady bool
}

type segment struct {
	data []byte
	r    io.Reader
	n    int64 // remaining length of r, or -1 if unknown
}

// maxStreamBuffer bounds how far a guest may write ahead of a slow client
// or backend before its writes block.
const maxStreamBuffer = 256 << 10

var (
	errAbandoned   = errors.New("body abandoned by the guest")
	errGuestFailed = errors.New("guest failed while streaming the body")
)

func newBody() *body { return &body{} }

// newReaderBody wraps an incoming body with a known length n (-1 if not).
func newReaderBody(r io.Reader, n int64) *body {
	b := &body{}
	if r != nil && n != 0 {
		b.segs = append(b.segs, segment{r: r, n: n})
	}
	return b
}

func notify(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// makeStreaming hands the body to a consumer goroutine. Called on the
// guest's goroutine before the body is published to the consumer.
func (b *body) makeStreaming() {
	b.mu.Lock()
	b.streaming = true
	if b.wake == nil {
		b.wake = make(chan struct{}, 1)
		b.room = make(chan struct{}, 1)
	}
	b.mu.Unlock()
}

// --- guest side ---

// write adds p at the back (or front) of the body. For a streaming body it
// blocks while the consumer is maxStreamBuffer behind, until ctx ends.
func (b *body) write(ctx context.Context, p []byte, front bool) error {
	b.mu.Lock()
	for b.streaming && !b.gone && b.buffered >= maxStreamBuffer {
		b.mu.Unlock()
		select {
		case <-b.room:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	if b.gone {
		b.mu.Unlock()
		return nil
	}
	switch {
	case len(p) == 0:
	case front:
		b.segs = append(b.segs, segment{})
		copy(b.segs[1:], b.segs)
		b.segs[0] = segment{data: append([]byte(nil), p...)}
	case len(b.segs) > 0 && b.segs[len(b.segs)-1].r == nil:
		last := &b.segs[len(b.segs)-1]
		last.data = append(last.data, p...)
	default:
		b.segs = append(b.segs, segment{data: append(make([]byte, 0, max(len(p), 512)), p...)})
	}
	b.buffered += len(p)
	wake := b.wake
	b.mu.Unlock()
	notify(wake)
	return nil
}

// read fills dst from the front of a non-streaming body. It returns 0 and
// no error at the end of the body (the hostcall's EOF signal). It may block
// on a network reader.
func (b *body) read(dst []byte) (int, error) {
	if len(dst) == 0 {
		return 0, nil
	}
	for {
		b.mu.Lock()
		if len(b.segs) == 0 {
			b.trailersReady = true
			b.mu.Unlock()
			return 0, nil
		}
		s := &b.segs[0]
		if s.r == nil {
			n := copy(dst, s.data)
			s.data = s.data[n:]
			b.buffered -= n
			if len(s.data) == 0 {
				b.popFront()
			}
			b.mu.Unlock()
			return n, nil
		}
		r := s.r
		b.mu.Unlock()
		n, err := r.Read(dst)
		if n > 0 {
			b.mu.Lock()
			if len(b.segs) > 0 && b.segs[0].r == r && b.segs[0].n > 0 {
				b.segs[0].n -= int64(n)
			}
			b.mu.Unlock()
		}
		if err == io.EOF {
			b.collectTrailers(r)
			b.mu.Lock()
			if len(b.segs) > 0 && b.segs[0].r == r {
				b.popFront()
			}
			b.mu.Unlock()
			closeReader(r)
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (b *body) popFront() {
	b.segs[0] = segment{}
	b.segs = b.segs[1:]
	if len(b.segs) == 0 {
		b.segs = nil
	}
}

// appendBody moves all of src's content to the back of b.
func (b *body) appendBody(src *body) {
	src.mu.Lock()
	segs, n := src.segs, src.buffered
	src.segs, src.buffered = nil, 0
	trailers := src.trailers
	src.trailers = nil
	src.mu.Unlock()
	// The source's trailers go with its content (as in Viceroy).
	b.mu.Lock()
	for _, f := range trailers {
		for _, v := range f.vals {
			b.trailers.appendValue(f.name, v)
		}
	}
	b.mu.Unlock()
	if len(segs) == 0 {
		return
	}
	b.mu.Lock()
	if b.gone {
		b.mu.Unlock()
		releaseSegments(segs)
		return
	}
	b.segs = append(b.segs, segs...)
	b.buffered += n
	wake := b.wake
	b.mu.Unlock()
	notify(wake)
}

// knownLength reports the body's total length if it is determined: all
// segments are bytes or readers of known length, and (for streaming
// bodies) the writer has finished.
func (b *body) knownLength() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streaming && !b.closed {
		return 0, false
	}
	var total int64
	for _, s := range b.segs {
		switch {
		case s.r == nil:
			total += int64(len(s.data))
		case s.n >= 0:
			total += s.n
		default:
			return 0, false
		}
	}
	return total, true
}

// settle waits until a streaming body is closed, holds at least maxBytes,
// or maxWait has passed. Holding the response head that long lets a small
// streamed response (a pixel, a JSON reply) go out with an exact
// Content-Length in one write instead of chunked in several, while a
// long-running stream is delayed by at most maxWait.
func (b *body) settle(ctx context.Context, maxBytes int, maxWait time.Duration) {
	var timer *time.Timer
	for {
		b.mu.Lock()
		done := !b.streaming || b.closed || b.err != nil || b.gone || b.buffered >= maxBytes
		wake := b.wake
		b.mu.Unlock()
		if done || wake == nil {
			break
		}
		if timer == nil {
			timer = time.NewTimer(maxWait)
		}
		select {
		case <-wake:
			// take re-checks the state before it waits, so consuming
			// this signal here loses nothing.
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
	if timer != nil {
		timer.Stop()
	}
}

// finish marks the end of the guest's writes (close on a streaming body).
func (b *body) finish(err error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	if err != nil && b.err == nil {
		b.err = err
	}
	wake := b.wake
	b.mu.Unlock()
	notify(wake)
}

// release frees what a body holds when its handle goes away without the
// body having been handed to a consumer.
func (b *body) release() {
	b.mu.Lock()
	segs := b.segs
	b.segs, b.buffered = nil, 0
	b.mu.Unlock()
	releaseSegments(segs)
}

func releaseSegments(segs []segment) {
	for _, s := range segs {
		if s.r != nil {
			closeReader(s.r)
		}
	}
}

func closeReader(r io.Reader) {
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
}

// --- consumer side ---

// take waits until the body has content or has ended and moves the queued
// segments to the caller (appended to dst). done is true when the writer
// has finished and nothing more will come; err is set if the body was
// abandoned or the guest failed mid-stream.
func (b *body) take(ctx context.Context, dst []segment) (_ []segment, done bool, err error) {
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			segs := b.segs
			b.segs, b.buffered = nil, 0
			b.mu.Unlock()
			releaseSegments(segs)
			return dst, true, err
		}
		if len(b.segs) > 0 || b.closed {
			dst = append(dst, b.segs...)
			clear(b.segs)
			b.segs = b.segs[:0]
			b.buffered = 0
			done := b.closed
			room := b.room
			b.mu.Unlock()
			notify(room)
			return dst, done, nil
		}
		wake := b.wake
		b.mu.Unlock()
		if wake == nil {
			// Not streaming and not closed cannot happen for a body handed
			// to a consumer; treat it as ended rather than wait forever.
			return dst, true, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return dst, true, ctx.Err()
		}
	}
}

// stop tells the writer the consumer is gone: later writes are discarded
// and a writer blocked on backpressure is released.
func (b *body) stop() {
	b.mu.Lock()
	b.gone = true
	segs := b.segs
	b.segs, b.buffered = nil, 0
	room := b.room
	b.mu.Unlock()
	releaseSegments(segs)
	notify(room)
}

// bodyReader adapts a body to io.ReadCloser for net/http (the request body
// of a backend send).
type bodyReader struct {
	b    *body
	ctx  context.Context
	cur  []segment
	rbuf []byte
	// trailer, if set, is the outgoing request's Trailer map; it gets the
	// body's trailers when the body ends.
	trailer http.Header
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for {
		for len(r.cur) > 0 {
			s := &r.cur[0]
			if s.r == nil {
				if len(s.data) == 0 {
					r.cur = r.cur[1:]
					continue
				}
				n := copy(p, s.data)
				s.data = s.data[n:]
				return n, nil
			}
			n, err := s.r.Read(p)
			if err == io.EOF {
				r.b.collectTrailers(s.r)
				closeReader(s.r)
				r.cur = r.cur[1:]
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		segs, done, err := r.b.take(r.ctx, r.cur[:0])
		if err != nil {
			return 0, err
		}
		r.cur = segs
		if len(segs) == 0 && done {
			if r.trailer != nil {
				r.b.trailerSnapshot().toHTTP(r.trailer, forbiddenTrailer)
			}
			return 0, io.EOF
		}
	}
}

func (r *bodyReader) Close() error {
	releaseSegments(r.cur)
	r.cur = nil
	r.b.stop()
	return nil
}
