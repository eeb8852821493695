package pixel

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Batcher takes the events of an instance's hits and delivers them, with
// the instance's counts (counters.go). One Batcher lives in each instance;
// it is not safe for concurrent use (an edge instance runs one request at
// a time).
//
// It delivers by three paths, and drops (counting wire.DropDeliveryFailed)
// only what none of them takes:
//
//  1. The journal, if set: each hit's NDJSON line is written before the
//     visitor is answered, and a journaled event is delivered as far as
//     the module is concerned. It is for hosts whose log endpoint keeps
//     its queue on disk (the self-hosted POP: the write is on its way to
//     disk when the hostcall returns), so a hit that was answered
//     survives a crash of the host.
//  2. Signed batches to the aggregator, a few quick attempts per flush
//     (the instance cannot serve visitors meanwhile).
//  3. The fallback log endpoint, if set, takes NDJSON lines when batch
//     delivery fails (and for a while after, without trying the backend
//     each time), when the aggregator refuses a batch for good, when the
//     buffer is full, and when the instance ends with events buffered.
//     On Fastly, real-time log streaming buffers and retries them to the
//     aggregator's /ingest/ndjson; on the POP, a disk-queued endpoint does.
//
// A journaled event is not buffered; what the journal refuses (a disk
// queue over its budget, or one whose disk cannot write until a retry
// succeeds) is buffered for the batch path, and dropped only as above:
// it is in memory, so a crash of the host loses it. Buffered events
// are kept encoded (wire.Encoded), so Add keeps no string of its events:
// they may point into buffers the caller reuses.
type Batcher struct {
	MaxEvents   int           // flush when this many are buffered
	MaxAge      time.Duration // flush when the oldest is this old
	MaxBuffered int           // beyond this, the buffer goes to the fallback; without one, new events are dropped and counted

	// Journal writes one line durably, before the visitor is answered,
	// or returns an error (the line is then delivered another way).
	Journal func(line []byte) error
	// Fallback writes one line to the fallback log endpoint, or returns
	// an error.
	Fallback func(line []byte) error

	// Counts are this instance's counters.
	Counts Counts

	// events are the buffered events in their batch encoding: no pointer
	// per event for a collector to trace, and a batch is these bytes
	// behind a header.
	events  wire.Encoded
	oldest  time.Time
	line    []byte
	body    []byte
	req     Request     // see Take
	scratch event.Event // see journal
	rep     report
	failing bool      // the last batch attempt failed: the next one tries once
	retryAt time.Time // with a fallback, until then flushes skip the backend
	// rejected is set when the aggregator refused a batch for good
	// (ErrRejected), until it accepts one: without a fallback too,
	// flushes before retryAt send nothing.
	rejected bool
	// v1 is set once the aggregator refused a version 2 batch: it predates
	// counters, so they are no longer sent to it.
	v1 bool
	// taken is the batch Take handed out and not yet settled: its event
	// count, and whether it carries the unreported counts.
	taken struct {
		n      int
		counts bool
		ok     bool
	}
}

// Add counts one hit whose events are accepted (the hit for the first
// event's site, each event for its own) and takes the events for
// delivery; with a journal, their lines are written before it returns.
// It reports false, counting nothing, when the buffer cannot take them:
// the caller then answers wire.DropBufferFull, which counts as the hit's drop.
func (b *Batcher) Add(now time.Time, evs ...event.Event) bool {
	return b.add(now, evs, nil)
}

// add is Add with a wire.Note* reason for each event with one: notes[i] for
// evs[i], "" for none; nil for no notes at all. Notes are counted with
// the events, before the journal writes their site's counts.
func (b *Batcher) add(now time.Time, evs []event.Event, notes []string) bool {
	if len(evs) == 0 {
		return true
	}
	if !b.room(now, len(evs)) {
		return false
	}
	sc := b.Counts.site(now, evs[0].Site)
	sc.Hits++
	b.Counts.changed(sc, now)
	// Each event is counted just before its journal line, which carries
	// the counts: a POP killed between two lines of a POST has counted
	// the events it wrote, not the whole POST (a tester's SIGKILL stored
	// 37 of 50 and /api/loss showed the other 13 lost, of a POST whose
	// client got no answer).
	for i := range evs {
		esc := b.Counts.site(now, evs[i].Site)
		esc.Events++
		if notes != nil && notes[i] != "" {
			esc.note(notes[i], 1)
		}
		b.Counts.changed(esc, now)
		if b.Journal != nil && b.journal(&evs[i]) {
			continue
		}
		if b.events.Len() == 0 {
			b.oldest = now
		}
		b.events.Add(&evs[i])
	}
	return true
}

