// Package loader moves spooled batches into the store exactly once.
//
// One loop reads records after the spool's checkpoint, decodes them, drops
// duplicates (within the batch, then through the Deduper's claim / mark-done
// protocol), inserts the rest, publishes the new per-site counts and only
// then commits the spool checkpoint. Any error (Redis, ClickHouse, disk) is
// retried with capped backoff: nothing is skipped and the checkpoint never
// passes a record whose events are not stored.
package loader

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// Config wires a Loader.
type Config struct {
	Spool   *spool.Spool
	Dedupe  dedupe.Deduper
	Store   store.Store
	Metrics *metrics.Metrics // optional
	Logger  *slog.Logger     // optional

	// OnCounts receives the store's exact per-site counts once the store is
	// initialized; OnStored receives the per-site number of rows each
	// successful load added. Both feed the live counts.
	OnCounts func(map[string]uint64)
	OnStored func(map[string]uint64)

	// MaxRows and MaxAge bound a load: it takes records until it has
	// MaxRows events or MaxAge has passed since the first one was read.
	// Defaults 50,000 and 200 ms.
	MaxRows int
	MaxAge  time.Duration
	// MaxBackoff caps the wait between retries. Default 5 s.
	MaxBackoff time.Duration
	// DrainTimeout bounds how long Run keeps loading what is already
	// spooled after its context ends. Default 10 s.
	DrainTimeout time.Duration
}

// Loader is the load loop. Create it with New and start it with Run.
type Loader struct {
	cfg Config
	log *slog.Logger
	m   *metrics.Metrics

	ready        atomic.Bool
	caughtUpNano atomic.Int64
	pause        atomic.Pointer[Pause] // why loading waits; nil while it runs (status.go)
	evbuf        []event.Event         // the events of the load in progress, reused
}

// New returns a loader; it does nothing until Run.
func New(cfg Config) *Loader {
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 50000
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.OnCounts == nil {
		cfg.OnCounts = func(map[string]uint64) {}
	}
	if cfg.OnStored == nil {
		cfg.OnStored = func(map[string]uint64) {}
	}
	l := &Loader{cfg: cfg, log: cfg.Logger.With("component", "loader"), m: cfg.Metrics}
	l.caughtUpNano.Store(time.Now().UnixNano())
	return l
}

// Ready reports whether the store is initialized and loading runs.
func (l *Loader) Ready() bool { return l.ready.Load() }

// Lag returns how long the loader has had records it has not stored, in
// seconds; 0 when it is caught up.
func (l *Loader) Lag() float64 {
	if l.cfg.Spool.Pending() == 0 {
		return 0
	}
	return time.Since(time.Unix(0, l.caughtUpNano.Load())).Seconds()
}

// Run initializes the store and loads until ctx ends; then it keeps
// loading what is already spooled for up to DrainTimeout, so a graceful
// shutdown leaves nothing half done. It returns nil after a clean stop.
func (l *Loader) Run(ctx context.Context) error {
	// work outlives ctx by the drain timeout: a load in progress at
	// shutdown is finished, not abandoned mid-way.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		<-ctx.Done()
		select {
		case <-time.After(l.cfg.DrainTimeout):
			cancel()
		case <-work.Done():
		}
	}()

	if err := l.retry(ctx, "initialize the store", func() error {
		if err := l.cfg.Store.Init(ctx); err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		counts, err := l.cfg.Store.Counts(ctx)
		if err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		l.cfg.OnCounts(counts)
		return nil
	}); err != nil {
		return nil // stopped before the store came up; the spool keeps everything
	}
	l.ready.Store(true)
	l.log.Info("loader running", "store", l.cfg.Store.Name(), "dedupe", l.cfg.Dedupe.Name(),
		"checkpoint", l.cfg.Spool.Checkpoint().String(), "spooled_bytes", l.cfg.Spool.Pending())

	pos := l.cfg.Spool.Checkpoint()
	recoverEnd := l.cfg.Spool.OpenEnd()
	for {
		b, err := l.gather(ctx, pos)
		if err != nil {
			return err
		}
		if b == nil { // nothing spooled and ctx ended
			return nil
		}
		// Records an earlier process wrote may be stored without their mark
		// (its dedupe state may be gone, too): ask the store about them.
		recovering := pos.Less(recoverEnd)
		if err := l.retry(work, "load", func() error { return l.load(work, b, recovering) }); err != nil {
			l.log.Warn("shutdown: a load did not finish in time; the spool keeps it for the next start", "events", len(b.events))
			return nil
		}
		if err := l.retry(work, "commit the spool checkpoint", func() error { return l.cfg.Spool.Commit(b.next) }); err != nil {
			return nil
		}
		clear(b.events) // drop the strings before the buffer is reused
		l.evbuf = b.events[:0]
		pos = b.next
		if pos == l.cfg.Spool.End() {
			l.caughtUpNano.Store(time.Now().UnixNano())
		}
	}
}

