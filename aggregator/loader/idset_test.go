package loader

import (
	"crypto/rand"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

func TestIDSet(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1000, 50000} {
		s := newIDSet(n)
		in := map[event.ID]bool{}
		for i := 0; i < n; i++ {
			var id event.ID
			if i%7 == 3 && i > 0 {
				id = [16]byte{}
			} else {
				rand.Read(id[:])
				id[0] = byte(i) // some ids share a prefix
			}
			if got := s.add(id); got == in[id] {
				t.Fatalf("n=%d: add(%x) = %v with %v in the set", n, id, got, in[id])
			}
			in[id] = true
		}
		for id := range in {
			if !s.has(id) {
				t.Fatalf("n=%d: %x missing", n, id)
			}
		}
		for i := 0; i < 1000; i++ {
			var id event.ID
			rand.Read(id[:])
			if s.has(id) != in[id] {
				t.Fatalf("n=%d: has(%x) wrong", n, id)
			}
		}
	}
}
