package loader

import (
	"errors"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/dedupe"
)

// Pause says why loading waits: the step that failed, its last error, and
// since when it has been failing. While Redis is down the loader keeps
// retrying the claim and inserts nothing, since an insert without a claim
// could store an event twice; ingest keeps spooling meanwhile, and the
// loader catches up from the spool once Redis answers. The same holds for
// the store (ClickHouse).
type Pause struct {
	What     string    `json:"what"`           // "load", "initialize the store", ...
	Error    string    `json:"error"`          // the last error
	Since    time.Time `json:"since,omitzero"` // first failure of this run of failures; zero: not known
	Attempts int       `json:"attempts,omitzero"`
}

// Status returns why loading is paused, or nil when it runs. With several
// stages waiting, the one furthest along is reported: it holds up the
// others.
func (l *Loader) Status() *Pause {
	for i := stages - 1; i >= 0; i-- {
		if p := l.pauses[i].Load(); p != nil {
			return p
		}
	}
	return nil
}

// Paused reports 1 while loading is paused, for the metrics gauge.
func (l *Loader) Paused() int {
	if l.Status() != nil {
		return 1
	}
	return 0
}

// setPause records the outcome of one attempt of a retried step of stage.
func (l *Loader) setPause(stage int, what string, err error, attempt int) {
	ptr := &l.pauses[stage]
	if err == nil {
		if ptr.Load() != nil {
			ptr.Store(nil)
		}
		return
	}
	p := &Pause{What: what, Error: err.Error(), Since: time.Now(), Attempts: attempt}
	if old := ptr.Load(); old != nil && old.What == what && attempt > 1 {
		p.Since = old.Since
	}
	ptr.Store(p)
}

// countDedupeError counts a failed dedupe call: as a store error when the
// deduper had to ask the store (after Redis lost its memory) and it failed.
func (l *Loader) countDedupeError(err error) {
	if errors.Is(err, dedupe.ErrStore) {
		l.m.StoreErrors.Add(1)
	} else {
		l.m.DedupeErrors.Add(1)
	}
}
