// Package geoiptest writes small MaxMind-format databases for tests, with
// MaxMind's writer (github.com/maxmind/mmdbwriter), in the layout of
// GeoLite2-City and GeoLite2-ASN. Only tests import it, so the writer is
// not part of any command.
package geoiptest

import (
	"bytes"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// City is one network of a City database. Empty fields are left out of
// the record, as GeoLite2 leaves out what it does not know.
type City struct {
	Network                   string   // CIDR
	Continent                 string   // continent.code
	Country, CountryName      string   // country.iso_code, names.en
	RegisteredCountry         string   // registered_country.iso_code
	City                      string   // city.names.en
	Subdivisions              []string // iso_code of each, largest first
	Latitude, Longitude       float64
	HasLocation               bool // write latitude and longitude (even 0)
	MetroCode                 uint16
	TimeZone                  string
	Postal                    string
	ASNumber                  uint32 // traits, as GeoIP2 Enterprise has them
	ASOrganization            string
	GermanCity, GermanCountry string // a second language, which lookups must skip
}

// AS is one network of an ASN database.
type AS struct {
	Network      string
	Number       uint32
	Organization string
}

func names(en, de string) mmdbtype.Map {
	m := mmdbtype.Map{"en": mmdbtype.String(en)}
	if de != "" {
		m["de"] = mmdbtype.String(de)
	}
	return m
}

func (c City) record() mmdbtype.Map {
	m := mmdbtype.Map{}
	if c.Continent != "" {
		m["continent"] = mmdbtype.Map{"code": mmdbtype.String(c.Continent), "names": names(c.Continent+" continent", "")}
	}
	if c.Country != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(c.Country), "names": names(c.CountryName, c.GermanCountry)}
	}
	if c.RegisteredCountry != "" {
		m["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(c.RegisteredCountry), "names": names(c.RegisteredCountry, "")}
	}
	if c.City != "" {
		m["city"] = mmdbtype.Map{"names": names(c.City, c.GermanCity), "geoname_id": mmdbtype.Uint32(42)}
	}
	if len(c.Subdivisions) > 0 {
		var subs mmdbtype.Slice
		for _, s := range c.Subdivisions {
			subs = append(subs, mmdbtype.Map{"iso_code": mmdbtype.String(s), "names": names("Subdivision "+s, "")})
		}
		m["subdivisions"] = subs
	}
	loc := mmdbtype.Map{}
	if c.HasLocation {
		loc["latitude"] = mmdbtype.Float64(c.Latitude)
		loc["longitude"] = mmdbtype.Float64(c.Longitude)
		loc["accuracy_radius"] = mmdbtype.Uint16(100)
	}
	if c.MetroCode != 0 {
		loc["metro_code"] = mmdbtype.Uint16(c.MetroCode)
	}
	if c.TimeZone != "" {
		loc["time_zone"] = mmdbtype.String(c.TimeZone)
	}
	if len(loc) > 0 {
		m["location"] = loc
	}
	if c.Postal != "" {
		m["postal"] = mmdbtype.Map{"code": mmdbtype.String(c.Postal)}
	}
	if c.ASNumber != 0 {
		m["traits"] = mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(c.ASNumber),
			"autonomous_system_organization": mmdbtype.String(c.ASOrganization)}
	}
	return m
}

// CityDB returns a City database of the given type (GeoLite2-City,
// DBIP-City-Lite, ...) holding the networks.
func CityDB(dbType string, buildEpoch int64, cities ...City) ([]byte, error) {
	recs := make(map[string]mmdbtype.Map, len(cities))
	var order []string
	for _, c := range cities {
		recs[c.Network] = c.record()
		order = append(order, c.Network)
	}
	return write(dbType, buildEpoch, 6, order, recs)
}

// SmallCityDB returns an IPv4-only City database of one network: the
// smallest valid database, for a fuzzer to start from (a fuzzer shrinks
// every input it finds interesting, which costs it in proportion to the
// input's size).
func SmallCityDB(dbType string, c City) ([]byte, error) {
	return write(dbType, 0, 4, []string{c.Network}, map[string]mmdbtype.Map{c.Network: c.record()})
}

// ASNDB returns an ASN database of the given type (GeoLite2-ASN, ...).
func ASNDB(dbType string, buildEpoch int64, as ...AS) ([]byte, error) {
	recs := make(map[string]mmdbtype.Map, len(as))
	var order []string
	for _, a := range as {
		recs[a.Network] = mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(a.Number),
			"autonomous_system_organization": mmdbtype.String(a.Organization),
		}
		order = append(order, a.Network)
	}
	return write(dbType, buildEpoch, 6, order, recs)
}

func write(dbType string, buildEpoch int64, ipVersion int, order []string, recs map[string]mmdbtype.Map) ([]byte, error) {
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType,
		BuildEpoch:   buildEpoch,
		Description:  map[string]string{"en": "edgepixel test database"},
		Languages:    []string{"en", "de"},
		IPVersion:    ipVersion,
		RecordSize:   24,
		// Tests may place loopback addresses, which MaxMind's own
		// databases never list, to show whose address was looked up.
		IncludeReservedNetworks: true,
	})
	if err != nil {
		return nil, err
	}
	for _, n := range order {
		_, network, err := net.ParseCIDR(n)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", n, err)
		}
		if err := w.Insert(network, recs[n]); err != nil {
			return nil, fmt.Errorf("network %s: %w", n, err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes data to path through a temporary file renamed into
// place, as geoipupdate does.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
