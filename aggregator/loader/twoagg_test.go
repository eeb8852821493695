package loader

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// aggregator is one loader with its own spool, Redis client and
// ClickHouse client: what an aggregator process has of its own.
type aggregator struct {
	sp     *spool.Spool
	l      *Loader
	m      *metrics.Metrics
	stored atomic.Uint64
	stop   func()
}

func startAggregator(t *testing.T, newDedupe func() (*dedupe.Redis, error), chURL string) *aggregator {
	t.Helper()
	return startAggregatorWith(t, newDedupe, chURL, nil, nil)
}

// startAggregatorWith is startAggregator with the deduper and the store
// wrapped by wrapD and wrapS (either nil: not wrapped).
func startAggregatorWith(t *testing.T, newDedupe func() (*dedupe.Redis, error), chURL string,
	wrapD func(*dedupe.Redis) dedupe.Deduper, wrapS func(*clickhouse.Client) store.Store) *aggregator {
	t.Helper()
	a := &aggregator{m: metrics.New()}
	var err error
	if a.sp, err = spool.Open(t.TempDir(), spool.Options{}); err != nil {
		t.Fatal(err)
	}
	d, err := newDedupe()
	if err != nil {
		t.Fatal(err)
	}
	c, err := clickhouse.New(chURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	d.UseStore(c.NewestEventTime)
	var dd dedupe.Deduper = d
	if wrapD != nil {
		dd = wrapD(d)
	}
	var st store.Store = c
	if wrapS != nil {
		st = wrapS(c)
	}
	a.l = New(Config{Spool: a.sp, Dedupe: dd, Store: st, Metrics: a.m, MaxAge: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
		OnCounts:     func(map[string]uint64, uint64) {},
		OnStored: func(m map[string]uint64) {
			for _, v := range m {
				a.stored.Add(v)
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.l.Run(ctx); close(done) }()
	a.stop = func() { cancel(); <-done; d.Close(); c.Close() }
	deadline := time.Now().Add(30 * time.Second)
	for !a.l.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("loader not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

func (a *aggregator) append(t *testing.T, evs []event.Event) {
	if err := a.sp.Append(context.Background(), wire.Append(nil, evs)); err != nil {
		t.Error(err)
	}
}

// The same batch reaching two aggregators that share Redis and
// ClickHouse (an edge retry sent to the other aggregator while the first
// still loads it, or a batch both received) is stored exactly once: each
// event once in the events table, in the rollup and in the live counts.
func TestTwoAggregatorsSameBatch(t *testing.T) {
	twoAggregators(t, false)
}

// The same on a Redis Cluster (3 masters with a replica each).
func TestTwoAggregatorsSameBatchRedisCluster(t *testing.T) {
	twoAggregators(t, true)
}

func twoAggregators(t *testing.T, cluster bool) {
	localsrv.SkipWithoutRedisAndClickHouse(t)
	ctx := context.Background()
	var newDedupe func() (*dedupe.Redis, error)
	if cluster {
		rc, err := localsrv.StartRedisCluster(ctx, t.TempDir(), 3, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Stop()
		newDedupe = func() (*dedupe.Redis, error) { return dedupe.NewRedisCluster(rc.Addrs(), "", "", time.Hour) }
	} else {
		rd, err := localsrv.StartRedis(ctx, t.TempDir(), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Stop()
		newDedupe = func() (*dedupe.Redis, error) { return dedupe.NewRedis(rd.URL, time.Hour) }
	}
	ch, err := localsrv.StartClickHouse(ctx, t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()

	aggs := []*aggregator{startAggregator(t, newDedupe, ch.HTTPURL), startAggregator(t, newDedupe, ch.HTTPURL)}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			for _, a := range aggs {
				a.stop()
			}
		}
	}
	defer stopAll()

	const rounds, size = 80, 100
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	for range rounds {
		evs := events(t, size)
		// Both at once (a batch sent to both), then overlapping retries
		// to either one, some while the first copies are still loading.
		retries := rng.IntN(3)
		delays := make([]time.Duration, retries)
		to := make([]int, retries)
		for i := range delays {
			delays[i] = time.Duration(rng.IntN(30)) * time.Millisecond
			to[i] = rng.IntN(2)
		}
		for _, a := range aggs {
			wg.Add(1)
			go func() { defer wg.Done(); a.append(t, evs) }()
		}
		for i := range delays {
			wg.Add(1)
			go func() { defer wg.Done(); time.Sleep(delays[i]); aggs[to[i]].append(t, evs) }()
		}
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for aggs[0].sp.Pending() != 0 || aggs[1].sp.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still spooled: %d, %d bytes", aggs[0].sp.Pending(), aggs[1].sp.Pending())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopAll()

	c, err := clickhouse.New(ch.HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	one := func(sql string) int { return count(t, c, sql) }
	want := rounds * size
	rows := one("SELECT count() FROM edgepixel.events")
	distinct := one("SELECT uniqExact(event_id) FROM edgepixel.events")
	rollup := one("SELECT toUInt64(sum(n)) FROM edgepixel.events_per_minute")
	live := int(aggs[0].stored.Load() + aggs[1].stored.Load())
	t.Logf("events %d: rows %d (doubled %d, lost %d), rollup %d, live counts %d (aggregator 1: %d, 2: %d); requeued %d, %d",
		want, rows, rows-distinct, want-distinct, rollup, live, aggs[0].stored.Load(), aggs[1].stored.Load(),
		aggs[0].m.Requeued.Load(), aggs[1].m.Requeued.Load())
	if rows != want || distinct != want || rollup != want || live != want {
		t.Fatalf("want %d everywhere", want)
	}
}