// Pending reports whether the Batcher holds anything to deliver: events,
// or counts not yet reported.
func (b *Batcher) Pending() bool { return b.events.Len() > 0 || b.countsPending() }

// Hit counts one hit answered with a drop reason and no accepted events,
// for site ("" if none could be read); with a journal, the site's counts
// are written before it returns.
func (b *Batcher) Hit(now time.Time, site, drop string) {
	sc := b.Counts.site(now, site)
	sc.Hits++
	sc.drop(drop, 1)
	b.Counts.changed(sc, now)
	if b.Journal != nil {
		b.journalCounts(sc)
	}
}

// journal writes e to the journal with its site's counts, and reports
// whether the journal took it.
func (b *Batcher) journal(ev *event.Event) bool {
	// Encoding calls field accessors through function values, so it gets
	// a copy: the caller's events need not escape to the heap.
	b.scratch = *ev
	e := &b.scratch
	sc := b.Counts.sites[e.Site]
	if sc == nil { // counted under "" (too many sites): the line cannot carry it
		b.line = wire.AppendEventLine(b.line[:0], e, event.ID{}, nil)
	} else {
		b.line = wire.AppendEventLine(b.line[:0], e, b.Counts.Instance, &sc.SiteCounts)
	}
	b.scratch = event.Event{} // keep no strings of the caller's
	if err := b.Journal(b.line); err != nil {
		return false
	}
	if sc == nil {
		b.journalCounts(b.Counts.sites[""])
	} else {
		b.Counts.markReported(sc, sc.gen)
	}
	return true
}

// journalCounts writes sc's counts to the journal as a counters line.
func (b *Batcher) journalCounts(sc *siteCount) {
	one := [1]wire.SiteCounts{sc.SiteCounts}
	c := wire.Counters{Instance: b.Counts.Instance, Pop: b.Counts.Pop, Sites: one[:]}
	b.line = wire.AppendCountersLine(b.line[:0], &c)
	if b.Journal(b.line) == nil {
		b.Counts.markReported(sc, sc.gen)
	}
}

// room reports whether n more events fit in the buffer; when they do not,
// it first hands the buffer to the journal, which may take lines again
// after refusing the ones buffered, then to the fallback. (Without the
// journal's turn, an instance whose buffer filled while its journal
// refused would answer buffer_full until it ended, the journal healthy
// again.)
func (b *Batcher) room(now time.Time, n int) bool {
	if b.events.Len()+n <= b.MaxBuffered {
		return true
	}
	if b.Journal != nil {
		b.journalN(b.events.Len())
	}
	if b.events.Len()+n > b.MaxBuffered && b.Fallback != nil {
		b.Spill(now)
	}
	return b.events.Len()+n <= b.MaxBuffered
}

// journalN writes the first n buffered events to the journal, each with
// its site's counts, and drops from the buffer those it took: all n, or
// those before the first it refused.
func (b *Batcher) journalN(n int) {
	b.moveN(n, func(e *event.Event) error {
		if !b.journal(e) {
			return errJournalRefused
		}
		return nil
	})
}

var errJournalRefused = errors.New("the journal refused the line")

// Len is the number of buffered events.
func (b *Batcher) Len() int { return b.events.Len() }

// Due reports whether the buffer should be flushed now: events have
// waited MaxAge or fill a batch, or counts have gone unreported for
// countsAge (a stream of hits that are all drops).
func (b *Batcher) Due(now time.Time) bool {
	n := b.events.Len()
	if n > 0 && (n >= b.MaxEvents || now.Sub(b.oldest) >= b.MaxAge) {
		return true
	}
	return b.countsPending() && now.Sub(b.Counts.unreported) >= b.countsAge()
}

