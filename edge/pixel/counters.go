package pixel

import (
	"crypto/rand"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Counted loss
//
// Every hit the edge answers on the pixel and event paths is counted,
// with what became of it, so that the aggregator can set events accepted
// at the edges against events stored (shared/wire, counters.go):
//
//   - hits: requests answered on the pixel and event paths (not CORS
//     preflights, /healthz or unknown paths), counted for the hit's site:
//     the pixel's site parameter, a POST's first event's site, "" when
//     none could be read.
//   - events: events accepted for delivery, counted for each event's site
//     (a POST of three events is one hit and three events).
//   - drops, by reason (wire.Drop*, the one list of reasons): a
//     hit rejected before any event was accepted counts once under its
//     reason, whatever the answer was (a GIF, a 4xx, a 503); an accepted
//     event that could not be delivered by any path counts once under
//     wire.DropDeliveryFailed. So, for pixel hits, hits = events + drops
//     before acceptance, and events = events stored + wire.DropDeliveryFailed
//     (+ what is still on its way).
//
//   - notes, by reason (wire.Note*): accepted events that lack
//     something they would normally carry, counted for each event's site
//     beside events (wire.NoteNoSalt: no visitor id for want of a salt). A
//     note is not a loss: the event is counted under events and stored.
//
// No drop is known only to a response header: Serve counts every reason
// it answers (TestEveryDropCounted holds it to that).
//
// The counts are cumulative for the instance (see wire.Counters). They
// reach the aggregator with the next batch, on the fallback log endpoint,
// or, with a journal, inside the line each hit writes before its answer.
// A site's counts are "reported" once a delivery that carried them was
// acknowledged; counts not yet reported ride on the next delivery.

// Counts are one instance's counters.
type Counts struct {
	// Instance names the instance in its reports; minted (a UUIDv7 of
	// the first hit's time) at the first count when zero.
	Instance event.ID
	Pop      string

	sites map[string]*siteCount
	list  []*siteCount // in the order first counted
	// last is the site counted last: most hits in a row are one site's,
	// and TinyGo allocates at every lookup of a map with string keys.
	last  *siteCount
	dirty int // sites with counts not yet reported
	// unreported is since when some site has counts not yet reported
	// (zero: none).
	unreported time.Time
}

type siteCount struct {
	wire.SiteCounts        // Drops sorted by reason
	gen, reported   uint64 // changes counted; the gen last reported
}

// site returns the counters of site, creating them; past
// wire.MaxCounterSites sites, the site "" stands in for new ones so that
// hits for random site names cannot grow an instance's memory.
func (c *Counts) site(now time.Time, name string) *siteCount {
	if sc := c.last; sc != nil && sc.Site == name {
		return sc
	}
	if sc, ok := c.sites[name]; ok {
		c.last = sc
		return sc
	}
	if c.sites == nil {
		c.sites = map[string]*siteCount{}
		if c.Instance.IsZero() {
			c.Instance, _ = event.NewID(now.UnixMilli(), rand.Reader)
		}
	}
	if len(c.sites) >= wire.MaxCounterSites-1 && name != "" {
		return c.site(now, "")
	}
	// The name may point into a request's buffers: keep a copy.
	sc := &siteCount{SiteCounts: wire.SiteCounts{Site: string(append([]byte(nil), name...))}}
	c.sites[sc.Site] = sc
	c.list = append(c.list, sc)
	c.last = sc
	return sc
}

// changed notes a change of sc at now.
func (c *Counts) changed(sc *siteCount, now time.Time) {
	if sc.gen == sc.reported {
		c.dirty++
		if c.dirty == 1 {
			c.unreported = now
		}
	}
	sc.gen++
	sc.Time = now.UnixMilli()
}

// markReported notes that sc's counts as of gen were delivered.
func (c *Counts) markReported(sc *siteCount, gen uint64) {
	if gen <= sc.reported {
		return
	}
	was := sc.gen != sc.reported
	sc.reported = gen
	if was && sc.gen == sc.reported {
		c.dirty--
		if c.dirty == 0 {
			c.unreported = time.Time{}
		}
	}
}

func (sc *siteCount) drop(reason string, n uint64) { sc.Drops = addReason(sc.Drops, reason, n) }

// note counts n accepted events under a wire.Note* reason.
func (sc *siteCount) note(reason string, n uint64) { sc.Notes = addReason(sc.Notes, reason, n) }

// addReason adds n to reason's count in ds, kept sorted by reason.
func addReason(ds []wire.Drop, reason string, n uint64) []wire.Drop {
	for i := range ds {
		if ds[i].Reason == reason {
			ds[i].N += n
			return ds
		}
	}
	ds = append(ds, wire.Drop{Reason: reason, N: n})
	wire.SortDrops(ds)
	return ds
}

// Get returns the counts of site so far (for tests and logs).
func (c *Counts) Get(site string) wire.SiteCounts {
	if sc, ok := c.sites[site]; ok {
		s := sc.SiteCounts
		s.Drops = append([]wire.Drop(nil), s.Drops...)
		s.Notes = append([]wire.Drop(nil), s.Notes...)
		return s
	}
	return wire.SiteCounts{Site: site}
}

// Total returns the counts summed over all sites, Site "" and Time 0.
func (c *Counts) Total() wire.SiteCounts {
	var t wire.SiteCounts
	for _, sc := range c.list {
		t.Add(sc.SiteCounts)
	}
	return t
}

// report is a report in flight: the counters sent and, for each site,
// the gen they were read at, to mark reported once acknowledged.
type report struct {
	c     wire.Counters
	sites []*siteCount
	gens  []uint64
}

// unreportedCounts sets r to the sites with counts not yet reported, at
// most max of them, and reports whether there are any. r's Drops share
// the counters' storage: encode r before counting again.
func (c *Counts) unreportedCounts(r *report, max int) bool {
	r.c = wire.Counters{Instance: c.Instance, Pop: c.Pop, Sites: r.c.Sites[:0]}
	r.sites, r.gens = r.sites[:0], r.gens[:0]
	for _, sc := range c.list {
		if sc.gen == sc.reported {
			continue
		}
		if len(r.sites) == max {
			break
		}
		r.c.Sites = append(r.c.Sites, sc.SiteCounts)
		r.sites = append(r.sites, sc)
		r.gens = append(r.gens, sc.gen)
	}
	return len(r.sites) > 0
}

// reported marks what r carried as reported.
func (c *Counts) reported(r *report) {
	for i, sc := range r.sites {
		c.markReported(sc, r.gens[i])
	}
}
