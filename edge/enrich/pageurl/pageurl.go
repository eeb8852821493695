// Package pageurl stores the different spellings of one page address as
// one: what a browser's location, a mailer's link and a hand-typed URL
// make of the same page.
//
// Normalize applies RFC 3986 section 6.2.2's syntax-based normalisation
// and a few scheme-based rules (section 6.2.3), then drops what does not
// name the page:
//
//   - scheme and host in lower case; the host as ASCII (IDNA A-labels,
//     UTS #46 lookup mapping, as golang.org/x/net/idna's Lookup profile
//     does it), because that is how browsers serialise a URL's host (the
//     WHATWG URL standard), so a Unicode spelling from a mailer folds into
//     what browsers send, and because the public suffix list and the
//     referrer tables are keyed on it; a trailing dot removed;
//   - the default port of the scheme (80, 443) removed; user information
//     ("user:password@") removed, it never names a page and may be a
//     secret;
//   - percent-encoding normalised as package urlescape does it: hex
//     digits in upper case, escapes of unreserved characters (ALPHA DIGIT
//     "-" "." "_" "~", and the marks "!'()*" where browsers leave them
//     raw) decoded, and characters that must be escaped (spaces,
//     non-ASCII, controls, '"<>\^`{|}') escaped as UTF-8;
//   - dot segments removed (section 5.2.4); an empty path becomes "/";
//   - the fragment ("#...") dropped: it never reaches a server and names a
//     place in the page, not another page;
//   - tracking parameters (campaign.IsTracking: utm_*, click ids, mailer
//     recipient ids) removed from the query; the order of the others kept.
//
// A URL without a scheme ("/path?q", "example.com/path") is kept relative:
// Host is then empty (or, for "//host/path", the host).
package pageurl

import (
	"strings"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/internal/query"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/urlescape"
)

// MaxLen bounds URL in bytes, as the event's url column does; Path and
// Query are parts of it.
const MaxLen = event.MaxURLLen

// Result is a normalised page address. All strings are printable ASCII.
type Result struct {
	// URL is the whole address without fragment and tracking parameters:
	// "https://example.com/a/b?id=1".
	URL string
	// Host is the host name in lower-case ASCII, without port.
	Host string
	// Path is the path, "/" at least for an absolute URL.
	Path string
	// Query is the kept query without its '?', "" for none.
	Query string
}

// Normalize normalises raw. It never fails: input it cannot read as a URL
// is treated as a path. A URL that is already normal comes back without
// allocating.
func Normalize(raw string) Result {
	p := urlescape.ParsePage(raw)
	// A host escaped to ASCII can pass the bound by itself (URL is cut
	// below, Host is a column of its own).
	r := Result{Host: p.Host[:escapedCut(p.Host, MaxLen)], Path: p.Path, Query: normQuery(p.Query)}
	r.URL = p.String(r.Query)
	if len(r.URL) > MaxLen {
		r = cut(r)
	}
	return r
}

