// Package loader moves spooled batches into the store exactly once.
//
// A load is some spool records' events. Each load goes through three
// stages, each in its own goroutine, so that consecutive loads overlap
// (claiming load N+1 while load N is inserted and load N-1 is marked):
//
//  1. prepare: read and decode the records, drop duplicates (within the
//     load, and ids a load still in flight owns: see below), and claim
//     the rest through the Deduper;
//  2. store: insert the bad rows, ask the store about the ids the claim
//     could not vouch for, insert the new events, publish the per-site
//     counts;
//  3. finish: mark the ids done in the Deduper, then commit the spool
//     checkpoint past the load's records.
//
// Loads pass from stage to stage in order, one at a time, so the
// checkpoint only ever moves past records whose events are all stored,
// in order. Nothing is skipped.
//
// # Pauses and failures
//
// A fault outside the process is a pause: while Redis or the store fails,
// the step is retried with capped backoff, ingest keeps spooling, and the
// loader catches up once they answer (Status says why it waits). A fault
// only a restart can cure is a failure: Run stops and returns it, so that
// the process exits and its supervisor restarts it. Failures are spool
// I/O errors (the spool is the process's own disk: a record that does not
// read back, a checkpoint that cannot be written), a panic in a stage, and
// any error from running out of file descriptors (EMFILE, ENFILE) that
// lasts longer than Config.FailAfter, whatever step it hits: a leak or a
// flood of connections does not go away by waiting.
//
// # Ids in two loads at once
//
// Claim answers "pending" for an id claimed but not yet marked done,
// meant for an attempt that did not finish (a crash between insert and
// mark) and resolved by asking the store. With loads overlapping, an id
// can also be pending because a load still in flight in this process
// claimed it. So the loader keeps the ids of the loads in flight (claimed,
// not yet marked done) and drops such an id from a later load before
// claiming: the earlier load owns it and will store it. Asking the store
// instead would be slower but still right, since the store stage looks
// ids up only after every earlier insert finished; what makes the drop
// necessary is a claim that cannot see the earlier one at all (Redis lost
// its memory in between: an id newer than the new epoch comes back New,
// and would be inserted a second time). Dropping is safe across failures:
// the later load's checkpoint is never committed before the earlier load
// is finished, and if the process stops first, both loads are read again
// from the spool and their claims resolved against the store.
//
// # Ids another aggregator holds
//
// Aggregators that share the Deduper may receive the same events (an edge
// retry sent to another one). Claim answers Busy for an id another live
// aggregator claimed and has not marked done. A load waits for such ids
// for up to busyWait; then it stores the rest and moves the Busy events
// to the end of the spool (Spool.Requeue) before committing past them.
// Waiting longer could wait forever: two loads that each claimed part of
// the other's ids (Redis Cluster claims node by node, so two aggregators
// claiming the same ids at once can split them) would each wait for the
// other while holding their own, and the holder of a claim may be alive
// but unable to store. Requeued events come back after what was spooled
// since, and are then found stored (Duplicate), still Busy, or passed on
// by a holder that died (Uncertain).
//
// # When Redis loses its memory
//
// The claims of this process's loads in flight go with it, and another
// aggregator claiming the same ids would find nothing. The Redis deduper
// then runs a grace period (Busy for ids with no claim) and tells the
// loader, which re-asserts the ids of its held loads (claimed, not yet
// marked done) under its own token (dedupe.Redis.Reassert). A claim in
// progress finishes first, so that its ids are among them; a load that
// a re-assert covered is marked done again after it, since its first
// mark may have gone into the lost memory.
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Config wires a Loader.
type Config struct {
	Spool   *spool.Spool
	Dedupe  dedupe.Deduper
	Store   store.Store
	Metrics *metrics.Metrics // optional
	Logger  *slog.Logger     // optional

	// OnCounts receives the store's exact per-site counts once the store is
	// initialized (of CountSites if given, else of the CountMax sites with
	// the most; see store.Store.Counts) and the total; OnStored receives
	// the per-site number of rows each successful load added. Both feed
	// the live counts.
	OnCounts func(sites map[string]uint64, total uint64)
	OnStored func(map[string]uint64)
	// OnInserted, if set, receives the events of each successful insert
	// (after OnStored); it must not keep evs.
	OnInserted func(evs []event.Event)
	CountSites []string
	CountMax   int
	// OnRecent, if set, receives once at start, just before OnCounts and
	// before the first load, the events stored in the last RecentWindow
	// (at most RecentMax, the newest; see store.Store.Recent), to rebuild
	// the live windows from. A store that cannot answer is logged and
	// skipped: the windows then start empty.
	OnRecent     func(evs []event.Event)
	RecentWindow time.Duration
	RecentMax    int

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
	// FailAfter is how long running out of file descriptors may last
	// before Run fails (see the package comment). Default 1 min.
	FailAfter time.Duration
	// SlowAttempt is how long one attempt of a step may go unanswered
	// before it counts as a pause (Status) and the log says so: a Redis
	// or ClickHouse that stops answering (stopped, or its machine gone)
	// leaves the attempt waiting with no error to retry on. The attempt
	// goes on waiting. Default 30 s.
	SlowAttempt time.Duration
}

