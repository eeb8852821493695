// Package store defines where the loader puts events, and holds the
// on-disk implementation used when no ClickHouse is configured. The
// ClickHouse implementation lives in package clickhouse.
package store

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
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
	// Counts returns the exact number of distinct stored events per site
	// and their total over all sites. With sites given, only those sites
	// are listed; else, with max > 0, only the max sites with the most
	// events (ties broken by name); the others count in the total only.
	// The bound keeps a store full of junk site names from costing memory
	// in the caller.
	Counts(ctx context.Context, sites []string, max int) (counts map[string]uint64, total uint64, err error)
	// Recent returns the stored events whose time is at or after since,
	// each once, at most max of them (the newest), in no particular order,
	// with only Site, Name, URL, VisitorID and Time filled: what the live
	// windows are rebuilt from at start (live.Hub.Restore).
	Recent(ctx context.Context, since time.Time, max int) ([]event.Event, error)
	// History returns per-minute counts for site in [from, to], oldest
	// first, omitting empty minutes.
	History(ctx context.Context, site string, from, to time.Time) ([]Point, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// Name identifies the implementation in logs ("clickhouse", "disk").
	Name() string
	Close() error
}

// BlockDeduplicator is a Store that keeps an insert's events once when
// the same events, in the same order, are inserted again: ClickHouse's
// replicated tables, which drop a block the same as a recent one.
// DeduplicatesBlocks reports whether this store does (it may depend on its
// configuration).
//
// The loader retries an insert whose outcome is unknown as the same
// block, instead of inserting the events ExistingIDs does not find:
// with replication a failed insert can leave rows readable for a while
// that the server later drops (a part written on a replica whose commit
// to ZooKeeper failed; ClickHouse then asks the client to retry the same
// block), and filtering by what is readable would lose them.
type BlockDeduplicator interface {
	DeduplicatesBlocks() bool
}

// TopCounts applies the selection of Store.Counts to all, every site's
// count: it returns the listed sites, or the max with the most, and the
// total over all.
func TopCounts(all map[string]uint64, sites []string, max int) (map[string]uint64, uint64) {
	var total uint64
	for _, n := range all {
		total += n
	}
	out := map[string]uint64{}
	switch {
	case len(sites) > 0:
		for _, s := range sites {
			if n, ok := all[s]; ok {
				out[s] = n
			}
		}
	case max <= 0 || len(all) <= max:
		maps.Copy(out, all)
	default:
		names := slices.Collect(maps.Keys(all))
		slices.SortFunc(names, func(a, b string) int {
			if all[a] != all[b] {
				return cmp.Compare(all[b], all[a])
			}
			return strings.Compare(a, b)
		})
		for _, s := range names[:max] {
			out[s] = all[s]
		}
	}
	return out, total
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