func (b *Batcher) countsPending() bool { return !b.v1 && b.Counts.dirty > 0 }

// countsAge is how long counts alone may wait for a delivery.
func (b *Batcher) countsAge() time.Duration { return max(5*b.MaxAge, time.Second) }

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
// retrying the same bytes cannot succeed. The batch goes to the fallback,
// or is dropped and counted.
var ErrRejected = errors.New("aggregator rejected the batch")

// ErrNoSecret means batches cannot be signed: no secret is configured.
var ErrNoSecret = errors.New("no aggregator secret to sign batches with")

// Retry policy: a few quick attempts, because the instance that flushes
// cannot serve visitors meanwhile; after a failure the next flush tries
// once. What still fails goes to the fallback, or stays buffered for the
// next flush (bounded by MaxBuffered).
var backoff = []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond, time.Second}

// slowAttempt is how long a failed attempt may have taken for deliver to
// try again in the same flush.
const slowAttempt = time.Second

// retryBackend is how long, after a failed delivery, flushes send to the
// fallback without trying the aggregator: an outage should not cost every
// flush its attempts.
const retryBackend = 10 * time.Second

// maxCountsPerLine bounds the sites of one counters line or batch record.
const maxCountsPerLine = 100

// Flush delivers the buffered events, MaxEvents at a time, with the
// unreported counts riding on the first batch (or alone, if there are no
// events). now and sleep are the platform's clock. Events are removed
// once the aggregator acknowledged them or the fallback took them. It
// returns the delivery error, if any, saying what the fallback took.
func (b *Batcher) Flush(secret []byte, send Send, now func() time.Time, sleep func(time.Duration)) error {
	t := now()
	if b.events.Len() == 0 && !b.countsPending() {
		return nil
	}
	if b.Fallback != nil && (t.Before(b.retryAt) || len(secret) == 0) {
		n := b.events.Len()
		if err := b.Spill(t); err != nil {
			return err
		}
		if len(secret) == 0 {
			return fmt.Errorf("%w: %d events written to the fallback log endpoint", ErrNoSecret, n)
		}
		return nil
	}
	if len(secret) == 0 {
		return ErrNoSecret
	}
	if b.rejected && t.Before(b.retryAt) {
		// A refusal for good (a wrong secret) is not asked again at
		// every flush: the counts it left unreported made each one send
		// a batch, until Fastly's limit on an execution's backend
		// requests, and the aggregator's limit on failed
		// authentications then refused the address's other senders.
		// The events wait in the buffer (MaxBuffered bounds it, and
		// Close counts what is left).
		return nil
	}
	for first := true; ; first = false {
		n := min(b.events.Len(), b.MaxEvents, wire.MaxEvents)
		counts := first && b.countsPending() && b.Counts.unreportedCounts(&b.rep, maxCountsPerLine)
		if n == 0 && !counts {
			return nil
		}
		tries := backoff
		if b.failing {
			tries = backoff[:1]
		}
		var status int
		var err error
		if counts {
			b.body = b.events.AppendBatchWithCounters(b.body[:0], n, &b.rep.c)
			status, err = deliver(b.body, secret, send, now, sleep, tries)
			if status == 400 {
				// An aggregator from before counters: it refuses version 2.
				// Send the events alone from now on.
				b.v1, counts = true, false
				if n == 0 {
					return fmt.Errorf("the aggregator does not take edge counters (upgrade it); counts are no longer sent: %w", err)
				}
			}
		}
		if !counts {
			b.body = b.events.AppendBatch(b.body[:0], n)
			status, err = deliver(b.body, secret, send, now, sleep, tries)
		}
		if err == nil {
			b.failing, b.rejected = false, false
			if counts {
				b.Counts.reported(&b.rep)
			}
			b.drop(n)
			continue
		}
		if errors.Is(err, ErrRejected) {
			// Sending these bytes again cannot succeed (a wrong secret, a
			// bug): the fallback is their last chance. Nor, for a while,
			// can any batch (see rejected).
			b.failing, b.rejected, b.retryAt = true, true, t.Add(retryBackend)
			var w int
			if b.Fallback != nil {
				var ferr error
				if w, ferr = b.spillN(n); ferr == nil {
					return fmt.Errorf("%w; its %d events were written to the fallback log endpoint", err, n)
				}
			}
			// The fallback took (and the buffer let go of) the first w;
			// the rest of the batch is lost, not the events after it.
			b.lost(t, n-w)
			return fmt.Errorf("%w; %d events dropped (%s)", err, n-w, wire.DropDeliveryFailed)
		}
		b.failing, b.retryAt = true, t.Add(retryBackend)
		if b.Fallback != nil {
			k := b.events.Len()
			if ferr := b.Spill(t); ferr != nil {
				return fmt.Errorf("%w; the fallback log endpoint failed too: %v (%d events still buffered)", err, ferr, b.events.Len())
			}
			return fmt.Errorf("%w; %d events written to the fallback log endpoint", err, k)
		}
		return err
	}
}