// Loader is the load loop. Create it with New and start it with Run.
type Loader struct {
	cfg Config
	log *slog.Logger
	m   *metrics.Metrics

	ready        atomic.Bool
	caughtUpNano atomic.Int64
	// pauses says why each stage waits (status.go): prepare, store,
	// finish. nil while the stage runs.
	pauses [stages]atomic.Pointer[Pause]

	// owners holds the id sets of the loads claimed and not yet marked
	// done: a later load drops their ids (see the package comment).
	ownersMu sync.Mutex
	owners   []*idSet
	loads    atomic.Int32 // loads read and not yet committed

	// Re-asserting claims after Redis lost its memory (see the package
	// comment): held are the loads whose ids are claimed for this
	// process (b.mark) and not yet marked done. claimMu is held from a
	// claim's start until its load is in held, so that a re-assert never
	// misses ids claimed in the memory that was lost; heldMu guards held
	// and each load's reasserted.
	re       reasserter // nil: the Deduper needs none
	reassert chan struct{}
	claimMu  sync.Mutex
	heldMu   sync.Mutex
	held     []*batch

	// failure is the first failure (see the package comment); once set,
	// every stage stops.
	failure atomic.Pointer[error]
	failed  chan struct{} // closed when failure is set
	halt    context.CancelFunc
	haltMu  sync.Mutex

	recount chan struct{} // capacity 1: see Recount

	// evbufs holds event buffers sized for a full load, for reuse:
	// growing one by appends copied megabytes several times per load.
	evbufs chan []event.Event

	// edge turns stored edge counters into the metrics' totals.
	edge edgeTotals
	// dups counts client retries (duplicates.go); prepare stage only.
	dups duplicates
}

// The stages of a load, indexes into Loader.pauses.
const (
	stagePrepare = iota
	stageStore
	stageFinish
	stages
)

// DefaultMaxAge is Config.MaxAge's default. Each insert costs ClickHouse
// a share of CPU of its own, whatever its rows, for the rollups'
// materialized views and the parts they write and merge: at a modest
// steady rate a load every 200 ms took far more CPU than one a
// second (README, --loader-max-age), which ClickHouse's documentation advises as
// the most inserts a second. Live counts, which follow what is stored,
// move about once a second.
const DefaultMaxAge = time.Second

// New returns a loader; it does nothing until Run.
func New(cfg Config) *Loader {
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 50000
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = time.Minute
	}
	if cfg.SlowAttempt <= 0 {
		cfg.SlowAttempt = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.OnCounts == nil {
		cfg.OnCounts = func(map[string]uint64, uint64) {}
	}
	if cfg.OnStored == nil {
		cfg.OnStored = func(map[string]uint64) {}
	}
	l := &Loader{cfg: cfg, log: cfg.Logger.With("component", "loader"), m: cfg.Metrics,
		evbufs: make(chan []event.Event, stages), failed: make(chan struct{}), recount: make(chan struct{}, 1)}
	if re, ok := cfg.Dedupe.(reasserter); ok {
		l.re, l.reassert = re, make(chan struct{}, 1)
		re.OnNewEpoch(func() {
			select {
			case l.reassert <- struct{}{}:
			default:
			}
		})
	}
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
// shutdown leaves nothing half done. It returns nil after a clean stop,
// or the failure that stopped it (see the package comment), at once.
func (l *Loader) Run(ctx context.Context) error {
	err := l.run(ctx)
	if f := l.Err(); f != nil {
		return f
	}
	return err
}

// Err returns the failure that stopped the loader, or nil.
func (l *Loader) Err() error {
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Failed returns a channel closed once the loader failed.
func (l *Loader) Failed() <-chan struct{} { return l.failed }

// fail records err as the loader's failure (the first one wins) and stops
// every stage.
func (l *Loader) fail(err error) {
	if l.failure.CompareAndSwap(nil, &err) {
		l.log.Error("loader failed", "err", err)
		close(l.failed)
	}
	l.haltMu.Lock()
	if l.halt != nil {
		l.halt()
	}
	l.haltMu.Unlock()
}

// stage runs f, a stage's loop, turning a panic into the loader's
// failure: a stage that died would leave the others waiting forever.
func (l *Loader) stage(name string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("panic", "stage", name, "panic", p, "stack", string(debug.Stack()))
			l.fail(fmt.Errorf("panic in the %s stage: %v", name, p))
		}
	}()
	f()
}

