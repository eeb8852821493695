package geoip

import (
	"bytes"
	"encoding/json"
	"math"
	"sync"
	"time"
)

// locationRecord is what a City or Country database (GeoLite2, GeoIP2,
// DB-IP's compatible ones) holds for a network, as far as Fastly's record
// needs it. Names are decoded in English only: the other languages are
// skipped by the decoder, not allocated.
type locationRecord struct {
	City struct {
		Names names `maxminddb:"names"`
	} `maxminddb:"city"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Country           country `maxminddb:"country"`
	RegisteredCountry country `maxminddb:"registered_country"`
	Location          struct {
		Latitude  float64 `maxminddb:"latitude"`
		Longitude float64 `maxminddb:"longitude"`
		MetroCode uint    `maxminddb:"metro_code"`
		TimeZone  string  `maxminddb:"time_zone"`
	} `maxminddb:"location"`
	Postal struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"postal"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	// GeoIP2 Enterprise and ISP-enriched City databases carry the
	// autonomous system here.
	Traits asnRecord `maxminddb:"traits"`
}

type country struct {
	ISOCode string `maxminddb:"iso_code"`
	Names   names  `maxminddb:"names"`
}

type names struct {
	EN string `maxminddb:"en"`
}

// asnRecord is what an ASN database (GeoLite2-ASN, DB-IP's ASN Lite) holds
// for a network.
type asnRecord struct {
	Number       uint   `maxminddb:"autonomous_system_number"`
	Organization string `maxminddb:"autonomous_system_organization"`
}

// Record is a geolocation record in the shape of Fastly's: the JSON that
// fastly_geo.lookup answers, which compute-sdk-go's geo package decodes.
// Fields are in alphabetical order so the JSON's keys are sorted, as
// Viceroy writes them.
//
// From a MaxMind-format database:
//
//	as_name, as_number    autonomous_system_organization and _number of the
//	                      ASN database (else the City database's traits)
//	city                  city.names.en
//	continent             continent.code (AF, AN, AS, EU, NA, OC, SA: the
//	                      codes Fastly uses)
//	country_code          country.iso_code, else registered_country.iso_code
//	country_code3         the ISO 3166-1 alpha-3 code of country_code
//	country_name          the country's names.en (MaxMind's English name,
//	                      e.g. "United States", where Fastly gives ISO's
//	                      short name, "United States of America")
//	latitude, longitude   location.latitude and longitude
//	metro_code            location.metro_code (US DMA code)
//	postal_code           postal.code
//	region                iso_code of the most specific subdivision: the
//	                      ISO 3166-2 code without the country, "CA" for
//	                      California, "BNH" for Brighton and Hove, as
//	                      Fastly gives it
//	utc_offset,           the offset of location.time_zone at the time of
//	gmt_offset            the lookup (daylight saving included) as Fastly
//	                      writes it: hours and minutes as one integer,
//	                      -700 for UTC-07:00, 530 for UTC+05:30
//
// What a City and an ASN database cannot tell stays unknown: area_code 0;
// conn_speed, conn_type, proxy_description and proxy_type "?", Fastly's
// value for an unknown one. A field the database lacks for the network
// is "" or 0 (Fastly gives "NO REGION" for countries without
// subdivisions, which a database cannot tell apart from an unknown one).
type Record struct {
	AreaCode         int     `json:"area_code"`
	ASName           string  `json:"as_name"`
	ASNumber         uint    `json:"as_number"`
	City             string  `json:"city"`
	ConnSpeed        string  `json:"conn_speed"`
	ConnType         string  `json:"conn_type"`
	Continent        string  `json:"continent"`
	CountryCode      string  `json:"country_code"`
	CountryCode3     string  `json:"country_code3"`
	CountryName      string  `json:"country_name"`
	GMTOffset        int     `json:"gmt_offset"`
	Latitude         float64 `json:"latitude"`
	Longitude        float64 `json:"longitude"`
	MetroCode        uint    `json:"metro_code"`
	PostalCode       string  `json:"postal_code"`
	ProxyDescription string  `json:"proxy_description"`
	ProxyType        string  `json:"proxy_type"`
	Region           string  `json:"region"`
	UTCOffset        int     `json:"utc_offset"`
}

// unknown is Fastly's value for a string field it has no data for.
const unknown = "?"

// newRecord maps what the databases hold for an address to Fastly's
// record; loc or asn is nil when that database has nothing (or is not
// configured). now is when the lookup happens, for the UTC offset.
func newRecord(loc *locationRecord, asn *asnRecord, now time.Time) Record {
	r := Record{ConnSpeed: unknown, ConnType: unknown, ProxyDescription: unknown, ProxyType: unknown}
	if loc != nil {
		r.City = loc.City.Names.EN
		r.Continent = loc.Continent.Code
		c := loc.Country
		if c.ISOCode == "" {
			c = loc.RegisteredCountry
		}
		r.CountryCode = c.ISOCode
		r.CountryCode3 = alpha3[c.ISOCode]
		r.CountryName = c.Names.EN
		r.Latitude = finite(loc.Location.Latitude)
		r.Longitude = finite(loc.Location.Longitude)
		r.MetroCode = loc.Location.MetroCode
		r.PostalCode = loc.Postal.Code
		if n := len(loc.Subdivisions); n > 0 {
			r.Region = loc.Subdivisions[n-1].ISOCode
		}
		r.UTCOffset = utcOffset(loc.Location.TimeZone, now)
		r.GMTOffset = r.UTCOffset
		r.ASName, r.ASNumber = loc.Traits.Organization, loc.Traits.Number
	}
	if asn != nil && (asn.Number != 0 || asn.Organization != "") {
		r.ASName, r.ASNumber = asn.Organization, asn.Number
	}
	return r
}

// finite keeps a coordinate JSON can carry: a database's NaN or infinity
// (no real one has them) becomes 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// JSON encodes the record as fastly_geo.lookup answers it: keys sorted,
// no HTML escaping, as Viceroy writes its records. Only a non-finite
// float could fail to encode, and newRecord removes those; nil then.
func (r *Record) JSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// utcOffset is the offset of the IANA time zone name at now, as Fastly
// writes it (hours*100 + minutes, signed); 0 for an unknown zone.
func utcOffset(name string, now time.Time) int {
	loc := zone(name)
	if loc == nil {
		return 0
	}
	_, secs := now.In(loc).Zone()
	sign := 1
	if secs < 0 {
		sign, secs = -1, -secs
	}
	return sign * (secs/3600*100 + secs%3600/60)
}

// zones caches time zones by name: loading one reads a file. A database
// names a few hundred; beyond maxZones (a crafted database) zones are
// loaded each time rather than cached without bound.
var (
	zonesMu sync.RWMutex
	zones   = map[string]*time.Location{}
)

const maxZones = 1024

func zone(name string) *time.Location {
	if name == "" {
		return nil
	}
	zonesMu.RLock()
	loc, ok := zones[name]
	zonesMu.RUnlock()
	if ok {
		return loc
	}
	// LoadLocation refuses names that would leave the zone database
	// ("../x", "/etc/passwd"); an unknown zone is cached as nil.
	loc, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		loc = nil
	}
	zonesMu.Lock()
	if len(zones) < maxZones {
		zones[name] = loc
	}
	zonesMu.Unlock()
	return loc
}
