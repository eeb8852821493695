// Package pixel is the edge's logic, free of any CDN SDK: it turns a pixel
// request or an event POST into events, and batches events for delivery to
// the aggregator. The Fastly module (edge/cmd/edgepixel) and the Cloudflare
// Workers build wrap it with their platform's request types.
package pixel

import (
	"io"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
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

// Drop reasons, reported in the X-Edgepixel-Drop response header and in the
// edge's logs. They are stable strings: dashboards and alerts key on them.
const (
	DropMissingSite   = "missing_site"
	DropBadJSON       = "bad_json"
	DropTooLarge      = "too_large"
	DropTooManyEvents = "too_many_events"
	DropBadMethod     = "bad_method"
	DropBufferFull    = "buffer_full"
	DropReadError     = "read_error"
)

// MaxPostBody bounds an event POST. Browsers' sendBeacon allows 64 KiB.
const MaxPostBody = 64 << 10

// MaxPostEvents bounds the events in one POST.
const MaxPostEvents = 100

// Meta is what the platform knows about a request beyond its URL and body.
type Meta struct {
	Now       time.Time
	ClientIP  string // as the platform reports it, untruncated
	UserAgent string
	Referer   string // the Referer header: the page that embedded the pixel
	Country   string
	Pop       string
	Rand      io.Reader // for event ids
}

// base builds the fields every event of a request shares.
func base(m *Meta) (event.Event, error) {
	ms := m.Now.UnixMilli()
	id, err := event.NewID(ms, m.Rand)
	if err != nil {
		return event.Event{}, err
	}
	return event.Event{
		ID:        id,
		Time:      ms,
		UserAgent: event.Truncate(m.UserAgent, event.MaxUALen),
		ClientIP:  TruncateIP(m.ClientIP),
		Country:   event.Truncate(m.Country, event.MaxShortLen),
		Pop:       event.Truncate(m.Pop, event.MaxShortLen),
	}, nil
}

// finish fills the page-derived fields and clamps every field to its limit,
// so the aggregator never has to reject what the edge built. The site is
// checked here, after trimming, because a blank site is no site.
func finish(e *event.Event, site, name, page, ref string) (drop string) {
	e.Site = event.Truncate(strings.TrimSpace(site), event.MaxSiteLen)
	if e.Site == "" {
		return DropMissingSite
	}
	if name == "" {
		name = event.KindPageview
	}
	e.Name = event.Truncate(name, event.MaxNameLen)
	e.URL = event.Truncate(page, event.MaxURLLen)
	e.Referrer = event.Truncate(ref, event.MaxReferrerLen)
	// Parsing the URL is costly as Go-in-wasm; most pages carry no UTM tags.
	if !strings.Contains(page, "utm_") {
		return ""
	}
	if _, q, ok := strings.Cut(page, "?"); ok {
		q, _, _ = strings.Cut(q, "#")
		e.UTMSource = event.Truncate(queryValue(q, "utm_source"), event.MaxShortLen)
		e.UTMMedium = event.Truncate(queryValue(q, "utm_medium"), event.MaxShortLen)
		e.UTMCampaign = event.Truncate(queryValue(q, "utm_campaign"), event.MaxShortLen)
	}
	return ""
}

// FromQuery builds the event of a pixel hit. Query parameters: site
// (required), url (the page; defaults to the Referer header, which is the
// embedding page for a plain <img>), ref (the page's own referrer), e (event
// name, default pageview). It returns a drop reason instead of an error:
// the caller answers the GIF either way.
func FromQuery(rawQuery string, m *Meta) (event.Event, string) {
	site := queryValue(rawQuery, "site")
	if strings.TrimSpace(site) == "" { // before minting an id for nothing
		return event.Event{}, DropMissingSite
	}
	e, err := base(m)
	if err != nil {
		return event.Event{}, err.Error()
	}
	page := queryValue(rawQuery, "url")
	if page == "" {
		page = m.Referer
	}
	return e, finish(&e, site, queryValue(rawQuery, "e"), page, queryValue(rawQuery, "ref"))
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

// TruncateIP keeps the network part of an address: /24 for IPv4, /48 for
// IPv6. Unparseable input yields "" rather than passing it through.
func TruncateIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}