func (l *Loader) run(ctx context.Context) error {
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

	// Before the stages run, a failure only needs to end this wait.
	initCtx, initStop := context.WithCancel(ctx)
	defer initStop()
	l.haltMu.Lock()
	l.halt = initStop
	l.haltMu.Unlock()
	if err := l.retry(initCtx, stagePrepare, "initialize the store", onStore, func() error {
		if err := l.cfg.Store.Init(ctx); err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		counts, total, err := l.cfg.Store.Counts(ctx, l.cfg.CountSites, l.cfg.CountMax)
		if err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		if err := l.seedCounters(ctx); err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		if l.cfg.OnRecent != nil {
			evs, err := l.cfg.Store.Recent(initCtx, time.Now().Add(-l.cfg.RecentWindow), l.cfg.RecentMax)
			if err != nil {
				l.m.StoreErrors.Add(1)
				l.log.Warn("the live windows start empty: reading the recent events failed", "err", err)
			} else {
				l.cfg.OnRecent(evs)
			}
		}
		l.cfg.OnCounts(counts, total)
		return nil
	}); err != nil {
		return nil // stopped (or failed) before the store came up; the spool keeps everything
	}
	if l.journaled() {
		if err := l.retry(initCtx, stagePrepare, "replay the insert journal", onStore, func() error { return l.replayJournal(ctx) }); err != nil {
			return nil
		}
	}
	l.ready.Store(true)
	l.log.Info("loader running", "store", l.cfg.Store.Name(), "dedupe", l.cfg.Dedupe.Name(),
		"checkpoint", l.cfg.Spool.Checkpoint().String(), "spooled_bytes", l.cfg.Spool.Pending())

	// halt stops every stage once one of them gives up (the drain timeout
	// passed): a later load must never be stored or committed past one
	// that was not.
	halt, stop := context.WithCancel(work)
	defer stop()
	// A failure stops everything at once, without draining: work ends
	// too, so no step retries past it.
	stopAll := func() { stop(); cancel() }
	l.haltMu.Lock()
	l.halt = stopAll
	l.haltMu.Unlock()
	if l.Err() != nil {
		stopAll()
	}
	toStore, toFinish := make(chan *batch), make(chan *batch)
	var wg sync.WaitGroup
	if l.re != nil {
		reCtx, reStop := context.WithCancel(work)
		defer reStop()
		reDone := make(chan struct{})
		go func() { defer close(reDone); l.reassertLoop(reCtx) }()
		defer func() { reStop(); <-reDone }()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(toStore)
		l.stage("prepare", func() {
			if err := l.prepareLoop(ctx, work, halt, stop, toStore); err != nil {
				l.fail(err)
			}
		})
	}()
	go func() {
		defer wg.Done()
		defer close(toFinish)
		l.stage("store", func() { l.storeLoop(work, halt, stop, toStore, toFinish) })
	}()
	go func() {
		defer wg.Done()
		l.stage("finish", func() { l.finishLoop(work, stop, toFinish) })
		// A stage that stopped early leaves loads in the channel: take
		// them so the senders are not blocked.
		for range toFinish {
		}
	}()
	wg.Wait()
	return nil
}

// prepareLoop reads loads from the checkpoint on, claims them and hands
// them to the store stage, until ctx has ended and nothing is spooled.
// It returns an error only for spool records that do not read back.
func (l *Loader) prepareLoop(ctx, work, halt context.Context, stop context.CancelFunc, out chan<- *batch) error {
	pos := l.cfg.Spool.Checkpoint()
	recoverEnd := l.cfg.Spool.OpenEnd()
	for {
		b, err := l.gather(ctx, halt, pos)
		if err != nil {
			// The loads before the damage are still stored and committed
			// (the other stages drain); then Run returns the error.
			return err
		}
		if b == nil { // nothing spooled and ctx ended, or halted
			return nil
		}
		// Records an earlier process wrote may be stored without their mark
		// (its dedupe state may be gone, too): ask the store about them.
		b.recovering = pos.Less(recoverEnd)
		pos = b.next
		collectCopies(b)
		l.own(b)
		sorted := false // claim sorts b's events once it succeeds: never again
		if err := l.retry(halt, stagePrepare, "claim", onDedupe, func() error {
			l.claimMu.Lock()
			defer l.claimMu.Unlock()
			if !sorted {
				if err := l.claim(work, b); err != nil {
					return err
				}
				sorted = true
			}
			// After the ids' claim (see claimCopies).
			if err := l.claimCopies(work, b); err != nil {
				return err
			}
			l.countCopies(b)
			l.hold(b)
			return nil
		}); err != nil {
			l.log.Warn("shutdown: a claim did not finish in time; the spool keeps the load for the next start", "events", len(b.events))
			stop()
			return nil
		}
		select {
		case out <- b:
		case <-halt.Done():
			return nil
		}
	}
}

// storeLoop stores each load and hands it to the finish stage.
func (l *Loader) storeLoop(work, halt context.Context, stop context.CancelFunc, in <-chan *batch, out chan<- *batch) {
	for {
		var b *batch
		select {
		case <-l.recount:
			// Between two loads, so no load's rows are in both the
			// counts read and a delta published after them.
			l.recountNow(halt)
			continue
		case next, ok := <-in:
			if !ok {
				return
			}
			b = next
		}
		if err := l.retry(halt, stageStore, "load", onStore, func() error { return l.store(work, b) }); err != nil {
			l.log.Warn("shutdown: a load did not finish in time; the spool keeps it for the next start", "events", len(b.events))
			stop()
			return
		}
		l.putEvents(b.events) // the finish stage needs only the ids
		b.events, b.check, b.counters = nil, nil, nil
		select {
		case out <- b:
		case <-halt.Done():
			return
		}
	}
}

