// Package urlescape normalises the percent-encoding of a URL's parts, so
// that two spellings of one address compare equal. The edge stores a
// page's address in this form (package pageurl); the aggregator spells a
// page filter typed by a person the same way, so "/café" finds the rows
// stored as "/caf%C3%A9".
//
// The form is RFC 3986 section 6.2.2's: hex digits in upper case, escapes
// of unreserved characters decoded (section 6.2.2.2), and every byte that
// must not appear raw (controls, space, non-ASCII, a '%' that starts no
// escape, and the part's own set) escaped. One step further: escapes of
// the marks ! ' ( ) * are decoded too, unless the part's set escapes the
// mark. RFC 2396 (section 2.3) listed them as unreserved, and RFC 3986
// made them sub-delimiters only so that schemes could give them a
// meaning, which http(s) paths and form-encoded queries never do. A
// browser sends them raw in a path (the WHATWG URL standard's path
// percent-encode set leaves them) while mailers and RFC 3986 encoders
// escape them: without this, "/it's" and "/it%27s" would be two pages.
package urlescape

import (
	"iter"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Set is a set of ASCII bytes: bit c of lo for c < 64, bit c-64 of hi
// for the rest. No byte from 128 up is in one. (Bits rather than a string
// searched byte by byte: Normalize asks for every byte of a URL.)
type Set struct{ lo, hi uint64 }

// Has reports whether c is in s.
func (s Set) Has(c byte) bool {
	if c < 64 {
		return s.lo&(1<<c) != 0
	}
	return c < 128 && s.hi&(1<<(c-64)) != 0
}

// With returns s and c (ASCII).
func (s Set) With(c byte) Set {
	if c < 64 {
		s.lo |= 1 << c
	} else {
		s.hi |= 1 << (c - 64)
	}
	return s
}

// The printable ASCII characters escaped in each part of a URL (RFC 3986
// sections 3.2.2, 3.3 and 3.4, less what browsers leave raw): in a path
// " < > ` { } | space ^ \; a query adds ' (the WHATWG URL standard's
// special-query percent-encode set escapes it); a host adds / ? # @.
const (
	pathLo = 1<<'"' | 1<<'<' | 1<<'>' | 1<<' '
	pathHi = 1<<('`'-64) | 1<<('{'-64) | 1<<('}'-64) | 1<<('|'-64) | 1<<('^'-64) | 1<<('\\'-64)
)

var (
	Path  = Set{pathLo, pathHi}
	Query = Set{pathLo | 1<<'\'', pathHi}
	Host  = Set{pathLo | 1<<'/' | 1<<'?' | 1<<'#', pathHi | 1<<('@'-64)}
)

// Normalize returns s in normal form for a part whose set is escaped; s
// itself, without allocating, when it is already normal.
func Normalize(s string, escaped Set) string {
	i := NormalEnd(s, escaped)
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if d, ok := At(s, i); ok {
			i += 2
			if decoded(d, escaped) {
				b = append(b, d)
				continue
			}
			c = d // written back escaped, in upper case
		} else if raw(c, escaped) {
			b = append(b, c)
			continue
		}
		b = appendEscape(b, c)
	}
	// The bytes are the string's own: no copy (strings.Builder does the
	// same, but TinyGo puts the Builder itself on the heap).
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// NormalEnd returns the index of the first byte of s that Normalize would
// change, len(s) when s is already normal.
func NormalEnd(s string, escaped Set) int {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c >= 0x7F || escaped.Has(c) {
			break
		}
		if c == '%' {
			if d, ok := At(s, i); !ok || isLowerHex(s[i+1]) || isLowerHex(s[i+2]) || decoded(d, escaped) {
				break
			}
			i += 2
		}
	}
	return i
}

// Unescape returns s with each valid %XX escape decoded, a '%' that
// starts none kept as it is, and, when plus is true, each '+' a space (a
// query's form encoding, as url.QueryUnescape, which refuses a stray '%'
// instead). It returns s itself when there is nothing to decode (no
// allocation).
func Unescape(s string, plus bool) string {
	i := 0
	for ; i < len(s) && s[i] != '%' && !(plus && s[i] == '+'); i++ {
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		switch d, ok := At(s, i); {
		case ok:
			b = append(b, d)
			i += 2
		case plus && s[i] == '+':
			b = append(b, ' ')
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

// At returns the byte the escape at s[i] ("%" and two hex digits)
// encodes, and false when s has no valid escape there.
func At(s string, i int) (byte, bool) {
	if i < 0 || i+2 >= len(s) || s[i] != '%' || !isHex(s[i+1]) || !isHex(s[i+2]) {
		return 0, false
	}
	return unhex(s[i+1])<<4 | unhex(s[i+2]), true
}

// raw reports whether c is written as itself, not escaped, in a part
// whose set is escaped: printable ASCII other than '%' and the set.
func raw(c byte, escaped Set) bool {
	return c >= 0x21 && c < 0x7F && c != '%' && !escaped.Has(c)
}

// appendEscape appends c as %XX, in upper case.
func appendEscape(b []byte, c byte) []byte {
	return append(b, '%', hexUpper[c>>4], hexUpper[c&15])
}

// decoded reports whether an escape of d is written as d itself.
func decoded(d byte, escaped Set) bool {
	return isUnreserved(d) || marks.Has(d) && !escaped.Has(d)
}

// marks are RFC 2396's unreserved marks that RFC 3986 made reserved.
var marks = Set{1<<'!' | 1<<'\'' | 1<<'(' | 1<<')' | 1<<'*', 0}

const hexUpper = "0123456789ABCDEF"

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// SchemeEnd returns the index of the ':' ending a scheme at the start of
// s (RFC 3986 section 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )),
// or -1 when s does not start with one.
func SchemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0:
			return i
		default:
			return -1
		}
	}
	return -1
}

