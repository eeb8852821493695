package clickhouse

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// The SQL of Loss agrees with store.CountersInRange, the reference every
// store follows, on random cumulative rows (copies included) for ranges
// that cut instances anywhere; and stored events are counted once.
func TestEdgeCountersLoss(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	rng := mrand.New(mrand.NewPCG(3, 4))
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	var rows []store.CounterRow
	sites := []string{"a", "b", ""}
	for range 20 {
		start := t0.Add(time.Duration(rng.IntN(7200)) * time.Second)
		inst, _ := event.NewID(start.UnixMilli(), rand.Reader)
		var hits, events, drops, notes uint64
		for i := range 10 {
			ts := start.Add(time.Duration(i*rng.IntN(60)) * time.Second).UnixMilli()
			hits += uint64(rng.IntN(5))
			events += uint64(rng.IntN(5))
			drops += uint64(rng.IntN(2))
			notes += uint64(rng.IntN(2))
			site := sites[rng.IntN(len(sites))]
			cs := wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{{Site: site, Time: ts, Hits: hits, Events: events,
				Drops: []wire.Drop{{Reason: "buffer_full", N: drops}}, Notes: []wire.Drop{{Reason: "no_salt", N: notes}}}}}
			rows = store.Rows(rows, &cs)
			if rng.IntN(4) == 0 { // delivered twice
				rows = store.Rows(rows, &cs)
			}
		}
	}
	if err := c.InsertCounters(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	const erased = 77 // the visitor id of events 2-4, erased below
	for i := range 30 {
		e := mkEvent(t, sites[i%2], t0.Add(time.Duration(i)*4*time.Minute).UnixMilli())
		if i >= 2 && i <= 4 {
			e.VisitorID = erased
		}
		evs = append(evs, e)
	}
	if err := c.InsertEvents(ctx, append(evs, evs[:5]...)); err != nil { // copies too
		t.Fatal(err)
	}
	for i := range 12 {
		from := t0.Add(time.Duration(rng.IntN(7200)) * time.Second)
		to := from.Add(time.Duration(1+rng.IntN(3600)) * time.Second)
		if i == 0 {
			from, to = t0.Add(-time.Hour), t0.Add(4*time.Hour)
		}
		for _, site := range []string{"a", ""} {
			all := site == ""
			got, err := c.Loss(ctx, site, all, from, to)
			if err != nil {
				t.Fatal(err)
			}
			want := store.Loss{Site: site, From: from.UnixMilli(), To: to.UnixMilli()}
			var mine []store.CounterRow
			for _, r := range rows {
				if all || r.Site == site {
					mine = append(mine, r)
				}
			}
			store.CountersInRange(&want, mine, from, to)
			seen := map[event.ID]bool{}
			for _, e := range evs {
				if (all || e.Site == site) && e.Time >= want.From && e.Time < want.To && !seen[e.ID] {
					seen[e.ID] = true
					want.Stored++
				}
			}
			want.Finish()
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("range %d site %q:\n got %+v\nwant %+v", i, site, got, want)
			}
		}
	}
	// An erasure deletes events that were stored, not lost: the figures
	// stay, and say how many of the stored were erased since.
	whole := func() map[string]store.Loss {
		out := map[string]store.Loss{}
		for _, site := range []string{"a", ""} {
			l, err := c.Loss(ctx, site, site == "", t0.Add(-time.Hour), t0.Add(4*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			out[site] = l
		}
		return out
	}
	before := whole()
	if res, err := c.Erase(ctx, Erasure{VisitorID: VisitorID(fmt.Sprint(erased)), AllSites: true}, time.Minute); err != nil || !res.Done {
		t.Fatalf("erase: %+v %v", res, err)
	}
	after := whole()
	for site, n := range map[string]uint64{"a": 2, "": 3} {
		want := before[site]
		want.Erased = n
		if !reflect.DeepEqual(after[site], want) {
			t.Errorf("site %q after the erasure:\n got %+v\nwant %+v", site, after[site], want)
		}
	}
	latest, err := c.LatestCounters(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := store.Latest(rows, t0.Add(-time.Hour))
	if len(latest) != len(want) {
		t.Fatalf("latest: %d rows, want %d", len(latest), len(want))
	}
	byKey := map[string]uint64{}
	for _, r := range want {
		byKey[fmt.Sprint(r.Instance, r.Site, r.Counter, r.Reason)] = r.Value
	}
	for _, r := range latest {
		if byKey[fmt.Sprint(r.Instance, r.Site, r.Counter, r.Reason)] != r.Value {
			t.Fatalf("latest %+v", r)
		}
	}
}
