package clientip

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a v2 header: command, family/transport byte, address
// block (and anything after it, e.g. TLVs).
func proxyV2(cmd, famProto byte, body []byte) []byte {
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, 0x20|cmd, famProto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func v2Inet(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var b []byte
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func TestParseProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP
	for _, tc := range []struct {
		name     string
		in       []byte
		want     ProxyHeader
		n        int    // header length; 0 with err
		err      string // "" ok; "short" ErrShort
		trailing string
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n"),
			ProxyHeader{Src: ap("203.0.113.7:56324"), Dst: ap("192.0.2.1:443")}, 44, "", "GET / HTTP/1.1\r\n"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 80\r\n"),
			ProxyHeader{Src: ap("[2001:db8::7]:65535"), Dst: ap("[2001:db8::1]:80")}, 45, "", ""},
		{"v1 port 0", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 0 0\r\n"),
			ProxyHeader{Src: ap("203.0.113.7:0"), Dst: ap("192.0.2.1:0")}, 38, "", ""},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), ProxyHeader{Local: true}, 15, "", ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nx"), ProxyHeader{Local: true}, 59, "", "x"},
		{"v1 prefix", []byte("PROX"), ProxyHeader{}, 0, "short", ""},
		{"v1 no CRLF yet", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5"), ProxyHeader{}, 0, "short", ""},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 100) + "\r\n"), ProxyHeader{}, 0, "longer than 107", ""},
		{"v1 LF only", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n" + strings.Repeat("x", 100)), ProxyHeader{}, 0, "longer than 107", ""},
		{"v1 TCP4 with IPv6", []byte("PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n"), ProxyHeader{}, 0, "not a TCP4 address", ""},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n"), ProxyHeader{}, 0, "not a TCP6 address", ""},
		{"v1 UDP4", []byte("PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n"), ProxyHeader{}, 0, "unknown protocol", ""},
		{"v1 port too big", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n"), ProxyHeader{}, 0, "bad port", ""},
		{"v1 leading zero", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 080 2\r\n"), ProxyHeader{}, 0, "bad port", ""},
		{"v1 signed port", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 +80 2\r\n"), ProxyHeader{}, 0, "bad port", ""},
		{"v1 double space", []byte("PROXY TCP4  203.0.113.7 192.0.2.1 1 2\r\n"), ProxyHeader{}, 0, "want PROXY TCP4", ""},
		{"v1 missing field", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 1\r\n"), ProxyHeader{}, 0, "want PROXY TCP4", ""},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n"), ProxyHeader{}, 0, "not a TCP6 address", ""},
		{"v1 lowercase", []byte("proxy TCP4 203.0.113.7 192.0.2.1 1 2\r\n"), ProxyHeader{}, 0, "does not start with", ""},
		{"HTTP instead", []byte("GET / HTTP/1.1\r\n"), ProxyHeader{}, 0, "does not start with", ""},
		{"TLS instead", []byte{0x16, 0x03, 0x01, 0x00}, ProxyHeader{}, 0, "does not start with", ""},

		{"v2 INET", append(proxyV2(1, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 56324, 443)), "GET"...),
			ProxyHeader{Src: ap("203.0.113.7:56324"), Dst: ap("192.0.2.1:443")}, 28, "", "GET"},
		{"v2 INET with TLVs", proxyV2(1, 0x11, append(v2Inet("203.0.113.7", "192.0.2.1", 1, 2), tlv...)),
			ProxyHeader{Src: ap("203.0.113.7:1"), Dst: ap("192.0.2.1:2")}, 34, "", ""},
		{"v2 INET6", proxyV2(1, 0x21, v2Inet("2001:db8::7", "2001:db8::1", 3, 4)),
			ProxyHeader{Src: ap("[2001:db8::7]:3"), Dst: ap("[2001:db8::1]:4")}, 52, "", ""},
		{"v2 INET6 mapped", proxyV2(1, 0x21, v2Inet("::ffff:203.0.113.7", "::ffff:192.0.2.1", 3, 4)),
			ProxyHeader{Src: ap("203.0.113.7:3"), Dst: ap("192.0.2.1:4")}, 52, "", ""},
		{"v2 LOCAL", proxyV2(0, 0x00, nil), ProxyHeader{Local: true}, 16, "", ""},
		{"v2 LOCAL with addresses", proxyV2(0, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)), ProxyHeader{Local: true}, 28, "", ""},
		{"v2 UNSPEC", proxyV2(1, 0x00, nil), ProxyHeader{Local: true}, 16, "", ""},
		{"v2 UNIX", proxyV2(1, 0x31, make([]byte, 216)), ProxyHeader{Local: true}, 232, "", ""},
		{"v2 signature only", proxyV2Sig, ProxyHeader{}, 0, "short", ""},
		{"v2 partial signature", proxyV2Sig[:5], ProxyHeader{}, 0, "short", ""},
		{"v2 body not yet in", proxyV2(1, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 1, 2))[:20], ProxyHeader{}, 0, "short", ""},
		{"v2 version 1", append(append([]byte{}, proxyV2Sig...), 0x11, 0x11, 0, 0), ProxyHeader{}, 0, "version 1", ""},
		{"v2 command 2", proxyV2(2, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)), ProxyHeader{}, 0, "command 2", ""},
		{"v2 UDP", proxyV2(1, 0x12, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)), ProxyHeader{}, 0, "not a TCP", ""},
		{"v2 transport 3", proxyV2(1, 0x13, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)), ProxyHeader{}, 0, "transport 3", ""},
		{"v2 family 4", proxyV2(1, 0x41, nil), ProxyHeader{}, 0, "address family 4", ""},
		{"v2 INET too short", proxyV2(1, 0x11, make([]byte, 11)), ProxyHeader{}, 0, "want 12", ""},
		{"v2 INET6 too short", proxyV2(1, 0x21, make([]byte, 35)), ProxyHeader{}, 0, "want 36", ""},
	} {
		h, n, err := ParseProxyHeader(tc.in)
		switch {
		case tc.err == "short":
			if err != ErrShort {
				t.Errorf("%s: %v, want more bytes asked for", tc.name, err)
			}
		case tc.err != "":
			if err == nil || err == ErrShort || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case h != tc.want || n != tc.n || string(tc.in[n:]) != tc.trailing:
			t.Errorf("%s: %+v, %d (then %q); want %+v, %d (then %q)", tc.name, h, n, tc.in[n:], tc.want, tc.n, tc.trailing)
		}
	}
}

