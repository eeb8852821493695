package loader

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// These tests use the real on-disk store and in-process deduper, wrapped
// to inject failures at the points a crash or outage would hit.

func events(t *testing.T, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		ms := time.Now().UnixMilli()
		id, err := event.NewID(ms, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = event.Event{ID: id, Time: ms, Site: []string{"a", "b"}[i%2], Name: "pageview"}
	}
	return out
}

// faultyStore fails InsertEvents: before inserting failBefore times, then
// after inserting (the rows are stored but the call errs) failAfter times.
type faultyStore struct {
	store.Store
	failBefore, failAfter atomic.Int32
}

func (f *faultyStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	if f.failBefore.Add(-1) >= 0 {
		return errors.New("injected: connection refused")
	}
	if err := f.Store.InsertEvents(ctx, evs); err != nil {
		return err
	}
	if f.failAfter.Add(-1) >= 0 {
		return errors.New("injected: timeout after the insert")
	}
	return nil
}

// stuckDedupe fails MarkDone while stuck is set: the insert happened, the
// mark never does (a crash between the two).
type stuckDedupe struct {
	dedupe.Deduper
	stuck atomic.Bool
}

func (s *stuckDedupe) MarkDone(ctx context.Context, ids []event.ID) error {
	if s.stuck.Load() {
		return errors.New("injected: redis down")
	}
	return s.Deduper.MarkDone(ctx, ids)
}

type rig struct {
	t      *testing.T
	dir    string
	sp     *spool.Spool
	disk   *store.Disk
	stored atomic.Uint64
}