// finishLoop marks each load's ids done and commits the checkpoint past
// its records, in order.
func (l *Loader) finishLoop(work context.Context, stop context.CancelFunc, in <-chan *batch) {
	for b := range in {
		if len(b.mark) > 0 && !l.markDone(work, stop, b, "mark done") {
			return
		}
		// A re-assert after Redis lost its memory may have written the
		// ids as pending again after the mark (into the new memory, the
		// mark into the old one): mark them again, or they would stay
		// Busy to others as long as this process lives.
		if l.release(b) && !l.markDone(work, stop, b, "mark done again after a re-assert") {
			return
		}
		// Marked done: a later load's claim now answers Duplicate for
		// these ids by itself.
		l.disown(b)
		// Only now, disowned: a later load that read the requeued events
		// while b still owned their ids would drop them.
		if len(b.requeue) > 0 {
			if err := l.retry(work, stageFinish, "requeue events another aggregator holds", local, func() error { return l.requeueEvents(work, b.requeue) }); err != nil {
				stop()
				return
			}
			l.m.Requeued.Add(uint64(len(b.requeue)))
		}
		if err := l.retry(work, stageFinish, "commit the spool checkpoint", local, func() error { return l.cfg.Spool.Commit(b.next) }); err != nil {
			stop()
			return
		}
		var stored int
		for _, v := range b.stored {
			stored += int(v)
		}
		l.m.Deduped.Add(uint64(b.n - stored - len(b.requeue)))
		l.log.Debug("loaded", "events", b.n, "stored", stored, "position", b.next.String())
		l.loads.Add(-1)
		if b.next == l.cfg.Spool.End() {
			l.caughtUpNano.Store(time.Now().UnixNano())
		}
	}
}

// maxLoadBytes bounds the record bytes one load reads (the decoded events
// and bad rows take about as much again), whatever their rows.
const maxLoadBytes = 16 << 20

// batch is one load on its way through the stages.
type batch struct {
	bytes      int // record bytes read
	events     []event.Event
	n          int            // events read, duplicates included
	next       spool.Position // position after the last record
	recovering bool           // records an earlier process wrote

	// ids are the load's distinct ids that no load in flight owned: this
	// load owns them (owner, in Loader.owners) until it is finished.
	ids   []event.ID
	owner *idSet
	// claimed is the claim's answer per id of ids, once a Claim of them
	// succeeded; Busy ones are claimed again.
	claimed []dedupe.Status
	// After the claim, events holds only the events to insert, and
	// check those the store must be asked about first; mark is the ids
	// to mark done (all ids but those the claim found done).
	check []event.Event
	mark  []event.ID
	// requeue are the events whose ids stayed Busy: the finish stage
	// moves them to the end of the spool (see the package comment).
	requeue []event.Event
	// reasserted: a re-assert covered mark (guarded by Loader.heldMu).
	reasserted bool

	stored map[string]uint64 // rows this load added, per site
	tried  bool              // an insert of this load was attempted
	// lastInsert are the events of the last insert attempted, in its
	// order.
	lastInsert []event.Event
	// failed holds events passed to an insert that returned an error: it
	// may have stored them. If a retry finds them stored, they are counted
	// then, as nothing else will count them.
	failed map[event.ID]bool
	// bad holds the records' bad rows (see package record); badStored is
	// set once they are inserted, so a retried load does not insert them
	// again.
	bad       []record.BadRow
	badStored bool
	// badNew are the bad rows to insert and count: bad without copies
	// (by id) and without those the store holds already (newBadRows).
	// Decided once, before the first attempt, so that a retry after an
	// insert that stored them neither skips nor counts them twice.
	badNew []record.BadRow
	// counters are the records' edge counters (see storeCounters);
	// countersStored is set once they are inserted.
	counters       []wire.Counters
	countersStored bool
	// copies are the load's copies of client-named events, copyClaimed
	// their claim's answer, and dupRows the duplicates counted from them
	// (duplicates.go), stored with counters (dupsStored once they are).
	copies      []copyRef
	copyClaimed []dedupe.Status
	dupRows     []store.CounterRow
	dupsStored  bool
}

// getEvents returns an empty event buffer, reused if one is free.
func (l *Loader) getEvents() []event.Event {
	select {
	case evs := <-l.evbufs:
		return evs
	default:
		return make([]event.Event, 0, l.cfg.MaxRows)
	}
}

// putEvents keeps evs for reuse, if there is room.
func (l *Loader) putEvents(evs []event.Event) {
	clear(evs[:cap(evs)]) // drop the strings, which pin their records' bytes
	select {
	case l.evbufs <- evs[:0]:
	default:
	}
}