// Take encodes the next batch (up to MaxEvents events, with the
// unreported counts) and signs it at now, for a platform that delivers
// asynchronously (Cloudflare's ctx.waitUntil): it sends the Request, by
// batch or by any fallback, then settles it with Delivered or Lost. The
// events stay buffered until then, and Take hands out the same events
// again if called before; Flush must not run meanwhile. ok is false when
// there is nothing to send. The Request is valid until the next call.
func (b *Batcher) Take(secret []byte, now time.Time) (r *Request, ok bool) {
	if len(secret) == 0 {
		return nil, false
	}
	n := min(b.events.Len(), b.MaxEvents, wire.MaxEvents)
	counts := b.countsPending() && b.Counts.unreportedCounts(&b.rep, maxCountsPerLine)
	if n == 0 && !counts {
		b.taken.ok = false
		return nil, false
	}
	if counts {
		b.body = b.events.AppendBatchWithCounters(b.body[:0], n, &b.rep.c)
	} else {
		b.body = b.events.AppendBatch(b.body[:0], n)
	}
	b.taken.n, b.taken.counts, b.taken.ok = n, counts, true
	ts := now.Unix()
	b.req = Request{Body: b.body, Timestamp: strconv.FormatInt(ts, 10), Signature: wire.Sign(secret, ts, b.body)}
	return &b.req, true
}

// Delivered settles the batch Take handed out as delivered: its events
// leave the buffer and its counts are reported.
func (b *Batcher) Delivered() {
	if !b.taken.ok {
		return
	}
	if b.taken.counts {
		b.Counts.reported(&b.rep)
	}
	b.drop(b.taken.n)
	b.taken.ok = false
}

// Lost settles the batch Take handed out as lost: no delivery path took
// it. Its events leave the buffer counted as wire.DropDeliveryFailed, and its
// counts stay unreported, to ride on a later batch.
func (b *Batcher) Lost(now time.Time) {
	if !b.taken.ok {
		return
	}
	b.lost(now, b.taken.n)
	b.taken.ok = false
}

// Spill writes every buffered event, then the unreported counts, to the
// fallback log endpoint as NDJSON lines, removing each event once
// written. It stops at the first failed write and returns its error.
func (b *Batcher) Spill(now time.Time) error {
	if _, err := b.spillN(b.events.Len()); err != nil {
		return err
	}
	for b.countsPending() && b.Counts.unreportedCounts(&b.rep, maxCountsPerLine) {
		b.line = wire.AppendCountersLine(b.line[:0], &b.rep.c)
		if err := b.Fallback(b.line); err != nil {
			return err
		}
		b.Counts.reported(&b.rep)
	}
	return nil
}

// spillN writes the first n buffered events to the fallback, and drops
// from the buffer the w it wrote (all n, or those before the error).
func (b *Batcher) spillN(n int) (w int, err error) {
	if b.Fallback == nil {
		return 0, errors.New("no fallback log endpoint")
	}
	return b.moveN(n, func(e *event.Event) error {
		b.line = wire.AppendEventLine(b.line[:0], e, event.ID{}, nil)
		return b.Fallback(b.line)
	})
}

