// Package dedupe decides which events are new, so that an event retried by
// the edge (or repeated in a batch) is stored once.
//
// The protocol makes a crash anywhere in the loader safe. For each id the
// loader first claims it as pending; only then does it insert, and after
// the insert it marks the id done:
//
//	Claim:    absent  -> now pending: New (insert it)
//	          done    -> Duplicate (stored before, drop)
//	          pending -> Uncertain (an earlier attempt claimed it and may or
//	                     may not have stored it: ask the store)
//	          pending, claimed by another live aggregator
//	                  -> Busy (claim again later)
//	insert New ids, and Uncertain ids the store says it does not have
//	MarkDone: done
//
// A crash after the claim and before the mark leaves "pending", so the
// retry asks the store instead of guessing: nothing is lost and nothing
// doubled. Where the deduper cannot vouch for an id (outside its window,
// or after its memory was lost: see Redis) it answers Uncertain too.
//
// When the deduper is unreachable, Claim fails and the loader inserts
// nothing: it retries (ingest keeps spooling) and catches up from the
// spool once the deduper answers. An insert without a claim could store
// an event twice; a paused load cannot.
package dedupe

import (
	"context"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Status is what Claim found out about one id.
type Status uint8

const (
	// New: never seen; now claimed as pending. Insert it.
	New Status = iota
	// Duplicate: stored before. Drop it.
	Duplicate
	// Uncertain: claimed by an attempt that did not finish. Ask the store.
	Uncertain
	// Busy: claimed by another aggregator that is alive and may be storing
	// it right now. Neither insert it nor ask the store (the other's insert
	// may not be visible yet): claim it again later, until it is Duplicate
	// (the other stored it) or Uncertain (the other died: its claim passed
	// to this caller). Only a deduper shared by several processes answers it.
	Busy
)

func (s Status) String() string {
	switch s {
	case New:
		return "new"
	case Duplicate:
		return "duplicate"
	case Uncertain:
		return "uncertain"
	case Busy:
		return "busy"
	}
	return "?"
}

// Deduper remembers which ids were claimed and stored, for a window.
type Deduper interface {
	// Claim claims every id in ids (which must be distinct) as pending and
	// returns one status per id.
	Claim(ctx context.Context, ids []event.ID) ([]Status, error)
	// MarkDone records that ids are stored.
	MarkDone(ctx context.Context, ids []event.ID) error
	// Ping checks that the backing store is reachable.
	Ping(ctx context.Context) error
	// Name identifies the implementation in logs ("redis", "memory").
	Name() string
	Close() error
}

// DefaultWindow is how long ids are remembered: far longer than the edge
// retries a batch.
const DefaultWindow = 24 * time.Hour
