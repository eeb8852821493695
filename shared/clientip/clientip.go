// Package clientip tells who the client is behind proxies the POP trusts:
// the trust list, the rule that reads X-Forwarded-For and RFC 7239's
// Forwarded header, and the PROXY protocol's header (proxy.go). It knows
// nothing of connections or of wazero. The POP (edge/pop, clientaddr.go
// says where the address it finds is used) and the aggregator
// (aggregator/guard) apply it: one rule for both.
//
// The header rule is the standard one: each proxy appends the address it
// received the request from, so the entries are read from the right,
// skipping the addresses of trusted proxies, and the first one that is
// not trusted is the client (what is left of it may have been written by
// anyone, the client included). If an entry cannot be read before one is
// found (an "unknown" or obfuscated Forwarded node, garbage), or every
// entry is trusted, the client is the last trusted address read: the
// nearest hop that can be vouched for. A header from a peer that is not
// trusted is ignored.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Where a trusted proxy says who the client is.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded" // RFC 7239
	HeaderNone          = "none"      // only the PROXY protocol
)

// Result is what the header rule found.
type Result int

const (
	NoResult   Result = iota - 1 // nothing to tell: no header from a peer not trusted, or no header used
	Client                       // an address not trusted: the client
	AllTrusted                   // every entry was a trusted proxy
	Invalid                      // an entry could not be read
	Absent                       // a trusted peer sent no header
	Ignored                      // a peer that is not trusted sent one, ignored
	NumResults
)

// ResultNames are the results' names, as metrics label them.
var ResultNames = [NumResults]string{"client", "all_trusted", "invalid", "absent", "ignored"}

// Trust is who may say who the client is, and how.
type Trust struct {
	prefixes      []netip.Prefix
	header        string // canonical header name; "" for none
	proxyProtocol bool
}

// NewTrust checks a configuration: the trusted proxies' prefixes, the
// header they name the client in (HeaderXForwardedFor, the default for
// "", HeaderForwarded or HeaderNone, in any case), and whether their
// connections start with a PROXY header. It returns nil when no proxy is
// trusted.
func NewTrust(prefixes []netip.Prefix, header string, proxyProtocol bool) (*Trust, error) {
	if len(prefixes) == 0 {
		if proxyProtocol {
			return nil, fmt.Errorf("the PROXY protocol needs the proxies it may come from (trusted proxies)")
		}
		return nil, nil
	}
	t := &Trust{proxyProtocol: proxyProtocol}
	switch strings.ToLower(header) {
	case "", "x-forwarded-for":
		t.header = HeaderXForwardedFor
	case "forwarded":
		t.header = HeaderForwarded
	case HeaderNone:
	default:
		return nil, fmt.Errorf("forwarded header %q: want %s, %s or %s", header, HeaderXForwardedFor, HeaderForwarded, HeaderNone)
	}
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxies: invalid prefix")
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes or single
// addresses (a /32 or /128), as edgepixel-pop's --trusted-proxies takes
// them.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ProxyProtocol reports whether the trusted proxies' connections start
// with a PROXY header.
func (t *Trust) ProxyProtocol() bool { return t.proxyProtocol }

// Header is the canonical name of the header the trusted proxies name the
// client in; "" for none.
func (t *Trust) Header() string { return t.header }

// Trusts reports whether a is a trusted proxy's address. The list is
// scanned: it holds a load balancer's few prefixes.
func (t *Trust) Trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Apply sets r.RemoteAddr to the client's address if a trusted proxy
// said who it is in the header (FromHeaders), and returns the peer's
// address it replaced ("" if it did not) and the header rule's result.
func (t *Trust) Apply(r *http.Request) (was string, result Result) {
	peer, ok := remoteAddr(r.RemoteAddr)
	if !ok {
		return "", NoResult
	}
	client, result := t.FromHeaders(peer, r.Header)
	if client == "" {
		return "", result
	}
	was = r.RemoteAddr
	r.RemoteAddr = client
	return was, result
}

// remoteAddr parses r.RemoteAddr ("addr:port", or an address alone).
func remoteAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// FromHeaders applies the header rule to a request from peer and returns
// the client's address as http.Request.RemoteAddr spells it ("addr" or
// "addr:port"), "" when the peer's own address stands, and the result.
func (t *Trust) FromHeaders(peer netip.Addr, h http.Header) (string, Result) {
	if t.header == "" {
		return "", NoResult
	}
	values := h[t.header]
	if !t.Trusts(peer) {
		if len(values) > 0 {
			return "", Ignored
		}
		return "", NoResult
	}
	if len(values) == 0 {
		return "", Absent
	}
	var entries []string
	if t.header == HeaderForwarded {
		entries = forwardedFor(values)
	} else {
		for _, v := range values {
			entries = append(entries, strings.Split(v, ",")...)
		}
	}
	last := ""
	for i := len(entries) - 1; i >= 0; i-- {
		a, port, ok := ParseNode(entries[i])
		if !ok {
			return last, Invalid
		}
		s := a.String()
		if port != 0 {
			s = netip.AddrPortFrom(a, port).String()
		}
		if !t.Trusts(a) {
			return s, Client
		}
		last = s
	}
	return last, AllTrusted
}

// ParseNode reads one address as proxies write them in X-Forwarded-For
// entries and Forwarded for= values: an IPv4 address, optionally with
// ":port"; an IPv6 address, bare or in brackets, optionally "[...]:port".
// Surrounding spaces are ignored. Forwarded's "unknown" and obfuscated
// identifiers ("_hidden"), zones and anything else are not addresses.
func ParseNode(s string) (netip.Addr, uint16, bool) {
	s = strings.Trim(s, " \t")
	var port uint16
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, 0, false
		}
		rest := s[end+1:]
		if rest != "" {
			p, ok := parsePort(rest)
			if !ok {
				return netip.Addr{}, 0, false
			}
			port = p
		}
		s = s[1:end]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, 0, false
		}
		return a.Unmap(), port, true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		p, ok := parsePort(s[i:])
		if !ok {
			return netip.Addr{}, 0, false
		}
		port, s = p, s[:i]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Addr{}, 0, false
		}
		return a, port, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, 0, false
	}
	return a.Unmap(), 0, true
}

