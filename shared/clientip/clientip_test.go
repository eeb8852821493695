package clientip

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseNode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		addr string // "" = not an address
		port uint16
	}{
		{"203.0.113.7", "203.0.113.7", 0},
		{" 203.0.113.7\t", "203.0.113.7", 0},
		{"203.0.113.7:4711", "203.0.113.7", 4711},
		{"2001:db8::1", "2001:db8::1", 0},
		{"[2001:db8::1]", "2001:db8::1", 0},
		{"[2001:db8::1]:443", "2001:db8::1", 443},
		{"::ffff:203.0.113.7", "203.0.113.7", 0},
		{"[::ffff:203.0.113.7]:80", "203.0.113.7", 80},
		{"unknown", "", 0},
		{"_hidden", "", 0},
		{"", "", 0},
		{"203.0.113.7:", "", 0},
		{"203.0.113.7:0", "", 0},
		{"203.0.113.7:65536", "", 0},
		{"203.0.113.7:+80", "", 0},
		{"203.0.113.7:8a", "", 0},
		{"[203.0.113.7]", "", 0},
		{"[2001:db8::1", "", 0},
		{"[2001:db8::1]x", "", 0},
		{"2001:db8::1:80x", "", 0},
		{"fe80::1%eth0", "", 0},
		{"[fe80::1%eth0]:80", "", 0},
		{"203.0.113.7.8", "", 0},
		{"1.2.3.4 5.6.7.8", "", 0},
	} {
		a, port, ok := ParseNode(tc.in)
		if ok != (tc.addr != "") || (ok && (a != netip.MustParseAddr(tc.addr) || port != tc.port)) {
			t.Errorf("ParseNode(%q) = %v, %d, %v; want %q, %d", tc.in, a, port, ok, tc.addr, tc.port)
		}
	}
}

