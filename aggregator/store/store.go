// Package store defines where the loader puts events, and holds the
// on-disk implementation used when no ClickHouse is configured. The
// ClickHouse implementation lives in package clickhouse.
package store

import (
	"context"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Point is one minute of a site's history: the unix second the minute
// starts at and the events stored for it.
type Point struct {
	T int64  `json:"t"`
	N uint64 `json:"n"`
}

// Store is an event store. Implementations must make InsertEvents all or
// nothing per event (a failed call may have stored some events, never part
// of one), because the loader answers "was it stored?" with ExistingIDs.
type Store interface {
	// Init prepares the store (creates the schema). The aggregator calls it
	// until it succeeds before loading anything.
	Init(ctx context.Context) error
	// InsertEvents stores evs.
	InsertEvents(ctx context.Context, evs []event.Event) error
	// ExistingIDs returns which of evs' ids are already stored. Callers pass
	// whole events so implementations can narrow the search by site and time.
	ExistingIDs(ctx context.Context, evs []event.Event) (map[event.ID]bool, error)
	// Counts returns the exact number of distinct stored events per site.
	Counts(ctx context.Context) (map[string]uint64, error)
	// History returns per-minute counts for site in [from, to], oldest
	// first, omitting empty minutes.
	History(ctx context.Context, site string, from, to time.Time) ([]Point, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// Name identifies the implementation in logs ("clickhouse", "disk").
	Name() string
	Close() error
}

// Bounds returns the earliest and latest event time in evs.
func Bounds(evs []event.Event) (lo, hi time.Time) {
	if len(evs) == 0 {
		return
	}
	l, h := evs[0].Time, evs[0].Time
	for _, e := range evs[1:] {
		l, h = min(l, e.Time), max(h, e.Time)
	}
	return time.UnixMilli(l), time.UnixMilli(h)
}
