package pixel

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
)

// Per-site settings, read from the platform's configuration (Fastly's
// config store "edgepixel", a Worker's vars) under these keys:
//
//	sites          the sites this edge counts, separated by spaces,
//	               commas or newlines. Unset: every site. Set: a hit for
//	               another site is answered (the GIF, a 204) but not
//	               counted (unknown_site), unless unknown_sites=accept.
//	unknown_sites  "accept" or "drop": what happens to a site not in
//	               sites. Default drop when sites is set.
//	site_default   the settings of a site without a site.SITE entry.
//	site.SITE      one site's settings (SITE as the site parameter sends
//	               it), which replace site_default's whole.
//
// A settings value is NAME=VALUE pairs separated by spaces, commas or
// semicolons:
//
//	tier=full|aggregate    the consent tier of a hit without a signal
//	                       (edge/privacy): aggregate counts without
//	                       visitor ids or free-form fields unless the page
//	                       says consent=1. Default full.
//	sign=off|mark|reject   signed pixels (shared/pixelsign): off does not
//	                       check; mark keeps every hit and stores
//	                       verified, unverified or unsigned; reject counts
//	                       only verified hits (a pixel gets the GIF, a
//	                       POST 403, and unsigned, bad_pixel_signature or
//	                       expired_pixel). An event POST is signed by its
//	                       URL's query (postSignatures). Default off.
//	ip=off|prefix          whether the visitor's address leaves the edge,
//	                       truncated to /24 (IPv4) or /48 (IPv6), in
//	                       client_ip. Default off: no address is stored.
//	query=keep|drop        whether the page's and the referrer's queries
//	                       are stored (after the campaign and the source
//	                       are read from them), in every tier; the
//	                       aggregate tier drops them anyway. Default keep:
//	                       a site whose addresses carry a search, an
//	                       email or a token in their queries says drop.
//
// CORS origins per site are cors_origins (Origins).
const (
	ConfigSites        = "sites"
	ConfigUnknownSites = "unknown_sites"
	ConfigSiteDefault  = "site_default"
	ConfigSitePrefix   = "site."
)

// SignPolicy is what a site does with pixel signatures.
type SignPolicy uint8

const (
	SignOff    SignPolicy = iota // not checked
	SignMark                     // checked, stored in the signature column
	SignReject                   // only verified pixel hits are counted
)

// SiteSettings are one site's settings. The zero value is the default.
type SiteSettings struct {
	Tier      privacy.Tier // the default consent tier
	Sign      SignPolicy
	IPPrefix  bool // store the truncated address in client_ip
	DropQuery bool // store pages and referrers without their queries
}

// ParseSiteSettings reads a settings value (see ConfigSitePrefix). A bad
// pair is skipped and reported in the error; the others apply.
func ParseSiteSettings(s string) (SiteSettings, error) {
	var st SiteSettings
	var bad []string
	for _, pair := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '\t' || r == '\n' }) {
		name, value, _ := strings.Cut(pair, "=")
		switch name = strings.ToLower(name); name + "=" + strings.ToLower(value) {
		case "tier=full":
			st.Tier = privacy.TierFull
		case "tier=aggregate":
			st.Tier = privacy.TierAggregate
		case "sign=off":
			st.Sign = SignOff
		case "sign=mark":
			st.Sign = SignMark
		case "sign=reject":
			st.Sign = SignReject
		case "ip=off":
			st.IPPrefix = false
		case "ip=prefix":
			st.IPPrefix = true
		case "query=keep":
			st.DropQuery = false
		case "query=drop":
			st.DropQuery = true
		default:
			bad = append(bad, strconv.Quote(pair))
		}
	}
	if len(bad) == 0 {
		return st, nil
	}
	// One line for all the bad pairs: it is printed on stderr after the
	// entry's name, and a joined error's second line would lack it.
	return st, fmt.Errorf("%s not one of tier=full|aggregate, sign=off|mark|reject, ip=off|prefix, query=keep|drop (skipped; the others apply)", strings.Join(bad, ", "))
}

// maxCachedSites bounds the per-site settings an instance keeps: hits for
// random site names must not grow its memory. Beyond it, a site's
// settings are looked up on every hit.
const maxCachedSites = 1000

