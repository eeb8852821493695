package store

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func instance(t testing.TB, at time.Time) event.ID {
	id, err := event.NewID(at.UnixMilli(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// CountersInRange by hand: per instance, the largest value before the end
// minus the largest before the start; copies change nothing; rows before
// the look-back are not read.
func TestCountersInRange(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	a, b := instance(t, t0), instance(t, t0)
	rows := []CounterRow{
		{Instance: a, Time: at(-10 * time.Second), Site: "s", Counter: wire.CounterHits, Value: 5},
		{Instance: a, Time: at(10 * time.Second), Site: "s", Counter: wire.CounterHits, Value: 9},
		{Instance: a, Time: at(10 * time.Second), Site: "s", Counter: wire.CounterHits, Value: 9},  // a copy
		{Instance: a, Time: at(70 * time.Second), Site: "s", Counter: wire.CounterHits, Value: 12}, // after the range
		{Instance: a, Time: at(20 * time.Second), Site: "s", Counter: wire.CounterDropped, Reason: "bad_json", Value: 2},
		{Instance: b, Time: at(5 * time.Second), Site: "s", Counter: wire.CounterHits, Value: 3},
		{Instance: b, Time: at(5 * time.Second), Site: "s", Counter: wire.CounterEvents, Value: 3},
		{Instance: b, Time: at(-2 * wire.MaxInstanceLife), Site: "s", Counter: wire.CounterEvents, Value: 1}, // before the look-back
		{Instance: b, Time: at(-5 * time.Second), Site: "s", Counter: wire.CounterDuplicates, Value: 4},
		{Instance: b, Time: at(30 * time.Second), Site: "s", Counter: wire.CounterDuplicates, Value: 6},
	}
	var l Loss
	CountersInRange(&l, rows, t0, t0.Add(time.Minute))
	if l.Hits != 4+3 || l.Events != 3 || l.Dropped["bad_json"] != 2 || len(l.Dropped) != 1 || l.Duplicates != 2 {
		t.Fatalf("%+v", l)
	}
	l = Loss{Events: 10, Stored: 7}
	l.Finish()
	if l.Lost != 3 || l.LossRate != 0.3 || l.Dropped == nil {
		t.Fatalf("%+v", l)
	}
	l = Loss{Events: 1, Stored: 5}
	if l.Finish(); l.Lost != 0 || l.LossRate != 0 {
		t.Fatalf("%+v", l)
	}
	// Retries stored once are not lost; an event never stored still is.
	l = Loss{Events: 10, Stored: 3, Duplicates: 6}
	if l.Finish(); l.Lost != 1 || l.LossRate != 0.1 {
		t.Fatalf("%+v", l)
	}
	l = Loss{Events: 9, Stored: 3, Duplicates: 7}
	if l.Finish(); l.Lost != 0 || l.LossRate != 0 {
		t.Fatalf("%+v", l)
	}
}

func TestDiskCounters(t *testing.T) {
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	inst := instance(t, now)
	c := wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{
		{Site: "s", Time: now.UnixMilli(), Hits: 4, Events: 3, Drops: []wire.Drop{{Reason: "missing_site", N: 1}}, Notes: []wire.Drop{{Reason: "no_salt", N: 2}}},
		{Site: "x", Time: now.UnixMilli(), Hits: 1, Events: 1}}}
	rows := Rows(nil, &c)
	if len(rows) != 6 {
		t.Fatalf("%d rows", len(rows))
	}
	for range 2 { // stored twice: no difference
		if err := d.InsertCounters(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	evs := []event.Event{{ID: instance(t, now), Time: now.UnixMilli(), Site: "s", Name: "pageview"},
		{ID: instance(t, now), Time: now.UnixMilli(), Site: "s", Name: "pageview"}}
	if err := d.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	l, err := d.Loss(ctx, "s", false, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil || l.Hits != 4 || l.Events != 3 || l.Stored != 2 || l.Lost != 1 || l.Dropped["missing_site"] != 1 || l.Noted["no_salt"] != 2 || len(l.Noted) != 1 {
		t.Fatalf("%+v %v", l, err)
	}
	if l, _ := d.Loss(ctx, "", true, now.Add(-time.Minute), now.Add(time.Minute)); l.Hits != 5 || l.Events != 4 {
		t.Fatalf("all sites: %+v", l)
	}
	latest, err := d.LatestCounters(ctx, now.Add(-time.Hour))
	if err != nil || len(latest) != 6 {
		t.Fatalf("%d latest, %v", len(latest), err)
	}
}