// batch is what one load stores: the events of some spool records.
type batch struct {
	events []event.Event
	next   spool.Position // position after the last record
	stored map[string]uint64
	loaded bool // the insert of this batch succeeded once
	// failed holds events passed to an insert that returned an error: it
	// may have stored them. If a retry finds them stored, they are counted
	// then, as nothing else will count them.
	failed map[event.ID]bool
	// bad holds the records' bad rows (see package record); badStored is
	// set once they are inserted, so a retried load does not insert them
	// again.
	bad       []record.BadRow
	badStored bool
}

// gather waits for records after pos and collects them until MaxRows
// events or MaxAge. Once ctx has ended it takes what is spooled without
// waiting, and returns nil when there is nothing left.
func (l *Loader) gather(ctx context.Context, pos spool.Position) (*batch, error) {
	// One buffer sized for a full load, reused: growing it by appends
	// copied megabytes several times per load.
	if l.evbuf == nil {
		l.evbuf = make([]event.Event, 0, l.cfg.MaxRows)
	}
	b := &batch{next: pos, events: l.evbuf[:0]}
	var deadline <-chan time.Time
	for {
		full, err := l.read(b)
		if err != nil {
			// Durable records that do not read back are disk damage; retrying
			// cannot fix them and skipping would lose data: stop loudly.
			return nil, err
		}
		if full {
			return b, nil
		}
		if ctx.Err() != nil {
			if b.next != pos {
				return b, nil
			}
			return nil, nil
		}
		if b.next == pos {
			l.caughtUpNano.Store(time.Now().UnixNano())
		} else if deadline == nil {
			deadline = time.After(l.cfg.MaxAge)
		}
		select {
		case <-l.cfg.Spool.Notify():
		case <-deadline:
			return b, nil
		case <-ctx.Done():
		}
	}
}

// read appends the events of the available records to b. It reports
// whether b is full: MaxRows reached, or the next record would pass it.
func (l *Loader) read(b *batch) (full bool, err error) {
	for {
		recs, err := l.cfg.Spool.Read(b.next, 64, 8<<20)
		if err != nil || len(recs) == 0 {
			return false, err
		}
		for _, r := range recs {
			if n, err := record.Count(r.Data); err == nil && len(b.events) > 0 && len(b.events)+n > l.cfg.MaxRows {
				return true, nil
			}
			evs, bad, err := record.Decode(b.events, b.bad, r.Data)
			if err != nil {
				// Ingest decoded it before spooling it, so this is a record
				// from an incompatible version or damage the CRC missed.
				l.m.SpoolCorrupt.Add(1)
				l.log.Error("skipping a spool record that does not decode", "position", b.next.String(), "err", err)
			} else {
				b.events, b.bad = evs, bad
			}
			b.next = r.Next
			if len(b.events) >= l.cfg.MaxRows {
				return true, nil
			}
		}
	}
}

