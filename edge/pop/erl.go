package pop

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// Edge Rate Limiting (fastly_erl.go): rate counters and penalty boxes,
// kept in memory and shared by every instance of the POP, as Fastly
// shares them within a POP. Fastly's rules, from compute-sdk-go's erl
// package and Fastly's ratecounter and penaltybox documentation:
//
//   - A rate counter counts increments per entry. Its rate over a window
//     of 1, 10 or 60 seconds is increments per second over that window;
//     its count over 10 to 60 seconds sums 10-second buckets aligned to
//     the clock (the current, partial one and the ones before it).
//   - A penalty box holds entries for a TTL of 1 to 60 whole minutes.
//   - Both have a fixed capacity. A full rate counter evicts the entry
//     incremented least recently; a full penalty box evicts the entry with
//     the shortest remaining TTL.
//
// Here one mutex guards both tables: every operation is a few map and
// slice accesses, and check_rate must see and change both at once.
//
// Counters keep one slot per second for the last 11 seconds and one per
// 10-second bucket for the last 70. The 1s and 10s rates sum the slots of
// the window's whole seconds, the current partial one included, plus the
// second before them weighted by the part of the current second still to
// come, which estimates the increments of exactly the last 1 or 10
// seconds (for evenly spread increments); the 60s rate does the same with
// 10-second buckets. Fastly computes its rates asynchronously and may
// under-count by up to 10%; this estimate is exact for the current POP
// the moment an increment is made, which a module cannot tell apart from
// a Fastly POP having a good day.
type erlStore struct {
	mu          sync.Mutex
	counters    map[string]*rateEntry
	lru         rateEntry // sentinel of the list by last increment; lru.next is the oldest
	maxCounters int

	boxes        map[string]*penaltyEntry
	expiries     penaltyHeap // by expiry, soonest first
	maxPenalties int

	now func() time.Time

	counterEvictions, penaltyEvictions atomic.Uint64
}

// DefaultERLMaxEntries is the default capacity of the rate counters (all
// entries of all counters) and, separately, of the penalty boxes. Fastly
// documents 200,000 entries per penalty box per POP; counters it leaves
// unspecified.
const DefaultERLMaxEntries = 100_000

// Limits on the arguments, from compute-sdk-go's erl package: names and
// entries up to 64 characters (taken as bytes), deltas 0 to 1000, limits
// 10 to 10000 per second, penalty box TTLs of 1 to 60 minutes.
const (
	erlMaxName  = 64
	erlMaxDelta = 1000
	erlMinLimit = 10
	erlMaxLimit = 10000
	erlMinTTL   = 1 * time.Minute
	erlMaxTTL   = 60 * time.Minute
)

func newERLStore(maxEntries int) *erlStore {
	if maxEntries <= 0 {
		maxEntries = DefaultERLMaxEntries
	}
	e := &erlStore{
		counters:     map[string]*rateEntry{},
		boxes:        map[string]*penaltyEntry{},
		maxCounters:  maxEntries,
		maxPenalties: maxEntries,
		now:          time.Now,
	}
	e.lru.prev, e.lru.next = &e.lru, &e.lru
	return e
}

// erlKey is the map key of entry in the counter or box name: the name's
// length first, so no two (name, entry) pairs share a key. Names are at
// most erlMaxName bytes, so the length fits a byte. buf must hold
// 1+len(name)+len(entry) bytes; indexing a map with string(key) does not
// allocate.
func erlKey(buf []byte, name, entry []byte) []byte {
	buf = append(buf[:0], byte(len(name)))
	buf = append(buf, name...)
	return append(buf, entry...)
}

// validWindow reports whether w is a rate window in seconds (1, 10, 60).
func validWindow(w uint32) bool { return w == 1 || w == 10 || w == 60 }

// validDuration reports whether d is a count duration in seconds (10 to 60
// in steps of 10).
func validDuration(d uint32) bool { return d >= 10 && d <= 60 && d%10 == 0 }

// penaltyTTL converts a TTL in seconds (as the SDK passes it) to whole
// minutes, truncating, as Fastly's Rust SDK documents; ok is false
// outside 1 to 60 minutes.
func penaltyTTL(seconds uint32) (time.Duration, bool) {
	d := time.Duration(seconds/60) * time.Minute
	return d, d >= erlMinTTL && d <= erlMaxTTL
}

// rateEntry is one entry of a rate counter.
type rateEntry struct {
	key        string
	sec        int64      // the Unix second the slots are current for
	secs       [11]uint32 // increments per second; index sec % 11
	tens       [7]uint32  // increments per 10-second bucket; index (sec/10) % 7
	prev, next *rateEntry // in erlStore.lru
}

