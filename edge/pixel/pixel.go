// Package pixel is the edge's logic, free of any CDN SDK: it turns a pixel
// request or an event POST into events, and batches events for delivery to
// the aggregator. The Fastly module (edge/cmd/edgepixel) and the Cloudflare
// Workers build wrap it with their platform's request types.
package pixel

import (
	"io"
	"net/url"
	"strings"
	"time"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/urlescape"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// GIF is the smallest transparent 1x1 GIF (43 bytes). The pixel always
// answers with it, even when the hit is not counted, so a page never shows a
// broken image because of our bookkeeping.
var GIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', // header
	1, 0, 1, 0, // 1x1
	0x80, 0, 0, // global colour table of 2 entries, background 0, no aspect
	0, 0, 0, 0xff, 0xff, 0xff, // black, white
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control: colour 0 transparent
	0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // image descriptor
	2, 2, 0x44, 1, 0, // LZW data
	0x3b, // trailer
}

// MaxPostBody bounds an event POST. Browsers' sendBeacon allows 64 KiB.
const MaxPostBody = 64 << 10

// MaxPostEvents bounds the events in one POST.
const MaxPostEvents = 100

// Meta is what the platform knows about a request beyond its URL and body.
// Strings are "" when unknown or absent. A platform may point them into
// buffers it reuses: nothing here is kept past Serve.
type Meta struct {
	Now       time.Time
	ClientIP  string // as the platform reports it, untruncated
	UserAgent string
	Referer   string // the Referer header: the page that embedded the pixel
	Pop       string
	Rand      io.Reader // for event ids

	// Geolocation of the client address (Fastly's geolocation, a
	// Worker's request.cf): ISO 3166-1 alpha-2 country, ISO 3166-2
	// subdivision code without the country part ("CA"), city name, and
	// autonomous system number (0: unknown).
	Country, Region, City string
	ASN                   uint32

	// Request headers the enrichment reads: consent signals (Sec-GPC,
	// DNT), prefetch and prerender hints (Sec-Purpose, Purpose,
	// X-Purpose, X-Moz) and the Sec-CH-UA client hint.
	SecGPC, DNT                         string
	SecPurpose, Purpose, XPurpose, XMoz string
	SecCHUA                             string

	// BotScore is the platform's own bot verdict on edge/enrich/bot's
	// scale (0 person ... 100 program), 0 when it has none; BotReason
	// names it ("" stores BotReasonPlatform). The event keeps the
	// higher of it and the edge's score.
	BotScore  uint8
	BotReason string
}

// base builds the fields every event of a request shares, all but the id
// (see mint) and the site (see finish). No address: enrich stores a
// truncated one for sites that opt in.
func base(m *Meta) event.Event {
	return event.Event{
		Time:      m.Now.UnixMilli(),
		UserAgent: event.Clean(m.UserAgent, event.MaxUALen),
		Country:   event.Clean(m.Country, event.MaxShortLen),
		Pop:       event.Clean(m.Pop, event.MaxShortLen),
	}
}

// mint gives e a fresh id of its time, reading its random bits into sc's
// room when there is one (nil: a buffer of its own).
func mint(e *event.Event, m *Meta, sc *scratch) error {
	if sc == nil {
		id, err := event.NewID(e.Time, m.Rand)
		e.ID = id
		return err
	}
	if _, err := io.ReadFull(m.Rand, sc.random[:]); err != nil {
		return err
	}
	e.ID = event.IDFrom(e.Time, &sc.random)
	return nil
}

// finish fills the page-derived fields and cleans every field to its
// limit by event.Clean, so the aggregator never has to reject what the edge
// built, then the enrichment (enrich). e.Site is set and checked. It
// returns enrich's note reason ("" for none).
func finish(e *event.Event, name, page, ref string, r *requestInfo, m *Meta, st SiteSettings, c *Config, p *hitParams) (note string) {
	// As for the site (event.CleanSite): "   " names no event.
	if name = strings.TrimSpace(name); name == "" {
		name = event.KindPageview
		if p.open {
			name = event.KindOpen // a mailbox's fetch, not a view of a page
		}
	}
	e.Name = event.Clean(name, event.MaxNameLen)
	e.URL = event.Clean(page, event.MaxURLLen)
	e.Referrer = event.Clean(ref, event.MaxReferrerLen)
	return enrich(e, r, m, st, c, p)
}

// admit decides whether a hit for site (cleaned, not empty) is counted at
// all: a configured site list, then the rate limits. It returns the
// site's settings, or a drop reason.
func admit(site string, m *Meta, c *Config) (SiteSettings, string) {
	if !c.Sites.Known(site) {
		return SiteSettings{}, wire.DropUnknownSite
	}
	if c.RateLimited != nil && c.RateLimited(m.ClientIP, site, 1) {
		return SiteSettings{}, wire.DropRateLimited
	}
	return c.Sites.Settings(site), ""
}

