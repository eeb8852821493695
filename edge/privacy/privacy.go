// Package privacy decides, at the edge, how much of a hit may be kept: its
// consent tier, and the visitor id that lets a site count unique visitors
// and visits without a cookie or a stored IP address.
//
// # Consent tiers
//
// A hit is in one of two tiers (Tier):
//
//   - TierFull: every field, with a visitor id.
//   - TierAggregate: counted, with no visitor id and none of the free-form
//     fields a person could be found by (shared/event's
//     Event.ApplyPrivacy clears them, at the edge and again at the
//     aggregator).
//
// A site has a default tier. Opt-out signals put a hit in TierAggregate
// whatever the default: Sec-GPC: 1 (Global Privacy Control, W3C draft;
// California's CCPA regulations section 7025 make it a valid opt-out),
// DNT: 1, a consent parameter that does not give consent (0, false,
// Google Consent Mode's "denied", or any word not read as consent: a
// privacy signal misread must not track in full), an IAB US Privacy string
// (us_privacy parameter, "1YYY" form) whose third character is 'Y' (opted
// out of sale), or either parameter found but not readable as sent
// (SignalUnreadable). An explicit consent=1 raises a site whose default is
// TierAggregate to TierFull, unless an opt-out signal is present: an
// opt-out always wins, also over the same parameter given again with
// consent (Signals.AddConsent, Signals.AddUSPrivacy). The pixel and the
// event POST read the same parameters, the POST from its URL's query and
// from each event alike.
//
// # Visitor ids
//
// A visitor id is SipHash-2-4 (Aumasson and Bernstein, 2012; a keyed
// pseudorandom function) under the day's salt of the site, the client's
// full IP address and its User-Agent, as 64 bits. Without the salt an id
// cannot be linked to an address; once the salt is gone, not even by
// whoever ran the edge. Salts are random 16-byte values, one per UTC
// day, held in the edge's secret store under two entries: day d's salt
// lives in SaltKey(d), entry d mod 2, so yesterday's and tomorrow's share
// one. Once a day, after VisitWindow past midnight UTC, edgepixel-salt
// writes tomorrow's salt into its entry, which overwrites yesterday's. So
// the edge has today's salt all day, yesterday's through the first
// VisitWindow (a visit across midnight can be joined: IDs), and after
// the day's rotation yesterday's salt is gone: an auditor checks that the
// two entries' dates are today and tomorrow. Rotating never reads the
// store back (Fastly's API cannot read a secret).
package privacy

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/dchest/siphash"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Tier is a hit's consent tier. Its String is the stored column value.
type Tier uint8

const (
	TierFull Tier = iota
	TierAggregate
)

func (t Tier) String() string {
	if t == TierAggregate {
		return event.TierAggregate
	}
	return event.TierFull
}

// ParseTier reads "full" or "aggregate", as a site's configured default.
func ParseTier(s string) (Tier, bool) {
	switch s {
	case event.TierFull:
		return TierFull, true
	case event.TierAggregate:
		return TierAggregate, true
	}
	return TierFull, false
}

// Signals are a hit's consent signals, as the request carries them.
type Signals struct {
	GPC       string // the Sec-GPC header
	DNT       string // the DNT header
	Consent   string // the consent parameter: "1", "true" or "granted" given, "" none, any other refused
	USPrivacy string // the us_privacy parameter (IAB CCPA string, e.g. "1YNN")
}

// AddConsent takes one more occurrence of the consent parameter (a pixel's
// query may repeat it; a POST has it in its URL's query and in each event):
// a refusal wins over a consent whichever came first, else the first value
// stays. Found by a new-user tester (a privacy auditor): consent=1&consent=0
// was read as consent, as the first pair of a query wins.
func (s *Signals) AddConsent(v string) {
	if s.Consent == "" || consentRefused(v) && !consentRefused(s.Consent) {
		s.Consent = v
	}
}

// AddUSPrivacy is AddConsent for the us_privacy parameter: a string that
// says opted out wins over one that does not.
func (s *Signals) AddUSPrivacy(v string) {
	if s.USPrivacy == "" || ccpaOptOut(v) && !ccpaOptOut(s.USPrivacy) {
		s.USPrivacy = v
	}
}

// SignalUnreadable is the word a reader gives AddConsent or AddUSPrivacy
// for a consent or us_privacy parameter it found but could not read as
// sent: in a query pair with a ';' (consent=0;, or an HTML-escaped
// &amp;consent=0), with an escape that does not decode, a whole pair
// escaped (consent%3D0), or in a POST as an array or object. It is an
// opt-out of either kind, as a privacy signal misread must not track in
// full (a tester found each of these tracked in full); so is a
// consent=1 so written.
const SignalUnreadable = "unreadable"