// owned returns b as a string without copying it; b must not be used
// again. (strings.Builder does the same, but under TinyGo the Builder
// itself escapes to the heap: a second allocation.)
func owned(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// escapedCut returns how many bytes of s to keep to have at most n, never
// ending inside a percent-escape.
func escapedCut(s string, n int) int {
	if len(s) <= n {
		return len(s)
	}
	if n >= 2 && s[n-1] == '%' {
		n--
	} else if n >= 2 && s[n-2] == '%' {
		n -= 2
	}
	return n
}

// cut shortens r.URL to MaxLen, never inside an escape, and Path and
// Query with it.
func cut(r Result) Result {
	n := escapedCut(r.URL, MaxLen)
	u := r.URL[:n]
	head := len(r.URL) - len(r.Path) - len(r.Query)
	if r.Query != "" {
		head--
	}
	r.URL = u
	if head >= n {
		r.Path, r.Query = "", ""
		if !strings.HasPrefix(u, "//") && urlescape.SchemeEnd(u) < 0 {
			// Cut inside a scheme: what is left lacks its ':' and
			// would read as a relative path, not as this URL without
			// its path. Nothing of it is kept.
			r.URL = ""
		}
		return r
	}
	if head+len(r.Path) >= n {
		r.Path, r.Query = u[head:], ""
		return r
	}
	r.Query = u[head+len(r.Path)+1:]
	return r
}

// normQuery drops tracking parameters and normalises escapes, keeping
// the parameters' order and their separators.
func normQuery(q string) string {
	if q == "" {
		return ""
	}
	if !needsQueryWork(q) {
		return q
	}
	var b []byte // made once, on the first kept parameter
	for rest := q; rest != ""; {
		start := rest
		k, v, next := query.Next(rest)
		_ = v
		param := start[:len(start)-len(next)]
		param = strings.TrimRight(param, "&;")
		if n := len(param); n >= 4 && query.EqualFoldLower(param[n-4:], "&amp") {
			param = param[:n-4]
		}
		if len(param) >= 4 && query.EqualFoldLower(param[:4], "amp;") {
			param = param[4:]
		}
		rest = next
		if param == "" || campaign.IsTracking(k) {
			continue
		}
		if b == nil {
			b = make([]byte, 0, len(q)+16)
		} else {
			b = append(b, '&')
		}
		b = append(b, urlescape.Normalize(param, urlescape.Query)...)
	}
	return owned(b)
}

// needsQueryWork reports whether q has a tracking parameter, an escape to
// normalise, an "&amp;" or an empty parameter.
func needsQueryWork(q string) bool {
	if urlescape.NormalEnd(q, urlescape.Query) != len(q) || strings.Contains(q, "&&") || strings.Contains(q, ";") ||
		strings.HasSuffix(q, "&") || strings.HasPrefix(q, "&") {
		return true
	}
	for rest := q; rest != ""; {
		var k string
		k, _, rest = query.Next(rest)
		if campaign.IsTracking(k) {
			return true
		}
	}
	return false
}

// Host returns the normalised host of an absolute URL (or of
// "//host/..."), as Normalize's Result.Host, or "" when raw has none. It
// does only the work the host needs.
func Host(raw string) string {
	scheme, auth, ok := urlescape.SplitAuthority(raw)
	if !ok {
		return ""
	}
	h, _ := urlescape.HostPort(auth, scheme)
	if len(h) > MaxLen {
		return ""
	}
	return h
}

// Origin returns the scheme and authority of raw, an absolute http,
// https or android-app URL with a host ("https://outlook.live.com" of
// "https://outlook.live.com/mail/0/inbox/id/AQQk..."), as a piece of raw;
// "" for anything else, and for an authority with user information. It
// is what a browser's "origin" referrer policy sends (W3C Referrer Policy,
// section 3): where a hit came from, without the path that may name a
// person's mailbox or message.
func Origin(raw string) string {
	s := strings.TrimSpace(raw)
	scheme, auth, ok := urlescape.SplitAuthority(s)
	if !ok || auth == "" || strings.IndexByte(auth, '@') >= 0 ||
		scheme != "http" && scheme != "https" && scheme != "android-app" {
		return ""
	}
	return s[:strings.Index(s, "//")+2+len(auth)]
}

// Resolve returns page resolved against base when page is an
// absolute-path reference ("/pricing?plan=pro", as a single-page app or a
// hand-written pixel may send it) and base an absolute http or https URL
// with a host (the Referer header: the page that sent the hit, or its
// origin under browsers' default referrer policy): base's scheme
// (lower-cased) and authority, then page (RFC 3986 section 5.2.2, for a reference that
// begins with a single "/"). The dashboard's pages are the paths of
// absolute URLs (ClickHouse's path(url)). Otherwise page as it is.
func Resolve(page, base string) string {
	p := strings.TrimSpace(page)
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return page
	}
	scheme, auth, ok := urlescape.SplitAuthority(base)
	if !ok || auth == "" || scheme != "http" && scheme != "https" {
		return page
	}
	return scheme + "://" + auth + p
}
