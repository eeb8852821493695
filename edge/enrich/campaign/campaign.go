// Package campaign reads a landing page's campaign parameters: the five
// UTM parameters (Google Analytics' utm_source, utm_medium, utm_campaign,
// utm_term and utm_content) and which advertising click ids it carries.
//
// Links are read as the real world writes them (see
// edge/enrich/internal/query): keys in any case, '+' for a space,
// percent-escapes, "&amp;" separators from HTML email, repeated keys (the
// first non-empty value wins) and UTM parameters written after the '#'
// instead of the '?', as some mailers and single-page apps do (a value in
// the query wins over one in the fragment).
//
// Click ids are recorded by kind only: the value is a per-click tracking
// id that identifies a person's ad click to the ad network, and storing it
// would make every event joinable with that network's data. Privacy by
// default keeps the fact, not the id.
package campaign

import (
	"strings"

	"github.com/edgepixel/edgepixel/edge/enrich/internal/query"
	"github.com/edgepixel/edgepixel/shared/event"
)

// MaxLen bounds each UTM value in bytes, as the event's UTM columns do.
const MaxLen = event.MaxShortLen

// Result is what a URL's campaign parameters say. Strings are valid UTF-8
// of at most MaxLen bytes without control characters, trimmed of spaces;
// "" when absent.
type Result struct {
	Source, Medium, Campaign, Term, Content string
	// ClickIDs is the set of click-id kinds present.
	ClickIDs ClickIDs
}

// ClickIDs is a set of click-id kinds, one bit each. The bits are stable:
// they are stored as a number, and a kind is only ever appended.
type ClickIDs uint32

// The click-id kinds. The parameter each is read from is in clickIDNames.
const (
	GCLID       ClickIDs = 1 << iota // Google Ads
	GBRAID                           // Google Ads, iOS app-to-web
	WBRAID                           // Google Ads, iOS web-to-app
	DCLID                            // Google Display & Video 360 / Campaign Manager
	FBCLID                           // Meta: added to every outbound link, ads or not
	MSCLKID                          // Microsoft Advertising
	TTCLID                           // TikTok
	LIFATID                          // LinkedIn (li_fat_id)
	TWCLID                           // X / Twitter ads
	YCLID                            // Yandex Direct
	EPIK                             // Pinterest
	RDTCID                           // Reddit (rdt_cid)
	SCCID                            // Snapchat (ScCid)
	IRCLICKID                        // Impact affiliate
	SRSLTID                          // Google Merchant Center: organic shopping results
	numClickIDs = iota
)

// clickIDNames holds each kind's parameter name, lower case, in bit order.
var clickIDNames = [numClickIDs]string{
	"gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid",
	"li_fat_id", "twclid", "yclid", "epik", "rdt_cid", "sccid", "irclickid",
	"srsltid",
}

// notPaid are the kinds that do not mean the visit came from an ad:
// Meta adds fbclid to every link leaving Facebook or Instagram, and
// srsltid marks free product listings.
const notPaid = FBCLID | SRSLTID

// Paid reports whether c holds a kind only an ad click carries.
func (c ClickIDs) Paid() bool { return c&^notPaid != 0 }

// Names appends the parameter names of the kinds in c, comma-separated,
// in bit order, to dst.
func (c ClickIDs) Names(dst []byte) []byte {
	first := true
	for i, n := range clickIDNames {
		if c&(1<<i) != 0 {
			if !first {
				dst = append(dst, ',')
			}
			dst = append(dst, n...)
			first = false
		}
	}
	return dst
}

// String returns Names as a string ("gclid,fbclid"); "" for none. One
// kind, the usual case, costs no allocation.
func (c ClickIDs) String() string {
	if c != 0 && c&(c-1) == 0 {
		for i, n := range clickIDNames {
			if c == 1<<i {
				return n
			}
		}
	}
	return string(c.Names(nil))
}

// ClickIDKind returns the kind whose parameter is key (a raw query key,
// in any case, percent-escapes allowed), or 0.
func ClickIDKind(key string) ClickIDs {
	for i, n := range clickIDNames {
		if query.EqualKey(key, n) {
			return 1 << i
		}
	}
	return 0
}

