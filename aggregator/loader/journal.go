package loader

// The insert journal closes a gap of stores that keep a block inserted
// again once (store.BlockDeduplicator: a ClickHouse cluster). There an
// insert that failed part-way (some of the rollup views ran, then one
// failed or the quorum wait timed out) is made whole by sending the same
// block again. If the process dies first, the next one would find the
// events missing and insert them as part of a different load: a new
// block, which the rollups that had already counted them count again.
// So before each insert into such a store the loader writes the insert's
// event ids, in order, to a file beside the spool, and removes it once
// the insert succeeded. On start, a journal left behind is replayed: its
// events are read back from the spool (the load was not committed, so
// they are all after the checkpoint) and, unless the store holds every
// one of them, inserted again as the same block before anything else.

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// journalFile is the journal's name in the spool's directory.
const journalFile = "insert-journal"

// journalMagic starts a journal; the ids (16 bytes each) follow a uvarint
// count.
const journalMagic = "EPJ1"

// journaled reports whether inserts into the store are journaled.
func (l *Loader) journaled() bool {
	bd, ok := l.cfg.Store.(store.BlockDeduplicator)
	return ok && bd.DeduplicatesBlocks()
}

// writeJournal durably records the ids of evs, in order, as the insert in
// flight.
func (l *Loader) writeJournal(evs []event.Event) error {
	b := make([]byte, 0, len(journalMagic)+binary.MaxVarintLen64+16*len(evs))
	b = append(b, journalMagic...)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		b = append(b, evs[i].ID[:]...)
	}
	return l.cfg.Spool.WriteNote(journalFile, b)
}

// clearJournal removes the journal: no insert is in flight.
func (l *Loader) clearJournal() error { return l.cfg.Spool.RemoveNote(journalFile) }

// readJournal returns the journaled ids, or nil when there is no journal.
func (l *Loader) readJournal() ([]event.ID, error) {
	b, err := l.cfg.Spool.ReadNote(journalFile)
	if err != nil || b == nil {
		return nil, err
	}
	rest, ok := cutPrefix(b, journalMagic)
	n, k := binary.Uvarint(rest)
	if !ok || k <= 0 || uint64(len(rest)-k) != 16*n {
		return nil, fmt.Errorf("insert journal: damaged (%d bytes)", len(b))
	}
	rest = rest[k:]
	ids := make([]event.ID, n)
	for i := range ids {
		copy(ids[i][:], rest[16*i:])
	}
	return ids, nil
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) < len(p) || string(b[:len(p)]) != p {
		return b, false
	}
	return b[len(p):], true
}

// replayJournal sends the journaled insert again, as the same block, if
// the store does not hold all of its events, and removes the journal. It
// returns an error only when it should be retried (the store failed).
func (l *Loader) replayJournal(ctx context.Context) error {
	ids, err := l.readJournal()
	if err != nil {
		// A torn journal is one whose insert never started (it is
		// written before the insert, renamed into place whole).
		l.log.Warn("ignoring an unreadable insert journal", "err", err)
		return l.clearJournal()
	}
	if ids == nil {
		return nil
	}
	want := make(map[event.ID]int, len(ids))
	for i, id := range ids {
		want[id] = i
	}
	evs := make([]event.Event, len(ids))
	// The insert was of a load in flight, and at most a few are, each of
	// at most maxLoadBytes: look no further.
	found, read := 0, 0
	pos := l.cfg.Spool.Checkpoint()
	for found < len(ids) && read < 4*maxLoadBytes {
		recs, err := l.cfg.Spool.Read(pos, 64, 8<<20)
		if err != nil {
			return fmt.Errorf("insert journal: read the spool: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			var d record.Decoded
			if record.Decode(&d, r.Data) == nil {
				for _, e := range d.Events {
					if i, ok := want[e.ID]; ok {
						evs[i] = e
						delete(want, e.ID)
						found++
					}
				}
			}
			pos = r.Next
			read += len(r.Data)
		}
	}
	if found < len(ids) {
		l.log.Warn("an insert journal's events are not all in the spool; not replaying it", "events", len(ids), "found", found)
		return l.clearJournal()
	}
	stored, err := l.cfg.Store.ExistingIDs(ctx, evs)
	if err != nil {
		l.m.StoreErrors.Add(1)
		return err
	}
	delta := map[string]uint64{}
	for _, e := range evs {
		if !stored[e.ID] {
			delta[e.Site]++
		}
	}
	if len(delta) > 0 {
		if err := l.cfg.Store.InsertEvents(ctx, evs); err != nil {
			l.m.StoreErrors.Add(1)
			return err
		}
		l.log.Info("replayed the insert a stopped process left unfinished", "events", len(evs))
		l.cfg.OnStored(delta)
	}
	return l.clearJournal()
}
