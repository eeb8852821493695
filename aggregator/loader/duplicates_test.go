package loader

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// A client's retries of a named event (each accepted and counted at the
// edge, each with its own copy) are counted as duplicates, not lost;
// copies the edge delivered twice itself, and events whose ids the edge
// minted, delivered twice, are not; an event the edge counted and never
// delivered is still lost. Across loads and a restart of the loader.
func TestClientRetriesAreDuplicatesNotLoss(t *testing.T) {
	r := newRig(t, t.TempDir())
	run := r.metered(dedupe.NewMemory(time.Hour))
	now := time.Now().UnixMilli()
	named := func(id event.ID, copy uint64) event.Event {
		return event.Event{ID: id, Time: now, Site: "a", Name: "pageview", Copy: copy}
	}
	mint := func() event.ID {
		id, err := event.NewID(now, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	x, y, z := mint(), mint(), mint()
	inst := mint()
	counted := func(events uint64) wire.Counters {
		return wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{{Site: "a", Time: now, Hits: events, Events: events}}}
	}
	appendRec := func(p []byte) {
		if err := r.sp.Append(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(m *metrics.Metrics, dups uint64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute) // generous: a loaded machine is slow, not wrong
		for m.EdgeDuplicates.Load() != dups || r.sp.Pending() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("duplicates %d, want %d; %d bytes pending", m.EdgeDuplicates.Load(), dups, r.sp.Pending())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	loss := func() (l struct{ events, stored, dups, lost uint64 }) {
		t.Helper()
		got, err := r.disk.Loss(context.Background(), "a", false, time.UnixMilli(now-1000), time.UnixMilli(now+1000))
		if err != nil {
			t.Fatal(err)
		}
		l.events, l.stored, l.dups, l.lost = got.Events, got.Stored, got.Duplicates, got.Lost
		return l
	}

	m, stop := run()
	// x accepted twice (copies 1 and 3: the client retried), y once, z
	// (an id the edge minted) once. The first batch is delivered twice
	// (the edge sent it again), copy 3 a second time in a later record
	// (the fallback log after a batch that timed out but was stored), and
	// within one batch too.
	c4 := counted(4)
	first := wire.AppendWithCounters(nil, []event.Event{named(x, 1), named(y, 5), {ID: z, Time: now, Site: "a", Name: "pageview"}}, &c4)
	appendRec(first)
	appendRec(first)
	appendRec(wire.Append(nil, []event.Event{named(x, 3), named(x, 3)}))
	wait(m, 1)
	appendRec(wire.Append(nil, []event.Event{named(x, 3), named(y, 5), {ID: z, Time: now, Site: "a", Name: "pageview"}}))
	time.Sleep(100 * time.Millisecond) // nothing to wait for: the redeliveries must not count
	wait(m, 1)
	if l := loss(); l.events != 4 || l.stored != 3 || l.dups != 1 || l.lost != 0 {
		t.Fatalf("after one retry: %+v, want 4 events, 3 stored, 1 duplicate, 0 lost", l)
	}
	stop()

	// A new process: a third attempt of x, and the second again, in one
	// load; the edge has counted one more event it never delivered.
	m, stop = run()
	defer stop()
	c6 := counted(6)
	appendRec(wire.AppendWithCounters(nil, []event.Event{named(x, 7), named(x, 3)}, &c6))
	wait(m, 1)
	if l := loss(); l.events != 6 || l.stored != 3 || l.dups != 2 || l.lost != 1 {
		t.Fatalf("after a second retry and one event lost: %+v, want 6 events, 3 stored, 2 duplicates, 1 lost", l)
	}
}