// consentRefused: any consent word that does not give it ("0", "false" as
// POSTed JSON's false reads, Google Consent Mode's "denied", a CMP's "no"
// or "opt-out", a mistyped one). Before, only "0" and "false" refused,
// and every other word was tracked in full with nothing to say so (found
// by a tester: a CMP passing "denied"). "" is no consent word at all.
func consentRefused(v string) bool { return v != "" && !consentGiven(v) }

// consentGiven: "1", "true" or "granted" (Google Consent Mode's word), in
// any ASCII case.
func consentGiven(v string) bool {
	return v == "1" || strings.EqualFold(v, "true") || strings.EqualFold(v, "granted")
}

// ccpaOptOut: an IAB US Privacy string ("1YYN") whose third character says
// opted out of sale, or one that could not be read (SignalUnreadable).
func ccpaOptOut(v string) bool {
	return v == SignalUnreadable || len(v) == 4 && v[0] == '1' && (v[2] == 'Y' || v[2] == 'y')
}

// Reasons Decide gives, as stored beside the tier (shared/event's).
const (
	ReasonDefault    = event.ReasonDefault
	ReasonConsent    = event.ReasonConsent
	ReasonGPC        = event.ReasonGPC
	ReasonDNT        = event.ReasonDNT
	ReasonNoConsent  = event.ReasonNoConsent
	ReasonCCPAOptOut = event.ReasonCCPAOptOut
)

// Decide returns the hit's tier under the site's default and why.
func Decide(siteDefault Tier, s Signals) (Tier, string) {
	switch {
	case s.GPC == "1":
		return TierAggregate, ReasonGPC
	case s.DNT == "1":
		return TierAggregate, ReasonDNT
	case consentRefused(s.Consent):
		return TierAggregate, ReasonNoConsent
	case ccpaOptOut(s.USPrivacy):
		return TierAggregate, ReasonCCPAOptOut
	case siteDefault == TierAggregate && consentGiven(s.Consent):
		return TierFull, ReasonConsent
	}
	return siteDefault, ReasonDefault
}

// Salt is one UTC day's key. The zero Salt is absent.
type Salt struct {
	Day    int32 // days since 1970-01-01 UTC
	k0, k1 uint64
}

// SaltKeys are the secret store entries that hold the salts; day d's salt
// is in SaltKeys[d mod 2] (SaltKey). Each value is a salt's text form
// (ParseSalt), whose date says which day it serves.
var SaltKeys = [2]string{"visitor_salt_0", "visitor_salt_1"}

// SaltKey is the secret store entry of day's salt.
func SaltKey(day int32) string { return SaltKeys[((day%2)+2)%2] }

// Salts holds the salts the edge may use, as read from the entries of
// SaltKeys (in any order).
type Salts [len(SaltKeys)]Salt

// Day is t's UTC day number.
func Day(t time.Time) int32 { return int32(t.Unix() / 86400) }

// For returns day's salt, or false if the store has none for it.
func (s *Salts) For(day int32) (Salt, bool) {
	for _, x := range s {
		if x.Day == day && (x.k0 != 0 || x.k1 != 0) {
			return x, true
		}
	}
	return Salt{}, false
}

// VisitorID is the site's visitor id for (ip, userAgent) under salt:
// SipHash-2-4 keyed by the salt over site, a zero byte, the address's 16
// bytes (IPv4 mapped into IPv6) and the user agent.
func VisitorID(salt Salt, site string, ip netip.Addr, userAgent string) uint64 {
	var buf [512]byte
	id, _ := visitorID(buf[:0], salt, site, ip, userAgent)
	return id
}

// visitorID is VisitorID with b as the room for the hashed bytes, which
// it returns as it grew.
func visitorID(b []byte, salt Salt, site string, ip netip.Addr, userAgent string) (uint64, []byte) {
	b = append(b[:0], site...)
	b = append(b, 0)
	a := ip.As16()
	b = append(b, a[:]...)
	b = append(b, userAgent...)
	return siphash.Hash(salt.k0, salt.k1, b), b
}

// Hasher computes visitor ids in a buffer it keeps, so a caller that keeps
// one allocates nothing per id (a buffer local to VisitorID is a heap
// allocation under TinyGo). The zero value is ready; it is not safe for
// concurrent use.
type Hasher struct{ buf []byte }

// VisitWindow is the longest gap inside one visit (a visit: the same
// visitor with gaps under 30 minutes, as Google Analytics and Plausible
// count). It is also how long after midnight PrevVisitorID is given.
const VisitWindow = 30 * time.Minute

