package loader

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// replicatedStore behaves like ClickHouse's replicated tables: a block
// (the same events in the same order) inserted again is kept once. Its
// first insert fails as a lost ZooKeeper commit does: the rows are
// readable for a while (ExistingIDs finds them) but the server drops them
// afterwards, and the client is told to retry the same block.
type replicatedStore struct {
	*store.Disk
	mu         sync.Mutex
	blocks     map[[32]byte]bool
	unknown    int           // inserts left to fail with an unknown outcome
	limbo      []event.Event // readable rows of such an insert, dropped at the next insert
	duplicates int
}

func (s *replicatedStore) DeduplicatesBlocks() bool { return true }

func blockHash(evs []event.Event) [32]byte {
	h := sha256.New()
	for _, e := range evs {
		h.Write(e.ID[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (s *replicatedStore) InsertEvents(ctx context.Context, evs []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limbo = nil // the part check dropped what was never committed
	if s.unknown > 0 {
		s.unknown--
		s.limbo = append([]event.Event(nil), evs...)
		return errors.New("injected: Unknown status, client must retry")
	}
	h := blockHash(evs)
	if s.blocks[h] {
		s.duplicates++
		return nil
	}
	s.blocks[h] = true
	return s.Disk.InsertEvents(ctx, evs)
}

func (s *replicatedStore) ExistingIDs(ctx context.Context, evs []event.Event) (map[event.ID]bool, error) {
	found, err := s.Disk.ExistingIDs(ctx, evs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.limbo {
		found[e.ID] = true
	}
	return found, err
}

// On a store that keeps a repeated block once, an insert of unknown
// outcome is retried as the same block: its rows are stored once and
// counted once, even when the failed insert left them readable for a
// while and the store dropped them later (a filter by ExistingIDs would
// have skipped them: lost).
func TestRetrySameBlock(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := &replicatedStore{Disk: r.disk, blocks: map[[32]byte]bool{}, unknown: 1}
	stop := r.start(st, dedupe.NewMemory(time.Hour))
	defer stop()
	evs := events(t, 40)
	r.append(evs)
	r.waitRows(40)
	r.append(evs[:10]) // the edge retrying: dropped by the claim
	time.Sleep(50 * time.Millisecond)
	if r.rows() != 40 || r.stored.Load() != 40 {
		t.Fatalf("rows %d, counted %d; want 40", r.rows(), r.stored.Load())
	}
}
