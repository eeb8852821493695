package loader

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// storeCounters stores the edge counters of a load (rows are cumulative:
// a load stored again after a failure or a crash stores them again,
// harmlessly) and adds their increase to the metrics.
func (l *Loader) storeCounters(ctx context.Context, cs []wire.Counters) error {
	var rows []store.CounterRow
	merged := wire.Merge(cs)
	for i := range merged {
		rows = store.Rows(rows, &merged[i])
	}
	return l.storeCounterRows(ctx, rows)
}

// storeCounterRows stores counter rows and adds their increase to the
// metrics.
func (l *Loader) storeCounterRows(ctx context.Context, rows []store.CounterRow) error {
	cst, ok := l.cfg.Store.(store.CounterStore)
	if !ok {
		l.log.Warn("the store does not keep edge counters; dropping them", "store", l.cfg.Store.Name(), "rows", len(rows))
		return nil
	}
	if err := cst.InsertCounters(ctx, rows); err != nil {
		l.m.StoreErrors.Add(1)
		return err
	}
	l.edge.add(rows, l.m.EdgeCount)
	return nil
}

// seedCounters reads what the store already holds of the instances that
// may still report, so that their next rows add only their increase to
// the metrics (a restart does not count their past again).
func (l *Loader) seedCounters(ctx context.Context) error {
	cst, ok := l.cfg.Store.(store.CounterStore)
	if !ok {
		return nil
	}
	rows, err := cst.LatestCounters(ctx, time.Now().Add(-edgeHorizon))
	if err != nil {
		return err
	}
	l.edge.add(rows, nil)
	return nil
}

// edgeHorizon is how long after an instance started its rows are
// remembered (edgeTotals): twice the longest an instance reports.
const edgeHorizon = 2 * wire.MaxInstanceLife

// maxEdgeKeys bounds the keys edgeTotals remembers.
const maxEdgeKeys = 1 << 20

// edgeTotals turns cumulative counter rows into increases for the
// metrics: each instance, site, counter and reason adds what it grew by
// since the largest value seen. Keys are forgotten edgeHorizon after
// their instance started (its UUIDv7 time); a row of a forgotten instance
// (delivered more than edgeHorizon late) counts whole, and if the keys
// pass maxEdgeKeys (instances by the million: a new instance per hit),
// the oldest are forgotten sooner. The metrics can then count an
// instance's earlier hits again; the stored rows, and /api/loss, are
// exact regardless.
type edgeTotals struct {
	mu        sync.Mutex
	last      map[edgeKey]uint64
	lastSweep time.Time
}

type edgeKey struct {
	inst                  event.ID
	site, counter, reason string
}

// add remembers rows and passes each increase to count (nil: remember
// only).
func (t *edgeTotals) add(rows []store.CounterRow, count func(counter, reason string, n uint64)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last = map[edgeKey]uint64{}
	}
	for _, r := range rows {
		k := edgeKey{r.Instance, r.Site, r.Counter, r.Reason}
		prev, ok := t.last[k]
		if ok && r.Value <= prev {
			continue
		}
		t.last[k] = r.Value
		if count != nil && r.Value > prev {
			count(r.Counter, r.Reason, r.Value-prev)
		}
	}
	now := time.Now()
	if now.Sub(t.lastSweep) > time.Minute || len(t.last) > maxEdgeKeys {
		t.lastSweep = now
		t.sweep(now.Add(-edgeHorizon))
		if len(t.last) > maxEdgeKeys {
			t.sweep(now.Add(-10 * time.Minute))
		}
		if len(t.last) > maxEdgeKeys {
			clear(t.last)
		}
	}
}

// sweep forgets the keys of instances started before horizon.
func (t *edgeTotals) sweep(horizon time.Time) {
	h := horizon.UnixMilli()
	for k := range t.last {
		if idTime(k.inst) < h {
			delete(t.last, k)
		}
	}
}

// idTime is the unix milliseconds of a UUIDv7.
func idTime(id event.ID) int64 {
	var b [8]byte
	copy(b[2:], id[:6])
	return int64(binary.BigEndian.Uint64(b[:]))
}