// URL returns u as edgepixel stores a page (Page), its query's
// percent-encoding normalised (Query) and every parameter kept: for
// addresses that did not pass through the edge (an import), so that
// "/it%27s", "HTTPS://Example.com/a/../it's" and "/it's" are one page, as
// the edge stores them. The edge also drops tracking parameters, which
// an import keeps (they may be all it says of a campaign).
func URL(u string) string {
	p := ParsePage(u)
	return p.String(Normalize(p.Query, Query))
}

// RemoveDots is RFC 3986 section 5.2.4's remove_dot_segments: a path
// without its "." and ".." segments, as a browser resolves them ("/a/../b"
// is "/b"; a trailing "/." or "/.." leaves the trailing '/'). The edge
// stores pages so (edge/enrich/pageurl), and a page filter is read so.
func RemoveDots(p string) string {
	var out []string
	abs := strings.HasPrefix(p, "/")
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	r := strings.Join(out, "/")
	if abs {
		r = "/" + r
	}
	return r
}

// NoPageSchemes names the schemes NoPage refuses, for messages.
const NoPageSchemes = "javascript:, vbscript:, data:, file:, content:, mailto: or about:"

// noPageSchemes are NoPageSchemes, as NoPage compares them.
var noPageSchemes = [...]string{"javascript:", "vbscript:", "data:", "file:", "content:", "mailto:", "about:"}

// NoPage reports whether raw is a URL that names no web page a visitor
// was on: code or content written into the address bar (javascript:,
// vbscript:, data:), which must not reach a report whose reader may
// follow it as a link; a file opened from disk (file:, or content: as
// Android's Chrome opens one), whose path names the person who saved the
// page (file:///Users/alice/...), as s.js on a saved copy would send
// it; a mail address (mailto:), which is personal data; a browser's blank
// or srcdoc frame (about:). Such a hit is forged
// or a script's bug, or a page away from its site. The edge drops a hit so
// addressed (edge/pixel, bad_url), the aggregator an imported line. The
// scheme is read as browsers read it (WHATWG URL standard, basic URL
// parser): leading C0 controls and spaces skipped, tabs and newlines
// anywhere ignored, in any ASCII case, so "  Java\tScript:" is one. Any
// leading Unicode white space is skipped too, as strings.TrimSpace and so
// edge/enrich/pageurl.Normalize drop it before they read a scheme: a
// reviewer's "\u00a0javascript:" was stored as "javascript:".
func NoPage(raw string) bool {
	i := 0
	for i < len(raw) {
		r, size := utf8.DecodeRuneInString(raw[i:])
		if r > ' ' && !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	for _, scheme := range noPageSchemes {
		if schemeIs(raw[i:], scheme) {
			return true
		}
	}
	return false
}

// schemeIs reports whether s begins with scheme (lower case, its ':'
// included) in any ASCII case, tabs and newlines in it ignored.
func schemeIs(s, scheme string) bool {
	j := 0
	for i := 0; i < len(s) && j < len(scheme); i++ {
		c := s[i]
		switch {
		case c == '\t' || c == '\n' || c == '\r':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != scheme[j] {
			return false
		}
		j++
	}
	return j == len(scheme)
}

// Params yields each name=value pair of a raw query in order, split at
// '&' as a form-encoded query is (WHATWG URL, application/x-www-form-
// urlencoded parsing): the name unescaped (as written if it does not
// unescape, so that fail%6Fver is read as failover) and the value as
// written, so a caller can see what was not percent-encoded in it (a
// raw '?' of a URL given as a parameter's value).
func Params(rawQuery string) iter.Seq2[string, string] {
	return func(yield func(name, value string) bool) {
		for rest := rawQuery; rest != ""; {
			var pair string
			pair, rest, _ = strings.Cut(rest, "&")
			k, v, _ := strings.Cut(pair, "=")
			if name, err := url.QueryUnescape(k); err == nil {
				k = name
			}
			if !yield(k, v) {
				return
			}
		}
	}
}
