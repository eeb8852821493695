package pixel

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Batcher holds events between a visitor's response and their delivery to
// the aggregator. One Batcher lives in each warm instance; it is not safe
// for concurrent use (an edge instance runs one request at a time).
type Batcher struct {
	MaxEvents   int           // flush when this many are buffered
	MaxAge      time.Duration // flush when the oldest is this old
	MaxBuffered int           // beyond this (aggregator unreachable), new events are dropped and counted

	events  []event.Event
	oldest  time.Time
	Dropped int // events refused because the buffer was full
}

// Add buffers events. It returns false if they were dropped because the
// buffer is full, which only happens when deliveries keep failing.
func (b *Batcher) Add(now time.Time, evs ...event.Event) bool {
	if len(b.events)+len(evs) > b.MaxBuffered {
		b.Dropped += len(evs)
		return false
	}
	if len(b.events) == 0 {
		b.oldest = now
	}
	b.events = append(b.events, evs...)
	return true
}

// Len is the number of buffered events.
func (b *Batcher) Len() int { return len(b.events) }

// Due reports whether the buffer should be flushed now.
func (b *Batcher) Due(now time.Time) bool {
	n := len(b.events)
	return n > 0 && (n >= b.MaxEvents || now.Sub(b.oldest) >= b.MaxAge)
}

// Request is one delivery attempt: a signed batch body and its headers.
type Request struct {
	Body      []byte
	Timestamp string
	Signature string
}

// Send performs one delivery attempt and reports the aggregator's status
// code and Retry-After (zero if absent), or a transport error.
type Send func(r *Request) (status int, retryAfter time.Duration, err error)

// ErrRejected means the aggregator refused a batch for good (400, 401, 413):
// retrying the same bytes cannot succeed, so the batch is dropped and logged.
var ErrRejected = errors.New("aggregator rejected the batch")

// Retry policy: a few quick attempts, because the instance that flushes
// cannot serve visitors meanwhile; what still fails stays buffered for the
// next flush (bounded by MaxBuffered).
var backoff = []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond, time.Second}

// Flush delivers up to MaxEvents buffered events per batch until the buffer
// is empty or an attempt fails. now and sleep are the platform's clock.
// Events are removed only after the aggregator acknowledged them, so a
// failure leaves them buffered for the next flush.
func (b *Batcher) Flush(secret []byte, send Send, now func() time.Time, sleep func(time.Duration)) error {
	for len(b.events) > 0 {
		n := min(len(b.events), b.MaxEvents, wire.MaxEvents)
		body := wire.Append(nil, b.events[:n])
		if err := deliver(body, secret, send, now, sleep); err != nil {
			if errors.Is(err, ErrRejected) {
				b.drop(n)
			}
			return err
		}
		b.drop(n)
	}
	return nil
}

// Drain hands buffered events, up to MaxEvents at a time, to deliver until
// the buffer is empty or deliver fails; events are removed only after
// deliver succeeded. It is Flush for platforms that deliver without a
// signed batch (a CDN's log streaming).
func (b *Batcher) Drain(deliver func([]event.Event) error) error {
	for len(b.events) > 0 {
		n := min(len(b.events), b.MaxEvents)
		if err := deliver(b.events[:n]); err != nil {
			return err
		}
		b.drop(n)
	}
	return nil
}

func (b *Batcher) drop(n int) {
	b.events = append(b.events[:0], b.events[n:]...)
	if len(b.events) > 0 {
		b.oldest = time.UnixMilli(b.events[0].Time)
	}
}

func deliver(body, secret []byte, send Send, now func() time.Time, sleep func(time.Duration)) error {
	var last error
	for _, wait := range backoff {
		sleep(wait)
		ts := now().Unix()
		status, retryAfter, err := send(&Request{
			Body:      body,
			Timestamp: strconv.FormatInt(ts, 10),
			Signature: wire.Sign(secret, ts, body),
		})
		switch {
		case err != nil:
			last = err
		case status >= 200 && status < 300:
			return nil
		case status == 400 || status == 401 || status == 413:
			return fmt.Errorf("%w: status %d", ErrRejected, status)
		default:
			last = fmt.Errorf("aggregator answered %d", status)
			if retryAfter > 0 && retryAfter <= time.Second {
				sleep(retryAfter)
			}
		}
	}
	return last
}