// moveN hands the first n buffered events to take, in order, until it
// fails, and drops from the buffer the w it took (all n, or those before
// the error).
func (b *Batcher) moveN(n int, take func(*event.Event) error) (w int, err error) {
	defer func() { b.drop(w) }()
	for ; w < n; w++ {
		e, err := b.events.Event(w)
		if err != nil {
			return w, err // a bug: the events stay buffered, and are counted if they stay so
		}
		if err := take(&e); err != nil {
			return w, err
		}
	}
	return w, nil
}

// Close delivers what is left when the instance ends: a flush, then the
// fallback for what it could not deliver. Events that no path took are
// counted as wire.DropDeliveryFailed and dropped, and a last attempt reports
// the counts. It returns how many events were lost and the first error.
func (b *Batcher) Close(secret []byte, send Send, now func() time.Time, sleep func(time.Duration)) (lost int, err error) {
	err = b.Flush(secret, send, now, sleep)
	if b.events.Len() > 0 && b.Fallback != nil {
		if ferr := b.Spill(now()); ferr != nil && err == nil {
			err = ferr
		}
	}
	if lost = b.events.Len(); lost > 0 {
		b.lost(now(), lost)
		// The loss is counted; try to tell.
		if b.Flush(secret, send, now, sleep) != nil && b.Fallback != nil {
			b.Spill(now())
		}
	}
	return lost, err
}

// End is Close for a Batcher whose fallback is its only path (the
// module's log_endpoint mode): what the fallback does not take is
// counted as wire.DropDeliveryFailed and dropped, and a last spill
// reports the counts. It returns how many events were lost and the
// fallback's error.
func (b *Batcher) End(now time.Time) (lost int, err error) {
	err = b.Spill(now)
	if lost = b.events.Len(); lost > 0 {
		b.lost(now, lost)
		b.Spill(now)
	}
	return lost, err
}

// lost counts the first n buffered events as wire.DropDeliveryFailed and drops
// them.
func (b *Batcher) lost(now time.Time, n int) {
	for i := range n {
		// A site that does not decode (a bug) is counted under "".
		e, _ := b.events.Event(i)
		sc := b.Counts.site(now, e.Site)
		sc.drop(wire.DropDeliveryFailed, 1)
		b.Counts.changed(sc, now)
	}
	b.drop(n)
}

func (b *Batcher) drop(n int) {
	if n == 0 {
		return
	}
	b.events.Drop(n)
	if b.events.Len() > 0 {
		b.oldest = time.UnixMilli(b.events.Time(0))
	} else {
		b.oldest = time.Time{}
	}
}

// deliver sends body, signing each attempt afresh, waiting tries[i]
// before attempt i. It returns the last status and nil once accepted, an
// error wrapping ErrRejected for a refusal retrying cannot fix, else the
// last error.
func deliver(body, secret []byte, send Send, now func() time.Time, sleep func(time.Duration), tries []time.Duration) (int, error) {
	var last error
	var status int
	for _, wait := range tries {
		sleep(wait)
		began := now()
		ts := began.Unix()
		st, retryAfter, err := send(&Request{
			Body:      body,
			Timestamp: strconv.FormatInt(ts, 10),
			Signature: wire.Sign(secret, ts, body),
		})
		status = st
		switch {
		case err != nil:
			last, status = err, 0
			if now().Sub(began) >= slowAttempt {
				// A backend that answers nothing (a hung aggregator takes
				// its first-byte timeout) would hold the instance, and the
				// visitors waiting for one, as long again at each further
				// try: four tries kept visitors waiting close to a minute
				// (tester89).
				return status, last
			}
		case st >= 200 && st < 300:
			return st, nil
		case st == 400 || st == 401 || st == 413:
			return st, fmt.Errorf("%w: status %d", ErrRejected, st)
		case st == 404 || st == 405:
			// Most likely a URL that is not the aggregator's /ingest; its
			// own text says nothing a user can act on (a tester read only
			// "answered 404").
			last = fmt.Errorf("aggregator answered %d: the URL is not its /ingest (check ingest_url, and that the backend's URL has no path)", st)
		default:
			last = fmt.Errorf("aggregator answered %d", st)
			if retryAfter > 0 && retryAfter <= time.Second {
				sleep(retryAfter)
			}
		}
	}
	return status, last
}
