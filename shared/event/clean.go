package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// Clean is the one sanitising rule for every string edgepixel stores,
// whatever path it came by (the pixel's query, a POSTed JSON body, request
// headers such as User-Agent and Referer, an NDJSON line). It returns s as
// valid UTF-8 of at most max bytes:
//
//   - a byte that does not begin a valid UTF-8 sequence (including the
//     encoded surrogates RFC 3629 forbids) becomes U+FFFD, one per byte,
//     as utf8.DecodeRuneInString reports them;
//   - a control character (C0 U+0000-U+001F, DEL U+007F, C1
//     U+0080-U+009F; Unicode's category Cc) becomes U+FFFD too: no stored
//     value can break a log line, a terminal or a CSV export, and the mark
//     shows where the input was bad rather than silently joining its
//     neighbours;
//   - the result is cut to max bytes at a rune boundary, never inside one.
//
// Printable ASCII within max, nearly every pixel hit, is returned as is
// without allocating, after a single scan.
func Clean(s string, max int) string {
	n := min(len(s), max)
	i := printablePrefix(s[:n])
	if i == n { // a cut after ASCII is a rune boundary
		return s[:n]
	}
	// Valid UTF-8 needs no copy either: only a rune to replace does.
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || isControl(r) {
			return string(appendClean(make([]byte, 0, min(len(s)+8, max)), s, i, max))
		}
		if i+size > max {
			break
		}
		i += size
	}
	return s[:i]
}

// CleanSite is a site as the edge stores it: without white space around
// it (which no one means) and Clean to MaxSiteLen. Whatever looks a site
// up (the dashboard's API, the live counts, per-site settings) reads it
// the same way, or a site given as it was sent would match nothing.
func CleanSite(s string) string { return Clean(strings.TrimSpace(s), MaxSiteLen) }

// IsClean reports whether s is what Clean leaves unchanged (ignoring the
// length limit): valid UTF-8 without control characters.
func IsClean(s string) bool {
	i := printablePrefix(s)
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || isControl(r) {
			return false
		}
		i += size
	}
	return true
}

// printablePrefix returns the length of s's leading run of printable ASCII
// (0x20-0x7E).
func printablePrefix(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i]-0x20 >= 0x7F-0x20 { // unsigned: below 0x20 wraps around
			return i
		}
	}
	return len(s)
}

// isControl reports whether r is in Unicode's category Cc.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7F && r <= 0x9F) }

// replacement is U+FFFD in UTF-8.
const replacement = "\uFFFD"

// appendClean appends Clean(s[from:]) to dst, which already holds s[:from]
// or nothing (from is where the printable ASCII prefix ended), keeping the
// total within max.
func appendClean(dst []byte, s string, from, max int) []byte {
	dst = append(dst, s[:from]...)
	for i := from; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		piece := s[i : i+size]
		if (r == utf8.RuneError && size == 1) || isControl(r) {
			piece = replacement
		}
		if len(dst)+len(piece) > max {
			break
		}
		dst = append(dst, piece...)
		i += size
	}
	return dst
}

// ErrPropsTooLarge is returned by CleanProps for an object whose canonical
// form is over MaxPropsLen.
var ErrPropsTooLarge = errors.New("props: larger than MaxPropsLen once decoded")

// ErrPropsNotObject is returned by CleanProps for JSON that is not an
// object.
var ErrPropsNotObject = errors.New("props: not a JSON object")

// CleanProps returns the canonical text of a props value: "" for an absent
// value or JSON null, else the JSON object compacted, with every string
// (keys and values) decoded, cleaned by Clean's rule (a control character,
// escaped or not, is U+FFFD; so is a lone surrogate escape such as \ud800,
// as in encoding/json) and written back with the only escapes then needed,
// \" and \\; everything else is UTF-8. Escapes a client spent on plain
// characters (\u00e9, \/) therefore do not count against the limit, the
// text passes IsClean, and every string it decodes to does too.
// A key the object has more than once (RFC 8259 §4: names "SHOULD be
// unique", and implementations differ) is kept once, where it first
// appears, with its last value, as the page's own JSON.parse and
// encoding/json read it: a query of the stored text (an erasure by
// user_id, the props rollups) then sees the one value the client meant.
// MaxPropsLen bounds this canonical form: larger is ErrPropsTooLarge.
// Invalid JSON is the json package's error; JSON other than an object,
// ErrPropsNotObject.
func CleanProps(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] != '{' {
		if !json.Valid(raw) {
			return "", errors.New("props: invalid JSON")
		}
		return "", ErrPropsNotObject
	}
	var compact bytes.Buffer
	compact.Grow(len(raw))
	if err := json.Compact(&compact, raw); err != nil {
		return "", err
	}
	out := uniqueKeys(canonicalJSON(make([]byte, 0, min(compact.Len(), MaxPropsLen+64)), compact.Bytes()))
	if len(out) > MaxPropsLen {
		return "", ErrPropsTooLarge
	}
	return string(out), nil
}

