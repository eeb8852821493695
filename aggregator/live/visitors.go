package live

// VisitorsWindow is how far back "visitors now" looks: the distinct
// non-zero visitor ids among the events stored in the last VisitorsWindow,
// counted by the second they were stored.
const VisitorsWindow = 300 // seconds

// DefaultMaxVisitors is Options.MaxVisitors' default: the visitor ids the
// hub keeps at once over all sites (each costs a map entry, a few tens of
// bytes).
const DefaultMaxVisitors = 1 << 20

// visitors counts the distinct visitor ids seen in a sliding window of
// VisitorsWindow seconds, exactly, with memory bounded by the hub's cap.
//
// seen maps each id to the last second it was seen; per[s%VisitorsWindow]
// is how many ids were last seen in second s, so the count in the window
// is the sum of per over the window's seconds (kept in n as the window
// slides). Ids whose second left the window stay in seen ("stale") until
// a sweep, which runs when they are at least as many as the live ones, so
// sweeping costs O(1) per id seen.
type visitors struct {
	seen map[uint64]int64
	per  [VisitorsWindow]uint32
	sec  int64 // the newest second per covers
	n    int   // ids last seen in (sec-VisitorsWindow, sec]
	// cappedUntil is the second after which no id dropped at the cap is
	// in the window any more: until then n is a lower bound.
	cappedUntil int64
	published   int // n as last sent in a message; -1 before
}

func newVisitors(sec int64) *visitors {
	return &visitors{seen: map[uint64]int64{}, sec: sec, published: -1}
}

// advance slides the window so that its newest second is sec. A clock
// that steps back leaves the window where it is.
func (v *visitors) advance(sec int64) {
	if sec <= v.sec {
		return
	}
	for s := v.sec + 1; s <= sec && s <= v.sec+VisitorsWindow; s++ {
		i := s % VisitorsWindow
		v.n -= int(v.per[i])
		v.per[i] = 0
	}
	v.sec = sec
}

// add records id seen at v.sec (advance first). It returns +1 when it
// took a new map entry, -1 when the id could not be kept (the hub is at
// its cap: room reports whether one more entry fits), else 0.
func (v *visitors) add(id uint64, room bool) int {
	sec := v.sec
	last, ok := v.seen[id]
	switch {
	case ok && last == sec:
		return 0
	case ok && last > sec-VisitorsWindow:
		v.per[last%VisitorsWindow]--
		v.per[sec%VisitorsWindow]++
		v.seen[id] = sec
		return 0
	case ok: // stale: in the map, out of the window
		v.per[sec%VisitorsWindow]++
		v.n++
		v.seen[id] = sec
		return 0
	case !room:
		v.cappedUntil = sec + VisitorsWindow
		return -1
	}
	v.seen[id] = sec
	v.per[sec%VisitorsWindow]++
	v.n++
	return 1
}

// stale is the entries of seen out of the window.
func (v *visitors) stale() int { return len(v.seen) - v.n }

// sweep deletes the entries out of the window and returns how many.
func (v *visitors) sweep() int {
	if v.stale() == 0 {
		return 0
	}
	before := len(v.seen)
	from := v.sec - VisitorsWindow
	for id, last := range v.seen {
		if last <= from {
			delete(v.seen, id)
		}
	}
	return before - len(v.seen)
}

// count is the distinct ids in the window ending at sec, and whether it
// is a lower bound (ids were dropped at the cap within the window).
func (v *visitors) count(sec int64) (n uint64, capped bool) {
	v.advance(sec)
	return uint64(v.n), v.cappedUntil > sec
}