// Parse reads the campaign parameters of rawURL: an absolute or relative
// URL, or a bare query string ("utm_source=x&gclid=y"). It never fails;
// input it cannot read yields an empty Result. Values without escapes are
// returned without allocating.
func Parse(rawURL string) Result {
	q, frag := query.Split(rawURL)
	r := read(Result{}, q)
	if strings.Contains(frag, "utm_") || strings.Contains(frag, "UTM_") || strings.Contains(frag, "Utm_") {
		// "#utm_source=x" or "#/route?utm_source=x".
		if i := strings.IndexByte(frag, '?'); i >= 0 {
			frag = frag[i+1:]
		}
		r = read(r, frag)
	}
	return r
}

// read adds q's parameters to r. (Values in, values out: no pointer to a
// caller's Result, which TinyGo would move to the heap.)
func read(r Result, q string) Result {
	for q != "" {
		var k, v string
		k, v, q = query.Next(q)
		if len(k) < 4 {
			continue
		}
		if c := k[0] | 0x20; c == 'u' || (c == '%' && strings.HasPrefix(strings.ToLower(query.Unescape(k)), "utm_")) {
			switch utmIndex(k) {
			case 1:
				if r.Source == "" {
					r.Source = clean(v)
				}
			case 2:
				if r.Medium == "" {
					r.Medium = clean(v)
				}
			case 3:
				if r.Campaign == "" {
					r.Campaign = clean(v)
				}
			case 4:
				if r.Term == "" {
					r.Term = clean(v)
				}
			case 5:
				if r.Content == "" {
					r.Content = clean(v)
				}
			}
			continue
		}
		r.ClickIDs |= ClickIDKind(k)
	}
	return r
}

// utmIndex returns which UTM parameter a raw key names, 1 to 5 in the
// order of Result's fields, or 0.
func utmIndex(k string) int {
	for i, name := range [...]string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"} {
		if query.EqualKey(k, name) {
			return i + 1
		}
	}
	return 0
}

// clean decodes a raw value and makes it storable.
func clean(v string) string { return Value(query.Unescape(v)) }

// Value makes a UTM value that is already decoded (a query parameter
// read by another parser, such as the pixel's own utm_source) storable
// as Parse stores one: trimmed of spaces, cut to MaxLen, no control
// characters.
func Value(v string) string {
	v = strings.TrimSpace(v)
	return strings.TrimSpace(event.Clean(v, MaxLen))
}

// HasUTM reports whether r holds any of the five UTM values.
func (r Result) HasUTM() bool {
	return r.Source != "" || r.Medium != "" || r.Campaign != "" || r.Term != "" || r.Content != ""
}

// IsTracking reports whether a query key (raw, in any case) is a
// tracking parameter that does not change which page is shown: the UTM
// and Matomo campaign parameters, click ids, and the per-recipient ids of
// mailers and marketing tools. Page URLs are stored without them.
func IsTracking(key string) bool {
	k := key
	if strings.IndexByte(k, '%') >= 0 {
		k = query.Unescape(k)
	}
	for _, p := range trackingPrefixes {
		if len(k) > len(p) && query.EqualFoldLower(k[:len(p)], p) {
			return true
		}
	}
	// Compared without converting bytes to strings, which TinyGo does not
	// optimise away: each would allocate.
	for _, t := range trackingKeys {
		if query.EqualFoldLower(k, t) {
			return true
		}
	}
	for _, t := range clickIDNames {
		if query.EqualFoldLower(k, t) {
			return true
		}
	}
	return false
}

// trackingPrefixes: every key beginning so is a tracking parameter.
var trackingPrefixes = [...]string{
	"utm_", // Google Analytics campaign (and utm_id, utm_source_platform, ...)
	"mtm_", // Matomo campaign
	"pk_",  // Piwik/Matomo campaign
}

// trackingKeys are single tracking parameters, lower case.
var trackingKeys = [...]string{
	"gclsrc", "gad_source", "gad_campaignid", // Google Ads
	"_ga", "_gl", // Google Analytics cross-domain linker
	"mc_cid", "mc_eid", // Mailchimp campaign and recipient
	"_hsenc", "_hsmi", "__hstc", "__hssc", "__hsfp", "hsctatracking", // HubSpot
	"_kx",                  // Klaviyo recipient
	"vero_id", "vero_conv", // Vero
	"oly_enc_id", "oly_anon_id", // Omeda
	"mkt_tok",                             // Marketo
	"igshid",                              // Instagram share
	"_openstat",                           // Yandex.Metrica
	"wickedid",                            // Wicked Reports
	"ml_subscriber", "ml_subscriber_hash", // MailerLite
	"s_cid",              // Adobe Analytics campaign
	"ef_id",              // Adobe Advertising
	"cmpid",              // generic campaign id
	"ref_src", "ref_url", // X / Twitter embeds
}