// FromQuery builds the event of a pixel hit under c (nil: the defaults).
// Query parameters: site (required), url (the page; defaults to the
// Referer header, which is the embedding page for a plain <img>, but not
// for an open: see fromQuery), ref (the page's own referrer; for an open
// without it, the Referer's origin), e (event name, default pageview, or
// open for an open), t
// (the client's clock, unix milliseconds), sw (screen width), utm_source,
// utm_medium, utm_campaign, utm_term and utm_content (the campaign, when
// url= carries none: see enrich), consent (0 or 1), us_privacy (the IAB
// CCPA string), open (email or feed: the pixel is in an email or a feed,
// mail_open says who fetched it; another value is refused, see openFlag),
// and a signed pixel's exp and sig. It returns a drop reason instead of an
// error: the caller answers the GIF either way.
func FromQuery(rawQuery string, m *Meta, c *Config) (event.Event, string) {
	var sc scratch
	_, drop := fromQuery(rawQuery, m, c, &sc)
	return sc.events[0], drop
}

// fromQuery is FromQuery working in sc: it builds the event in
// sc.events[0] (zero when it returns a drop reason), whose strings may
// point into sc, and returns its note reason ("" for none). (The event is
// not returned: under TinyGo a local event whose address reaches the
// enrichment is a heap allocation.)
func fromQuery(rawQuery string, m *Meta, c *Config, sc *scratch) (note, drop string) {
	if c == nil {
		c = &defaultConfig
	}
	e := &sc.events[0]
	*e = event.Event{}
	var q pixelQuery
	q.parse(rawQuery, &sc.unescaped)
	site := event.CleanSite(q.value(qSite))
	if site == "" { // before minting an id for nothing
		return "", wire.DropMissingSite
	}
	st, drop := admit(site, m, c)
	if drop != "" {
		return "", drop
	}
	p := hitParams{clientTime: q.value(qClientTime), screen: q.value(qScreen),
		consent: q.signals.Consent, usPrivacy: q.signals.USPrivacy, ids: &sc.ids,
		utm: [5]string(q.values[qUTMSource : qUTMContent+1])}
	if p.signature, drop, _ = signature(rawQuery, site, st, c, m.Now, m.ClientIP); drop != "" {
		return "", drop
	}
	var ok bool
	if p.open, ok = openFlag(q.value(qOpen)); !ok {
		return "", wire.DropBadOpen
	}
	// A pixel's page is its url=, else the Referer (an open's is none:
	// see below), checked as it will be stored.
	page, ref := q.value(qPage), q.value(qRef)
	if page == "" && !p.open {
		page = m.Referer
	}
	if urlescape.NoPage(page) || urlescape.NoPage(ref) {
		return "", wire.DropBadURL
	}
	*e = base(m)
	if mint(e, m, sc) != nil {
		*e = event.Event{}
		return "", wire.DropInternal
	}
	e.Site = site
	if p.open && ref == "" {
		// An open's Referer is the reader's mailbox or feed reader
		// (https://outlook.live.com/mail/0/inbox/id/...), never the
		// sender's page: its path names a person's message, so it is
		// neither the page nor, but for its origin, the referrer. The
		// origin keeps what it tells (channel email, source "Outlook"
		// from referrer's webmail list) and no more.
		ref = pageurl.Origin(m.Referer)
	}
	r := readRequest(m, p.open)
	return finish(e, q.value(qName), page, ref, &r, m, st, c, &p), ""
}

// openFlag reads a pixel's open parameter: whether the hit is an open,
// and false for ok when the value is none the edge knows. The values are
// "email" and "feed" (in any ASCII case); "" (absent or empty) is not an
// open. Any other value ("0", "1", "yes") is refused (wire.DropBadOpen) rather
// than guessed at: read as an open it counted open=0 as one (found by a
// new-user tester), and read as no open it would store an email's hit as
// a page view of the reader's mailbox. Refused, the GIF's
// X-Edgepixel-Drop header says so at the first test of the pixel, and the
// drop is counted, as for other bad parameters (bad_event_id).
func openFlag(v string) (open, ok bool) {
	switch {
	case v == "":
		return false, true
	case strings.EqualFold(v, "email"), strings.EqualFold(v, "feed"):
		return true, true
	}
	return false, false
}

// scratch is one hit's working memory, kept in its Hit so that a platform
// reusing one Hit allocates none of it per hit: under TinyGo a local
// whose address reaches an interface or is kept by a callee is a heap
// allocation. What it holds is valid until the next hit.
type scratch struct {
	unescaped []byte // the pixel query's unescaped values (pixelQuery)
	random    [10]byte
	ids       privacy.Hasher
	events    [1]event.Event
	notes     [1]string
}

// The pixel's query parameters (FromQuery), in pixelQuery.values.
const (
	qSite = iota
	qPage
	qRef
	qName
	qClientTime
	qScreen
	qConsent
	qUSPrivacy
	qOpen
	qUTMSource // qUTMSource to qUTMContent in campaign.Result's order
	qUTMMedium
	qUTMCampaign
	qUTMTerm
	qUTMContent
	numPixelParams
)