// advance moves the entry's slots forward to second now, clearing the
// slots of the seconds (and buckets) that passed without increments.
func (r *rateEntry) advance(now int64) {
	if now <= r.sec {
		return
	}
	if now-r.sec >= int64(len(r.secs)) {
		clear(r.secs[:])
	} else {
		for s := r.sec + 1; s <= now; s++ {
			r.secs[s%int64(len(r.secs))] = 0
		}
	}
	oldT, newT := r.sec/10, now/10
	if newT-oldT >= int64(len(r.tens)) {
		clear(r.tens[:])
	} else {
		for b := oldT + 1; b <= newT; b++ {
			r.tens[b%int64(len(r.tens))] = 0
		}
	}
	r.sec = now
}

func satAdd(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint32(0)
}

// rate is the entry's increments per second over the window (1, 10 or 60
// seconds) ending at now, frac of the way through second now. The slots
// must have been advanced to now.
func (r *rateEntry) rate(window uint32, frac float64) float64 {
	n := int64(len(r.secs))
	slot := func(s int64) float64 { return float64(r.secs[((s%n)+n)%n]) }
	switch window {
	case 1, 10:
		w := int64(window)
		var sum float64
		for s := r.sec - w + 1; s <= r.sec; s++ {
			sum += slot(s)
		}
		sum += slot(r.sec-w) * (1 - frac)
		return sum / float64(window)
	default: // 60: the six buckets of the window, the oldest weighted
		nt := int64(len(r.tens))
		bucket := func(b int64) float64 { return float64(r.tens[((b%nt)+nt)%nt]) }
		cur := r.sec / 10
		var sum float64
		for b := cur - 5; b <= cur; b++ {
			sum += bucket(b)
		}
		// The current bucket covers (sec%10)+frac seconds and the five
		// before it 50: the rest of the minute is the part of the sixth
		// bucket back that the window still reaches.
		elapsed := float64(r.sec%10) + frac
		sum += bucket(cur-6) * (10 - elapsed) / 10
		return sum / 60
	}
}

// count is the sum of the entry's current 10-second bucket and the
// (duration/10 - 1) before it.
func (r *rateEntry) count(duration uint32) uint32 {
	nt := int64(len(r.tens))
	var sum uint32
	cur := r.sec / 10
	for b := cur - int64(duration/10) + 1; b <= cur; b++ {
		sum = satAdd(sum, r.tens[((b%nt)+nt)%nt])
	}
	return sum
}

// expired reports whether nothing the entry holds can count any more at
// second now: its last increment is older than the 70 seconds its
// buckets cover.
func (r *rateEntry) expired(now int64) bool { return now-r.sec >= 70 }

// clock returns the current Unix second and how far into it we are.
func (e *erlStore) clock() (int64, float64) {
	t := e.now()
	return t.Unix(), float64(t.Nanosecond()) / 1e9
}

// counterLocked returns the entry for key, creating it (and evicting the
// least recently incremented entry if the counters are full) if create.
// It drops expired entries from the old end of the list as it goes, so
// memory follows the entries in use.
func (e *erlStore) counterLocked(key []byte, now int64, create bool) *rateEntry {
	for old := e.lru.next; old != &e.lru && old.expired(now); old = e.lru.next {
		e.unlinkLocked(old)
		delete(e.counters, old.key)
	}
	if r, ok := e.counters[string(key)]; ok {
		return r
	}
	if !create {
		return nil
	}
	if len(e.counters) >= e.maxCounters {
		victim := e.lru.next
		e.unlinkLocked(victim)
		delete(e.counters, victim.key)
		e.counterEvictions.Add(1)
	}
	r := &rateEntry{key: string(key), sec: now}
	e.counters[r.key] = r
	e.pushLocked(r)
	return r
}

func (e *erlStore) unlinkLocked(r *rateEntry) {
	r.prev.next, r.next.prev = r.next, r.prev
	r.prev, r.next = nil, nil
}

// pushLocked makes r the most recently incremented entry.
func (e *erlStore) pushLocked(r *rateEntry) {
	r.prev, r.next = e.lru.prev, &e.lru
	e.lru.prev.next = r
	e.lru.prev = r
}

// incrementLocked adds delta to the entry of key at second now.
func (e *erlStore) incrementLocked(key []byte, delta uint32, now int64) *rateEntry {
	r := e.counterLocked(key, now, true)
	r.advance(now)
	r.secs[now%int64(len(r.secs))] = satAdd(r.secs[now%int64(len(r.secs))], delta)
	r.tens[(now/10)%int64(len(r.tens))] = satAdd(r.tens[(now/10)%int64(len(r.tens))], delta)
	if e.lru.prev != r {
		e.unlinkLocked(r)
		e.pushLocked(r)
	}
	return r
}