// gather waits for records after pos and collects them until MaxRows
// events or MaxAge. Once ctx has ended it takes what is spooled without
// waiting, and returns nil when there is nothing left (or halt ended).
func (l *Loader) gather(ctx, halt context.Context, pos spool.Position) (*batch, error) {
	b := &batch{next: pos, events: l.getEvents()}
	var deadline <-chan time.Time
	for {
		full, err := l.read(halt, b)
		if err != nil {
			if halt.Err() != nil && l.Err() == nil {
				return nil, nil // stopping while the read was retried
			}
			// Durable records that do not read back are disk damage; retrying
			// cannot fix them and skipping would lose data: stop loudly.
			return nil, err
		}
		if full {
			break
		}
		if ctx.Err() != nil || halt.Err() != nil {
			if b.next != pos && halt.Err() == nil {
				break
			}
			return nil, nil
		}
		if b.next == pos {
			if l.loads.Load() == 0 {
				l.caughtUpNano.Store(time.Now().UnixNano())
			}
		} else if deadline == nil {
			deadline = time.After(l.cfg.MaxAge)
		}
		select {
		case <-l.cfg.Spool.Notify():
			if b.next == pos && l.loads.Load() == 0 {
				// Caught up until what woke it was written: Lag counts
				// from here, not from before the idle time (a tester saw
				// 87 s of lag for a record 2 s old).
				l.caughtUpNano.Store(time.Now().UnixNano())
			}
		case <-deadline:
			return l.took(b), nil
		case <-ctx.Done():
		case <-halt.Done():
		}
	}
	return l.took(b), nil
}

// took counts b as a load in flight.
func (l *Loader) took(b *batch) *batch {
	l.loads.Add(1)
	b.n = len(b.events)
	return b
}

// read appends the events and bad rows of the available records to b. It
// reports whether b is full: MaxRows events and bad rows reached, or the
// next record would pass MaxRows events or maxLoadBytes.
func (l *Loader) read(ctx context.Context, b *batch) (full bool, err error) {
	for {
		var recs []spool.Record
		err := l.retry(ctx, stagePrepare, "read the spool", local, func() error {
			var err error
			recs, err = l.cfg.Spool.Read(b.next, 64, 8<<20)
			return err
		})
		if err != nil || len(recs) == 0 {
			return false, err
		}
		for _, r := range recs {
			if n, err := record.Count(r.Data); err == nil && len(b.events) > 0 && len(b.events)+n > l.cfg.MaxRows {
				return true, nil
			}
			if len(b.events)+len(b.bad) > 0 && b.bytes+len(r.Data) > maxLoadBytes {
				return true, nil
			}
			b.bytes += len(r.Data)
			d := record.Decoded{Events: b.events, Bad: b.bad, Counters: b.counters}
			if err := record.Decode(&d, r.Data); err != nil {
				// Ingest decoded it before spooling it, so this is a record
				// from an incompatible version or damage the CRC missed.
				l.m.SpoolCorrupt.Add(1)
				l.log.Error("skipping a spool record that does not decode", "position", b.next.String(), "err", err)
				clear(d.Events[len(b.events):]) // the part of it that did decode
			} else {
				b.events, b.bad, b.counters = d.Events, d.Bad, d.Counters
			}
			b.next = r.Next
			// Bad rows count too: a load of nothing but bad rows (a broken
			// log shipper's million lines) must not hold them all at once.
			if len(b.events)+len(b.bad) >= l.cfg.MaxRows {
				return true, nil
			}
		}
	}
}

// own drops from b the events whose id appeared earlier in b or belongs
// to a load in flight, and takes the rest's ids as b's own (b.ids). The
// first copy of an id wins; events keeps its order.
func (l *Loader) own(b *batch) {
	l.ownersMu.Lock()
	// The sets are not written once published, and only this goroutine
	// publishes: probing them without the lock is safe. One retired
	// meanwhile only means its load is stored; dropping its ids is right.
	others := slices.Clone(l.owners)
	l.ownersMu.Unlock()
	set := newIDSet(len(b.events))
	b.ids = make([]event.ID, 0, len(b.events))
	w := 0
next:
	for i := range b.events {
		id := b.events[i].ID
		for _, o := range others {
			if o.has(id) {
				continue next
			}
		}
		if !set.add(id) {
			continue
		}
		b.ids = append(b.ids, id)
		if w != i {
			b.events[w] = b.events[i]
		}
		w++
	}
	clear(b.events[w:])
	b.events = b.events[:w]
	b.owner = set
	l.ownersMu.Lock()
	l.owners = append(l.owners, set)
	l.ownersMu.Unlock()
}

// disown ends b's ownership of its ids.
func (l *Loader) disown(b *batch) {
	l.ownersMu.Lock()
	l.owners = slices.DeleteFunc(l.owners, func(s *idSet) bool { return s == b.owner })
	l.ownersMu.Unlock()
}

