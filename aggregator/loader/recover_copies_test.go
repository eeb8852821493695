package loader

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// A load whose duplicate rows were stored but which was not committed (the
// process died between store and finish) is read again after the restart
// as recovering. With the in-process deduper, which comes back empty and
// answers New, its copies must not be counted as duplicates a second
// time: /api/loss would subtract a retry twice and could hide a real loss.
func TestRecoveringLoadCountsCopiesOnce(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	now := time.Now().UnixMilli()
	x, _ := event.NewID(now, rand.Reader)
	inst, _ := event.NewID(now, rand.Reader)
	named := func(c uint64) event.Event { return event.Event{ID: x, Time: now, Site: "a", Name: "pageview", Copy: c} }
	c2 := wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{{Site: "a", Time: now, Hits: 2, Events: 2}}}
	// x accepted twice (the client retried): 2 events, 1 stored, 1 duplicate.
	if err := r.sp.Append(context.Background(), wire.AppendWithCounters(nil, []event.Event{named(1), named(2)}, &c2)); err != nil {
		t.Fatal(err)
	}
	stuck := &stuckDedupe{Deduper: dedupe.NewMemory(time.Hour)}
	stuck.stuck.Store(true) // stored, never marked: the process dies first
	stop := r.start(r.disk, stuck)
	for deadline := time.Now().Add(30 * time.Second); r.rows() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not stored")
		}
	}
	stop()
	r.sp.Close()

	var err error
	if r.sp, err = spool.Open(dir+"/spool", spool.Options{}); err != nil {
		t.Fatal(err)
	}
	defer r.sp.Close()
	stop = r.start(r.disk, dedupe.NewMemory(time.Hour)) // the restarted process
	defer stop()
	r.waitRows(1)
	got, err := r.disk.Loss(context.Background(), "a", false, time.UnixMilli(now-1000), time.UnixMilli(now+1000))
	if err != nil {
		t.Fatal(err)
	}
	if got.Events != 2 || got.Stored != 1 || got.Duplicates != 1 {
		t.Fatalf("events %d, stored %d, duplicates %d, lost %d; want 2, 1, 1, 0", got.Events, got.Stored, got.Duplicates, got.Lost)
	}
}
