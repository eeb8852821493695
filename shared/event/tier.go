package event

import (
	"net/netip"
	"strings"

	"github.com/edgepixel/edgepixel/shared/urlescape"
)

// HasVisitor reports whether e may carry visitor ids: the edge gives
// them to no other event, and ApplyPrivacy clears them from any other.
// The aggregate tier keeps none, and an email's or feed's open (MailOpen
// set) is a mailbox's or feed reader's fetch, not a visit to the site:
// with an id it joined the site's visitors and visits (a tester's bounce
// rate fell with each open), and a proxy's one address stands for many
// readers anyway. Opens are counted as events, and no reader is told
// apart.
func (e *Event) HasVisitor() bool { return e.Tier != TierAggregate && e.MailOpen == "" }

// ApplyPrivacy holds e to what its consent tier keeps, whoever built it:
// the edge calls it on every event it builds, the aggregator on every
// event it ingests (the edge's batches, NDJSON lines), so an event that
// arrives with TierAggregate is stored cleared whatever sent it.
//
// An event whose ConsentReason is a refusal (OptOut) is put in
// TierAggregate first, whatever its Tier: the edge never gives one
// otherwise, and an NDJSON line that says "dnt" beside "full", or beside
// no tier, contradicts itself, and a refusal must not be stored in full
// (a tester's import was).
//
// In every tier, a client address is cut to its network (TruncateIP): the
// edge stores one only so cut, for a site that opts in (the ip setting),
// and keeps none otherwise; an address that does not parse goes. An
// email's or a feed's open (MailOpen set) has no visitor ids.
//
// TierAggregate ("counted, with no visitor id and no free-form fields")
// keeps the counts' dimensions: id, time, site, the event's name (the
// site's code names it, and it is what a custom event is counted by),
// the page without its query or fragment (url and its path), the
// referrer's origin (referrerOrigin), host, channel, source and spam
// mark, the campaign's source, medium and name and the click ids' kinds,
// the browser, operating system and device classes without their
// versions, country and region, the POP, method, bot score and reason,
// tier and its reason, signature and mail_open. It clears what tells a
// person apart or may hold what a page or a person wrote: visitor ids,
// user agent, client address, props, the referrer's path, query and
// fragment, the page's query and fragment, utm_term and utm_content,
// browser and OS versions, city, ASN (a network, with a city about an
// address), screen width and client time (and its reason). Clearing is
// not dropping: the event is counted as before.
//
// It allocates nothing (the edge's hit path allocates nothing) but for an
// address that must be cut.
func (e *Event) ApplyPrivacy() {
	if e.Tier != TierAggregate && OptOut(e.ConsentReason) {
		e.Tier = TierAggregate
	}
	if e.ClientIP != "" {
		e.ClientIP = TruncateIP(e.ClientIP)
	}
	if !e.HasVisitor() {
		e.VisitorID, e.PrevVisitorID = 0, 0
	}
	if e.Tier != TierAggregate {
		return
	}
	e.UserAgent, e.ClientIP, e.Props = "", "", ""
	e.Referrer = referrerOrigin(e.Referrer)
	e.UTMTerm, e.UTMContent = "", ""
	e.BrowserVersion, e.OSVersion = "", ""
	e.City, e.ASN = "", 0
	e.ScreenWidth, e.ClientTime, e.ClientTimeReason = 0, 0, ""
	e.URL, e.Path = WithoutQuery(e.URL), WithoutQuery(e.Path)
}

// referrerOrigin is the scheme and authority of a referrer with a '/'
// after them ("https://www.google.com/"), its user information dropped;
// "" for a value with no "scheme://" (or "//") and authority. It is what a
// browser's "origin" referrer policy sends (W3C Referrer Policy, section
// 3): where a visit came from, without the path that may name a person.
// The aggregate tier keeps it so that the sources table, which reads the
// referrer's host from it, counts the tier's hits under their source (a
// tester's sources table counted them all under none), as it keeps
// referrer_host. A stored referrer, normalised, always has its path's
// '/', so the origin is a piece of it.
func referrerOrigin(u string) string {
	var head, rest string
	switch i := urlescape.SchemeEnd(u); {
	case i >= 0 && strings.HasPrefix(u[i:], "://"):
		head, rest = u[:i+3], u[i+3:]
	case strings.HasPrefix(u, "//"):
		// Scheme-relative, as a hand-built ref= may be and is stored
		// (its host is referrer_host: a re-tester's).
		head, rest = "//", u[2:]
	default:
		return ""
	}
	end := strings.IndexAny(rest, "/?#\\")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		return referrerOrigin(head + auth[at+1:] + "/")
	}
	switch {
	case auth == "":
		return ""
	case end < len(rest) && rest[end] == '/':
		return u[:len(head)+end+1]
	}
	return head + auth + "/"
}

// WithoutQuery is a URL (or a path) up to its query or fragment: what the
// aggregate tier keeps of a page, and what a site that keeps no queries
// stores of a page and a referrer (edge/pixel's query=drop). A stored
// page's path spells '?' and '#' escaped (shared/urlescape), so the first
// of either starts the query or the fragment (a URL cut to its limit
// right after its '?' loses the '?' too). It does not allocate.
func WithoutQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// TruncateIP keeps the network part of an address: /24 for IPv4, /48 for
// IPv6. Unparseable input yields "" rather than passing it through. An
// address already so cut, in its usual spelling, is returned as it is
// (no new string).
func TruncateIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	u := a.Unmap()
	bits := 48
	if u.Is4() {
		bits = 24
	}
	p, err := u.Prefix(bits)
	if err != nil {
		return ""
	}
	var b [48]byte
	if c := p.Addr().AppendTo(b[:0]); string(c) == s {
		return s // already cut, as the edge sends it
	}
	return p.Addr().String()
}
