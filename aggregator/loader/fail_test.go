package loader

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// brokenStore fails (or panics in) InsertEvents while err (or panics) is
// set, the way a dial that fails would.
type brokenStore struct {
	store.Store
	err    atomic.Pointer[error]
	panics atomic.Bool
}

func (b *brokenStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	if b.panics.Load() {
		panic("injected: a bug in the store")
	}
	if p := b.err.Load(); p != nil {
		return *p
	}
	return b.Store.InsertEvents(ctx, evs)
}

func dialError(errno syscall.Errno) error {
	// What net/http returns when the socket cannot be made or connect.
	return fmt.Errorf("clickhouse: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)})
}

// run starts a loader over r and returns Run's result channel and a
// stop, which returns once Run has: a loader still committing after the
// test ended wrote into its TempDir as it was removed (CI's "directory
// not empty").
func (r *rig) run(st store.Store, failAfter time.Duration) (*Loader, <-chan error, func()) {
	l := New(Config{Spool: r.sp, Dedupe: dedupe.NewMemory(time.Hour), Store: st, MaxAge: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, DrainTimeout: 300 * time.Millisecond, FailAfter: failAfter})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- l.Run(ctx); close(finished) }()
	return l, done, func() { cancel(); <-finished }
}

func wantFailure(t *testing.T, done <-chan error, within time.Duration, want string) {
	t.Helper()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run returned %v, want a failure mentioning %q", err, want)
		}
		t.Logf("failed: %v", strings.SplitN(err.Error(), "\n", 2)[0])
	case <-time.After(within):
		t.Fatalf("Run still running %v after the fault; want a failure mentioning %q", within, want)
	}
}

// Redis or ClickHouse refusing connections is a pause: the loader waits,
// however long, and stores everything once they answer.
func TestBackendOutageIsAPause(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &brokenStore{Store: r.disk}
	refused := dialError(syscall.ECONNREFUSED)
	st.err.Store(&refused)
	l, done, stop := r.run(st, 100*time.Millisecond)
	defer stop()
	r.append(events(t, 10))
	// Wait for the first refused attempt to show as a pause, then outlast
	// FailAfter five times over: the loader must still be waiting.
	for wait := time.Now().Add(time.Minute); l.Status() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatal("no pause a minute into the outage")
		}
	}
	time.Sleep(500 * time.Millisecond) // five times FailAfter
	select {
	case err := <-done:
		t.Fatalf("Run stopped during an outage: %v", err)
	default:
	}
	if p := l.Status(); p == nil || !strings.Contains(p.Error, "connection refused") {
		t.Fatalf("status %+v, want a pause naming the cause", p)
	}
	st.err.Store(nil)
	deadline := time.Now().Add(time.Minute)
	for r.rows() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows after the outage, want 10", r.rows())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running out of file descriptors is not cured by waiting: once it lasts
// FailAfter, Run fails with the reason.
func TestOutOfFilesFails(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &brokenStore{Store: r.disk}
	emfile := dialError(syscall.EMFILE)
	st.err.Store(&emfile)
	_, done, stop := r.run(st, 300*time.Millisecond)
	defer stop()
	r.append(events(t, 10))
	wantFailure(t, done, 5*time.Second, "out of file descriptors")
}

// A spool that cannot be read or whose checkpoint cannot be written (its
// directory is gone) is a failure at once.
func TestSpoolCommitFailureFails(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	_, done, stop := r.run(r.disk, time.Minute)
	defer stop()
	r.append(events(t, 10))
	for deadline := time.Now().Add(5 * time.Second); r.rows() != 10 || r.sp.Pending() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rows %d, pending %d", r.rows(), r.sp.Pending())
		}
	}
	if err := os.RemoveAll(dir + "/spool"); err != nil {
		t.Fatal(err)
	}
	r.append(events(t, 10)) // the open segment still takes it; reading it back cannot
	wantFailure(t, done, 5*time.Second, "the spool")
}

// A panic in a stage fails the loader instead of killing the process
// without a drain or leaving the other stages waiting.
func TestPanicFails(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &brokenStore{Store: r.disk}
	st.panics.Store(true)
	l, done, stop := r.run(st, time.Minute)
	defer stop()
	r.append(events(t, 10))
	wantFailure(t, done, 5*time.Second, "panic in the store stage")
	select {
	case <-l.Failed():
	default:
		t.Error("Failed not closed")
	}
}

// badRowCounter records the size of each bad-row insert.
type badRowCounter struct {
	*store.Disk
	mu      sync.Mutex
	largest int
	total   int
}

func (c *badRowCounter) InsertBadRows(ctx context.Context, rows []record.BadRow) error {
	c.mu.Lock()
	c.largest = max(c.largest, len(rows))
	c.total += len(rows)
	c.mu.Unlock()
	return c.Disk.InsertBadRows(ctx, rows)
}

// A spool of nothing but bad rows (a broken log shipper) is loaded in
// loads of at most MaxRows rows, not all at once.
func TestBadRowsBoundALoad(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &badRowCounter{Disk: r.disk}
	for j := range 20 {
		// Distinct lines: copies of one would be one row.
		var bad []record.BadRow
		for i := range 50 {
			bad = append(bad, record.NewBadRow(time.Now().UnixMilli(), record.SourceNDJSON, "", "bad_json", "x", []byte(fmt.Sprint(j, "-", i))))
		}
		if err := r.sp.Append(context.Background(), record.Encode(nil, bad, nil)); err != nil {
			t.Fatal(err)
		}
	}
	l := New(Config{Spool: r.sp, Dedupe: dedupe.NewMemory(time.Hour), Store: st, MaxRows: 120, MaxAge: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for r.sp.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending %d", r.sp.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.total != 1000 || st.largest > 150 {
		t.Fatalf("%d bad rows inserted, the largest insert %d rows; want all 1000 in loads of about MaxRows (120)", st.total, st.largest)
	}
}

// Lag counts from the oldest record not stored, not from before an idle
// time: a tester's idle minute showed as lag for a record 2 s old once
// Redis went away.
func TestLagCountsFromTheRecord(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &brokenStore{Store: r.disk}
	l, _, stop := r.run(st, time.Hour)
	defer stop()
	r.append(events(t, 1))
	for wait := time.Now().Add(time.Minute); r.rows() != 1 || r.sp.Pending() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("rows %d, pending %d; want 1 stored and nothing pending", r.rows(), r.sp.Pending())
		}
	}
	time.Sleep(2 * time.Second) // idle, caught up
	refused := dialError(syscall.ECONNREFUSED)
	st.err.Store(&refused)
	appended := time.Now()
	r.append(events(t, 1))
	for wait := time.Now().Add(time.Minute); l.Status() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatal("no pause a minute into the outage")
		}
	}
	if lag, since := l.Lag(), time.Since(appended).Seconds(); lag <= 0 || lag > since+0.05 {
		t.Errorf("lag %.2fs for a record appended %.2fs ago", lag, since)
	}
	st.err.Store(nil)
}
