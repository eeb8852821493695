package pixel

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Origins says which browser origins may send events for which site.
//
// Browsers send navigator.sendBeacon and fetch(..., {credentials:
// "include"}) with credentials, and a credentialed cross-origin request is
// only let through if the answer names its origin in
// Access-Control-Allow-Origin (never "*") with
// Access-Control-Allow-Credentials: true (the Fetch standard's CORS
// check). A beacon with a JSON Blob is not a "simple" request either, so
// the browser first sends a preflight OPTIONS, which must pass the same
// check. The edge therefore echoes an allowed Origin, with Vary: Origin so
// no cache serves one origin's answer to another. Credentials do no harm
// here: the pixel sets and reads no cookies.
//
// By default every origin is allowed: anyone can send events for any
// site from outside a browser anyway, so the list is a guard against
// other web pages feeding a site's numbers through their visitors'
// browsers, not an authentication. A nil *Origins allows every origin.
type Origins struct {
	def   originList            // sites without an entry of their own
	sites map[string]originList // by site, as stored (trimmed and cleaned)
}

type originList struct {
	any  bool     // "*": echo whatever Origin came
	list []string // normalised origins: lower case, no trailing slash
}

// Config store keys Origins are read from (ParseOrigins).
const (
	// ConfigCORSOrigins lists sites' own origins:
	// "SITE=ORIGIN ORIGIN; SITE2=ORIGIN", entries separated by ';' or
	// newlines, origins by spaces or commas. An origin is
	// scheme://host[:port] as a browser sends it, "null", or "*" (any).
	// An entry with no origins allows no cross-origin browser POST for
	// that site; an entry whose origins are all malformed is skipped.
	ConfigCORSOrigins = "cors_origins"
	// ConfigCORSDefault is the origins allowed for a site without an entry
	// and for a preflight that does not name its site: "*" (the default),
	// "none", or a list as above (all malformed: the default).
	ConfigCORSDefault = "cors_default"
)

// ParseOrigins reads the values of ConfigCORSOrigins and ConfigCORSDefault
// ("" for absent). A malformed origin or entry is skipped and reported in
// the error, which joins one error per problem; the rest still applies, so
// a typo in one site's entry never opens or closes another's.
//
// A list whose every origin is malformed is treated as not set, not as an
// empty list: an empty list allows no origin, and a typo must not shut
// every browser out of every site (cors_default) or of one site. Such a
// cors_default stays "*", such a site follows cors_default, and the error
// says so. An empty list is only ever asked for in words: "none", or
// "SITE=" with no origins.
func ParseOrigins(perSite, def string) (*Origins, error) {
	var errs []error
	o := &Origins{def: originList{any: true}}
	if def = strings.TrimSpace(def); def != "" {
		if l, ok := parseOriginList(def, ConfigCORSDefault, ConfigCORSDefault+" stays * (any origin)", &errs); ok {
			o.def = l
		}
	}
	for _, entry := range strings.FieldsFunc(perSite, func(r rune) bool { return r == ';' || r == '\n' }) {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		site, list, ok := strings.Cut(entry, "=")
		site = event.Clean(strings.TrimSpace(site), event.MaxSiteLen)
		if !ok || site == "" {
			errs = append(errs, fmt.Errorf("%s: entry %q is not SITE=ORIGIN ...", ConfigCORSOrigins, strings.TrimSpace(entry)))
			continue
		}
		instead := "the entry is skipped: " + site + " follows " + ConfigCORSDefault
		if _, dup := o.sites[site]; dup {
			instead = "the entry is skipped: " + site + " keeps its earlier entry"
		}
		l, ok := parseOriginList(list, ConfigCORSOrigins+" "+site, instead, &errs)
		if !ok {
			continue
		}
		if o.sites == nil {
			o.sites = map[string]originList{}
		}
		o.sites[site] = l
	}
	return o, errors.Join(errs...)
}

// parseOriginList reads one list of origins, appending an error to *errs
// for each malformed one. It reports false when the list had origins and
// none of them parsed: the caller then does without the list, and the one
// error for it ends with instead, which says what applies in its place.
func parseOriginList(s, where, instead string, errs *[]error) (originList, bool) {
	var l originList
	var bad []string
	valid := false
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch origin, ok := normaliseOrigin(tok); {
		case tok == "*":
			l.any, valid = true, true
		case strings.EqualFold(tok, "none"):
			valid = true
		case ok:
			l.list, valid = append(l.list, origin), true
		default:
			bad = append(bad, strconv.Quote(tok))
		}
	}
	if len(bad) > 0 && !valid {
		// One line for the list, which says what applies instead.
		verb := "is not an origin"
		if len(bad) > 1 {
			verb = "are not origins"
		}
		*errs = append(*errs, fmt.Errorf("%s: %s %s (scheme://host[:port], null or *); %s", where, strings.Join(bad, ", "), verb, instead))
		return l, false
	}
	for _, tok := range bad {
		*errs = append(*errs, fmt.Errorf("%s: %s is not an origin (scheme://host[:port], null or *)", where, tok))
	}
	return l, true
}

// normaliseOrigin lower-cases a configured origin and drops a trailing
// slash, as browsers serialise origins (RFC 6454 section 6.2); it refuses
// anything with a path, a query or a user.
func normaliseOrigin(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSuffix(s, "/"))
	if s == "null" {
		return s, true
	}
	scheme, host, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/?#@ ") || strings.ContainsAny(scheme, ":/") {
		return "", false
	}
	return s, true
}

// Allowed reports whether a browser on origin (the Origin header, as
// sent) may send events for site. A site without an entry follows the
// default; so does site "" (a preflight that did not say).
func (o *Origins) Allowed(site, origin string) bool {
	if o == nil {
		return true
	}
	l, ok := o.sites[site]
	if !ok {
		l = o.def
	}
	if l.any {
		return true
	}
	for _, a := range l.list {
		if a == origin {
			return true
		}
	}
	return false
}
