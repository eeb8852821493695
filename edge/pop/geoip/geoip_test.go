package geoip

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/geoip/geoiptest"
	"github.com/fastly/compute-sdk-go/geo"
)

const built = 1_760_000_000 // 2025-10-09

var testCities = []geoiptest.City{{
	Network: "81.2.69.0/24", Continent: "EU", Country: "GB", CountryName: "United Kingdom", RegisteredCountry: "GB",
	City: "Brighton", GermanCity: "Brighton (de)", GermanCountry: "Vereinigtes Königreich",
	Subdivisions: []string{"ENG", "BNH"}, Latitude: 50.8284, Longitude: -0.1395, HasLocation: true,
	TimeZone: "Europe/London", Postal: "BN1",
}, {
	Network: "216.160.83.0/24", Continent: "NA", Country: "US", CountryName: "United States", RegisteredCountry: "US",
	City: "Milton", Subdivisions: []string{"WA"}, Latitude: 47.2513, Longitude: -122.3149, HasLocation: true,
	MetroCode: 819, TimeZone: "America/Los_Angeles", Postal: "98354",
}, {
	Network: "2a02:d0c0::/29", Continent: "AS", Country: "IN", CountryName: "India", City: "Mumbai",
	Subdivisions: []string{"MH"}, Latitude: 19.07, Longitude: 72.88, HasLocation: true, TimeZone: "Asia/Kolkata",
}, {
	// Anycast: only the registered country is known.
	Network: "89.160.20.0/24", RegisteredCountry: "SE",
}, {
	Network: "67.43.156.0/24", Continent: "AS", Country: "BT", CountryName: "Bhutan", TimeZone: "No/Such_Zone",
	ASNumber: 35908, ASOrganization: "Traits AS",
}}

var testASNs = []geoiptest.AS{
	{Network: "81.2.69.0/24", Number: 20712, Organization: "Andrews & Arnold Ltd"},
	{Network: "1.0.0.0/24", Number: 13335, Organization: "Cloudflare, Inc."},
}

