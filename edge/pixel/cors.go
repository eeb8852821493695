package pixel

import (
	"errors"
	"fmt"
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
	// that site.
	ConfigCORSOrigins = "cors_origins"
	// ConfigCORSDefault is the origins allowed for a site without an entry
	// and for a preflight that does not name its site: "*" (the default),
	// "none", or a list as above.
	ConfigCORSDefault = "cors_default"
)

// ParseOrigins reads the values of ConfigCORSOrigins and ConfigCORSDefault
// ("" for absent). A malformed origin or entry is skipped and reported in
// the error, which joins one error per problem; the rest still applies, so
// a typo in one site's entry never opens or closes another's.
func ParseOrigins(perSite, def string) (*Origins, error) {
	var errs []error
	o := &Origins{def: originList{any: true}}
	if def = strings.TrimSpace(def); def != "" {
		o.def, errs = parseOriginList(def, ConfigCORSDefault, errs)
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
		if o.sites == nil {
			o.sites = map[string]originList{}
		}
		o.sites[site], errs = parseOriginList(list, ConfigCORSOrigins+" "+site, errs)
	}
	return o, errors.Join(errs...)
}

func parseOriginList(s, where string, errs []error) (originList, []error) {
	var l originList
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch origin, ok := normaliseOrigin(tok); {
		case tok == "*":
			l.any = true
		case strings.EqualFold(tok, "none"):
		case ok:
			l.list = append(l.list, origin)
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not an origin (scheme://host[:port], null or *)", where, tok))
		}
	}
	return l, errs
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