// Increment adds delta to entry in rate counter rc.
func (e *erlStore) Increment(rc, entry []byte, delta uint32) {
	var buf [1 + 2*erlMaxName]byte
	key := erlKey(buf[:], rc, entry)
	now, _ := e.clock()
	e.mu.Lock()
	e.incrementLocked(key, delta, now)
	e.mu.Unlock()
}

// Rate returns entry's increments per second in rate counter rc over the
// window (1, 10 or 60 seconds), rounded down.
func (e *erlStore) Rate(rc, entry []byte, window uint32) uint32 {
	var buf [1 + 2*erlMaxName]byte
	key := erlKey(buf[:], rc, entry)
	now, frac := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.counterLocked(key, now, false)
	if r == nil {
		return 0
	}
	r.advance(now)
	return uint32(r.rate(window, frac))
}

// Count returns entry's increments in rate counter rc over the duration
// (10 to 60 seconds, in whole buckets).
func (e *erlStore) Count(rc, entry []byte, duration uint32) uint32 {
	var buf [1 + 2*erlMaxName]byte
	key := erlKey(buf[:], rc, entry)
	now, _ := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.counterLocked(key, now, false)
	if r == nil {
		return 0
	}
	r.advance(now)
	return r.count(duration)
}

// penaltyEntry is one entry of a penalty box.
type penaltyEntry struct {
	key     string
	expires time.Time
	index   int // in erlStore.expiries
}

// penaltyHeap orders penalty entries by expiry (container/heap).
type penaltyHeap []*penaltyEntry

func (h penaltyHeap) Len() int           { return len(h) }
func (h penaltyHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h penaltyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *penaltyHeap) Push(x any) {
	p := x.(*penaltyEntry)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *penaltyHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

// expireLocked drops the penalty entries whose TTL has run out.
func (e *erlStore) expireLocked(now time.Time) {
	for len(e.expiries) > 0 && !e.expiries[0].expires.After(now) {
		p := heap.Pop(&e.expiries).(*penaltyEntry)
		delete(e.boxes, p.key)
	}
}

func (e *erlStore) penaltyAddLocked(key []byte, ttl time.Duration, now time.Time) {
	e.expireLocked(now)
	if p, ok := e.boxes[string(key)]; ok {
		// Fastly: adding an entry already in the box replaces its TTL.
		p.expires = now.Add(ttl)
		heap.Fix(&e.expiries, p.index)
		return
	}
	if len(e.boxes) >= e.maxPenalties {
		victim := heap.Pop(&e.expiries).(*penaltyEntry)
		delete(e.boxes, victim.key)
		e.penaltyEvictions.Add(1)
	}
	p := &penaltyEntry{key: string(key), expires: now.Add(ttl)}
	e.boxes[p.key] = p
	heap.Push(&e.expiries, p)
}

func (e *erlStore) penaltyHasLocked(key []byte, now time.Time) bool {
	p, ok := e.boxes[string(key)]
	return ok && p.expires.After(now)
}

// PenaltyAdd puts entry in penalty box pb for ttl (whole minutes, 1 to
// 60; see penaltyTTL), replacing the TTL if it is there already.
func (e *erlStore) PenaltyAdd(pb, entry []byte, ttl time.Duration) {
	var buf [1 + 2*erlMaxName]byte
	key := erlKey(buf[:], pb, entry)
	now := e.now()
	e.mu.Lock()
	e.penaltyAddLocked(key, ttl, now)
	e.mu.Unlock()
}

// PenaltyHas reports whether entry is in penalty box pb.
func (e *erlStore) PenaltyHas(pb, entry []byte) bool {
	var buf [1 + 2*erlMaxName]byte
	key := erlKey(buf[:], pb, entry)
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.penaltyHasLocked(key, now)
}

// CheckRate increments entry in rate counter rc by delta and reports
// whether it is penalised: it is if it already is in penalty box pb, or
// if its rate over the window now exceeds limit, in which case it is put
// in pb for ttl. All of it happens at once, under one lock.
func (e *erlStore) CheckRate(rc, entry []byte, delta, window, limit uint32, pb []byte, ttl time.Duration) bool {
	var rbuf, pbuf [1 + 2*erlMaxName]byte
	rkey := erlKey(rbuf[:], rc, entry)
	pkey := erlKey(pbuf[:], pb, entry)
	t := e.now()
	now, frac := t.Unix(), float64(t.Nanosecond())/1e9
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.incrementLocked(rkey, delta, now)
	if e.penaltyHasLocked(pkey, t) {
		return true
	}
	if r.rate(window, frac) > float64(limit) {
		e.penaltyAddLocked(pkey, ttl, t)
		return true
	}
	return false
}

// sizes returns the entries held: rate counter entries and penalty box
// entries (expired ones not yet dropped included).
func (e *erlStore) sizes() (counters, penalties int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.counters), len(e.boxes)
}