var pixelParams = [numPixelParams]string{qSite: "site", qPage: "url", qRef: "ref", qName: "e",
	qClientTime: "t", qScreen: "sw", qConsent: "consent", qUSPrivacy: "us_privacy", qOpen: "open",
	qUTMSource: "utm_source", qUTMMedium: "utm_medium", qUTMCampaign: "utm_campaign",
	qUTMTerm: "utm_term", qUTMContent: "utm_content"}

// IsParam reports whether name is a query parameter a pixel hit is read
// by (FromQuery's, and a signed pixel's exp, sig and cip): edgepixel-sign
// warns of a URL whose page parameters became the pixel's.
func IsParam(name string) bool {
	switch name {
	case pixelsign.ParamSig, pixelsign.ParamExpiry, pixelsign.ParamClient:
		return true
	}
	return paramIndex(name) >= 0
}

// pixelQuery is a pixel's query read in one pass: each parameter's value
// as queryValue gives it (the first well-formed pair's), unescaped into a
// buffer the caller reuses rather than one new string per escaped value,
// and the consent signals of all pairs (signals).
type pixelQuery struct {
	values [numPixelParams]string
	set    uint16 // bit i: values[i] found
	// signals are consent and us_privacy read from every pair that
	// carries them, not the first alone: an opt-out wins over a consent
	// given in another pair (privacy.Signals.AddConsent).
	signals privacy.Signals
}

// set has a bit for each parameter: more than 16 overflows this constant.
const _ = uint16(1<<numPixelParams - 1)

func (q *pixelQuery) value(i int) string { return q.values[i] }

// parse reads rawQuery, unescaping into *room (reset, and grown to hold
// all of rawQuery so that no value moves while others point into it).
func (q *pixelQuery) parse(rawQuery string, room *[]byte) {
	if cap(*room) < len(rawQuery) {
		*room = make([]byte, 0, len(rawQuery))
	}
	buf := (*room)[:0]
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			q.misread(pair)
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if hasEscapes(k) {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
			if strings.ContainsAny(k, "=;&") {
				// A pair escaped whole (consent%3D0), or several.
				q.misread(k)
				continue
			}
		}
		i := paramIndex(k)
		repeated := i >= 0 && q.set&(1<<i) != 0
		if i < 0 || repeated && i != qConsent && i != qUSPrivacy {
			continue
		}
		if hasEscapes(v) {
			start := len(buf)
			var ok bool
			if buf, ok = appendUnescaped(buf, v); !ok {
				buf = buf[:start]
				q.addUnreadable(i)
				continue
			}
			v = unsafe.String(unsafe.SliceData(buf[start:]), len(buf)-start)
		}
		switch i {
		case qConsent:
			q.signals.AddConsent(v)
		case qUSPrivacy:
			q.signals.AddUSPrivacy(v)
		}
		if !repeated {
			q.values[i] = v
			q.set |= 1 << i
		}
	}
	*room = buf
}

// misread takes s, a pair the reader skips (a ';' in it, or a key that
// unescapes to more than a name), as an opt-out of each consent signal
// one of its ';'- or '&'-separated parts names: a page's consent=0;,
// consent=0 after an HTML-escaped &amp;, or consent%3D0.
func (q *pixelQuery) misread(s string) {
	for s != "" {
		var part string
		if i := strings.IndexAny(s, ";&"); i >= 0 {
			part, s = s[:i], s[i+1:]
		} else {
			part, s = s, ""
		}
		k, _, _ := strings.Cut(part, "=")
		if hasEscapes(k) {
			u, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			if k = u; strings.ContainsAny(k, "=;&") {
				q.misread(k)
				continue
			}
		}
		q.addUnreadable(paramIndex(k))
	}
}

// addUnreadable records parameter i, found but not read, as an opt-out
// if it is a consent signal (privacy.SignalUnreadable).
func (q *pixelQuery) addUnreadable(i int) {
	switch i {
	case qConsent:
		q.signals.AddConsent(privacy.SignalUnreadable)
	case qUSPrivacy:
		q.signals.AddUSPrivacy(privacy.SignalUnreadable)
	}
}

func paramIndex(k string) int {
	for i, p := range pixelParams {
		if k == p {
			return i
		}
	}
	// The consent signals in any ASCII case too, as a POST's JSON keys
	// are read (encoding/json): the pixel alone ignored a tester's
	// Consent=0, an opt-out that must win.
	switch {
	case strings.EqualFold(k, pixelParams[qConsent]):
		return qConsent
	case strings.EqualFold(k, pixelParams[qUSPrivacy]):
		return qUSPrivacy
	}
	return -1
}

func hasEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || s[i] == '+' {
			return true
		}
	}
	return false
}

// appendUnescaped appends s unescaped as url.QueryUnescape does ('+' is a
// space; '%' must start two hex digits), or reports false where that
// fails.
func appendUnescaped(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, false
			}
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// queryValue is url.ParseQuery(rawQuery).Get(key) without building the
// map: a hit reads four keys, and as Go-in-wasm the full parse cost half
// of FromQuery. Like ParseQuery it skips pairs with a semicolon or a bad
// escape, so a malformed pair never hides a good one.
func queryValue(rawQuery, key string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		if !strings.ContainsAny(v, "%+") {
			return v
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}
