package loader

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// heldInsert holds every insert of the held ids until release is
// closed: an insert still in flight (a slow ClickHouse) while the rest
// of the test goes on.
type heldInsert struct {
	*clickhouse.Client
	held    map[event.ID]bool
	once    sync.Once
	entered chan struct{} // closed when an insert of held ids started
	release chan struct{}
}

func (h *heldInsert) InsertEvents(ctx context.Context, evs []event.Event) error {
	for _, e := range evs {
		if h.held[e.ID] {
			h.once.Do(func() { close(h.entered) })
			select {
			case <-h.release:
			case <-ctx.Done():
				return ctx.Err()
			}
			break
		}
	}
	return h.Client.InsertEvents(ctx, evs)
}

// watchedClaims counts what the watched ids' claims answered once the
// grace period was over (over reports it; it asks Redis).
type watchedClaims struct {
	*dedupe.Redis // its Reassert and OnNewEpoch too
	ids           map[event.ID]bool
	over          func() bool
	mu            sync.Mutex
	busyAfter     int // claims of watched ids after the grace period that all answered Busy
	takenAfter    int // ... that answered New or Uncertain for some
}

func (w *watchedClaims) Claim(ctx context.Context, ids []event.ID) ([]dedupe.Status, error) {
	over := w.over()
	st, err := w.Redis.Claim(ctx, ids)
	if err != nil || !over {
		return st, err
	}
	seen, busy := 0, 0
	for i, id := range ids {
		if w.ids[id] {
			seen++
			if st[i] == dedupe.Busy {
				busy++
			}
		}
	}
	w.mu.Lock()
	switch {
	case seen == 0:
	case busy == seen:
		w.busyAfter++
	default:
		w.takenAfter++
	}
	w.mu.Unlock()
	return st, err
}

func (w *watchedClaims) counts() (busy, taken int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busyAfter, w.takenAfter
}

// TestTwoAggregatorsRedisLostMemory: aggregator A claimed a batch and is
// inserting it (the insert is held in flight) when Redis restarts
// without its data; the edge then retries the batch to aggregator B. B
// must not store it while A's insert runs: B finds no claim, and the ids
// are not in ClickHouse yet. The grace period makes B wait, A re-asserts
// its claims within it, and B keeps waiting past it until A has stored
// and marked them. Every event is then stored once: in the events
// table, the rollup and the live counts.
func TestTwoAggregatorsRedisLostMemory(t *testing.T) {
	redisLostMemory(t, false)
}

// The same on a Redis Cluster (3 masters with a replica each) where one
// master loses its memory (FLUSHALL, which its replica copies): the ids
// of its key groups get the grace period and A's re-assert, the others
// stay held by A's claims as they were.
func TestTwoAggregatorsRedisClusterLostMemory(t *testing.T) {
	redisLostMemory(t, true)
}

