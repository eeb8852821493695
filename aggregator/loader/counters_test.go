package loader

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// metered returns a function that starts a loader on r's spool and disk
// store with d and fresh metrics, and returns them and its stop.
func (r *rig) metered(d dedupe.Deduper) func() (*metrics.Metrics, func()) {
	return func() (*metrics.Metrics, func()) {
		m := metrics.New()
		l := New(Config{Spool: r.sp, Dedupe: d, Store: r.disk, Metrics: m, MaxAge: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx); close(done) }()
		return m, func() { cancel(); <-done }
	}
}

// Counters are stored with their loads, and the metrics grow by what each
// instance's counters grew, whatever was delivered twice, and across a
// restart of the loader.
func TestEdgeCounters(t *testing.T) {
	r := newRig(t, t.TempDir())
	run := r.metered(dedupe.NewMemory(time.Hour))
	now := time.Now().UnixMilli()
	a, _ := event.NewID(now, rand.Reader)
	b, _ := event.NewID(now, rand.Reader)
	counts := func(inst event.ID, hits uint64, drops ...wire.Drop) wire.Counters {
		return wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{{Site: "a", Time: now, Hits: hits, Events: hits, Drops: drops}}}
	}
	appendRec := func(p []byte) {
		if err := r.sp.Append(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(m *metrics.Metrics, hits uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for m.EdgeHits.Load() != hits || r.sp.Pending() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("edge hits %d, want %d; %d bytes pending", m.EdgeHits.Load(), hits, r.sp.Pending())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	m, stop := run()
	ca := counts(a, 5)
	batch := wire.AppendWithCounters(nil, events(t, 5), &ca)
	appendRec(batch)
	appendRec(batch) // the edge retried it
	ca8 := counts(a, 8)
	cb := counts(b, 2, wire.Drop{Reason: "bad_json", N: 1})
	appendRec(record.Encode(nil, nil, []wire.Counters{ca8, cb, ca})) // and an older reading, late
	wait(m, 10)
	if m.EdgeEvents.Load() != 10 || m.EdgeDrops("bad_json") != 1 || r.rows() != 5 {
		t.Fatalf("events %d, bad_json %d, rows %d", m.EdgeEvents.Load(), m.EdgeDrops("bad_json"), r.rows())
	}
	stop()
	// A new process: what is stored is not counted again.
	m, stop = run()
	defer stop()
	ca9 := counts(a, 9)
	appendRec(record.Encode(nil, nil, []wire.Counters{ca9, cb}))
	wait(m, 1)
	time.Sleep(50 * time.Millisecond)
	if m.EdgeHits.Load() != 1 || m.EdgeDrops("bad_json") != 0 {
		t.Fatalf("after restart: hits %d, bad_json %d", m.EdgeHits.Load(), m.EdgeDrops("bad_json"))
	}
	l, err := r.disk.Loss(context.Background(), "a", false, time.UnixMilli(now-1000), time.UnixMilli(now+1000))
	if err != nil || l.Hits != 11 || l.Events != 11 || l.Stored != 3 || l.Dropped["bad_json"] != 1 { // events() puts 3 of 5 in site a
		t.Fatalf("%+v %v", l, err)
	}
}
