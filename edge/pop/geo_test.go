package pop

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/geoip"
	"github.com/edgepixel/edgepixel/edge/pop/geoip/geoiptest"
)

// geoIPFiles writes a City and an ASN database to dir.
func geoIPFiles(t *testing.T, dir, city string) (cityPath, asnPath string) {
	t.Helper()
	cityDB, err := geoiptest.CityDB("GeoLite2-City", 1_760_000_000, geoiptest.City{
		Network: "81.2.69.0/24", Continent: "EU", Country: "GB", CountryName: "United Kingdom",
		City: city, Subdivisions: []string{"ENG", "BNH"}, Latitude: 50.8284, Longitude: -0.1395, HasLocation: true,
		TimeZone: "Europe/London", Postal: "BN1",
	}, geoiptest.City{
		Network: "2a02:d0c0::/29", Continent: "AS", Country: "IN", CountryName: "India", City: "Mumbai",
		Subdivisions: []string{"MH"}, TimeZone: "Asia/Kolkata",
	})
	if err != nil {
		t.Fatal(err)
	}
	asnDB, err := geoiptest.ASNDB("GeoLite2-ASN", 1_760_000_000,
		geoiptest.AS{Network: "81.2.69.0/24", Number: 20712, Organization: "Andrews & Arnold Ltd"},
		geoiptest.AS{Network: "1.0.0.0/24", Number: 13335, Organization: "Cloudflare, Inc."})
	if err != nil {
		t.Fatal(err)
	}
	cityPath, asnPath = filepath.Join(dir, "GeoLite2-City.mmdb"), filepath.Join(dir, "GeoLite2-ASN.mmdb")
	if err := geoiptest.WriteFile(cityPath, cityDB); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteFile(asnPath, asnDB); err != nil {
		t.Fatal(err)
	}
	return cityPath, asnPath
}

// TestGeoIPThroughGuest looks addresses up through compute-sdk-go's geo
// package in the storeguest, with databases and a manifest table: the
// manifest wins for the addresses it lists, the databases answer the
// rest, and an updated database is picked up without a restart.
func TestGeoIPThroughGuest(t *testing.T) {
	dir := t.TempDir()
	cityPath, asnPath := geoIPFiles(t, dir, "Brighton")
	m := manifest(t, `
[local_server.geolocation]
format = "inline-toml"
[local_server.geolocation.addresses."81.2.69.142"]
city = "From the manifest"
country_code = "GB"
`)
	p := startPOP(t, m, func(c *Config) {
		c.WasmPath = guestPath("storeguest")
		c.GeoIPDatabases = []string{asnPath, cityPath} // order does not matter
		c.GeoIPCheckInterval = 20 * time.Millisecond
	})
	// What the databases hold, as the geoip package maps it, decoded as
	// the guest decodes it.
	direct, err := geoip.Open([]string{cityPath, asnPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := func(addr string) geoRecord {
		var g geoRecord
		js := direct.Lookup(netip.MustParseAddr(addr))
		if js == nil {
			return g
		}
		if err := json.Unmarshal(js, &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	for _, tc := range []struct {
		ip   string
		want geoRecord
	}{
		{"81.2.69.142", geoRecord{City: "From the manifest", CountryCode: "GB"}},
		{"81.2.69.7", want("81.2.69.7")},
		{"2a02:d0c0::9", want("2a02:d0c0::9")},
		{"1.0.0.1", geoRecord{AsName: "Cloudflare, Inc.", AsNumber: 13335, ConnSpeed: "?", ConnType: "?", ProxyDescription: "?", ProxyType: "?"}},
		{"10.0.0.1", geoRecord{}},
	} {
		r := p.ask(t, "/geo", q("ip", tc.ip), nil)
		if r.Err != "" || r.Geo == nil || *r.Geo != tc.want {
			got, _ := json.Marshal(r.Geo)
			exp, _ := json.Marshal(tc.want)
			t.Errorf("%s: err=%q\n got %s\nwant %s", tc.ip, r.Err, got, exp)
		}
	}
	if g := want("81.2.69.7"); g.City != "Brighton" || g.Region != "BNH" || g.AsNumber != 20712 || g.CountryCode3 != "GBR" {
		t.Errorf("the database's record: %+v", g)
	}
	if r := p.ask(t, "/geo", q("ip", "127.0.0.1"), nil); r.Geo == nil || r.Geo.City != "San Francisco" {
		t.Errorf("loopback: %+v, want Viceroy's default record", r.Geo)
	}

	// A weekly update of both files, by rename as geoipupdate does it.
	geoIPFiles(t, dir, "Hove")
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := p.ask(t, "/geo", q("ip", "81.2.69.7"), nil)
		if r.Geo != nil && r.Geo.City == "Hove" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the updated database was not picked up: %+v", r.Geo)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken update leaves the last good one in use, and says so.
	if err := os.WriteFile(cityPath, []byte("interrupted download"), 0o644); err != nil {
		t.Fatal(err)
	}
	for {
		if d := p.Degraded(); len(d) == 1 && strings.Contains(d[0], cityPath) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a broken update is not reported: %q", p.Degraded())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := p.ask(t, "/geo", q("ip", "81.2.69.7"), nil); r.Geo == nil || r.Geo.City != "Hove" {
		t.Errorf("after a broken update: %+v", r.Geo)
	}
	var metrics strings.Builder
	p.WritePrometheus(&metrics)
	for _, s := range []string{`edgepixel_pop_geoip_reloads_total{result="ok"} 2`, `edgepixel_pop_geoip_reloads_total{result="failed"} 1`} {
		if !strings.Contains(metrics.String(), s) {
			t.Errorf("metrics lack %s:\n%s", s, grepLines(metrics.String(), "geoip"))
		}
	}
}

// TestGeoIPBadDatabase: a database that cannot be used stops New with
// the reason, before any guest starts.
func TestGeoIPBadDatabase(t *testing.T) {
	dir := t.TempDir()
	cityPath, asnPath := geoIPFiles(t, dir, "Brighton")
	data, err := os.ReadFile(cityPath)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.mmdb")
	if err := os.WriteFile(truncated, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{truncated}, "truncated.mmdb: not a valid MaxMind DB"},
		{[]string{filepath.Join(dir, "missing.mmdb")}, "no such file"},
		{[]string{asnPath, asnPath}, "are both asn databases"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := New(ctx, Config{WasmPath: guestPath("storeguest"), CompileCacheDir: cacheDir, GeoIPDatabases: tc.paths})
		cancel()
		if err == nil {
			s.Shutdown(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.paths, err, tc.want)
		}
	}
}
