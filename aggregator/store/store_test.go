package store

import (
	"crypto/rand"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

// A load's retry asks ClickHouse for its ids between Bounds: a
// client-named event stored from an attempt in the other consent tier has
// a time up to a minute from its id's, and must be found there.
func TestBounds(t *testing.T) {
	const ms = 1_767_225_612_345 // 2026-01-01T00:00:12.345Z
	minted, err := event.NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := event.NewID(ms+30_000, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	named, aggMS := event.Stored(c, "a.com", -1, event.TierAggregate)
	for _, tc := range []struct {
		name   string
		evs    []event.Event
		lo, hi int64
	}{
		{"minted", []event.Event{{ID: minted, Time: ms}, {ID: minted, Time: ms + 5}}, ms, ms + 5},
		// The full tier's copy can be anywhere in the id's minute.
		{"named, aggregate attempt", []event.Event{{ID: named, Time: aggMS}}, aggMS, aggMS + event.StoredTimeSlack - 1},
		{"named beside minted", []event.Event{{ID: minted, Time: ms}, {ID: named, Time: aggMS}}, aggMS, aggMS + event.StoredTimeSlack - 1},
	} {
		lo, hi := Bounds(tc.evs)
		if lo.UnixMilli() != tc.lo || hi.UnixMilli() != tc.hi {
			t.Errorf("%s: %d..%d, want %d..%d", tc.name, lo.UnixMilli(), hi.UnixMilli(), tc.lo, tc.hi)
		}
	}
}
