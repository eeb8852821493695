package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// # Edge counters
//
// Every edge instance counts what it did with the hits it answered: per
// site, the hits (requests to the pixel and event paths), the events it
// accepted for delivery, and the hits or events it dropped, by reason
// (the Drop* constants, reasons.go). It reports them with its deliveries as a
// Counters record.
//
// The counts are cumulative: totals since the instance started, never
// deltas. An instance is named by a random UUIDv7 minted when it starts,
// so a record means "by time T, instance I had answered H hits for site
// S, ...". That makes every copy of a record, and every later record,
// harmless to store again: the truth for an instance is the largest value
// of each counter, whatever was delivered twice, out of order, through
// the backend and the log fallback both, or re-sent after a crash from a
// disk queue. Nothing needs deduplicating by id, and a count written
// before a visitor's answer (the journal) is never lost or doubled. The
// counts over a time range are, per instance, the largest value at its
// end minus the largest value before its start (see MaxInstanceLife).
//
// What a hit, an event and a drop are is the edge's business (edge/pixel,
// package doc of counters.go); the aggregator adds and compares them:
// events accepted at the edges against events stored is the loss.

// Counter names: a counters row of storage is one of these, with a reason
// for CounterDropped.
const (
	CounterHits    = "hits"    // requests answered on the pixel and event paths
	CounterEvents  = "events"  // events accepted for delivery
	CounterDropped = "dropped" // hits rejected, or events not delivered, by reason
	// CounterNoted counts, by reason, accepted events that lack
	// something they would normally carry (the Note* constants of
	// reasons.go, e.g. no_salt: no visitor id). Not a loss: the
	// events are counted under events and stored.
	CounterNoted = "noted"
	// CounterDuplicates counts, per site, the copies of client-named
	// events (event.Event's Copy) that arrived after one copy of their
	// id was stored or taken to be: a client's retry, which the edge
	// counted under events again and which is stored once. Not a loss.
	// The aggregator counts it, as an instance of its own (the loader's
	// duplicates); edges never send it.
	CounterDuplicates = "duplicates"
)

// Limits of a counters record; the aggregator refuses records beyond them.
const (
	// MaxCounterSites bounds the sites of one record. An instance counts
	// at most this many sites one by one; hits for further sites count
	// under the site "".
	MaxCounterSites = 1000
	// MaxDropReasons bounds the reasons of one site's row, for drops
	// and for notes each.
	MaxDropReasons = 32
	// MaxReasonLen bounds a reason; reasons are [a-z0-9_] (see ValidReason).
	MaxReasonLen = 40
	// MaxCount bounds a counter (2^53, exact as a JSON number).
	MaxCount = 1 << 53
)

// MaxInstanceLife is how long an edge instance may report cumulative
// counts: the aggregator looks this far back for an instance's last value
// before a range starts. The edge module ends its instances long before
// (its maxLifetime); an instance that lived longer would have its counts
// before the look-back counted again in a later range.
const MaxInstanceLife = time.Hour

// Drop is one drop reason's count.
type Drop struct {
	Reason string
	N      uint64
}

// String is "reason=N", as logs print a drop (a slice of them prints as
// "[missing_site=2 bad_json=1]").
func (d Drop) String() string { return d.Reason + "=" + strconv.FormatUint(d.N, 10) }

// SiteCounts are one site's cumulative counts in an instance at Time.
type SiteCounts struct {
	// Site is the hits' site; "" for hits that named none (or none that
	// could be read), and for sites past MaxCounterSites in one instance.
	Site   string
	Time   int64 // unix milliseconds at the edge when these were the totals
	Hits   uint64
	Events uint64
	Drops  []Drop // non-zero counts only, sorted by reason
	// Notes count accepted events by a condition that did not drop
	// them (CounterNoted): non-zero counts only, sorted by reason.
	Notes []Drop
}

// Counters is one edge instance's report.
type Counters struct {
	Instance event.ID // a UUIDv7 minted when the instance started
	Pop      string   // the POP the instance runs in
	Sites    []SiteCounts
}

// Dropped returns the count of reason in s.
func (s SiteCounts) Dropped(reason string) uint64 {
	for _, d := range s.Drops {
		if d.Reason == reason {
			return d.N
		}
	}
	return 0
}

// Noted returns the count of the note reason in s.
func (s SiteCounts) Noted(reason string) uint64 {
	for _, d := range s.Notes {
		if d.Reason == reason {
			return d.N
		}
	}
	return 0
}

// Add adds o's hits, events, drops and notes to s, keeping s.Drops and
// s.Notes sorted by reason. s's site and time are left as they are.
func (s *SiteCounts) Add(o SiteCounts) {
	s.Hits += o.Hits
	s.Events += o.Events
	s.Drops = addReasons(s.Drops, o.Drops)
	s.Notes = addReasons(s.Notes, o.Notes)
}

