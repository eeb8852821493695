package pop

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// proxyV2 builds a v2 header: command, family/transport byte, address
// block (and anything after it, e.g. TLVs).
func proxyV2(cmd, famProto byte, body []byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
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

// TestProxyProtocol: a trusted proxy's PROXY header names the client the
// guest sees, geolocates and is capped as; one that is missing or
// malformed closes the connection, counted; a peer not trusted talks
// HTTP as ever and cannot send one.
func TestProxyProtocol(t *testing.T) {
	city, asn := geoIPFiles(t, t.TempDir(), "Brighton")
	access := &syncBuffer{}
	p := startPOP(t, nil, func(c *Config) {
		c.WasmPath = guestPath("storeguest")
		c.GeoIPDatabases = []string{city, asn}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.ProxyProtocol = true
		c.AccessLog = access
		c.Clients.MaxConnsPerAddr = 1
		c.Clients.HeaderTimeout = 500 * time.Millisecond
	})
	rejects := func() string {
		return metricValue(p.Server, `edgepixel_pop_client_rejects_total{reason="proxy_header"}`)
	}

	v1 := dialFrom(t, p.URL, "127.0.0.1")
	v1.send(t, "PROXY TCP4 81.2.69.7 192.0.2.1 5555 443\r\n")
	if r := v1.ask(t, "/client", ""); r.Client != "81.2.69.7" || r.Geo == nil || r.Geo.City != "Brighton" {
		t.Errorf("v1: the guest saw %q, geo %+v", r.Client, r.Geo)
	}
	// Every request on the connection is that client's.
	if r := v1.ask(t, "/client", "X-Forwarded-For: 198.51.100.1\r\n"); r.Client != "81.2.69.7" {
		t.Errorf("second request: %q (a header from the client itself must not count)", r.Client)
	}

	v2 := dialFrom(t, p.URL, "127.0.0.1")
	v2.send(t, string(proxyV2(1, 0x21, v2Inet("2a02:d0c0::9", "2001:db8::1", 5555, 443)))+"GET /client HTTP/1.1\r\nHost: pop\r\n\r\n")
	resp, body := v2.response(t, "GET")
	if resp.StatusCode != 200 || !strings.Contains(body, `"client":"2a02:d0c0::9"`) || !strings.Contains(body, "Mumbai") {
		t.Errorf("v2 with the request in the same write: %d %s", resp.StatusCode, body)
	}

	// A header arriving in pieces.
	split := dialFrom(t, p.URL, "127.0.0.1")
	split.send(t, "PROXY TCP4 203.0")
	time.Sleep(50 * time.Millisecond)
	split.send(t, ".113.9 192.0.2.1 5555 443\r")
	time.Sleep(50 * time.Millisecond)
	split.send(t, "\n")
	if r := split.ask(t, "/client", ""); r.Client != "203.0.113.9" {
		t.Errorf("split header: %q", r.Client)
	}

	// The per-address cap (1) applies to the client the header names.
	again := dialFrom(t, p.URL, "127.0.0.1")
	again.send(t, "PROXY TCP4 81.2.69.7 192.0.2.1 5556 443\r\n")
	if st := again.status(t); st != 503 {
		t.Errorf("a second connection of one client: %d, want 503", st)
	}
	if got := metricValue(p.Server, `edgepixel_pop_conns_refused_total{reason="max_conns_per_addr"}`); got != "1" {
		t.Errorf("refusals per address: %s", got)
	}

	// A health check: LOCAL, the proxy's own connection.
	local := dialFrom(t, p.URL, "127.0.0.1")
	local.send(t, string(proxyV2(0, 0, nil)))
	if r := local.ask(t, "/client", ""); r.Client != "127.0.0.1" {
		t.Errorf("LOCAL: %q", r.Client)
	}
	// A proxy that connects and closes (a TCP health check) is no error.
	hc := dialFrom(t, p.URL, "127.0.0.1")
	hc.Close()

	for _, tc := range []struct{ name, send string }{
		{"malformed", "PROXY TCP4 garbage\r\nGET /client HTTP/1.1\r\nHost: pop\r\n\r\n"},
		{"missing", "GET /client HTTP/1.1\r\nHost: pop\r\n\r\n"},
		{"v2 truncated then closed", string(proxyV2(1, 0x11, v2Inet("203.0.113.7", "192.0.2.1", 1, 2)))[:20]},
	} {
		before := rejects()
		c := dialFrom(t, p.URL, "127.0.0.1")
		c.send(t, tc.send)
		if strings.HasPrefix(tc.name, "v2 truncated") {
			c.Conn.(*net.TCPConn).CloseWrite()
		}
		if !c.closed(t) {
			t.Errorf("%s: connection not closed", tc.name)
		}
		waitFor(t, func() bool { return rejects() != before })
	}
	if got := rejects(); got != "3" {
		t.Errorf("rejects for PROXY headers: %s, want 3 (a bare connect and close is none)", got)
	}
	// A header that does not arrive in time.
	slow := dialFrom(t, p.URL, "127.0.0.1")
	slow.send(t, "PROXY TCP4 81.")
	if !slow.closed(t) {
		t.Error("a stalled PROXY header did not end the connection")
	}
	waitFor(t, func() bool {
		return metricValue(p.Server, `edgepixel_pop_client_timeouts_total{phase="header"}`) == "1"
	})

	// A peer not trusted: plain HTTP; a PROXY header is not HTTP.
	direct := dialFrom(t, p.URL, "127.0.0.2")
	if r := direct.ask(t, "/client", ""); r.Client != "127.0.0.2" {
		t.Errorf("direct client: %q", r.Client)
	}
	spoof := dialFrom(t, p.URL, "127.0.0.3") // another address: the cap is 1
	spoof.send(t, "PROXY TCP4 81.2.69.7 192.0.2.1 5555 443\r\nGET /client HTTP/1.1\r\nHost: pop\r\n\r\n")
	if st := spoof.status(t); st != 400 {
		t.Errorf("a PROXY header from a peer not trusted: %d, want 400", st)
	}

	waitFor(t, func() bool { return strings.Contains(access.String(), `"remote":"81.2.69.7:5555","peer":"127.0.0.1:`) })
}