// claim claims b's ids and sorts its events: those to insert stay in
// b.events, those to check against the store go to b.check, duplicates
// go. It may be retried; a retry finds the ids an earlier attempt claimed
// pending, which sends them to the store check (safe, if slower).
func (l *Loader) claim(ctx context.Context, b *batch) error {
	if len(b.ids) == 0 {
		return nil
	}
	st := b.claimed
	if st == nil {
		s, err := l.claimIDs(ctx, b.ids)
		if err != nil {
			return err
		}
		st, b.claimed = s, s
	}
	// Ids another aggregator claimed and may be inserting right now: claim
	// them again until it has stored them (Duplicate) or its claim passed
	// to this one (it died: Uncertain), for up to busyWait; those still
	// Busy then are requeued. A retry after an error resumes here, from
	// b.claimed.
	wait := 10 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var busy []int
		for i, s := range st {
			if s == dedupe.Busy {
				busy = append(busy, i)
			}
		}
		if len(busy) == 0 || time.Since(start) >= busyWait {
			break
		}
		// Busy also answers every unclaimed id in the grace period after
		// Redis lost its memory (dedupe.Redis), with one aggregator too:
		// say both (a tester with one aggregator read of "another").
		l.setPause(stagePrepare, "wait for another aggregator's claims", fmt.Errorf("%d ids are claimed by another aggregator that is loading them, or wait out the grace period after Redis lost its memory (the claim lease), in case one is", len(busy)), attempt)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, 500*time.Millisecond)
		sub := make([]event.ID, len(busy))
		for k, i := range busy {
			sub[k] = b.ids[i]
		}
		again, err := l.claimIDs(ctx, sub)
		if err != nil {
			return err
		}
		for k, i := range busy {
			st[i] = again[k]
		}
	}
	// b.events and b.ids are parallel here (own): compact events in place.
	b.mark = make([]event.ID, 0, len(b.ids))
	b.requeue = nil
	w := 0
	for i, s := range st {
		switch {
		case s == dedupe.Duplicate:
			continue
		case s == dedupe.Busy:
			b.requeue = append(b.requeue, b.events[i]) // not this load's to mark
			continue
		case s == dedupe.Uncertain || b.recovering:
			b.check = append(b.check, b.events[i])
		default:
			if w != i {
				b.events[w] = b.events[i]
			}
			w++
		}
		b.mark = append(b.mark, b.ids[i])
	}
	clear(b.events[w:])
	b.events = b.events[:w]
	return nil
}

// claimIDs is one Claim of the Deduper, timed and its errors counted.
func (l *Loader) claimIDs(ctx context.Context, ids []event.ID) ([]dedupe.Status, error) {
	t0 := time.Now()
	st, err := l.cfg.Dedupe.Claim(ctx, ids)
	l.m.ObserveDedupe(time.Since(t0))
	if err != nil {
		l.countDedupeError(err)
	}
	return st, err
}

// reasserter is a Deduper whose memory can be lost while this process
// holds claims (dedupe.Redis): it says when, and takes the ids of the
// loads in flight back (see dedupe.Redis.Reassert).
type reasserter interface {
	OnNewEpoch(func())
	Reassert(ctx context.Context, ids []event.ID) error
}

// hold adds b, just claimed, to the loads whose claims a re-assert
// covers. Called with claimMu held.
func (l *Loader) hold(b *batch) {
	if l.re == nil || len(b.mark) == 0 {
		return
	}
	l.heldMu.Lock()
	l.held = append(l.held, b)
	l.heldMu.Unlock()
}

// release removes b from the held loads once its ids are marked done,
// and reports whether a re-assert covered it meanwhile.
func (l *Loader) release(b *batch) (reasserted bool) {
	if l.re == nil {
		return false
	}
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	l.held = slices.DeleteFunc(l.held, func(h *batch) bool { return h == b })
	return b.reasserted
}

// reassertLoop re-asserts the held loads' claims each time the Deduper
// says its memory is new, until ctx ends. A claim in progress finishes
// first (claimMu), so that its ids are among them; loads finishing
// meanwhile wait for the re-assert to be written (heldMu), so that their
// second mark comes after it.
func (l *Loader) reassertLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.reassert:
		}
		l.retry(ctx, stagePrepare, "re-assert the claims of loads in flight after Redis lost its memory", onDedupe, func() error {
			l.claimMu.Lock()
			defer l.claimMu.Unlock()
			l.heldMu.Lock()
			defer l.heldMu.Unlock()
			var ids []event.ID
			for _, b := range l.held {
				ids = append(ids, b.mark...)
				b.reasserted = true
			}
			return l.re.Reassert(ctx, ids)
		})
	}
}

// markDone marks b's ids done, retrying until work ends; then it stops
// the stages and reports false.
func (l *Loader) markDone(work context.Context, stop context.CancelFunc, b *batch, what string) bool {
	err := l.retry(work, stageFinish, what, onDedupe, func() error {
		t0 := time.Now()
		err := l.cfg.Dedupe.MarkDone(work, b.mark)
		l.m.ObserveDedupe(time.Since(t0))
		if err != nil {
			l.countDedupeError(err)
		}
		return err
	})
	if err != nil {
		l.log.Warn("shutdown: a load was stored but not marked done in time; the next start resolves it against the store", "events", b.n)
		stop()
		return false
	}
	return true
}

