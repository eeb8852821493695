package clientip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// The PROXY protocol (HAProxy, "The PROXY protocol", versions 1 and 2): a
// proxy that relays a TCP connection first sends a header saying whose
// connection it is, then the client's bytes.
//
//	v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (or TCP6), at most
//	    107 bytes; "PROXY UNKNOWN ...\r\n" keeps the connection's own
//	    addresses.
//	v2: the 12-byte signature, version 2 and a command (LOCAL: the
//	    proxy's own connection, e.g. a health check, which keeps the
//	    connection's addresses; PROXY), address family and transport, a
//	    16-bit length, then the addresses and TLVs (ignored).

// ProxyHeader is what a PROXY header says: the client's address and port
// (Src) and those it connected to (Dst), or Local: the connection's own
// addresses stand (v1 UNKNOWN, v2 LOCAL, or an unspecified or Unix
// address family).
type ProxyHeader struct {
	Local    bool
	Src, Dst netip.AddrPort
}

// ErrShort means the bytes so far are the beginning of a PROXY header:
// read more.
var ErrShort = errors.New("PROXY header incomplete")

var (
	proxyV1Prefix = []byte("PROXY ")
	proxyV2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	proxyV1Max   = 107 // the longest v1 line, CRLF included
	proxyV2Fixed = 16  // signature, version/command, family, length

	// MaxProxyHeader is the longest PROXY header (v2, with 65535 bytes of
	// addresses and TLVs).
	MaxProxyHeader = proxyV2Fixed + 0xFFFF
)

// ParseProxyHeader reads a PROXY header at the start of b and returns it
// and its length. ErrShort asks for more bytes; any other error is why b
// does not start with a valid header.
func ParseProxyHeader(b []byte) (ProxyHeader, int, error) {
	switch {
	case bytes.HasPrefix(b, proxyV2Sig):
		return parseProxyV2(b)
	case bytes.HasPrefix(b, proxyV1Prefix):
		return parseProxyV1(b)
	case len(b) < len(proxyV2Sig) && (bytes.HasPrefix(proxyV2Sig, b) || bytes.HasPrefix(proxyV1Prefix, b)):
		return ProxyHeader{}, 0, ErrShort
	}
	return ProxyHeader{}, 0, errors.New("the connection does not start with a PROXY protocol header")
}

func parseProxyV1(b []byte) (ProxyHeader, int, error) {
	end := bytes.Index(b[:min(len(b), proxyV1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= proxyV1Max {
			return ProxyHeader{}, 0, errors.New("PROXY v1 header longer than 107 bytes")
		}
		return ProxyHeader{}, 0, ErrShort
	}
	n := end + 2
	fields := bytes.Split(b[len(proxyV1Prefix):end], []byte(" "))
	if len(fields) >= 1 && string(fields[0]) == "UNKNOWN" {
		return ProxyHeader{Local: true}, n, nil
	}
	if len(fields) != 5 {
		return ProxyHeader{}, 0, fmt.Errorf("PROXY v1 header %q: want PROXY TCP4|TCP6 SRC DST SPORT DPORT", b[:end])
	}
	var want4 bool
	switch string(fields[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return ProxyHeader{}, 0, fmt.Errorf("PROXY v1 header: unknown protocol %q", fields[0])
	}
	addr := func(s []byte) (netip.Addr, error) {
		a, err := netip.ParseAddr(string(s))
		if err != nil || a.Zone() != "" || a.Is4() != want4 {
			return netip.Addr{}, fmt.Errorf("PROXY v1 header: %q is not a %s address", s, fields[0])
		}
		return a.Unmap(), nil
	}
	port := func(s []byte) (uint16, error) {
		// Decimal, no sign or leading zeros (the spec's "0" to "65535").
		if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
			return 0, fmt.Errorf("PROXY v1 header: bad port %q", s)
		}
		n, err := strconv.ParseUint(string(s), 10, 16)
		if err != nil {
			return 0, fmt.Errorf("PROXY v1 header: bad port %q", s)
		}
		return uint16(n), nil
	}
	src, err := addr(fields[1])
	if err != nil {
		return ProxyHeader{}, 0, err
	}
	dst, err := addr(fields[2])
	if err != nil {
		return ProxyHeader{}, 0, err
	}
	sport, err := port(fields[3])
	if err != nil {
		return ProxyHeader{}, 0, err
	}
	dport, err := port(fields[4])
	if err != nil {
		return ProxyHeader{}, 0, err
	}
	return ProxyHeader{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}, n, nil
}

func parseProxyV2(b []byte) (ProxyHeader, int, error) {
	if len(b) < proxyV2Fixed {
		return ProxyHeader{}, 0, ErrShort
	}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: version %d", verCmd>>4)
	}
	n := proxyV2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return ProxyHeader{}, 0, ErrShort
	}
	body := b[proxyV2Fixed:n]
	switch verCmd & 0xF {
	case 0: // LOCAL: the proxy's own connection; addresses are ignored
		return ProxyHeader{Local: true}, n, nil
	case 1: // PROXY
	default:
		return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: command %d", verCmd&0xF)
	}
	family, transport := famProto>>4, famProto&0xF
	if transport > 2 {
		return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: transport %d", transport)
	}
	switch family {
	case 0, 3: // UNSPEC, UNIX: no IP addresses to take
		return ProxyHeader{Local: true}, n, nil
	case 1: // INET
		if transport != 1 {
			return ProxyHeader{}, 0, errors.New("PROXY v2 header: not a TCP (stream) connection")
		}
		if len(body) < 12 {
			return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: %d address bytes for IPv4, want 12", len(body))
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		return ProxyHeader{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12])),
		}, n, nil
	case 2: // INET6
		if transport != 1 {
			return ProxyHeader{}, 0, errors.New("PROXY v2 header: not a TCP (stream) connection")
		}
		if len(body) < 36 {
			return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: %d address bytes for IPv6, want 36", len(body))
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		return ProxyHeader{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36])),
		}, n, nil
	}
	return ProxyHeader{}, 0, fmt.Errorf("PROXY v2 header: address family %d", family)
}
