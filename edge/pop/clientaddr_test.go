package pop

import (
	"bufio"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dialFrom connects to the POP at url from a given loopback address, so
// a test can be a peer the POP does not trust (127.0.0.2) as well as one
// it does (127.0.0.1).
func dialFrom(t *testing.T, url, from string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// askRaw sends GET path on c and decodes the storeguest's answer.
func (c *rawConn) ask(t *testing.T, path string, header string) storeResult {
	t.Helper()
	c.send(t, "GET "+path+" HTTP/1.1\r\nHost: pop\r\n"+header+"\r\n")
	resp, body := c.response(t, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var r storeResult
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return r
}

// TestBehindLoadBalancer: the client address a trusted proxy gives in
// X-Forwarded-For is what the guest sees, geolocates and the access log
// records; the same header from another peer is ignored; a trusted
// proxy's connections are exempt from the per-address cap.
func TestBehindLoadBalancer(t *testing.T) {
	city, asn := geoIPFiles(t, t.TempDir(), "Brighton")
	access := &syncBuffer{}
	p := startPOP(t, nil, func(c *Config) {
		c.WasmPath = guestPath("storeguest")
		c.GeoIPDatabases = []string{city, asn}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.AccessLog = access
		c.Clients.MaxConnsPerAddr = 2
	})
	lb := dialFrom(t, p.URL, "127.0.0.1")
	r := lb.ask(t, "/client", "X-Forwarded-For: 10.9.9.9, 81.2.69.7\r\n")
	if r.Client != "81.2.69.7" || r.Geo == nil || r.Geo.City != "Brighton" || r.Geo.AsNumber != 20712 {
		t.Errorf("behind the trusted proxy the guest saw %q, geo %+v", r.Client, r.Geo)
	}
	// The next request on the same connection is another client's.
	if r := lb.ask(t, "/client", "X-Forwarded-For: 2a02:d0c0::9\r\n"); r.Client != "2a02:d0c0::9" || r.Geo.City != "Mumbai" {
		t.Errorf("second client on the connection: %q %+v", r.Client, r.Geo)
	}
	if r := lb.ask(t, "/client", ""); r.Client != "127.0.0.1" {
		t.Errorf("without a header: %q", r.Client)
	}
	spoofer := dialFrom(t, p.URL, "127.0.0.2")
	if r := spoofer.ask(t, "/client", "X-Forwarded-For: 81.2.69.7\r\n"); r.Client != "127.0.0.2" {
		t.Errorf("a header from a peer not trusted was believed: %q", r.Client)
	}
	waitFor(t, func() bool {
		return strings.Contains(access.String(), `"remote":"81.2.69.7","peer":"127.0.0.1:`) &&
			strings.Contains(access.String(), `"remote":"127.0.0.2:`)
	})
	for _, line := range strings.Split(access.String(), "\n") {
		if strings.Contains(line, `"remote":"127.0.0.2:`) && strings.Contains(line, `"peer"`) {
			t.Errorf("a peer recorded for a direct client: %s", line)
		}
	}
	for series, want := range map[string]string{
		`edgepixel_pop_forwarded_total{result="client"}`:  "2",
		`edgepixel_pop_forwarded_total{result="absent"}`:  "1",
		`edgepixel_pop_forwarded_total{result="ignored"}`: "1",
	} {
		if got := metricValue(p.Server, series); got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}

	// The proxy holds more connections than the per-address cap; a
	// client connecting directly does not.
	for i := range 4 {
		c := dialFrom(t, p.URL, "127.0.0.1")
		if r := c.ask(t, "/client", "X-Forwarded-For: 203.0.113.9\r\n"); r.Client != "203.0.113.9" {
			t.Fatalf("proxy connection %d: %q", i+2, r.Client)
		}
	}
	dialFrom(t, p.URL, "127.0.0.2").ask(t, "/client", "") // the spoofer's second
	if st := dialFrom(t, p.URL, "127.0.0.2").status(t); st != 503 {
		t.Errorf("a third direct connection from one address: %d, want 503", st)
	}
}