func addReasons(dst, src []Drop) []Drop {
	for _, d := range src {
		i := slices.IndexFunc(dst, func(x Drop) bool { return x.Reason == d.Reason })
		if i < 0 {
			dst = append(dst, d)
			continue
		}
		dst[i].N += d.N
	}
	SortDrops(dst)
	return dst
}

// ValidReason reports whether r can be a drop reason: 1 to MaxReasonLen
// bytes of lower-case ASCII letters, digits and _, starting with a
// letter. The aggregator uses reasons as metric label values and table
// values, so they are kept to a shape that needs no escaping.
func ValidReason(r string) bool {
	if len(r) == 0 || len(r) > MaxReasonLen || r[0] < 'a' || r[0] > 'z' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ErrBadCounters wraps every reason a counters record is refused.
var ErrBadCounters = errors.New("invalid edge counters")

// Validate checks c against the limits above and the rule and limits its
// strings share with events (event.Clean; site, pop).
func (c *Counters) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCounters, fmt.Sprintf(format, args...))
	}
	if c.Instance.IsZero() {
		return bad("missing instance")
	}
	if event.Clean(c.Pop, event.MaxShortLen) != c.Pop {
		return bad("pop longer than %d bytes or not clean UTF-8 (event.Clean)", event.MaxShortLen)
	}
	if len(c.Sites) == 0 {
		return bad("no sites")
	}
	if len(c.Sites) > MaxCounterSites {
		return bad("%d sites, at most %d", len(c.Sites), MaxCounterSites)
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		if event.Clean(s.Site, event.MaxSiteLen) != s.Site {
			return bad("site longer than %d bytes or not clean UTF-8 (event.Clean)", event.MaxSiteLen)
		}
		if s.Time <= 0 || s.Time > 1<<42 {
			return bad("site %q: bad time", s.Site)
		}
		if s.Hits > MaxCount || s.Events > MaxCount {
			return bad("site %q: count over 2^53", s.Site)
		}
		for k, ds := range [2][]Drop{s.Drops, s.Notes} {
			kind := [2]string{"drop", "note"}[k]
			if len(ds) > MaxDropReasons {
				return bad("site %q: %d %s reasons, at most %d", s.Site, len(ds), kind, MaxDropReasons)
			}
			for _, d := range ds {
				if !ValidReason(d.Reason) {
					return bad("site %q: %s reason %q is not [a-z][a-z0-9_]*, at most %d bytes", s.Site, kind, d.Reason, MaxReasonLen)
				}
				if d.N > MaxCount {
					return bad("site %q: count over 2^53", s.Site)
				}
			}
		}
	}
	return nil
}

// Binary form, inside a batch (MagicCounters) and a spool record:
//
//	counters = instance(16 bytes) pop nsite (length site){nsite} [future]
//	site     = name time hits events ndrop (reason n){ndrop}
//	           [nnote (reason n){nnote}] [future]
//
// The notes came after the first release of the form: a site that ends
// after its drops has none, and an older reader skips them.
//
// Strings are length-prefixed, integers unsigned LEB128 varints. Each
// site is length-prefixed so that a newer writer can append fields an
// older reader skips, as with events.

// maxCountersLen bounds one encoded record, checked before decoding.
const maxCountersLen = 1 << 20