func newRig(t *testing.T, dir string) *rig {
	r := &rig{t: t, dir: dir}
	var err error
	if r.sp, err = spool.Open(dir+"/spool", spool.Options{}); err != nil {
		t.Fatal(err)
	}
	if r.disk, err = store.OpenDisk(dir + "/events"); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) append(evs []event.Event) {
	if err := r.sp.Append(context.Background(), wire.Append(nil, evs)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) start(st store.Store, d dedupe.Deduper) (stop func()) {
	l := New(Config{Spool: r.sp, Dedupe: d, Store: st, MaxAge: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		DrainTimeout: 300 * time.Millisecond,
		OnCounts:     func(m map[string]uint64, _ uint64) { r.stored.Store(m["a"] + m["b"]) },
		OnStored:     func(m map[string]uint64) { r.stored.Add(m["a"] + m["b"]) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func (r *rig) rows() uint64 {
	c, _, _ := r.disk.Counts(context.Background(), nil, 0)
	return c["a"] + c["b"]
}

func (r *rig) waitRows(want uint64) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute) // generous: a loaded machine is slow, not wrong
	for r.rows() != want || r.stored.Load() != want || r.sp.Pending() != 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("rows %d, live %d, pending %d; want %d stored and nothing pending", r.rows(), r.stored.Load(), r.sp.Pending(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDuplicatesAndRetries(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &faultyStore{Store: r.disk}
	st.failBefore.Store(2)
	st.failAfter.Store(1)
	stop := r.start(st, dedupe.NewMemory(time.Hour))
	defer stop()
	evs := events(t, 30)
	r.append(append(evs[:10:10], evs[0], evs[1])) // repeats within a batch
	r.append(evs[5:20])                           // overlaps the first
	r.append(evs[:10])                            // the edge retrying a batch
	r.waitRows(20)
	r.append(evs)
	r.waitRows(30)
	time.Sleep(50 * time.Millisecond)
	if r.rows() != 30 {
		t.Fatalf("%d rows", r.rows())
	}
}

func TestCrashBetweenInsertAndMark(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	d := &stuckDedupe{Deduper: dedupe.NewMemory(time.Hour)}
	d.stuck.Store(true)
	stop := r.start(r.disk, d)
	evs := events(t, 20)
	r.append(evs)
	deadline := time.Now().Add(5 * time.Second)
	for r.rows() != 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop() // "crash": inserted, never marked, checkpoint not committed
	if r.rows() != 20 || r.sp.Pending() == 0 {
		t.Fatalf("rows %d pending %d", r.rows(), r.sp.Pending())
	}
	r.sp.Close()

	// Restart with the dedupe state lost (in-process deduper) and the
	// record still spooled: the loader must ask the store, not reinsert.
	r2 := newRig(t, dir)
	defer r2.sp.Close()
	stop2 := r2.start(r2.disk, dedupe.NewMemory(time.Hour))
	defer stop2()
	r2.waitRows(20)
	more := events(t, 5)
	r2.append(append(evs[:3:3], more...))
	r2.waitRows(25)
}

// A caught-up loader waits for the spool's Notify and nothing else (no
// polling), so a record appended to an idle spool is loaded only if the
// append wakes it: without the wake it never loads and waitRows fails. The
// time it took is logged, not judged (no test fails on a timing).
func TestWakesPromptly(t *testing.T) {
	r := newRig(t, t.TempDir())
	stop := r.start(r.disk, dedupe.NewMemory(time.Hour))
	defer stop()
	r.waitRows(0)
	start := time.Now()
	r.append(events(t, 1))
	r.waitRows(1)
	t.Logf("loaded %v after the append", time.Since(start))
}

// slowStore delays every insert, so that loads overlap: the next load is
// claimed while this one is being inserted.
type slowStore struct {
	store.Store
	delay time.Duration
}

func (s *slowStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	time.Sleep(s.delay)
	return s.Store.InsertEvents(ctx, evs)
}

// countingStore counts ExistingIDs calls.
type countingStore struct {
	store.Store
	checks atomic.Int32
}

func (c *countingStore) ExistingIDs(ctx context.Context, evs []event.Event) (map[event.ID]bool, error) {
	c.checks.Add(1)
	return c.Store.ExistingIDs(ctx, evs)
}

// forgetful answers New to every claim, as Redis does for ids newer than
// its epoch after it lost its memory.
// forgetful answers every claim New, as a Redis that lost its memory
// answers ids newer than its epoch, and counts the claims.
type forgetful struct {
	dedupe.Deduper
	claims *atomic.Int32
}

func (f forgetful) Claim(ctx context.Context, ids []event.ID) ([]dedupe.Status, error) {
	st, err := f.Deduper.Claim(ctx, ids)
	clear(st)
	f.claims.Add(1)
	return st, err
}

// gatedStore holds each insert until the deduper has been asked about
// the load after it (or 3 s passed: the last load has none), so that
// consecutive loads overlap however slow the machine is: a forgetful
// deduper cannot vouch for ids stored already, only the loader's own
// record of the loads in flight can.
type gatedStore struct {
	store.Store
	claims  *atomic.Int32
	inserts atomic.Int32
}

func (s *gatedStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	n := s.inserts.Add(1)
	for deadline := time.Now().Add(3 * time.Second); s.claims.Load() <= n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return s.Store.InsertEvents(ctx, evs)
}

func (r *rig) startWith(st store.Store, d dedupe.Deduper) (stop func()) {
	l := New(Config{Spool: r.sp, Dedupe: d, Store: st, MaxRows: 10, MaxAge: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, DrainTimeout: time.Second,
		OnStored: func(m map[string]uint64) { r.stored.Add(m["a"] + m["b"]) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// overlapping spools 100 events as records of 10, each repeating half of
// the one before: with MaxRows 10, consecutive loads share ids.
func (r *rig) overlapping() {
	evs := events(r.t, 100)
	for i := 0; i+10 <= len(evs); i += 5 {
		r.append(evs[i : i+10])
	}
}

// TestOverlappingLoadsShareIDs sends the same ids in consecutive loads
// while the earlier load is still being inserted. The later load must
// take the earlier one's pending claim for a duplicate in flight, not for
// a leftover to look up in the store, and nothing may be stored twice:
// with failing inserts, and when the claim cannot vouch for anything
// (Redis's memory lost: ids newer than the epoch come back New).
func TestOverlappingLoadsShareIDs(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		r := newRig(t, t.TempDir())
		st := &countingStore{Store: &slowStore{Store: r.disk, delay: 30 * time.Millisecond}}
		r.overlapping()
		defer r.startWith(st, dedupe.NewMemory(time.Hour))()
		r.waitRows(100)
		if n := st.checks.Load(); n != 0 {
			t.Errorf("the store was asked about ids %d times; an id of a load in flight is a duplicate", n)
		}
	})
	t.Run("failing inserts", func(t *testing.T) {
		r := newRig(t, t.TempDir())
		st := &faultyStore{Store: &slowStore{Store: r.disk, delay: 30 * time.Millisecond}}
		st.failAfter.Store(2)
		st.failBefore.Store(1)
		r.overlapping()
		defer r.startWith(st, dedupe.NewMemory(time.Hour))()
		r.waitRows(100)
	})
	t.Run("memory lost", func(t *testing.T) {
		r := newRig(t, t.TempDir())
		var claims atomic.Int32
		st := &gatedStore{Store: r.disk, claims: &claims}
		r.overlapping()
		defer r.startWith(st, forgetful{dedupe.NewMemory(time.Hour), &claims})()
		r.waitRows(100)
		time.Sleep(100 * time.Millisecond)
		if r.rows() != 100 {
			t.Fatalf("%d rows, want 100", r.rows())
		}
	})
}

// hangingStore's inserts wait until release is closed, as a ClickHouse
// that stopped answering (SIGSTOP) leaves them.
type hangingStore struct {
	store.Store
	release chan struct{}
}

func (h *hangingStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	<-h.release
	return h.Store.InsertEvents(ctx, evs)
}

// An insert that does not return within SlowAttempt is a pause (Status,
// hence /readyz and the paused gauge), and the log says so, without an
// error to retry on; once it returns, loading goes on and the pause ends
// (a tester's stopped ClickHouse had left /readyz's loader and the log
// silent for a minute).
func TestUnansweredAttemptIsAPause(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &hangingStore{Store: r.disk, release: make(chan struct{})}
	var logs strings.Builder
	var mu sync.Mutex
	l := New(Config{Spool: r.sp, Dedupe: dedupe.NewMemory(time.Hour), Store: st, MaxAge: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, DrainTimeout: 300 * time.Millisecond, SlowAttempt: 50 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		OnStored: func(m map[string]uint64) { r.stored.Add(m["a"] + m["b"]) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	r.append(events(t, 10))
	deadline := time.Now().Add(time.Minute)
	for p := l.Status(); p == nil || p.What != "load" || !strings.Contains(p.Error, "no answer for"); p = l.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("no pause while the insert hangs: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	// On what: the store, not Redis (a tester could not tell which).
	said := strings.Contains(logs.String(), `msg="waiting for an answer"`) && strings.Contains(logs.String(), " from=disk what=load ")
	mu.Unlock()
	if !said {
		t.Errorf("the log does not say the loader waits on the store: %s", logs.String())
	}
	close(st.release)
	r.waitRows(10)
	if p := l.Status(); p != nil {
		t.Errorf("still paused after the insert returned: %+v", p)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