// busyWait is how long a load waits for ids another aggregator holds
// before requeueing them: long enough for a usual insert to finish, short
// enough that a requeued load costs little.
const busyWait = 2 * time.Second

// requeueEvents writes evs to the end of the spool, in batches of at most
// wire.MaxEvents. A retry after a partial write writes some again, which
// the claim then drops as duplicates.
func (l *Loader) requeueEvents(ctx context.Context, evs []event.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), wire.MaxEvents)
		if err := l.cfg.Spool.Requeue(ctx, wire.Append(nil, evs[:n])); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// store stores b's events exactly once: bad rows, then the events the
// store does not hold. It may be retried after any error; counts of rows
// stored by an earlier attempt are kept in b.
func (l *Loader) store(ctx context.Context, b *batch) error {
	if b.stored == nil {
		b.stored = map[string]uint64{}
	}
	if len(b.bad) > 0 && !b.badStored {
		if b.badNew == nil {
			rows, err := l.newBadRows(ctx, b.bad)
			if err != nil {
				return err
			}
			b.badNew = rows
		}
		if len(b.badNew) > 0 {
			if err := l.storeBadRows(ctx, b.badNew); err != nil {
				return err
			}
		}
		b.badStored = true
		reasons := map[string]int{}
		for _, r := range b.badNew {
			reasons[r.Reason]++
		}
		for reason, n := range reasons {
			l.m.BadRow(reason, n)
		}
	}
	if len(b.counters) > 0 && !b.countersStored {
		if err := l.storeCounters(ctx, b.counters); err != nil {
			return err
		}
		b.countersStored = true
	}
	if len(b.dupRows) > 0 && !b.dupsStored {
		if err := l.storeCounterRows(ctx, b.dupRows); err != nil {
			return err
		}
		b.dupsStored = true
	}
	insert, check := b.events, b.check
	if b.tried {
		// An earlier attempt's insert failed and may have stored some
		// of its events: ask the store about every one, and insert the
		// missing ones in the same order. A part of the failed insert
		// that was stored but cannot be read yet (its replica is down)
		// is then the same block again, which a replicated ClickHouse
		// table drops as a duplicate (clickhouse.Client.SetCluster).
		check, insert = b.lastInsert, nil
		if bd, ok := l.cfg.Store.(store.BlockDeduplicator); ok && bd.DeduplicatesBlocks() {
			// The store keeps the same block once: send it again as it
			// was (see store.BlockDeduplicator).
			check, insert = nil, b.lastInsert
		}
	}
	delta := map[string]uint64{}
	if len(check) > 0 {
		found, err := l.cfg.Store.ExistingIDs(ctx, check)
		if err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		var missing []event.Event
		for _, e := range check {
			switch {
			case !found[e.ID]:
				missing = append(missing, e)
			case b.failed[e.ID]:
				delta[e.Site]++ // stored by an insert that reported failure
				delete(b.failed, e.ID)
			}
		}
		if len(insert) == 0 {
			insert = missing
		} else {
			insert = append(insert[:len(insert):len(insert)], missing...)
		}
	}
	if len(insert) > 0 {
		journal := l.journaled()
		if journal {
			if err := l.writeJournal(insert); err != nil {
				return err
			}
		}
		b.tried = true
		b.lastInsert = insert
		if err := l.cfg.Store.InsertEvents(ctx, insert); err != nil {
			l.m.StoreErrors.Add(1)
			if b.failed == nil {
				b.failed = map[event.ID]bool{}
			}
			for _, e := range insert {
				b.failed[e.ID] = true
			}
			l.addStored(b, delta)
			return err
		}
		for _, e := range insert {
			delta[e.Site]++
			delete(b.failed, e.ID)
		}
		if journal {
			if err := l.clearJournal(); err != nil {
				// The next start finds the events stored and drops it.
				l.log.Warn("could not remove the insert journal", "err", err)
			}
		}
		l.m.Inserted.Add(uint64(len(insert)))
		l.m.Loads.Add(1)
	}
	l.addStored(b, delta) // the rows are stored: count them now, whatever follows
	if len(insert) > 0 && l.cfg.OnInserted != nil {
		l.cfg.OnInserted(insert)
	}
	return nil
}

// Recount asks for the store's counts to be read again and handed to
// OnCounts, between two loads: after stored events were removed (an
// erasure, retention), which no delta says. It does not wait; asks while
// one is pending are one.
func (l *Loader) Recount() {
	select {
	case l.recount <- struct{}{}:
	default:
	}
}