// uniqueKeys returns obj, a canonical JSON object (canonicalJSON's), with
// each top-level key once: at its first place, with its last value (see
// CleanProps). Keys compare as canonical text, which is one spelling per
// string. obj itself is returned when no key repeats, as is usual.
func uniqueKeys(obj []byte) []byte {
	type member struct{ key, value []byte }
	var members []member
	dup := false
	for i := 1; i < len(obj) && obj[i] == '"'; {
		end := skipJSONString(obj, i)
		key := obj[i:end]
		start := end + 1 // after ':'
		i = skipJSONValue(obj, start)
		for _, m := range members {
			dup = dup || string(m.key) == string(key)
		}
		members = append(members, member{key, obj[start:i]})
		if i < len(obj) && obj[i] == ',' {
			i++
		}
	}
	if !dup {
		return obj
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	for j, m := range members {
		last, first := j, true
		for k, o := range members {
			if string(o.key) == string(m.key) {
				first = first && k >= j
				last = k
			}
		}
		if !first {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, m.key...), ':'), members[last].value...)
	}
	return append(out, '}')
}

// skipJSONString returns the index after the canonical JSON string that
// starts at obj[i] (its opening quote): its only escapes are \" and \\.
func skipJSONString(obj []byte, i int) int {
	for i++; i < len(obj); i++ {
		switch obj[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipJSONValue returns the index after the compact JSON value that
// starts at obj[i].
func skipJSONValue(obj []byte, i int) int {
	depth := 0
	for i < len(obj) {
		switch obj[i] {
		case '"':
			i = skipJSONString(obj, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// canonicalJSON appends the canonical form of compact (valid, compacted
// JSON) to dst: bytes outside strings are copied, strings are rewritten.
func canonicalJSON(dst, compact []byte) []byte {
	for i := 0; i < len(compact); {
		c := compact[i]
		if c != '"' {
			dst = append(dst, c)
			i++
			continue
		}
		dst, i = appendJSONString(dst, compact, i+1)
	}
	return dst
}

// appendJSONString rewrites the JSON string whose body starts at src[i]
// (just after its opening quote) and returns the index after its closing
// quote. src is known to be valid JSON.
func appendJSONString(dst, src []byte, i int) ([]byte, int) {
	dst = append(dst, '"')
	for i < len(src) {
		c := src[i]
		switch {
		case c == '"':
			return append(dst, '"'), i + 1
		case c == '\\':
			var r rune
			r, i = unescape(src, i)
			dst = appendJSONRune(dst, r)
		case c < utf8.RuneSelf:
			dst = appendJSONRune(dst, rune(c))
			i++
		default:
			r, size := utf8.DecodeRune(src[i:])
			dst = appendJSONRune(dst, r) // RuneError for an invalid byte: U+FFFD
			i += size
		}
	}
	return dst, i // not reached for valid input
}

// unescape decodes the escape at src[i] ('\\') and returns its rune and the
// index after it. A surrogate pair is one rune; a lone surrogate is U+FFFD.
func unescape(src []byte, i int) (rune, int) {
	switch src[i+1] {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u':
		r := hex4(src[i+2 : i+6])
		i += 6
		if r >= 0xD800 && r < 0xDC00 { // high surrogate: a low one must follow
			if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
				if lo := hex4(src[i+2 : i+6]); lo >= 0xDC00 && lo < 0xE000 {
					return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), i + 6
				}
			}
			return utf8.RuneError, i
		}
		if r >= 0xDC00 && r < 0xE000 {
			return utf8.RuneError, i
		}
		return r, i
	default: // '"', '\\', '/'
		return rune(src[i+1]), i + 2
	}
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		v, _ := unhex(c)
		r = r<<4 | rune(v)
	}
	return r
}

// appendJSONRune writes r inside a JSON string, by Clean's rule: a control
// character becomes U+FFFD, so only '"' and '\\' need escaping.
func appendJSONRune(dst []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(dst, '\\', byte(r))
	case isControl(r):
		return append(dst, replacement...)
	case r < utf8.RuneSelf:
		return append(dst, byte(r))
	}
	return utf8.AppendRune(dst, r)
}
