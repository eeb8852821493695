package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/geoip/geoiptest"
	"github.com/edgepixel/edgepixel/tests/attack"
)

// The real edge module (edge/cmd/edgepixel, standard Go's wasip1 build)
// under the binary with a geolocation database and trusted proxies: the
// module reads the client's address (downstream_client_ip_addr) and its
// country (fastly_geo) through the same hostcalls as on Fastly, and its
// events, written to a log endpoint in a file, say what it saw. The
// module stores only the country today; region, city and ASN through
// compute-sdk-go's geo package are checked in edge/pop (TestGeoIPThroughGuest).

var edgeWasm struct {
	once sync.Once
	path string
	err  error
}

// edgeModule builds the edge module once per test binary.
func edgeModule(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the edge module")
	}
	edgeWasm.once.Do(func() {
		edgeWasm.path = filepath.Join(testTmp, "edgepixel.wasm")
		cmd := exec.Command("go", "build", "-trimpath", "-o", edgeWasm.path, "github.com/edgepixel/edgepixel/edge/cmd/edgepixel")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			edgeWasm.err = fmt.Errorf("building the edge module: %v\n%s", err, out)
		}
	})
	if edgeWasm.err != nil {
		t.Fatal(edgeWasm.err)
	}
	return edgeWasm.path
}

