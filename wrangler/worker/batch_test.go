package worker

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// TestBatchesLoseNothing drives the worker as the JavaScript does, with
// requests, batch waits and POST answers interleaved at random: every
// event served is delivered exactly once.
func TestBatchesLoseNothing(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		w := newWorker(t, nil)
		now := time.Now()
		type batch struct {
			id      uint32
			started bool
			n       int // events in the POST that is out, -1 none
		}
		var batches []*batch
		served, delivered := 0, 0
		// post records the POST d of b, or ends b.
		post := func(b *batch, d *Delivery) {
			if d == nil {
				for i := range batches {
					if batches[i] == b {
						batches = append(batches[:i], batches[i+1:]...)
						return
					}
				}
			}
			n, err := wire.Count(d.Body)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			b.n = n
		}
		start := func(b *batch) {
			b.started = true
			d, err := w.Next(b.id, Start)
			if err != nil {
				t.Fatalf("seed %d: start %d: %v", seed, b.id, err)
			}
			post(b, d)
		}
		for step := 0; step < 5000 || len(batches) > 0; step++ {
			if step > 100000 {
				t.Fatalf("seed %d: deliveries do not end", seed)
			}
			switch k := r.IntN(10); {
			case step < 5000 && k < 5:
				_, id, due := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), now)
				served++
				if id == 0 {
					t.Fatalf("seed %d: an event in no batch", seed)
				}
				var b *batch
				for _, x := range batches {
					if x.id == id {
						b = x
					}
				}
				if b == nil {
					b = &batch{id: id, n: -1}
					batches = append(batches, b)
				} else if b.started {
					t.Fatalf("seed %d: an event joined batch %d after it started", seed, id)
				}
				if due {
					start(b)
				}
			case k < 7: // time passes; some waits end
				now = now.Add(time.Duration(r.IntN(60)) * time.Millisecond)
				for _, b := range append([]*batch(nil), batches...) {
					if !b.started && r.IntN(3) == 0 {
						start(b)
					}
				}
			default: // a POST is acknowledged
				for _, b := range batches {
					if b.started && b.n >= 0 {
						delivered += b.n
						b.n = -1
						d, err := w.Next(b.id, Delivered)
						if err != nil {
							t.Fatalf("seed %d: %v", seed, err)
						}
						post(b, d)
						break
					}
				}
			}
		}
		if delivered != served {
			t.Errorf("seed %d: %d events delivered of %d served", seed, delivered, served)
		}
	}
}