// recountNow reads the counts for Recount. A store that cannot answer
// leaves the counts as they were, logged: they are read again at the next
// start.
func (l *Loader) recountNow(ctx context.Context) {
	counts, total, err := l.cfg.Store.Counts(ctx, l.cfg.CountSites, l.cfg.CountMax)
	if err != nil {
		l.m.StoreErrors.Add(1)
		l.log.Warn("the live counts were not read again after events were removed", "err", err)
		return
	}
	l.cfg.OnCounts(counts, total)
}

// addStored counts rows stored for b and publishes them.
func (l *Loader) addStored(b *batch, delta map[string]uint64) {
	if len(delta) == 0 {
		return
	}
	for k, v := range delta {
		b.stored[k] += v
	}
	l.cfg.OnStored(delta)
}

// BadRowWindow is how far back the store is asked whether it holds a
// load's bad rows already: as long as the Deduper remembers event ids.
const BadRowWindow = dedupe.DefaultWindow

// newBadRows returns rows without copies of one id and, if the store can
// say (store.BadRowLookup), without those it holds already, received in
// the last BadRowWindow. A bad row's id derives from its source and input
// (record.NewBadRow): a body sent again, or a line repeated, is one row,
// inserted and counted (bad_rows_total) once, as its good events are.
// The result is never nil.
func (l *Loader) newBadRows(ctx context.Context, rows []record.BadRow) ([]record.BadRow, error) {
	seen := make(map[event.ID]bool, len(rows))
	out := make([]record.BadRow, 0, len(rows))
	for _, r := range rows {
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	lk, ok := l.cfg.Store.(store.BadRowLookup)
	if !ok {
		return out, nil
	}
	held, err := lk.StoredBadRows(ctx, out, time.Now().Add(-BadRowWindow))
	if err != nil {
		l.m.StoreErrors.Add(1)
		return nil, err
	}
	return slices.DeleteFunc(out, func(r record.BadRow) bool { return held[r.ID] }), nil
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

// Kinds of retried steps: what they wait on, and what an error of
// theirs means.
const (
	onStore  = iota // the store (ClickHouse): errors are pauses
	onDedupe        // the dedupe (Redis): errors are pauses
	local           // the spool: errors are failures
)

// retry runs f, a step of stage, until it succeeds or ctx ends, waiting
// 100 ms doubling up to MaxBackoff between attempts. An error that is a
// failure (see the package comment) is not retried: it fails the loader
// and is returned.
func (l *Loader) retry(ctx context.Context, stage int, what string, kind int, f func() error) error {
	wait := 100 * time.Millisecond
	var outOfFilesSince time.Time
	for attempt := 1; ; attempt++ {
		err := l.watch(stage, what, kind, attempt, f)
		l.setPause(stage, what, err, attempt)
		if err == nil {
			if attempt > 1 {
				l.log.Info("recovered", "what", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		switch {
		case spool.NoSpace(err):
			// The disk has no room for the checkpoint, a note or a
			// requeue: each is retried whole, and the spool's appends
			// are refused meanwhile (ingest answers 503); a restart
			// would not make room.
			outOfFilesSince = time.Time{}
		case OutOfFiles(err):
			if outOfFilesSince.IsZero() {
				outOfFilesSince = time.Now()
			} else if time.Since(outOfFilesSince) >= l.cfg.FailAfter {
				err = fmt.Errorf("%s: out of file descriptors for %v (a restart frees them): %w", what, l.cfg.FailAfter, err)
				l.fail(err)
				return err
			}
		case kind == local:
			err = fmt.Errorf("%s: %w", what, err)
			l.fail(err)
			return err
		default:
			outOfFilesSince = time.Time{}
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

// watch runs one attempt f of a step of kind; if it has not returned
// after cfg.SlowAttempt, the step counts as paused and the log says it
// waits, on what ("from": the store's or the dedupe's name), and once it
// returns, after how long.
func (l *Loader) watch(stage int, what string, kind, attempt int, f func() error) error {
	from := "the spool's disk"
	switch kind {
	case onStore:
		from = l.cfg.Store.Name()
	case onDedupe:
		from = l.cfg.Dedupe.Name()
	}
	start := time.Now()
	fired := make(chan struct{})
	slow := time.AfterFunc(l.cfg.SlowAttempt, func() {
		defer close(fired)
		err := fmt.Errorf("no answer for %v (still waiting; ingest keeps spooling)", l.cfg.SlowAttempt)
		l.setPause(stage, what, err, attempt)
		l.log.Warn("waiting for an answer", "from", from, "what", what, "attempt", attempt, "for", l.cfg.SlowAttempt,
			"check", "a long schema step, or a "+from+" that does not answer: /readyz on the dashboard listener says whether each answers")
	})
	err := f()
	if !slow.Stop() {
		<-fired
		// At WARN, as the wait was: both ends are read in one place.
		l.log.Warn("answered", "from", from, "what", what, "attempt", attempt, "after", time.Since(start).Round(time.Millisecond), "err", err)
	}
	return err
}

// OutOfFiles reports whether err comes from the process or the system
// running out of file descriptors (EMFILE, ENFILE).
func OutOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