// parsePort reads ":N", N a decimal port 1 to 65535.
func parsePort(s string) (uint16, bool) {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return 0, false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// forwardedFor returns the for= value of each element of the Forwarded
// header lines, in order (RFC 7239 section 4):
//
//	Forwarded         = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair    = token "=" value
//	value             = token / quoted-string
//
// An element without a for= pair yields "", which is no address; an
// element that does not parse ends the list with a "" (nothing to its
// left can be trusted to have been split right). Pairs are separated
// leniently: spaces around ";" and "," are skipped.
func forwardedFor(lines []string) []string {
	var out []string
	for _, line := range lines {
		i := 0
		for i < len(line) {
			val, next, ok := forwardedElement(line, i)
			if !ok {
				return append(out, "")
			}
			out = append(out, val)
			i = next
		}
	}
	return out
}

// forwardedElement parses the element starting at line[i] and returns its
// for= value and the index past its ",".
func forwardedElement(line string, i int) (forVal string, next int, ok bool) {
	skipSpace := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	for {
		skipSpace()
		if i == len(line) {
			return forVal, i, true
		}
		switch line[i] {
		case ',':
			return forVal, i + 1, true
		case ';':
			i++
			continue
		}
		// token "=" value
		start := i
		for i < len(line) && isTokenChar(line[i]) {
			i++
		}
		name := line[start:i]
		if name == "" || i == len(line) || line[i] != '=' {
			return "", 0, false
		}
		i++
		var val string
		if i < len(line) && line[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(line) {
				c := line[i]
				if c == '\\' && i+1 < len(line) {
					b.WriteByte(line[i+1])
					i += 2
					continue
				}
				i++
				if c == '"' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return "", 0, false
			}
			val = b.String()
		} else {
			// A token; also accept what proxies write unquoted although
			// the RFC wants it quoted ([2001:db8::1]:80).
			start := i
			for i < len(line) && line[i] != ';' && line[i] != ',' && line[i] != ' ' && line[i] != '\t' {
				i++
			}
			val = line[start:i]
		}
		if strings.EqualFold(name, "for") {
			forVal = val
		}
	}
}

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