// load stores b's events exactly once. It may be retried after any error;
// counts of rows stored by an earlier attempt are kept in b.
func (l *Loader) load(ctx context.Context, b *batch, recovering bool) error {
	if b.stored == nil {
		b.stored = map[string]uint64{}
	}
	if len(b.bad) > 0 && !b.badStored {
		if err := l.storeBadRows(ctx, b.bad); err != nil {
			return err
		}
		b.badStored = true
	}
	if len(b.events) == 0 { // a record of bad rows only
		return nil
	}
	// Duplicates within the batch (a retried batch, or an event repeated):
	// the first copy wins.
	seen := make(map[event.ID]struct{}, len(b.events))
	uniq := make([]event.Event, 0, len(b.events))
	for _, e := range b.events {
		if _, dup := seen[e.ID]; dup {
			continue
		}
		seen[e.ID] = struct{}{}
		uniq = append(uniq, e)
	}
	ids := make([]event.ID, len(uniq))
	for i := range uniq {
		ids[i] = uniq[i].ID
	}
	t0 := time.Now()
	st, err := l.cfg.Dedupe.Claim(ctx, ids)
	l.m.ObserveDedupe(time.Since(t0))
	if err != nil {
		l.countDedupeError(err)
		return err
	}
	insert := make([]event.Event, 0, len(uniq))
	mark := make([]event.ID, 0, len(uniq))
	var check []event.Event
	for i, s := range st {
		switch {
		case s == dedupe.Duplicate:
			continue
		case s == dedupe.Uncertain || recovering || b.loaded:
			check = append(check, uniq[i])
		default:
			insert = append(insert, uniq[i])
		}
		mark = append(mark, ids[i])
	}
	delta := map[string]uint64{}
	if len(check) > 0 {
		found, err := l.cfg.Store.ExistingIDs(ctx, check)
		if err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		for _, e := range check {
			switch {
			case !found[e.ID]:
				insert = append(insert, e)
			case b.failed[e.ID]:
				delta[e.Site]++ // stored by an insert that reported failure
				delete(b.failed, e.ID)
			}
		}
	}
	if len(insert) > 0 {
		if err := l.cfg.Store.InsertEvents(ctx, insert); err != nil {
			l.m.StoreErrors.Add(1)
			if b.failed == nil {
				b.failed = map[event.ID]bool{}
			}
			for _, e := range insert {
				b.failed[e.ID] = true
			}
			if len(delta) > 0 {
				for k, v := range delta {
					b.stored[k] += v
				}
				l.cfg.OnStored(delta)
			}
			return err
		}
		for _, e := range insert {
			delta[e.Site]++
			delete(b.failed, e.ID)
		}
		l.m.Inserted.Add(uint64(len(insert)))
		l.m.Loads.Add(1)
	}
	if len(delta) > 0 {
		for k, v := range delta {
			b.stored[k] += v
		}
		l.cfg.OnStored(delta) // the rows are stored: count them now, whatever follows
	}
	b.loaded = true
	t0 = time.Now()
	err = l.cfg.Dedupe.MarkDone(ctx, mark)
	l.m.ObserveDedupe(time.Since(t0))
	if err != nil {
		l.countDedupeError(err)
		return err
	}
	var stored int
	for _, v := range b.stored {
		stored += int(v)
	}
	l.m.Deduped.Add(uint64(len(b.events) - stored))
	l.log.Debug("loaded", "events", len(b.events), "inserted", len(insert), "checked", len(check), "position", b.next.String())
	return nil
}

// storeBadRows inserts bad rows if the store keeps them. They have no
// dedupe claim: a retry after an insert that failed but had stored them
// stores them again, and the store collapses copies by row id.
func (l *Loader) storeBadRows(ctx context.Context, rows []record.BadRow) error {
	bs, ok := l.cfg.Store.(store.BadRowStore)
	if !ok {
		l.log.Warn("the store does not keep bad rows; dropping them", "store", l.cfg.Store.Name(), "rows", len(rows))
		return nil
	}
	if err := bs.InsertBadRows(ctx, rows); err != nil {
		l.m.StoreErrors.Add(1)
		return err
	}
	return nil
}

// retry runs f until it succeeds or ctx ends, waiting 100 ms doubling up
// to MaxBackoff between attempts.
func (l *Loader) retry(ctx context.Context, what string, f func() error) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		l.setPause(what, err, attempt)
		if err == nil {
			if attempt > 1 {
				l.log.Info("recovered", "what", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		lvl := slog.LevelWarn
		if attempt > 1 && attempt%10 != 0 {
			lvl = slog.LevelDebug // one line at first, then every tenth attempt
		}
		l.log.Log(ctx, lvl, "retrying", "what", what, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, l.cfg.MaxBackoff)
	}
}
