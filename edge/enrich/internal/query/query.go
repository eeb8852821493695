// Package query reads URL query strings the way real-world links write
// them, for the enrichment packages: parameters separated by '&' or ';',
// the HTML-escaped separator "&amp;" that links copied out of an email's
// HTML carry, '+' for a space and percent-escapes (RFC 3986 section 2.1;
// the form encoding of the WHATWG URL standard's
// application/x-www-form-urlencoded parser). A malformed escape is kept as
// written rather than refused: these are measurements, not requests to
// serve.
package query

import (
	"strings"

	"github.com/edgepixel/edgepixel/shared/urlescape"
)

// Next returns the first parameter of q (a query string without the '?')
// as its raw key and value, and the rest of q after its separator. A
// parameter without '=' has an empty value. Empty parameters ("&&") come
// back with an empty key; callers skip them.
func Next(q string) (key, val, rest string) {
	end := separator(q)
	param := q
	if end >= 0 {
		param, rest = q[:end], q[end+1:]
		// "&amp;" is "&" HTML-escaped: the "amp;" belongs to the separator.
		if q[end] == '&' && len(rest) >= 4 && strings.EqualFold(rest[:4], "amp;") {
			rest = rest[4:]
		}
	}
	if i := strings.IndexByte(param, '='); i >= 0 {
		return param[:i], param[i+1:], rest
	}
	return param, "", rest
}

// Split returns the query and the fragment of a URL or of a bare query
// string: what follows the first '?' up to the first '#', and what follows
// the '#'. A string without '?' or '#' that contains '=' is taken as a
// query itself (the pixel's own parameters, say).
func Split(s string) (q, frag string) {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s, frag = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[i+1:], frag
	}
	if strings.IndexByte(s, '=') >= 0 && !strings.Contains(s, "://") {
		return s, frag
	}
	return "", frag
}

// NeedsUnescape reports whether s has a '+' or a '%' that Unescape would
// change.
func NeedsUnescape(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '%' {
			return true
		}
	}
	return false
}

// separator is strings.IndexAny(q, "&;") without building a byte set at
// every call: Next runs once per parameter of every URL a hit carries.
func separator(q string) int {
	for i := 0; i < len(q); i++ {
		if q[i] == '&' || q[i] == ';' {
			return i
		}
	}
	return -1
}

// Unescape decodes '+' as a space and each valid %XX escape, keeping a
// '%' not followed by two hex digits as it is. It returns s itself when
// there is nothing to decode (no allocation).
func Unescape(s string) string {
	if !NeedsUnescape(s) {
		return s
	}
	return urlescape.Unescape(s, true)
}

// EqualKey reports whether the raw key k, percent-decoded and compared
// without regard to ASCII case, is name (lower case ASCII).
func EqualKey(k, name string) bool {
	if len(k) == len(name) {
		return EqualFoldLower(k, name)
	}
	if strings.IndexByte(k, '%') < 0 {
		return false
	}
	return EqualFoldLower(Unescape(k), name)
}

// EqualFoldLower reports whether s is name (lower-case ASCII) ignoring
// ASCII case: strings.EqualFold for that case, without its Unicode work.
func EqualFoldLower(s, name string) bool {
	if len(s) != len(name) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}
