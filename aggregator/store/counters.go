package store

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// CounterRow is one counter of one edge instance at one time, as stored
// (the edge_counters table): the instance's cumulative Value of Counter
// (wire.CounterHits, CounterEvents, or CounterDropped or CounterNoted
// with a Reason) for
// Site at Time (unix milliseconds at the edge).
type CounterRow struct {
	Instance event.ID
	Time     int64
	Pop      string
	Site     string
	Counter  string
	Reason   string
	Value    uint64
}

// Rows flattens a counters record into rows.
func Rows(dst []CounterRow, c *wire.Counters) []CounterRow {
	for _, s := range c.Sites {
		row := CounterRow{Instance: c.Instance, Time: s.Time, Pop: c.Pop, Site: s.Site}
		row.Counter, row.Value = wire.CounterHits, s.Hits
		dst = append(dst, row)
		row.Counter, row.Value = wire.CounterEvents, s.Events
		dst = append(dst, row)
		for _, d := range s.Drops {
			row.Counter, row.Reason, row.Value = wire.CounterDropped, d.Reason, d.N
			dst = append(dst, row)
		}
		for _, d := range s.Notes {
			row.Counter, row.Reason, row.Value = wire.CounterNoted, d.Reason, d.N
			dst = append(dst, row)
		}
	}
	return dst
}

// CounterStore is implemented by stores that keep edge counters. Rows are
// cumulative, so storing one twice is harmless: every reading takes the
// largest value of each instance's counter (see Loss).
type CounterStore interface {
	InsertCounters(ctx context.Context, rows []CounterRow) error
	// Loss sets the counters of [from, to) against the events stored for
	// that time: of site, or of all sites when all is set.
	Loss(ctx context.Context, site string, all bool, from, to time.Time) (Loss, error)
	// LatestCounters returns, for each instance, site, counter and
	// reason with a row since since, its largest value (Time is that
	// row's).
	LatestCounters(ctx context.Context, since time.Time) ([]CounterRow, error)
}

// ErrNoCounters is returned by stores that do not keep counters.
var ErrNoCounters = errors.New("this store does not keep edge counters")

// Loss is what the edges counted over a time range against what was
// stored.
//
//   - Hits: requests the edges answered on the pixel and event paths.
//   - Events: events the edges accepted for delivery.
//   - Dropped: hits the edges rejected and events they could not deliver,
//     by reason (shared/wire's Drop* constants; delivery_failed is the
//     reason for accepted events that no delivery path took).
//   - Noted: accepted events by a condition that did not drop them, by
//     reason (shared/wire's Note* constants: no_salt, stored without a
//     visitor id). Not part of the loss.
//   - Stored: distinct events stored with a time in the range, including
//     those an erasure deleted since (Erased): they were not lost.
//   - Duplicates: accepted events that were a client's retry of an event
//     whose id the client named, found stored (or on its way to be) when
//     they arrived (wire.CounterDuplicates): counted under Events once
//     per attempt, stored once. A copy the edge sent again itself (a
//     batch retried, the fallback log, the spool) is not one.
//   - Lost: Events - Stored - Duplicates, when positive: accepted at the
//     edges, not (yet) stored. Events on their way (a log endpoint's batch, the
//     spool) count here until loaded; events stored from senders that do
//     not count (NDJSON from a CDN's own log format, edges before
//     counters) make Stored larger and can hide loss.
//   - LossRate: Lost / Events.
//
// An instance's counts fall in the range by the edge's clock: the time of
// the hit for the journal, of the delivery that reported them otherwise
// (up to a batch's age later).
type Loss struct {
	Site       string            `json:"site,omitempty"`
	From       int64             `json:"from"` // unix milliseconds
	To         int64             `json:"to"`
	Hits       uint64            `json:"hits"`
	Events     uint64            `json:"events"`
	Dropped    map[string]uint64 `json:"dropped"`
	Noted      map[string]uint64 `json:"noted"`
	Stored     uint64            `json:"stored"`
	Erased     uint64            `json:"erased"`
	Duplicates uint64            `json:"duplicates"`
	Lost       uint64            `json:"lost"`
	LossRate   float64           `json:"loss_rate"`
}

// Finish computes Lost and LossRate from the other fields.
func (l *Loss) Finish() {
	if l.Dropped == nil {
		l.Dropped = map[string]uint64{}
	}
	if l.Noted == nil {
		l.Noted = map[string]uint64{}
	}
	l.Lost, l.LossRate = 0, 0
	if l.Events > l.Stored+l.Duplicates {
		l.Lost = l.Events - l.Stored - l.Duplicates
	}
	if l.Events > 0 {
		l.LossRate = float64(l.Lost) / float64(l.Events)
	}
}

// CountersInRange adds up rows for [from, to) the way every store must:
// for each instance, site, counter and reason, the largest value before
// to minus the largest value before from, looking back at most
// wire.MaxInstanceLife before from. It fills Hits, Events, Dropped,
// Noted and Duplicates of l.
func CountersInRange(l *Loss, rows []CounterRow, from, to time.Time) {
	type key struct {
		inst                  event.ID
		site, counter, reason string
	}
	lo, hi := map[key]uint64{}, map[key]uint64{}
	f, t, back := from.UnixMilli(), to.UnixMilli(), from.Add(-wire.MaxInstanceLife).UnixMilli()
	for _, r := range rows {
		if r.Time < back || r.Time >= t {
			continue
		}
		k := key{r.Instance, r.Site, r.Counter, r.Reason}
		hi[k] = max(hi[k], r.Value)
		if r.Time < f {
			lo[k] = max(lo[k], r.Value)
		}
	}
	if l.Dropped == nil {
		l.Dropped = map[string]uint64{}
	}
	if l.Noted == nil {
		l.Noted = map[string]uint64{}
	}
	for k, v := range hi {
		d := v - lo[k]
		switch k.counter {
		case wire.CounterHits:
			l.Hits += d
		case wire.CounterEvents:
			l.Events += d
		case wire.CounterDropped:
			if d > 0 {
				l.Dropped[k.reason] += d
			}
		case wire.CounterNoted:
			if d > 0 {
				l.Noted[k.reason] += d
			}
		case wire.CounterDuplicates:
			l.Duplicates += d
		}
	}
}

// sortRows orders rows by instance, site, counter, reason and time (for
// tests and stable output).
func sortRows(rows []CounterRow) {
	sort.Slice(rows, func(i, j int) bool {
		a, b := &rows[i], &rows[j]
		if a.Instance != b.Instance {
			return string(a.Instance[:]) < string(b.Instance[:])
		}
		if a.Site != b.Site {
			return a.Site < b.Site
		}
		if a.Counter != b.Counter {
			return a.Counter < b.Counter
		}
		if a.Reason != b.Reason {
			return a.Reason < b.Reason
		}
		return a.Time < b.Time
	})
}