func writeDB(t testing.TB, name string, data []byte, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func cityDB(t testing.TB) string {
	data, err := geoiptest.CityDB("GeoLite2-City", built, testCities...)
	return writeDB(t, "GeoLite2-City.mmdb", data, err)
}

func asnDB(t testing.TB) string {
	data, err := geoiptest.ASNDB("GeoLite2-ASN", built, testASNs...)
	return writeDB(t, "GeoLite2-ASN.mmdb", data, err)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func mustOpen(t testing.TB, paths ...string) *DB {
	t.Helper()
	db, err := Open(paths, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

var (
	winter = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	summer = time.Date(2026, 7, 15, 12, 0, 0, 0, time.UTC)
)

func TestLookup(t *testing.T) {
	db := mustOpen(t, cityDB(t), asnDB(t))
	unknowns := Record{ConnSpeed: "?", ConnType: "?", ProxyDescription: "?", ProxyType: "?"}
	with := func(r Record) Record {
		r.ConnSpeed, r.ConnType, r.ProxyDescription, r.ProxyType = "?", "?", "?", "?"
		return r
	}
	for _, tc := range []struct {
		addr string
		now  time.Time
		want Record
		ok   bool
	}{
		{"81.2.69.142", summer, with(Record{
			ASName: "Andrews & Arnold Ltd", ASNumber: 20712, City: "Brighton", Continent: "EU",
			CountryCode: "GB", CountryCode3: "GBR", CountryName: "United Kingdom", GMTOffset: 100,
			Latitude: 50.8284, Longitude: -0.1395, PostalCode: "BN1", Region: "BNH", UTCOffset: 100,
		}), true},
		{"81.2.69.142", winter, with(Record{
			ASName: "Andrews & Arnold Ltd", ASNumber: 20712, City: "Brighton", Continent: "EU",
			CountryCode: "GB", CountryCode3: "GBR", CountryName: "United Kingdom",
			Latitude: 50.8284, Longitude: -0.1395, PostalCode: "BN1", Region: "BNH",
		}), true},
		// IPv4-mapped IPv6 is the IPv4 address.
		{"::ffff:216.160.83.56", summer, with(Record{
			City: "Milton", Continent: "NA", CountryCode: "US", CountryCode3: "USA", CountryName: "United States",
			GMTOffset: -700, Latitude: 47.2513, Longitude: -122.3149, MetroCode: 819, PostalCode: "98354",
			Region: "WA", UTCOffset: -700,
		}), true},
		{"2a02:d0c0::1", winter, with(Record{
			City: "Mumbai", Continent: "AS", CountryCode: "IN", CountryCode3: "IND", CountryName: "India",
			GMTOffset: 530, Latitude: 19.07, Longitude: 72.88, Region: "MH", UTCOffset: 530,
		}), true},
		{"89.160.20.112", winter, with(Record{CountryCode: "SE", CountryCode3: "SWE", CountryName: "SE"}), true},
		// ASN from the City database's traits; an unknown zone is offset 0.
		{"67.43.156.1", winter, with(Record{
			ASName: "Traits AS", ASNumber: 35908, Continent: "AS", CountryCode: "BT", CountryCode3: "BTN", CountryName: "Bhutan",
		}), true},
		// Only the ASN database knows it.
		{"1.0.0.1", winter, with(Record{ASName: "Cloudflare, Inc.", ASNumber: 13335}), true},
		{"8.8.8.8", winter, unknowns, false},
		{"10.1.2.3", winter, unknowns, false},
		{"::1", winter, unknowns, false},
		{"fe80::1%eth0", winter, unknowns, false},
	} {
		got, ok := db.Record(netip.MustParseAddr(tc.addr), tc.now)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s at %s:\n got %+v, %v\nwant %+v, %v", tc.addr, tc.now.Format(time.DateOnly), got, ok, tc.want, tc.ok)
		}
	}
	if db.Lookup(netip.MustParseAddr("8.8.8.8")) != nil {
		t.Error("an address without a record has an answer")
	}
	var m strings.Builder
	db.WritePrometheus(&m)
	for _, want := range []string{
		`edgepixel_pop_geoip_lookups_total{result="found"} 7`,
		`edgepixel_pop_geoip_lookups_total{result="not_found"} 5`,
		`edgepixel_pop_geoip_build_timestamp_seconds{kind="location"} 1760000000`,
		`edgepixel_pop_geoip_build_timestamp_seconds{kind="asn"} 1760000000`,
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, m.String())
		}
	}
}

// TestJSON checks the answer's exact shape and that compute-sdk-go's geo
// package decodes it into the same values.
func TestJSON(t *testing.T) {
	db := mustOpen(t, cityDB(t), asnDB(t))
	rec, _ := db.Record(netip.MustParseAddr("216.160.83.56"), winter)
	js := string(rec.JSON())
	want := `{"area_code":0,"as_name":"","as_number":0,"city":"Milton","conn_speed":"?","conn_type":"?",` +
		`"continent":"NA","country_code":"US","country_code3":"USA","country_name":"United States",` +
		`"gmt_offset":-800,"latitude":47.2513,"longitude":-122.3149,"metro_code":819,"postal_code":"98354",` +
		`"proxy_description":"?","proxy_type":"?","region":"WA","utc_offset":-800}`
	if js != want {
		t.Errorf("JSON:\n got %s\nwant %s", js, want)
	}
	rec, _ = db.Record(netip.MustParseAddr("81.2.69.1"), summer)
	var g geo.Geo
	if err := json.Unmarshal(rec.JSON(), &g); err != nil {
		t.Fatal(err)
	}
	if want := (geo.Geo{AsName: "Andrews & Arnold Ltd", AsNumber: 20712, City: "Brighton", ConnSpeed: "?", ConnType: "?",
		ContinentCode: "EU", CountryCode: "GB", CountryCode3: "GBR", CountryName: "United Kingdom", Latitude: 50.8284,
		Longitude: -0.1395, PostalCode: "BN1", ProxyDescription: "?", ProxyType: "?", Region: "BNH", UTCOffset: 100}); g != want {
		t.Errorf("the SDK decodes\n%+v\nwant\n%+v", g, want)
	}
	if strings.Contains(string(rec.JSON()), `\u0026`) {
		t.Error("HTML-escaped")
	}
}

func TestUTCOffset(t *testing.T) {
	for _, tc := range []struct {
		zone string
		now  time.Time
		want int
	}{
		{"UTC", winter, 0}, {"America/St_Johns", winter, -330}, {"America/St_Johns", summer, -230},
		{"Asia/Kathmandu", summer, 545}, {"Australia/Lord_Howe", winter, 1100}, {"Pacific/Kiritimati", summer, 1400},
		{"", summer, 0}, {"Local", summer, 0}, {"../../etc/passwd", summer, 0}, {"/etc/localtime", summer, 0},
	} {
		if got := utcOffset(tc.zone, tc.now); got != tc.want {
			t.Errorf("utcOffset(%q, %s) = %d, want %d", tc.zone, tc.now.Format(time.DateOnly), got, tc.want)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	good, err := geoiptest.CityDB("GeoLite2-City", built, testCities...)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := geoiptest.ASNDB("GeoIP2-Anonymous-IP", built, testASNs...)
	if err != nil {
		t.Fatal(err)
	}
	dbip, err := geoiptest.CityDB("DBIP-City-Lite", built, testCities...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The data section ends 16 bytes before the metadata marker; cutting
	// into the search tree leaves pointers past the end.
	marker := strings.LastIndex(string(good), "\xAB\xCD\xEFMaxMind.com")
	corrupt := append([]byte{}, good...)
	for i := 0; i < marker/2; i++ {
		corrupt[i] = 0xFF
	}
	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"missing", []string{filepath.Join(dir, "nope.mmdb")}, "no such file"},
		{"directory", []string{dir}, "not a regular file"},
		{"empty", []string{file("empty.mmdb", nil)}, "empty file"},
		{"text", []string{file("text.mmdb", []byte("not a database\n"))}, "not a valid MaxMind DB"},
		{"truncated", []string{file("trunc.mmdb", good[:len(good)/2])}, "not a valid MaxMind DB"},
		{"metadata only", []string{file("meta.mmdb", good[marker:])}, "MaxMind DB"},
		{"corrupt tree", []string{file("corrupt.mmdb", corrupt)}, "corrupt or truncated GeoLite2-City database"},
		{"other type", []string{file("anon.mmdb", anon)}, `database type "GeoIP2-Anonymous-IP" holds neither`},
		{"two cities", []string{file("a.mmdb", good), file("b.mmdb", dbip)}, "are both location databases"},
	} {
		_, err := Open(tc.paths, quiet)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// DB-IP's names are recognised.
	for _, typ := range []string{"DBIP-City-Lite", "DBIP-Country-Lite", "GeoIP2-Country", "GeoIP2-Enterprise"} {
		if k, ok := kindOf(typ); !ok || k != Location {
			t.Errorf("%s: %v %v", typ, k, ok)
		}
	}
	for _, typ := range []string{"DBIP-ASN-Lite", "DBIP-ASN-Lite (compat=GeoLite2-ASN)", "GeoIP2-ISP"} {
		if k, ok := kindOf(typ); !ok || k != ASN {
			t.Errorf("%s: %v %v", typ, k, ok)
		}
	}
}

// TestReload updates the files under a running DB: by rename (as
// geoipupdate does), in place, and with a broken file, which leaves the
// version in use.
func TestReload(t *testing.T) {
	city := cityDB(t)
	db := mustOpen(t, city)
	addr := netip.MustParseAddr("81.2.69.142")
	cityOf := func() string {
		r, _ := db.Record(addr, winter)
		return r.City
	}
	reload := func() { // a change is loaded at the second check that sees it
		db.Reload()
		db.Reload()
	}
	update := func(name string, in bool) {
		t.Helper()
		c := testCities[0]
		c.City = name
		data, err := geoiptest.CityDB("GeoLite2-City", built+1, c)
		if err != nil {
			t.Fatal(err)
		}
		if in {
			err = os.WriteFile(city, data, 0o644)
		} else {
			err = geoiptest.WriteFile(city, data)
		}
		if err != nil {
			t.Fatal(err)
		}
		// Some file systems keep modification times coarse: make sure
		// the change shows in the stamp.
		bump(t, city)
	}
	if got := cityOf(); got != "Brighton" {
		t.Fatalf("before: %q", got)
	}
	update("Hove", false)
	db.Reload()
	if got := cityOf(); got != "Brighton" {
		t.Errorf("loaded at the first check that saw the change: %q", got)
	}
	db.Reload()
	if got := cityOf(); got != "Hove" {
		t.Errorf("after an update by rename: %q", got)
	}
	update("Lewes", true)
	reload()
	if got := cityOf(); got != "Lewes" {
		t.Errorf("after an update in place: %q", got)
	}
	if err := os.WriteFile(city, []byte("half a download"), 0o644); err != nil {
		t.Fatal(err)
	}
	bump(t, city)
	reload()
	if got := cityOf(); got != "Lewes" {
		t.Errorf("after a broken update: %q", got)
	}
	if d := db.Degraded(); len(d) != 1 || !strings.Contains(d[0], "update not loaded") || !strings.Contains(d[0], city) {
		t.Errorf("Degraded: %q", d)
	}
	asn, _ := geoiptest.ASNDB("GeoLite2-ASN", built, testASNs...)
	if err := os.WriteFile(city, asn, 0o644); err != nil {
		t.Fatal(err)
	}
	bump(t, city)
	reload()
	if d := db.Degraded(); len(d) != 1 || !strings.Contains(d[0], "now a asn database") {
		t.Errorf("Degraded after a change of kind: %q", d)
	}
	update("Rottingdean", false)
	reload()
	if got, d := cityOf(), db.Degraded(); got != "Rottingdean" || d != nil {
		t.Errorf("after a good update: %q, degraded %q", got, d)
	}
	if db.reloads.Load() != 3 || db.reloadFailures.Load() != 2 {
		t.Errorf("reloads %d, failures %d; want 3, 2", db.reloads.Load(), db.reloadFailures.Load())
	}
}

var bumps int64

func bump(t *testing.T, path string) {
	bumps++
	when := time.Unix(1_800_000_000+bumps, 0)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpen feeds arbitrary bytes, starting from valid databases, to the
// reader: each is refused with an error or looks addresses up without
// crashing.
func FuzzOpen(f *testing.F) {
	city, err := geoiptest.SmallCityDB("GeoLite2-City", geoiptest.City{Network: "81.0.0.0/8", Country: "GB",
		City: "B", Subdivisions: []string{"X"}, TimeZone: "UTC", HasLocation: true, Latitude: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(city)
	f.Add(city[:len(city)-10])
	f.Add([]byte("\xAB\xCD\xEFMaxMind.com"))
	addrs := []netip.Addr{netip.MustParseAddr("81.2.69.142"), netip.MustParseAddr("1.0.0.1"),
		netip.MustParseAddr("2a02:d0c0::1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("ffff::")}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, kind, err := open(data)
		if err != nil {
			if r != nil {
				t.Fatal("a reader with an error")
			}
			return
		}
		f := &file{kind: kind}
		f.cur.Store(&reader{db: r})
		db := &DB{log: quiet, files: []*file{f}}
		for _, a := range addrs {
			if rec, ok := db.Record(a, summer); ok {
				var v map[string]any
				if err := json.Unmarshal(rec.JSON(), &v); err != nil {
					t.Fatalf("%s: invalid JSON: %v", a, err)
				}
			}
		}
	})
}

// FuzzRecord maps arbitrary decoded values to Fastly's record: the JSON
// is always valid and compute-sdk-go's geo package decodes it.
func FuzzRecord(f *testing.F) {
	f.Add("Brighton", "GB", "EU", "BNH", "Europe/London", 50.8, -0.1, uint(0), "AS", uint(20712))
	f.Add("\xff\xfe", "\x00", "<>&", "", "../../etc/passwd", 0.0, 0.0, uint(65535), "\u2028", uint(1<<32-1))
	f.Fuzz(func(t *testing.T, city, cc, continent, region, tz string, lat, lon float64, metro uint, asName string, asNum uint) {
		var loc locationRecord
		loc.City.Names.EN = city
		loc.Country.ISOCode = cc
		loc.Continent.Code = continent
		loc.Subdivisions = append(loc.Subdivisions, struct {
			ISOCode string `maxminddb:"iso_code"`
		}{region})
		loc.Location.TimeZone = tz
		loc.Location.Latitude, loc.Location.Longitude = lat, lon
		loc.Location.MetroCode = metro
		rec := newRecord(&loc, &asnRecord{Number: asNum, Organization: asName}, summer)
		js := rec.JSON()
		if js == nil {
			t.Fatal("no JSON")
		}
		var g geo.Geo
		if err := json.Unmarshal(js, &g); err != nil && !strings.Contains(err.Error(), "cannot unmarshal number") {
			// Only an AS or metro number beyond the SDK's int may fail,
			// as it would with Fastly's own record.
			t.Fatalf("the SDK cannot decode %s: %v", js, err)
		}
		if rec.UTCOffset < -1200 || rec.UTCOffset > 1400 {
			t.Fatalf("offset %d for %q", rec.UTCOffset, tz)
		}
	})
}

// FuzzLookup looks arbitrary addresses up in valid City and ASN
// databases, as fastly_geo.lookup passes them (4 or 16 bytes): the
// answer is nothing or a record compute-sdk-go's geo package decodes, and
// an IPv4-mapped IPv6 address gets the IPv4 address's answer.
func FuzzLookup(f *testing.F) {
	db := mustOpen(f, cityDB(f), asnDB(f))
	for _, s := range []string{"81.2.69.142", "2a02:d0c0::1", "::ffff:81.2.69.1", "67.43.156.1", "89.160.20.5", "0.0.0.0", "ffff::", "::"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, octets []byte) {
		a, ok := netip.AddrFromSlice(octets)
		if !ok {
			return // fastly_geo answers $inval before any lookup
		}
		js := db.Lookup(a)
		if js != nil {
			var g geo.Geo
			if err := json.Unmarshal(js, &g); err != nil {
				t.Fatalf("%s: the SDK cannot decode %s: %v", a, js, err)
			}
		}
		if a.Is4In6() {
			if v4 := db.Lookup(a.Unmap()); string(v4) != string(js) {
				t.Fatalf("%s: %s; as IPv4: %s", a, js, v4)
			}
		}
	})
}
