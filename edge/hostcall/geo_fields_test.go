package hostcall

import (
	"bytes"
	"testing"
)

func TestGeoFields(t *testing.T) {
	rec := []byte(`{"as_name":"x","as_number": 7922,"city":"san francisco","country_code":"US","region":"CA","postal_code":"94107","metro_code":-1,"subregion":"region","utc_offset":-800}`)
	if s := string(GeoString(rec, "region")); s != "CA" {
		t.Errorf("region %q", s)
	}
	if s := string(GeoString(rec, "city")); s != "san francisco" {
		t.Errorf("city %q", s)
	}
	if n := GeoNumber(rec, "as_number"); n != 7922 {
		t.Errorf("as_number %d", n)
	}
	for _, bad := range []string{`{"as_number":"7922"}`, `{"as_number":-1}`, `{"as_number":99999999999}`, `{"as_number":12x}`, `{"xas_number":5}`, `{}`, ``} {
		if n := GeoNumber([]byte(bad), "as_number"); n != 0 {
			t.Errorf("%s: %d", bad, n)
		}
	}
	for _, bad := range []string{`{"city":"Z\u00fcrich"}`, `{"city":null}`, `{"city":"open`, `{"xcity":"a"}`} {
		if s := GeoString([]byte(bad), "city"); s != nil {
			t.Errorf("%s: %q", bad, s)
		}
	}
}

func FuzzGeoFields(f *testing.F) {
	f.Add([]byte(`{"as_number":7922,"city":"a","region":"CA"}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		GeoNumber(rec, "as_number")
		if s := GeoString(rec, "city"); s != nil && len(s) > len(rec) {
			t.Fatal("longer than the record")
		}
	})
}

// FuzzIndex checks Index and Equal against the bytes package they stand
// in for.
func FuzzIndex(f *testing.F) {
	f.Add([]byte(`{"city":"a","country_code":"US"}`), `"country_code"`)
	f.Add([]byte("aaab"), "aab")
	f.Add([]byte("ab"), "")
	f.Add([]byte(""), "a")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		if got, want := Index(b, s), bytes.Index(b, []byte(s)); got != want {
			t.Errorf("Index(%q, %q) = %d, bytes.Index says %d", b, s, got, want)
		}
		if got, want := Equal(b, s), string(b) == s; got != want {
			t.Errorf("Equal(%q, %q) = %v", b, s, got)
		}
	})
}

// GeoFields answers as CountryCode, GeoString and GeoNumber do, whatever
// the record.
func FuzzGeoFieldsOnePass(f *testing.F) {
	f.Add([]byte(`{"as_name":"x","as_number": 7922,"city":"san francisco","country_code":"US","region":"CA","postal_code":"94107","metro_code":-1,"subregion":"region","utc_offset":-800}`))
	f.Add([]byte(`{"city" :"a","city":"b","country_code":"u1","country_code":"US","region":5,"region":"X"}`))
	f.Add([]byte(`{"xcity":"a","city\":"b","as_number":12x,"as_number":3}`))
	f.Add([]byte(`"country_code"`))
	f.Add([]byte(`{"city":"Z\u00fcrich","region" : "CA" ,"as_number" :99999999999}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		g := GeoFields(rec)
		if c := CountryCode(rec); !bytes.Equal(g.Country, c) || (g.Country == nil) != (c == nil) {
			t.Errorf("country %q, CountryCode %q", g.Country, c)
		}
		if r := GeoString(rec, "region"); !bytes.Equal(g.Region, r) || (g.Region == nil) != (r == nil) {
			t.Errorf("region %q, GeoString %q", g.Region, r)
		}
		if c := GeoString(rec, "city"); !bytes.Equal(g.City, c) || (g.City == nil) != (c == nil) {
			t.Errorf("city %q, GeoString %q", g.City, c)
		}
		if n := GeoNumber(rec, "as_number"); g.ASN != n {
			t.Errorf("as_number %d, GeoNumber %d", g.ASN, n)
		}
	})
}
