package loader

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Client retries
//
// A client that names its event (event_id, an Idempotency-Key) may send
// it again; the edge accepts and counts every attempt under events, and
// the event is stored once. Were nothing else counted, /api/loss would
// call each retry lost. Each accepted attempt carries its own Copy
// (event.Event), which every delivery of that attempt repeats, so the
// loader can count, per site, the copies of an id beyond the one stored:
// wire.CounterDuplicates, which store.Loss subtracts. A copy the edge
// delivered twice itself (a batch sent again, the fallback log, a
// journal line re-sent, the spool) is the same copy and counts once.
//
// A copy is claimed in the Deduper under an id of its own (copyID), so
// that the first sighting of a copy is known across loads, restarts and
// aggregators the way an event's is. Where the claim cannot vouch for a
// copy (its claim pending after a crash, Redis that lost its memory) it
// is not counted: a retry then shows as lost, never a loss as a retry.

// copyRef is one copy of a client-named event in a load.
type copyRef struct {
	id   event.ID // copyID(ev, the copy)
	ev   event.ID
	site string
}

// collectCopies takes b's copies of client-named events, each copy once,
// before own drops events whose id repeats.
func collectCopies(b *batch) {
	b.copies = b.copies[:0]
	var seen map[event.ID]bool
	for i := range b.events {
		e := &b.events[i]
		if e.Copy == 0 {
			continue
		}
		c := copyRef{id: copyID(e.ID, e.Copy), ev: e.ID, site: e.Site}
		if seen == nil {
			seen = map[event.ID]bool{}
		}
		if seen[c.id] {
			continue
		}
		seen[c.id] = true
		b.copies = append(b.copies, c)
	}
}

// copyLabel separates copy ids from any other hash of the same bytes.
const copyLabel = "edgepixel event copy v1\x00"

// copyID is the Deduper's id of copy c of the event ev: ev's time (so it
// falls in the same dedupe window as ev) and a hash of ev and c.
func copyID(ev event.ID, c uint64) event.ID {
	var buf [len(copyLabel) + 16 + 8]byte
	b := append(buf[:0], copyLabel...)
	b = append(b, ev[:]...)
	b = binary.BigEndian.AppendUint64(b, c)
	sum := sha256.Sum256(b)
	return event.IDFrom(ev.Time(), (*[10]byte)(sum[:10]))
}

// claimCopies claims b's copies, once: a retried claim keeps the first
// answer (a second claim would find its own pending claims). It runs
// after the claim of b's ids, and every aggregator does so, so that of
// two aggregators given the same copy, the one that stores its id claimed
// the copy before the other could claim the id and find it stored: the
// other never counts the stored copy as a duplicate.
func (l *Loader) claimCopies(ctx context.Context, b *batch) error {
	if len(b.copies) == 0 || b.copyClaimed != nil {
		return nil
	}
	ids := make([]event.ID, len(b.copies))
	for i := range b.copies {
		ids[i] = b.copies[i].id
	}
	st, err := l.claimIDs(ctx, ids)
	if err != nil {
		return err
	}
	b.copyClaimed = st
	return nil
}

// countCopies, after claim, adds the copies this load claimed to the ids
// to mark done, and counts as duplicates the copies seen first here (New)
// of each id, but the one this load stores (an id in events or check) or
// may leave to another aggregator that holds the id (requeue: the copy
// may be the one it stores). Called once per load, in load order
// (prepare stage).
//
// With the in-process Deduper (dedupe.Memory), a copy of a load an
// earlier process wrote (b.recovering) is New whether or not that
// process counted it, since the memory went with it: such copies are
// marked, not counted, so that a retry is never subtracted twice from
// the loss, hiding a real loss (a reviewer's finding). Redis remembers
// the earlier claims: a New copy there was never counted.
func (l *Loader) countCopies(b *batch) {
	if b.copyClaimed == nil {
		return
	}
	_, forgets := l.cfg.Dedupe.(*dedupe.Memory)
	forgot := b.recovering && forgets
	type seen struct {
		n    uint64
		site string
	}
	fresh := map[event.ID]seen{}
	for i, s := range b.copyClaimed {
		c := &b.copies[i]
		switch {
		case s == dedupe.New && forgot:
			b.mark = append(b.mark, c.id)
		case s == dedupe.New:
			f := fresh[c.ev]
			fresh[c.ev] = seen{f.n + 1, c.site}
			b.mark = append(b.mark, c.id)
		case s == dedupe.Uncertain:
			b.mark = append(b.mark, c.id) // this claim took it over
		}
	}
	for _, evs := range [...][]event.Event{b.events, b.check, b.requeue} {
		for i := range evs {
			if f := fresh[evs[i].ID]; f.n > 0 {
				fresh[evs[i].ID] = seen{f.n - 1, f.site}
			}
		}
	}
	add := map[string]uint64{}
	for _, f := range fresh {
		if f.n > 0 {
			add[f.site] += f.n
		}
	}
	b.dupRows = l.dups.rows(time.Now(), add)
}

// duplicates is the loader's own counter instance for
// wire.CounterDuplicates: cumulative per site, like an edge's, under an
// instance id of its own that is renewed before wire.MaxInstanceLife, so
// that a range's look-back always finds its value before the range.
type duplicates struct {
	inst    event.ID
	started time.Time
	sites   map[string]uint64
}

// rows adds add and returns the rows of the sites it changed.
func (d *duplicates) rows(now time.Time, add map[string]uint64) []store.CounterRow {
	if len(add) == 0 {
		return nil
	}
	if d.sites == nil || now.Sub(d.started) >= wire.MaxInstanceLife/2 {
		id, err := event.NewID(now.UnixMilli(), rand.Reader)
		if err != nil {
			panic("crypto/rand: " + err.Error()) // it does not fail since Go 1.24
		}
		d.inst, d.started, d.sites = id, now, map[string]uint64{}
	}
	rows := make([]store.CounterRow, 0, len(add))
	for site, n := range add {
		d.sites[site] += n
		rows = append(rows, store.CounterRow{Instance: d.inst, Time: now.UnixMilli(), Site: site,
			Counter: wire.CounterDuplicates, Value: d.sites[site]})
	}
	return rows
}