// Sites are the per-site settings of an instance. Lookups go to the
// platform's configuration once per site and are then cached. A nil
// *Sites counts every site with the default settings.
type Sites struct {
	get           func(key string) string
	list          map[string]bool // nil: every site is known
	acceptUnknown bool
	def           SiteSettings
	cache         map[string]SiteSettings
	// lastSite and last are the site looked up last (a copy) and its
	// settings: most hits in a row are one site's, and TinyGo allocates
	// at every lookup of a map with string keys.
	lastSite string
	last     SiteSettings
	lastOK   bool
	// Errors receives a malformed site.SITE value the first time it is
	// read (the rest of it applies); nil discards.
	Errors func(err error)
}

// NewSites reads the keys above through get ("" for an absent key). A
// malformed value is reported in the error, joined per problem; what
// parses applies.
func NewSites(get func(key string) string) (*Sites, error) {
	s := &Sites{get: get, cache: map[string]SiteSettings{}}
	var errs []error
	if v := strings.TrimSpace(get(ConfigSites)); v != "" {
		s.list = map[string]bool{}
		for _, site := range SiteList(v) {
			s.list[site] = true
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(get(ConfigUnknownSites))); v {
	case "accept":
		s.acceptUnknown = true
	case "", "drop":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not accept or drop", ConfigUnknownSites, v))
	}
	var err error
	if s.def, err = ParseSiteSettings(get(ConfigSiteDefault)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", ConfigSiteDefault, err))
	}
	return s, errors.Join(errs...)
}

// SiteList returns the sites a ConfigSites value names, as hits name
// them.
func SiteList(v string) []string {
	var sites []string
	for _, site := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' }) {
		sites = append(sites, event.CleanSite(site))
	}
	return sites
}

// Known reports whether hits for site are counted.
func (s *Sites) Known(site string) bool {
	return s == nil || s.list == nil || s.acceptUnknown || s.list[site]
}

// Settings returns site's settings.
func (s *Sites) Settings(site string) SiteSettings {
	if s == nil {
		return SiteSettings{}
	}
	if s.lastOK && s.lastSite == site {
		return s.last
	}
	if st, ok := s.cache[site]; ok {
		s.remember(site, st)
		return st
	}
	st := s.def
	if v := s.get(ConfigSitePrefix + site); v != "" {
		var err error
		if st, err = ParseSiteSettings(v); err != nil && s.Errors != nil {
			s.Errors(fmt.Errorf("%s%s: %w", ConfigSitePrefix, event.Clean(site, event.MaxSiteLen), err))
		}
	}
	if len(s.cache) < maxCachedSites {
		key := string(append([]byte(nil), site...)) // site may point into a request's buffers
		s.cache[key] = st
		s.lastSite, s.last, s.lastOK = key, st, true
	}
	return st
}

// remember makes site, found in the cache, the last looked up.
func (s *Sites) remember(site string, st SiteSettings) {
	s.lastSite, s.last, s.lastOK = string(append([]byte(nil), site...)), st, true
}

// Signing is a site whose settings check pixel signatures: the site, the
// key its settings come from (ConfigSitePrefix+Site, or ConfigSiteDefault)
// and its policy.
type Signing struct {
	Site, Entry string
	Sign        SignPolicy
}

// SigningSites returns, sorted by site, the sites whose settings, as
// Sites.Settings reads them through get, check pixel signatures (SignMark
// or SignReject), among those a host can name before any hit: the sites
// ConfigSites lists and those a key of keys (a config store's keys, a
// Worker's vars) names as ConfigSitePrefix+SITE. A host that holds the
// keys checks that each such site has its key (edge/storekeys.PixelKeys):
// the POP at start and reload, the Worker at its start.
func SigningSites(keys []string, get func(key string) string) []Signing {
	s, _ := NewSites(get) // a malformed value is reported with the rest of the configuration
	sites := SiteList(get(ConfigSites))
	for _, k := range keys {
		if site, ok := strings.CutPrefix(k, ConfigSitePrefix); ok && site != "" {
			sites = append(sites, site)
		}
	}
	slices.Sort(sites)
	var out []Signing
	for _, site := range slices.Compact(sites) {
		st := s.Settings(site)
		if st.Sign == SignOff {
			continue
		}
		entry := ConfigSitePrefix + site
		if get(entry) == "" {
			entry = ConfigSiteDefault
		}
		out = append(out, Signing{site, entry, st.Sign})
	}
	return out
}