// edgeSetup writes a GeoLite2-style City and ASN database and a
// fastly.toml whose config store makes the module write its events as
// NDJSON lines to the log endpoint "events"; it returns the flags that
// serve them, with that endpoint in a file, and the file.
func edgeSetup(t *testing.T) (toml, events string, flags []string) {
	t.Helper()
	dir := t.TempDir()
	city, err := geoiptest.CityDB("GeoLite2-City", 1_760_000_000,
		geoiptest.City{Network: "81.2.69.0/24", Continent: "EU", Country: "GB", CountryName: "United Kingdom",
			City: "Brighton", Subdivisions: []string{"ENG", "BNH"}, TimeZone: "Europe/London"},
		geoiptest.City{Network: "2a02:d0c0::/29", Continent: "AS", Country: "IN", CountryName: "India",
			City: "Mumbai", Subdivisions: []string{"MH"}, TimeZone: "Asia/Kolkata"},
		// Were the peer's own address ever geolocated, it would show.
		geoiptest.City{Network: "127.0.0.0/8", Continent: "AN", Country: "AQ", CountryName: "Antarctica"})
	if err != nil {
		t.Fatal(err)
	}
	asn, err := geoiptest.ASNDB("GeoLite2-ASN", 1_760_000_000,
		geoiptest.AS{Network: "81.2.69.0/24", Number: 20712, Organization: "Andrews & Arnold Ltd"})
	if err != nil {
		t.Fatal(err)
	}
	cityPath, asnPath := filepath.Join(dir, "GeoLite2-City.mmdb"), filepath.Join(dir, "GeoLite2-ASN.mmdb")
	if err := geoiptest.WriteFile(cityPath, city); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteFile(asnPath, asn); err != nil {
		t.Fatal(err)
	}
	toml = filepath.Join(dir, "fastly.toml")
	if err := os.WriteFile(toml, []byte(`manifest_version = 3
name = "edgepixel"
language = "go"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "TST"
log_endpoint = "events"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	events = filepath.Join(dir, "events.ndjson")
	return toml, events, []string{"--instances", "1", "--geoip-db", cityPath + "," + asnPath,
		"--log-endpoint", "events=file:" + events}
}

// edgeEvent is what the test reads of an event line.
type edgeEvent struct {
	Site     string `json:"site"`
	ClientIP string `json:"client_ip"`
	Country  string `json:"country"`
	Pop      string `json:"pop"`
}

// stopAndReadEvents stops the POP gracefully, which makes the module
// deliver what it buffered, and reads the event lines by site.
func stopAndReadEvents(t *testing.T, p *popProc, path string) map[string]edgeEvent {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the POP did not stop\n%s", p.stderr)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no events written: %v\n%s", err, lastLines(p.stderr.String(), 30))
	}
	defer f.Close()
	out := map[string]edgeEvent{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e edgeEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		if e.Site == "" {
			continue // a counters line
		}
		if _, dup := out[e.Site]; dup {
			t.Errorf("two events for site %s", e.Site)
		}
		out[e.Site] = e
	}
	return out
}

// askPixel asks for the pixel of site with client c and extra headers.
func askPixel(t *testing.T, c *http.Client, url, site string, header ...string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/p.gif?site="+site, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", site, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" {
		t.Errorf("%s: %s %s, want the GIF", site, resp.Status, resp.Header.Get("Content-Type"))
	}
}

// TestEdgeModuleBehindProxy: the edge module geolocates the client a
// trusted proxy names in X-Forwarded-For; the same header from a peer not
// trusted, or one that cannot be read, leaves the connection's address,
// and every hit is answered and stored.
func TestEdgeModuleBehindProxy(t *testing.T) {
	wasm := edgeModule(t)
	toml, events, flags := edgeSetup(t)
	// 127.0.0.2 is the load balancer; 127.0.0.3 is anyone else.
	p := startModule(t, toml, wasm, append(flags, "--trusted-proxies", "127.0.0.2/32,192.0.2.0/24")...)
	lb, other := attack.Client("127.0.0.2", 10*time.Second), attack.Client("127.0.0.3", 10*time.Second)
	defer lb.CloseIdleConnections()
	defer other.CloseIdleConnections()

	askPixel(t, lb, p.url, "trusted.example", "X-Forwarded-For", "203.0.113.50, 81.2.69.142, 192.0.2.9")
	askPixel(t, lb, p.url, "trusted6.example", "X-Forwarded-For", "[2a02:d0c0::17]:4711")
	askPixel(t, other, p.url, "spoofed.example", "X-Forwarded-For", "81.2.69.142")
	askPixel(t, lb, p.url, "garbage.example", "X-Forwarded-For", "81.2.69.142, 81.2.69.143:99999")
	askPixel(t, lb, p.url, "noheader.example")

	series := func(result string) int64 {
		return p.metricInt(t, `edgepixel_pop_forwarded_total{result="`+result+`"}`)
	}
	for result, want := range map[string]int64{"client": 2, "ignored": 1, "invalid": 1, "absent": 1, "all_trusted": 0} {
		if got := series(result); got != want {
			t.Errorf("edgepixel_pop_forwarded_total{result=%q} = %d, want %d", result, got, want)
		}
	}

	got := stopAndReadEvents(t, p, events)
	for site, want := range map[string]edgeEvent{
		// The right-most address not a trusted proxy's: 192.0.2.9 is one.
		"trusted.example":  {ClientIP: "81.2.69.0", Country: "GB"},
		"trusted6.example": {ClientIP: "2a02:d0c0::", Country: "IN"},
		// The peer's own address, which the database places in Antarctica.
		"spoofed.example":  {ClientIP: "127.0.0.0", Country: "AQ"},
		"garbage.example":  {ClientIP: "127.0.0.0", Country: "AQ"},
		"noheader.example": {ClientIP: "127.0.0.0", Country: "AQ"},
	} {
		e, ok := got[site]
		if !ok {
			t.Errorf("%s: no event stored", site)
			continue
		}
		// The country shows whose address was looked up; the truncated
		// address, while the module stores one (issue 11 makes it opt-in),
		// must agree.
		if e.ClientIP != "" && e.ClientIP != want.ClientIP || e.Country != want.Country || e.Pop != "TST" {
			t.Errorf("%s: client_ip %q country %q pop %q; want %q %q TST", site, e.ClientIP, e.Country, e.Pop, want.ClientIP, want.Country)
		}
	}
}

// proxyV2 is a PROXY protocol v2 header for a TCP connection from src
// to dst, both IPv4 or both IPv6 (the HAProxy PROXY protocol
// specification, section 2.2).
func proxyV2(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21) // version 2, PROXY
	addrs := append(src.Addr().AsSlice(), dst.Addr().AsSlice()...)
	if src.Addr().Is4() {
		b = append(b, 0x11) // TCP over IPv4
	} else {
		b = append(b, 0x21) // TCP over IPv6
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+4))
	b = append(b, addrs...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// rawPixel sends head (a PROXY header, or nothing) and a pixel request for
// site from local, and returns the answer's status line; "" if the POP
// closed the connection without one.
func rawPixel(t *testing.T, local, addr string, head []byte, site string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := append(head, "GET /p.gif?site="+site+" HTTP/1.1\r\nHost: pixel.example\r\nConnection: close\r\n\r\n"...)
	if _, err := c.Write(req); err != nil {
		return ""
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestEdgeModuleProxyProtocol: a trusted proxy's connections start with a
// PROXY header (v1 or v2) naming the client, whom the module geolocates;
// one without is closed unanswered, and a PROXY header from a peer not
// trusted is not HTTP (400). A header that is hostile gets no crash.
func TestEdgeModuleProxyProtocol(t *testing.T) {
	wasm := edgeModule(t)
	toml, events, flags := edgeSetup(t)
	p := startModule(t, toml, wasm, append(flags, "--trusted-proxies", "127.0.0.2", "--proxy-protocol")...)
	dst := netip.MustParseAddrPort("198.51.100.1:443")

	for _, tc := range []struct {
		local, site string
		head        []byte
		status      string
	}{
		{"127.0.0.2", "v1.example", []byte("PROXY TCP4 81.2.69.160 198.51.100.1 51000 443\r\n"), "HTTP/1.1 200 OK"},
		{"127.0.0.2", "v2.example", proxyV2(netip.MustParseAddrPort("[2a02:d0c0::9]:51000"), netip.MustParseAddrPort("[2001:db8::1]:443")), "HTTP/1.1 200 OK"},
		{"127.0.0.2", "v2-4.example", proxyV2(netip.MustParseAddrPort("81.2.69.161:51000"), dst), "HTTP/1.1 200 OK"},
		// The proxy's health check: LOCAL, the connection's own addresses.
		{"127.0.0.2", "local.example", []byte("PROXY UNKNOWN\r\n"), "HTTP/1.1 200 OK"},
		{"127.0.0.2", "missing.example", nil, ""},
		{"127.0.0.2", "bad.example", []byte("PROXY TCP4 81.2.69.999 198.51.100.1 1 2\r\n"), ""},
		{"127.0.0.2", "bad-family.example", []byte("PROXY TCP4 2a02:d0c0::9 198.51.100.1 1 2\r\n"), ""},
		{"127.0.0.2", "long.example", []byte("PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n"), ""},
		{"127.0.0.3", "untrusted.example", []byte("PROXY TCP4 81.2.69.162 198.51.100.1 51000 443\r\n"), "HTTP/1.1 400 Bad Request"},
	} {
		if got := rawPixel(t, tc.local, p.addr, tc.head, tc.site); got != tc.status {
			t.Errorf("%s from %s: answered %q, want %q", tc.site, tc.local, got, tc.status)
		}
	}
	if got := p.metricInt(t, `edgepixel_pop_client_rejects_total{reason="proxy_header"}`); got != 4 {
		t.Errorf("proxy_header rejects: %d, want 4", got)
	}

	got := stopAndReadEvents(t, p, events)
	for site, want := range map[string]string{"v1.example": "GB", "v2.example": "IN", "v2-4.example": "GB", "local.example": "AQ"} {
		if e, ok := got[site]; !ok || e.Country != want {
			t.Errorf("%s: event %+v (stored: %v), want country %s", site, e, ok, want)
		}
	}
	if e := got["v2.example"]; e.ClientIP != "" && e.ClientIP != "2a02:d0c0::" {
		t.Errorf("v2.example: client_ip %q, want the PROXY header's source truncated", e.ClientIP)
	}
	for _, site := range []string{"missing.example", "bad.example", "bad-family.example", "long.example", "untrusted.example"} {
		if e, ok := got[site]; ok {
			t.Errorf("%s: stored %+v, but no request reached the module", site, e)
		}
	}
}
