package loader

import (
	"encoding/binary"
	"math/bits"

	"github.com/edgepixel/edgepixel/shared/event"
)

// idSet is a set of ids of a known maximum size: open addressing with
// linear probing over a flat array (no pointers for the GC to scan, no
// growth, no per-entry deletes). The loader builds one per load, for the
// duplicates within the load and then to answer whether a later load's id
// belongs to it; a Go map doing both, entries deleted as each load
// finished, was about a tenth of the loader's CPU.
type idSet struct {
	slots []event.ID // the zero id marks an empty slot
	shift uint
	zero  bool // the zero id is in the set (ingest refuses it; kept exact anyway)
}

// newIDSet returns a set for up to n ids, at most half full.
func newIDSet(n int) *idSet {
	b := max(bits.Len(uint(2*n)), 6)
	return &idSet{slots: make([]event.ID, 1<<b), shift: uint(64 - b)}
}

// home is where id's probe sequence starts. Ids are UUIDv7s: both halves
// carry random or counter bits, mixed by a multiplication.
func (s *idSet) home(id *event.ID) uint64 {
	h := binary.LittleEndian.Uint64(id[0:8]) ^ binary.LittleEndian.Uint64(id[8:16])*0x9E3779B97F4A7C15
	return (h * 0xBF58476D1CE4E5B9) >> s.shift
}

// add inserts id and reports whether it was not there before.
func (s *idSet) add(id event.ID) bool {
	if id == (event.ID{}) {
		was := s.zero
		s.zero = true
		return !was
	}
	mask := uint64(len(s.slots) - 1)
	for i := s.home(&id); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case id:
			return false
		case event.ID{}:
			s.slots[i] = id
			return true
		}
	}
}

// has reports whether id is in the set.
func (s *idSet) has(id event.ID) bool {
	if id == (event.ID{}) {
		return s.zero
	}
	mask := uint64(len(s.slots) - 1)
	for i := s.home(&id); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case id:
			return true
		case event.ID{}:
			return false
		}
	}
}
