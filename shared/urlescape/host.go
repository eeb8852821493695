package urlescape

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// SplitAuthority splits an absolute URL, or a network-path reference
// ("//host/...", scheme ""), into its scheme, lower-cased, and its
// authority: what follows "//" up to the path, query or fragment (RFC
// 3986 section 3.2; a backslash ends it too, as browsers read it). ok is
// false without "//".
func SplitAuthority(raw string) (scheme, auth string, ok bool) {
	s := strings.TrimSpace(raw)
	if i := SchemeEnd(s); i > 0 {
		scheme, s = LowerASCII(s[:i]), s[i+1:]
	}
	if !strings.HasPrefix(s, "//") {
		return scheme, "", false
	}
	auth = s[2:]
	if end := strings.IndexAny(auth, "/?#\\"); end >= 0 {
		auth = auth[:end]
	}
	return scheme, auth, true
}

// HostPort returns the normalised host, and host[:port], of auth, the
// authority of a URL of scheme (lower case; "" for none): without user
// information; the port without leading zeros, and none when it is the
// scheme's default (http 80, https 443) or not a number; an IPv6
// literal's escapes in normal form and its hex in lower case; a name in
// lower case, in its ASCII form (hostName), without a trailing dot.
// These are the rules of package pageurl's Normalize, which the edge
// stores hosts by; the aggregator reads a host filter by them too.
func HostPort(auth, scheme string) (host, hostport string) {
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	h, port := auth, ""
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i >= 0 {
			h, port = h[:i+1], h[i+1:]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h, port = h[:i], h[i:]
	}
	if port != "" {
		p := strings.TrimLeft(port[1:], "0")
		switch {
		case port[0] != ':' || !allDigits(port[1:]) || len(port) == 1:
			port = ""
		case scheme == "http" && p == "80", scheme == "https" && p == "443":
			port = ""
		default:
			if p == "" {
				p = "0" // port 0, however many zeros
			}
			if len(p) != len(port)-1 {
				port = ":" + p
			}
		}
	}
	if strings.HasPrefix(h, "[") {
		host = LowerASCII(Normalize(h, Host))
	} else {
		// Trimmed after the conversion too: an escaped or international
		// spelling of a dot ("%2e", U+3002) is one once converted.
		host = strings.TrimRight(hostName(strings.TrimRight(h, ".")), ".")
	}
	if port == "" {
		return host, host
	}
	return host, host + port
}

// hostName lower-cases a host name and converts it to ASCII: IDNA
// A-labels by UTS #46's lookup mapping (golang.org/x/net/idna's Lookup
// profile), which is how browsers serialise a URL's host (the WHATWG URL
// standard). Its escapes are decoded first; a name that is not a valid
// international one is kept escaped, so the result stays ASCII.
func hostName(h string) string {
	ascii := true
	lower := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 0x7F || c < 0x21 || c == '%' || c == ':' || Host.Has(c) {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	if ascii {
		if lower {
			return h
		}
		return LowerASCII(h)
	}
	u := Unescape(h, false)
	// A '%' left once decoded, or bytes that are not UTF-8, make no name
	// (the WHATWG host parser fails on both; idna would take "%80" as is,
	// which reads as an escape the next time, and "\x80" as U+FFFD).
	if utf8.ValidString(u) && strings.IndexByte(u, '%') < 0 {
		if a, err := idna.Lookup.ToASCII(u); err == nil {
			return a
		}
	}
	// Escaped whole, not normalised: Normalize would read a '%' of u
	// that the decoding left before two hex digits ("%%330" decodes to
	// "%30") as an escape, decoding the name a second time, and the next
	// reading would decode it again ("//%0%%330" gave "%2500", then
	// "%00").
	return LowerASCII(escape(u, Host.With(':')))
}

// escape returns s with every byte but printable ASCII outside escaped,
// and '%' always, as %XX: Unescape gives s back.
func escape(s string, escaped Set) string {
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		if c := s[i]; raw(c, escaped) {
			b = append(b, c)
		} else {
			b = appendEscape(b, c)
		}
	}
	return string(b)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// LowerASCII returns s with its ASCII capitals in lower case and every
// other byte as it is; s itself when it has none (no allocation).
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
