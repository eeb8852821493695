package live

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// BenchmarkObserve measures the loader's call after each insert (the
// hot path the live view adds to ingest): a batch of 1,000 stored events
// over 10 sites, 9 in 10 pageviews, with visitor ids drawn from 50,000
// (one in 10 zero, the aggregate tier), the clock moving one second per
// batch so the windows slide.
func BenchmarkObserve(b *testing.B) {
	sec := time.Unix(1_800_000_000, 0)
	h := NewHub(Options{Now: func() time.Time { return sec }})
	counts := map[string]uint64{}
	for i := range 10 {
		counts[fmt.Sprintf("site-%d.example", i)] = 0
	}
	h.Set(counts, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	batches := make([][]event.Event, 64)
	for i := range batches {
		evs := make([]event.Event, 1000)
		for j := range evs {
			e := &evs[j]
			e.Site = fmt.Sprintf("site-%d.example", rng.IntN(10))
			e.Name, e.Time = event.KindPageview, sec.UnixMilli()
			if rng.IntN(10) == 0 {
				e.Name = "signup"
			}
			e.URL = fmt.Sprintf("https://%s/p/%d?q=1", e.Site, rng.IntN(50))
			if rng.IntN(10) != 0 {
				e.VisitorID = 1 + rng.Uint64N(50_000)
			}
		}
		batches[i] = evs
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sec = sec.Add(time.Second)
		h.Observe(batches[i%len(batches)])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/event")
}