// FuzzParseProxyHeader: arbitrary bytes never crash the parser; a header
// it accepts is accepted alike with anything after it and asks for more
// bytes when cut short, so reading a connection chunk by chunk finds the
// same header.
func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\nGET /"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(1, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)))
	f.Add(proxyV2(1, 0x21, v2Inet("2001:db8::7", "2001:db8::1", 3, 4)))
	f.Add(proxyV2(0, 0x00, []byte{1, 2, 3}))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseProxyHeader(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("n=%d with error %v", n, err)
			}
			return
		}
		if n <= 0 || n > len(b) || n > MaxProxyHeader {
			t.Fatalf("header length %d of %d bytes", n, len(b))
		}
		if !h.Local && (!h.Src.Addr().IsValid() || !h.Dst.Addr().IsValid() || h.Src.Addr().Is4In6()) {
			t.Fatalf("addresses %v %v", h.Src, h.Dst)
		}
		h2, n2, err := ParseProxyHeader(append(bytes.Clone(b[:n]), "trailing"...))
		if err != nil || h2 != h || n2 != n {
			t.Fatalf("with bytes after it: %+v %d %v; alone %+v %d", h2, n2, err, h, n)
		}
		for cut := 0; cut < n; cut++ {
			if _, _, err := ParseProxyHeader(b[:cut]); err != ErrShort {
				t.Fatalf("cut to %d of %d bytes: %v, want more bytes asked for", cut, n, err)
			}
		}
	})
}