// AppendCounters appends the binary form of c to dst.
func AppendCounters(dst []byte, c *Counters) []byte {
	dst = append(dst, c.Instance[:]...)
	dst = appendString(dst, c.Pop)
	dst = binary.AppendUvarint(dst, uint64(len(c.Sites)))
	var body []byte
	for i := range c.Sites {
		s := &c.Sites[i]
		body = appendString(body[:0], s.Site)
		body = binary.AppendUvarint(body, uint64(s.Time))
		body = binary.AppendUvarint(body, s.Hits)
		body = binary.AppendUvarint(body, s.Events)
		body = binary.AppendUvarint(body, uint64(len(s.Drops)))
		for _, d := range s.Drops {
			body = appendString(body, d.Reason)
			body = binary.AppendUvarint(body, d.N)
		}
		if len(s.Notes) > 0 {
			body = binary.AppendUvarint(body, uint64(len(s.Notes)))
			for _, d := range s.Notes {
				body = appendString(body, d.Reason)
				body = binary.AppendUvarint(body, d.N)
			}
		}
		dst = binary.AppendUvarint(dst, uint64(len(body)))
		dst = append(dst, body...)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeCounters parses the binary form of one record (all of b). It
// checks the framing, not the limits: call Validate.
func DecodeCounters(b []byte) (Counters, error) {
	var c Counters
	if len(b) > maxCountersLen {
		return c, fmt.Errorf("%w: counters of %d bytes", ErrMalformed, len(b))
	}
	d := decoder{b: b}
	if len(b) < len(c.Instance) {
		return c, fmt.Errorf("%w: counters: short instance", ErrMalformed)
	}
	copy(c.Instance[:], b)
	d.off = len(c.Instance)
	c.Pop = d.str()
	n := d.uint()
	if d.err == nil && n > uint64(len(b)-d.off) { // a site takes at least a byte
		d.err = errors.New("bad site count")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		body := d.bytes()
		if d.err != nil {
			break
		}
		sd := decoder{b: body}
		s := SiteCounts{Site: sd.str(), Time: int64(sd.uint()), Hits: sd.uint(), Events: sd.uint()}
		nd := sd.uint()
		if sd.err == nil && nd > uint64(len(body)) {
			sd.err = errors.New("bad drop count")
		}
		for j := uint64(0); j < nd && sd.err == nil; j++ {
			s.Drops = append(s.Drops, Drop{Reason: sd.str(), N: sd.uint()})
		}
		if sd.err == nil && sd.off < len(body) {
			nn := sd.uint()
			if sd.err == nil && nn > uint64(len(body)) {
				sd.err = errors.New("bad note count")
			}
			for j := uint64(0); j < nn && sd.err == nil; j++ {
				s.Notes = append(s.Notes, Drop{Reason: sd.str(), N: sd.uint()})
			}
		}
		// What remains of body are fields of a newer writer: skipped.
		if sd.err != nil {
			d.err = fmt.Errorf("site %d: %v", i, sd.err)
			break
		}
		c.Sites = append(c.Sites, s)
	}
	// What remains of b after the sites: fields of a newer writer.
	if d.err != nil {
		return Counters{}, fmt.Errorf("%w: counters: %v", ErrMalformed, d.err)
	}
	return c, nil
}

// decoder reads varints and length-prefixed strings from b, remembering
// the first error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.off += k
	return v
}

func (d *decoder) bytes() []byte {
	l := d.uint()
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)-d.off) {
		d.err = errors.New("bad length")
		return nil
	}
	v := d.b[d.off : d.off+int(l)]
	d.off += int(l)
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

// Merge folds the records cs into one record per instance, keeping for
// each instance and site the counts of the latest time (counts only grow
// within an instance, so the latest are the largest). The records of one
// NDJSON request, one per journaled line, become a few.
func Merge(cs []Counters) []Counters {
	if len(cs) <= 1 {
		return cs
	}
	var m Merger
	for i := range cs {
		m.Add(&cs[i])
	}
	return m.Result()
}

// Merger merges records as they come (see Merge). The zero value is
// empty and ready.
type Merger struct {
	byInst map[event.ID]int
	at     map[mergeKey][2]int // index in out, index in its Sites
	out    []Counters
}

type mergeKey struct {
	inst event.ID
	site string
}

// Add merges c (which it may keep parts of).
func (m *Merger) Add(c *Counters) {
	if m.byInst == nil {
		m.byInst, m.at = map[event.ID]int{}, map[mergeKey][2]int{}
	}
	j, ok := m.byInst[c.Instance]
	if !ok {
		j = len(m.out)
		m.byInst[c.Instance] = j
		m.out = append(m.out, Counters{Instance: c.Instance, Pop: c.Pop})
	}
	for _, s := range c.Sites {
		k := mergeKey{c.Instance, s.Site}
		if p, ok := m.at[k]; ok {
			cur := &m.out[p[0]].Sites[p[1]]
			if later(&s, cur) {
				*cur = s
			}
			continue
		}
		m.at[k] = [2]int{j, len(m.out[j].Sites)}
		m.out[j].Sites = append(m.out[j].Sites, s)
	}
}

// Len is the number of records merged into.
func (m *Merger) Len() int { return len(m.out) }

// Result returns the merged records.
func (m *Merger) Result() []Counters { return m.out }

// later reports whether a is a later reading of the same counters than b.
// An instance's counts only grow, so the reading with more counted is the
// later one whatever its time says: the counts on a journal line carry the
// line's event time, which a client's event id sets (event.Scope), so a
// later line can bear an earlier time. Equal totals: the later time.
func later(a, b *SiteCounts) bool {
	if na, nb := a.Hits+a.Events+sumDrops(a.Drops)+sumDrops(a.Notes), b.Hits+b.Events+sumDrops(b.Drops)+sumDrops(b.Notes); na != nb {
		return na > nb
	}
	return a.Time > b.Time
}

func sumDrops(ds []Drop) uint64 {
	var n uint64
	for _, d := range ds {
		n += d.N
	}
	return n
}

// SortDrops sorts ds by reason, the order records keep them in.
func SortDrops(ds []Drop) {
	slices.SortFunc(ds, func(a, b Drop) int {
		switch {
		case a.Reason < b.Reason:
			return -1
		case a.Reason > b.Reason:
			return 1
		}
		return 0
	})
}