func redisLostMemory(t *testing.T, cluster bool) {
	localsrv.SkipWithoutRedisAndClickHouse(t)
	ctx := context.Background()
	var (
		newDedupe func() (*dedupe.Redis, error)
		lose      func()              // Redis loses its memory
		graceKeys func() (int, error) // in the groups that lose their memory
		anyGrace  func() (int, error) // in any group
	)
	if cluster {
		rc, err := localsrv.StartRedisCluster(ctx, t.TempDir(), 3, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Stop()
		newDedupe = func() (*dedupe.Redis, error) { return dedupe.NewRedisCluster(rc.Addrs(), "", "", time.Hour) }
		ms, err := rc.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := ms[0]
		anyGrace = func() (int, error) {
			n := 0
			for _, m := range ms {
				v, err := localsrv.Command(ctx, m.Addr, "KEYS", "ep:{*}G")
				if err != nil {
					return 0, err
				}
				ks, _ := v.([]any)
				for _, k := range ks {
					if k, _ := k.(string); strings.Index(k, "}") == len(k)-2 {
						n++
					}
				}
			}
			return n, nil
		}
		lose = func() {
			if _, err := localsrv.Command(ctx, m.Addr, "FLUSHALL"); err != nil {
				t.Fatal(err)
			}
		}
		graceKeys = func() (int, error) {
			v, err := localsrv.Command(ctx, m.Addr, "KEYS", "ep:{*}G")
			ks, _ := v.([]any)
			n := 0
			for _, k := range ks {
				// ep:{TAG}G: a bucket key (binary) may end in }G too, but
				// has more after its tag's brace.
				if k, _ := k.(string); strings.Index(k, "}") == len(k)-2 {
					n++
				}
			}
			return n, err
		}
	} else {
		rd, err := localsrv.StartRedis(ctx, t.TempDir(), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Stop()
		newDedupe = func() (*dedupe.Redis, error) { return dedupe.NewRedis(rd.URL, time.Hour) }
		lose = func() {
			// A restart without persistence.
			if err := rd.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := rd.RestartEmpty(ctx); err != nil {
				t.Fatal(err)
			}
		}
		graceKeys = func() (int, error) {
			v, err := localsrv.Command(ctx, rd.Addr, "EXISTS", "ep:G")
			n, _ := v.(int64)
			return int(n), err
		}
		anyGrace = graceKeys
	}
	ch, err := localsrv.StartClickHouse(ctx, t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()

	warm, x := events(t, 300), events(t, 500)
	hold := &heldInsert{held: map[event.ID]bool{}, entered: make(chan struct{}), release: make(chan struct{})}
	for _, e := range x {
		hold.held[e.ID] = true
	}
	released := false
	defer func() {
		if !released {
			close(hold.release)
		}
	}()
	// The grace period is over once its key was seen and is gone.
	var graceSeen atomic.Bool
	graceOver := func() bool {
		n, err := graceKeys()
		if err == nil && n > 0 {
			graceSeen.Store(true)
			return false
		}
		return err == nil && graceSeen.Load()
	}
	watch := &watchedClaims{ids: map[event.ID]bool{}, over: graceOver}
	for _, e := range x {
		watch.ids[e.ID] = true
	}
	a := startAggregatorWith(t, newDedupe, ch.HTTPURL, nil, func(c *clickhouse.Client) store.Store { hold.Client = c; return hold })
	b := startAggregatorWith(t, newDedupe, ch.HTTPURL, func(d *dedupe.Redis) dedupe.Deduper { watch.Redis = d; return watch }, nil)
	aggs := []*aggregator{a, b}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			for _, g := range aggs {
				g.stop()
			}
		}
	}
	defer stopAll()

	c, err := clickhouse.New(ch.HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	one := func(sql string) int {
		rows, err := c.Query(ctx, sql)
		if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
			t.Fatalf("%s: %v %v", sql, rows, err)
		}
		n, err := strconv.Atoi(rows[0][0])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	idList := make([]string, len(x))
	for i, e := range x {
		idList[i] = "'" + e.ID.String() + "'"
	}
	xRows := func() int {
		return one(fmt.Sprintf("SELECT count() FROM edgepixel.events WHERE toString(event_id) IN (%s)", strings.Join(idList, ",")))
	}
	drained := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for a.sp.Pending() != 0 || b.sp.Pending() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still spooled: %d, %d bytes", what, a.sp.Pending(), b.sp.Pending())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Both aggregators work with this Redis's memory, and ClickHouse
	// holds events: a Redis that comes back empty is one that lost its
	// memory, not a new install.
	a.append(t, warm)
	b.append(t, warm)
	drained("warm-up")

	// No grace period runs before the loss (a new install has none):
	// A's claim holds all of x.
	if n, err := anyGrace(); err != nil || n != 0 {
		t.Fatalf("%d grace periods running before Redis lost its memory (%v)", n, err)
	}
	// A claims x and starts inserting it.
	a.append(t, x)
	select {
	case <-hold.entered:
	case <-time.After(2 * time.Minute):
		t.Fatal("A's insert of the batch did not start")
	}
	lose()
	// The edge retries the batch to B.
	b.append(t, x)
	// Wait until B has tried x after the grace period (and found it
	// Busy: A re-asserted its claims), or has taken it (New or
	// Uncertain), or has nothing spooled any more.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		busy, taken := watch.counts()
		if busy > 0 || taken > 0 || b.sp.Pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not claim the batch again after the grace period in 2 minutes (busy %d, taken %d)", busy, taken)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b.sp.Pending() != 0 {
		// Let a claim that B took run to its insert, if it does.
		time.Sleep(time.Second)
	}
	busy, taken := watch.counts()
	inFlight := xRows()
	t.Logf("while A's insert was in flight, after the grace period: B's claims of the batch all Busy %d times, took some %d times; rows of the batch in ClickHouse %d of %d",
		busy, taken, inFlight, len(x))
	if inFlight != 0 || taken != 0 {
		t.Errorf("B took (%d claims) or stored (%d rows) the batch while A's insert of it was in flight", taken, inFlight)
	}

	close(hold.release)
	released = true
	drained("after A's insert")
	stopAll()

	want := len(warm) + len(x)
	rows := one("SELECT count() FROM edgepixel.events")
	distinct := one("SELECT uniqExact(event_id) FROM edgepixel.events")
	rollup := one("SELECT toUInt64(sum(n)) FROM edgepixel.events_per_minute")
	live := int(a.stored.Load() + b.stored.Load())
	t.Logf("events %d: rows %d (doubled %d, lost %d), rollup %d, live counts %d (A %d, B %d); B requeued %d",
		want, rows, rows-distinct, want-distinct, rollup, live, a.stored.Load(), b.stored.Load(), b.m.Requeued.Load())
	if rows != want || distinct != want || rollup != want || live != want {
		t.Fatalf("want %d everywhere", want)
	}
}