// IDs are the visitor ids of one hit at now: the day's, and within
// VisitWindow after midnight UTC also the previous day's, so the
// aggregator can join a visit that spans midnight. ok is false when the
// store has no salt for today (the hit then has no visitor id).
func IDs(s *Salts, now time.Time, site string, ip netip.Addr, userAgent string) (id, prev uint64, ok bool) {
	var buf [512]byte
	id, prev, ok, _ = ids(buf[:0], s, now, site, ip, userAgent)
	return id, prev, ok
}

// IDs is the package's IDs.
func (h *Hasher) IDs(s *Salts, now time.Time, site string, ip netip.Addr, userAgent string) (id, prev uint64, ok bool) {
	id, prev, ok, h.buf = ids(h.buf, s, now, site, ip, userAgent)
	return id, prev, ok
}

func ids(b []byte, s *Salts, now time.Time, site string, ip netip.Addr, userAgent string) (id, prev uint64, ok bool, _ []byte) {
	day := Day(now)
	today, ok := s.For(day)
	if !ok {
		return 0, 0, false, b
	}
	id, b = visitorID(b, today, site, ip, userAgent)
	if now.Sub(time.Unix(int64(day)*86400, 0)) < VisitWindow {
		if y, ok := s.For(day - 1); ok {
			prev, b = visitorID(b, y, site, ip, userAgent)
		}
	}
	return id, prev, true, b
}

// A salt's text form, as the secret store holds it: its UTC date, a colon
// and 32 lowercase hex digits, e.g. "2026-11-30:00112233445566778899aabbccddeeff".
const saltLen = len("2006-01-02:") + 32

// ParseSalt reads a salt's text form; a trailing newline is ignored.
func ParseSalt(s string) (Salt, error) {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if len(s) != saltLen || s[10] != ':' {
		return Salt{}, errBadSalt
	}
	t, err := time.Parse(time.DateOnly, s[:10])
	if err != nil {
		return Salt{}, errBadSalt
	}
	k := [2]uint64{}
	for i, c := range []byte(s[11:]) {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return Salt{}, errBadSalt
		}
		k[i/16] = k[i/16]<<4 | uint64(v)
	}
	if k[0] == 0 && k[1] == 0 {
		return Salt{}, errBadSalt
	}
	return Salt{Day: Day(t), k0: k[0], k1: k[1]}, nil
}

// String is the salt's text form (ParseSalt reads it back).
func (s Salt) String() string {
	return s.Date() + ":" + hex16(s.k0) + hex16(s.k1)
}

// Date is the UTC day s serves, "2006-01-02".
func (s Salt) Date() string {
	return time.Unix(int64(s.Day)*86400, 0).UTC().Format(time.DateOnly)
}

// Over reports whether s serves a day that is over at now: a day before
// yesterday, or yesterday once the first VisitWindow of today has passed
// (PrevVisitorID needs it until then). Rotation (edgepixel-salt, from
// cron) writes tomorrow's salt over it; while it is held, whoever reads it
// and that day's events can try every address against the day's visitor
// ids, which deleting it is meant to end.
func (s Salt) Over(now time.Time) bool {
	today := Day(now)
	sinceMidnight := now.Sub(now.UTC().Truncate(24 * time.Hour))
	return s.Day < today-1 || s.Day == today-1 && sinceMidnight >= VisitWindow
}

// RotationGrace is how long after a salt is Over the edge module and the
// Worker wait before they warn of it: they see the salts when they read
// them, maybe before the day's rotation has run (the README's cron lines
// run it at 01:00 UTC), where edgepixel-pop checks at its reloads, which
// those lines send after rotating.
const RotationGrace = 3 * time.Hour

// OverWarning is the warning of the salt in the store's entry key when it
// is Over at now, with how rotation runs on the platform (rotate, e.g.
// "edgepixel-salt, from cron"); "" for any other salt. The edge module and
// the Worker give it now less RotationGrace.
func OverWarning(key string, s Salt, now time.Time, rotate string) string {
	if s.Day == 0 || !s.Over(now) {
		return ""
	}
	return key + " holds the visitor salt of " + s.Date() + ", a day that is over: rotation has not run (" + rotate +
		" writes tomorrow's salt over it); while it is held, that day's visitor ids can be linked to addresses"
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// NewSalt returns a random salt for day from 16 bytes of random.
func NewSalt(day int32, random [16]byte) Salt {
	s := Salt{Day: day}
	for i := 0; i < 8; i++ {
		s.k0 = s.k0<<8 | uint64(random[i])
		s.k1 = s.k1<<8 | uint64(random[8+i])
	}
	if s.k0 == 0 && s.k1 == 0 {
		s.k1 = 1 // all-zero is "absent"; a 2^-128 event
	}
	return s
}

var errBadSalt = errors.New("privacy: a salt is YYYY-MM-DD:32 lowercase hex digits, not all zero")