func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  []string
	}{
		{[]string{`for=192.0.2.43`}, []string{"192.0.2.43"}},
		{[]string{`for=192.0.2.43, for=198.51.100.17`}, []string{"192.0.2.43", "198.51.100.17"}},
		{[]string{`For="[2001:db8:cafe::17]:4711"`}, []string{"[2001:db8:cafe::17]:4711"}},
		{[]string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, []string{"192.0.2.60"}},
		{[]string{`proto=https;by=203.0.113.43`}, []string{""}},
		{[]string{`for=unknown`, `for="_gazonk"`}, []string{"unknown", "_gazonk"}},
		{[]string{`for=1.1.1.1`, `for=2.2.2.2, for=3.3.3.3`}, []string{"1.1.1.1", "2.2.2.2", "3.3.3.3"}},
		{[]string{`for="a,b;c", for=4.4.4.4`}, []string{"a,b;c", "4.4.4.4"}},
		{[]string{`for="a\"b"`}, []string{`a"b`}},
		{[]string{` for = 1.1.1.1`}, []string{""}},        // no spaces around "="
		{[]string{`for="1.1.1.1`}, []string{""}},          // unterminated
		{[]string{`=1.1.1.1, for=2.2.2.2`}, []string{""}}, // an element that does not parse ends the list
		{[]string{`for=[2001:db8::1]:80`}, []string{"[2001:db8::1]:80"}},
		{[]string{`for=1.1.1.1 ;by=x`}, []string{"1.1.1.1"}},
		{[]string{`,,for=1.1.1.1,`}, []string{"", "", "1.1.1.1"}},
	} {
		if got := forwardedFor(tc.lines); !slices.Equal(got, tc.want) {
			t.Errorf("forwardedFor(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}

func TestClientFromHeaders(t *testing.T) {
	lb := netip.MustParsePrefix("10.0.0.0/8")
	edge := netip.MustParsePrefix("2001:db8:f::/48")
	xff, err := NewTrust([]netip.Prefix{lb, edge}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := NewTrust([]netip.Prefix{lb, edge}, "forwarded", false)
	if err != nil {
		t.Fatal(err)
	}
	h := func(kv ...string) http.Header {
		hdr := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			hdr.Add(kv[i], kv[i+1])
		}
		return hdr
	}
	for _, tc := range []struct {
		name   string
		t      *Trust
		peer   string
		hdr    http.Header
		want   string
		result Result
	}{
		{"client behind the load balancer", xff, "10.1.1.1", h("X-Forwarded-For", "203.0.113.7"), "203.0.113.7", Client},
		{"right-most untrusted", xff, "10.1.1.1", h("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.2.2.2"), "203.0.113.7", Client},
		{"spoofed left part", xff, "10.1.1.1", h("X-Forwarded-For", "10.9.9.9, 203.0.113.7"), "203.0.113.7", Client},
		{"several lines", xff, "10.1.1.1", h("X-Forwarded-For", "198.51.100.1", "X-Forwarded-For", "203.0.113.7 , 10.3.3.3"), "203.0.113.7", Client},
		{"with a port", xff, "10.1.1.1", h("X-Forwarded-For", "203.0.113.7:5555"), "203.0.113.7:5555", Client},
		{"IPv6", xff, "2001:db8:f::1", h("X-Forwarded-For", "2001:db8:1::9, 2001:db8:f::2"), "2001:db8:1::9", Client},
		{"IPv4-mapped peer", xff, "::ffff:10.1.1.1", h("X-Forwarded-For", "203.0.113.7"), "203.0.113.7", Client},
		{"all trusted", xff, "10.1.1.1", h("X-Forwarded-For", "10.5.5.5, 10.6.6.6"), "10.5.5.5", AllTrusted},
		{"garbage before a client", xff, "10.1.1.1", h("X-Forwarded-For", "203.0.113.7, garbage, 10.7.7.7"), "10.7.7.7", Invalid},
		{"garbage right-most", xff, "10.1.1.1", h("X-Forwarded-For", "203.0.113.7, garbage"), "", Invalid},
		{"empty", xff, "10.1.1.1", h("X-Forwarded-For", ""), "", Invalid},
		{"absent", xff, "10.1.1.1", h(), "", Absent},
		{"untrusted peer", xff, "198.51.100.9", h("X-Forwarded-For", "203.0.113.7"), "", Ignored},
		{"untrusted peer, no header", xff, "198.51.100.9", h(), "", NoResult},
		{"Forwarded ignored in X-Forwarded-For mode", xff, "10.1.1.1", h("Forwarded", "for=203.0.113.7"), "", Absent},
		{"Forwarded", fwd, "10.1.1.1", h("Forwarded", `for=198.51.100.1, for="[2001:db8:1::9]:4711";proto=https, for=10.2.2.2`), "[2001:db8:1::9]:4711", Client},
		{"Forwarded unknown", fwd, "10.1.1.1", h("Forwarded", `for=203.0.113.7, for=unknown, for=10.2.2.2`), "10.2.2.2", Invalid},
		{"Forwarded obfuscated", fwd, "10.1.1.1", h("Forwarded", `for="_hidden"`), "", Invalid},
		{"Forwarded without for", fwd, "10.1.1.1", h("Forwarded", `by=10.1.1.1;proto=https`), "", Invalid},
		{"X-Forwarded-For ignored in Forwarded mode", fwd, "10.1.1.1", h("X-Forwarded-For", "203.0.113.7"), "", Absent},
	} {
		got, result := tc.t.FromHeaders(netip.MustParseAddr(tc.peer), tc.hdr)
		if got != tc.want || result != tc.result {
			t.Errorf("%s: %q, %d; want %q, %d", tc.name, got, result, tc.want, tc.result)
		}
	}

	none, err := NewTrust([]netip.Prefix{lb}, "none", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := none.FromHeaders(netip.MustParseAddr("10.1.1.1"), h("X-Forwarded-For", "203.0.113.7")); got != "" {
		t.Errorf("header none: %q", got)
	}
	if _, err := NewTrust([]netip.Prefix{lb}, "X-Real-IP", false); err == nil {
		t.Error("an unknown header accepted")
	}
	if _, err := NewTrust(nil, "", true); err == nil {
		t.Error("the PROXY protocol accepted without trusted proxies")
	}
	if tr, err := NewTrust(nil, "", false); tr != nil || err != nil {
		t.Errorf("no trusted proxies: %v, %v", tr, err)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,::ffff:198.51.100.1,, 10.1.2.3/8")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "198.51.100.1/32", "10.0.0.0/8"}
	var gs []string
	for _, p := range got {
		gs = append(gs, p.String())
	}
	if !slices.Equal(gs, want) {
		t.Errorf("got %q, want %q", gs, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0", "10.0.0.0/8/8"} {
		if _, err := ParsePrefixes(bad); err == nil || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzClientFromHeaders: any header from any peer yields an address the
// header or the peer holds, never a trusted one from a header that named
// an untrusted one to its right, and nothing from an untrusted peer.
func FuzzClientFromHeaders(f *testing.F) {
	f.Add("10.1.1.1", "203.0.113.7, 10.2.2.2", false)
	f.Add("10.1.1.1", `for="[2001:db8::1]:80";proto=https, for=10.0.0.9`, true)
	f.Add("198.51.100.1", "203.0.113.7", false)
	f.Add("10.1.1.1", `for="\`, true)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:f::/48")}
	xff, _ := NewTrust(trusted, HeaderXForwardedFor, false)
	fwd, _ := NewTrust(trusted, HeaderForwarded, false)
	f.Fuzz(func(t *testing.T, peer, value string, forwarded bool) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		tr := xff
		if forwarded {
			tr = fwd
		}
		hdr := http.Header{tr.header: {value}}
		got, result := tr.FromHeaders(p, hdr)
		if !tr.Trusts(p) {
			if got != "" {
				t.Fatalf("an untrusted peer's header was believed: %q", got)
			}
			return
		}
		if got == "" {
			return
		}
		var a netip.Addr
		if ap, err := netip.ParseAddrPort(got); err == nil {
			a = ap.Addr()
		} else if a, err = netip.ParseAddr(got); err != nil {
			t.Fatalf("%q is not an address", got)
		}
		if result == Client && tr.Trusts(a) {
			t.Fatalf("client %q is a trusted proxy", got)
		}
		if result != Client && !tr.Trusts(a) {
			t.Fatalf("result %d with the untrusted %q", result, got)
		}
	})
}
