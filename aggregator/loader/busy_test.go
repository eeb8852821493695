package loader

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/shared/event"
)

// heldDedupe answers Busy for the held ids, as Redis does for ids another
// live aggregator claimed, until release sets what they become.
type heldDedupe struct {
	dedupe.Deduper
	mu    sync.Mutex
	held  map[event.ID]bool
	after dedupe.Status // once released
	busy  int           // Busy answers given
}

func (h *heldDedupe) Claim(ctx context.Context, ids []event.ID) ([]dedupe.Status, error) {
	st, err := h.Deduper.Claim(ctx, ids)
	if err != nil {
		return st, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, id := range ids {
		switch {
		case h.held[id] && h.after == dedupe.Busy:
			st[i] = dedupe.Busy
			h.busy++
		case h.held[id]:
			st[i] = h.after
		}
	}
	return st, nil
}

func (h *heldDedupe) release(s dedupe.Status) {
	h.mu.Lock()
	h.after = s
	h.mu.Unlock()
}

// A load whose ids another aggregator holds stores the rest and moves on
// instead of waiting for them: the holder may be waiting for this load's
// claims in turn (two aggregators that split the same batch's claims
// between them), or be alive but unable to store. The held events stay
// spooled until the holder has stored them (then they are dropped) or
// died (then this aggregator stores them).
func TestBusyIDsAreRequeued(t *testing.T) {
	for _, tc := range []struct {
		name       string
		after      dedupe.Status
		otherStore bool // the holder stored its events
	}{
		{"holder stores them", dedupe.Duplicate, true},
		{"holder dies", dedupe.Uncertain, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, t.TempDir())
			evs := events(t, 20)
			d := &heldDedupe{Deduper: dedupe.NewMemory(time.Hour), held: map[event.ID]bool{}, after: dedupe.Busy}
			for _, e := range evs[10:] {
				d.held[e.ID] = true
			}
			r.append(evs)
			more := events(t, 6) // spooled after the held ones, stored while they are held
			r.append(more)
			defer r.start(r.disk, d)()

			deadline := time.Now().Add(time.Minute)
			for r.rows() != 16 {
				if time.Now().After(deadline) {
					t.Fatalf("rows %d while 10 events are held: want the 16 others stored", r.rows())
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Still held: they stay spooled and are claimed again.
			d.mu.Lock()
			busy := d.busy
			d.mu.Unlock()
			time.Sleep(3 * busyWait)
			d.mu.Lock()
			again := d.busy > busy
			d.mu.Unlock()
			if r.sp.Pending() == 0 || r.rows() != 16 || !again {
				t.Fatalf("held events: pending %d bytes, rows %d, claimed again %v; want them spooled, unstored and claimed again",
					r.sp.Pending(), r.rows(), again)
			}

			want := uint64(26) // rows in the end
			if tc.otherStore {
				if err := r.disk.InsertEvents(context.Background(), evs[10:]); err != nil {
					t.Fatal(err)
				}
			}
			d.release(tc.after)
			deadline = time.Now().Add(time.Minute)
			for r.rows() != want || r.sp.Pending() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("after release: rows %d, pending %d; want %d rows and nothing pending", r.rows(), r.sp.Pending(), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			liveWant := want
			if tc.otherStore {
				liveWant = 16 // the holder counts its own
			}
			if r.rows() != want || r.stored.Load() != liveWant {
				t.Fatalf("rows %d, live %d; want %d, %d", r.rows(), r.stored.Load(), want, liveWant)
			}
		})
	}
}
