package event

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// A client may name its event, so that its retry of the same event is
// stored once: `event_id` in a POSTed event, an Idempotency-Key header
// (draft-ietf-httpapi-idempotency-key-header) on a POST, or
// `client_event_id` on an NDJSON line. That client id must be a UUIDv7
// (RFC 9562): its time is what makes a retry land on the same stored id,
// in the same deduplication slot and the same day partition. A UUIDv4
// (what crypto.randomUUID() gives) carries no time and is refused rather
// than given one that would differ between a first attempt and its retry.
// ParseClientIDSkewed takes an id's time as it is within about
// MaxClientIDAge before the clock it is given and half a ClockStep after
// it, and, for a client whose clock is wrong, moves a time further off
// but within MaxClientIDSkew to near the clock, by whole ClockSteps.
//
// The client id is never stored as is: Scope turns it into the event's ID,
// keeping its time bits (as moved) and replacing its random bits by a hash
// of the site and the client id, so the same client id always gives the
// same stored id for a site, and two sites using the same client id (by
// accident or to collide with another's events) get different ones. Time
// then is the client id's time, not the edge's arrival time, so that every
// attempt of the event carries the same time; the bounds above limit how
// far a client can move an event.
const (
	MaxClientIDAge = 24 * 60 * 60 * 1000 // ms: the aggregator's default dedupe window
	// MaxClientIDSkew bounds how far off a clock ParseClientIDSkewed
	// puts right, either way: time zones span 26 hours, and an id days
	// off is more likely one used again (a constant pasted from an
	// example) than a clock, which moved would collapse every event
	// under it into one a quarter hour.
	MaxClientIDSkew = 48 * 60 * 60 * 1000
)

// ErrClientID wraps every reason a client id is refused.
var ErrClientID = errors.New("client event id")

// parseClientID validates a client id's form: the canonical
// 8-4-4-4-12 hex form (either case), version 7 and the RFC 9562 variant.
func parseClientID(s string) (ID, error) {
	id, err := ParseID(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: not a UUID of the form xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx", ErrClientID)
	}
	if v := id[6] >> 4; v != 7 {
		return ID{}, fmt.Errorf("%w: a version %d UUID, want version 7 (its time makes retries dedupe)", ErrClientID, v)
	}
	if id[8]&0xC0 != 0x80 {
		return ID{}, fmt.Errorf("%w: not an RFC 9562 UUID (variant bits)", ErrClientID)
	}
	return id, nil
}

// ClockStep is what ParseClientIDSkewed moves a client id's time by, in
// milliseconds: a quarter of an hour, the grain of time zones, since a
// clock off by hours is mostly one set to a local time as if it were UTC
// (or the reverse), which whole steps put right within its drift.
const ClockStep = 15 * 60 * 1000

// ParseClientIDSkewed validates a client id (the canonical 8-4-4-4-12
// hex form, either case, version 7, the RFC 9562 variant) against nowMS
// (unix ms) for a browser's event (a POST's event_id or Idempotency-Key,
// an NDJSON line's client_event_id against the line's time), whose clock
// may be off by hours: an id whose time is
// half a ClockStep or more ahead of nowMS, or MaxClientIDAge less half a
// step or more behind it, is not refused (s.js sends each event
// once it has an answer, so a refused one was lost: a tester's browser
// with a clock 15 minutes fast lost every event) but moved by whole
// ClockSteps to within half a step of nowMS, and skewed says so. One
// further off than MaxClientIDSkew is refused.
//
// The bounds sit on half steps, so that whichever way an id goes, a
// retry reaches the same stored id as long as the gap between the id's
// time and the edge's clock has not crossed a half step (an odd multiple
// of 7.5 minutes) in between: a retry lands twice only if the client's
// clock is off by about such a multiple (7.5 minutes ahead, or 23 h 52.5
// min behind, among others), its first attempt was stored without the
// client seeing the answer, and the retry came across the boundary (s.js
// retries within seconds).
func ParseClientIDSkewed(s string, nowMS int64) (id ID, skewed bool, err error) {
	if id, err = parseClientID(s); err != nil {
		return ID{}, false, err
	}
	off := id.Time() - nowMS
	if off > -MaxClientIDAge+ClockStep/2 && off < ClockStep/2 {
		return id, false, nil
	}
	if off < -MaxClientIDSkew || off > MaxClientIDSkew {
		return ID{}, false, fmt.Errorf("%w: its time is %d ms from now, more than %d off", ErrClientID, off, MaxClientIDSkew)
	}
	// floor((off + step/2) / step): the step nearest off, a half step
	// going down.
	steps := (off + ClockStep/2) / ClockStep
	if r := (off + ClockStep/2) % ClockStep; r < 0 {
		steps--
	}
	return id.WithTime(id.Time() - steps*ClockStep), true, nil
}

// ForTier is client id c as an event of tier is stored from it (Scope,
// and its time): for TierAggregate, with its time cut to the minute. A
// client-named event's time is its id's, so that a retry lands on the same
// stored event, and so the client's clock; the aggregate tier keeps no
// client time, and the minute is the dashboard's finest bucket. Every
// path that stores a client-named event (the edge's POST, an NDJSON
// line's client_event_id) cuts it alike, so the same client id gives one
// event whichever way it comes.
func (c ID) ForTier(tier string) ID {
	if tier != TierAggregate {
		return c
	}
	ms := c.Time()
	return c.WithTime(ms - ms%aggregateTimeUnit)
}

// aggregateTimeUnit is what ForTier cuts an aggregate-tier client time to,
// in milliseconds.
const aggregateTimeUnit = 60_000

// WithTime returns id with ms (unix milliseconds, 0 to 2^48-1) as its
// time, its other bits as they were.
func (id ID) WithTime(ms int64) ID {
	for i := 5; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	return id
}

// Time returns the unix milliseconds in id's first 48 bits (a UUIDv7's
// time).
func (id ID) Time() int64 {
	return int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
}

// scopeLabel separates these hashes from any other use of SHA-256 on the
// same bytes; changing it changes every stored id derived from a client id.
const scopeLabel = "edgepixel scoped event id v1\x00"

// Scope returns the stored ID of client id c for site: c's 48 time bits,
// then 74 bits of SHA-256(label, index, site, c) with the UUIDv7 version
// and variant bits. index is -1 for an id the event carries itself
// (event_id, client_event_id) and i >= 0 for the i-th event of a POST
// under an Idempotency-Key c, so the events of one keyed array get
// distinct ids and a retried array the same ones. It is a pure function:
// the edge and the aggregator's NDJSON ingest derive the same id. It is not
// keyed by a secret: the edge streaming to a log endpoint has none, and
// the site is no secret; what keeps sites apart is the site in the hash.
func Scope(c ID, site string, index int) ID {
	var buf [len(scopeLabel) + 4 + 16 + MaxSiteLen]byte
	b := append(buf[:0], scopeLabel...)
	i := uint32(index)
	b = append(b, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	b = append(b, c[:]...)
	b = append(b, site...)
	sum := sha256.Sum256(b)
	var id ID
	copy(id[:6], c[:6])
	copy(id[6:], sum[:10])
	id[6] = id[6]&0x0F | 0x70
	id[8] = id[8]&0x3F | 0x80
	return id
}
