package dedupe

import (
	"context"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Memory is an in-process Deduper for running without Redis. Its state is
// lost on restart; the loader compensates by checking the store for every
// event it re-reads from the spool after a restart, but batches retried by
// the edge after a restart are only caught by the storage-side backstop.
type Memory struct {
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	ids       map[event.ID]memEntry
	nextSweep time.Time
}

type memEntry struct {
	done    bool
	expires int64 // unix nanoseconds
}

// NewMemory returns an empty in-process deduper remembering ids for window.
func NewMemory(window time.Duration) *Memory {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Memory{window: window, now: time.Now, ids: map[event.ID]memEntry{}}
}

func (m *Memory) Claim(_ context.Context, ids []event.ID) ([]Status, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	exp := now.Add(m.window).UnixNano()
	out := make([]Status, len(ids))
	for i, id := range ids {
		e, ok := m.ids[id]
		switch {
		case !ok || e.expires <= now.UnixNano():
			m.ids[id] = memEntry{expires: exp}
			out[i] = New
		case e.done:
			out[i] = Duplicate
		default:
			out[i] = Uncertain
		}
	}
	return out, nil
}

func (m *Memory) MarkDone(_ context.Context, ids []event.ID) error {
	exp := m.now().Add(m.window).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.ids[id] = memEntry{done: true, expires: exp}
	}
	return nil
}

// sweepLocked drops expired ids, at most once a minute so that its cost is
// spread thin.
func (m *Memory) sweepLocked(now time.Time) {
	if now.Before(m.nextSweep) {
		return
	}
	m.nextSweep = now.Add(time.Minute)
	t := now.UnixNano()
	for id, e := range m.ids {
		if e.expires <= t {
			delete(m.ids, id)
		}
	}
}

// Len returns the number of remembered ids (for tests and metrics).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ids)
}

func (m *Memory) Ping(context.Context) error { return nil }
func (m *Memory) Name() string               { return "memory" }
func (m *Memory) Close() error               { return nil }
