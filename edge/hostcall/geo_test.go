package hostcall

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestCountryCode(t *testing.T) {
	for in, want := range map[string]string{
		`{"as_name":"x","country_code":"GB","city":"london"}`: "GB",
		`{"country_code" : "us"}`:                             "us",
		`{"country_code":"**"}`:                               "",
		`{"country_code":null}`:                               "",
		`{"country_code3":"GBR"}`:                             "",
		`{"country_code":"G\"B"}`:                             "",
		`{"country_code":"`:                                   "",
		``:                                                    "",
	} {
		if got := string(CountryCode([]byte(in))); got != want {
			t.Errorf("CountryCode(%s) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCountryCode checks the scanner never panics and, on valid JSON
// objects, never reports a code the real decoder disagrees with.
func FuzzCountryCode(f *testing.F) {
	f.Add([]byte(`{"country_code":"DE"}`))
	f.Add([]byte(`{"x":"\"country_code\":\"FR\"","country_code":"IT"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := string(CountryCode(b))
		var rec map[string]any
		// A repeated key is outside the contract (the platform writes each
		// once; the decoder keeps the last, the scanner the first).
		if got == "" || bytes.Count(b, []byte(`"country_code"`)) != 1 || json.Unmarshal(b, &rec) != nil {
			return
		}
		if want, _ := rec["country_code"].(string); want != got {
			t.Errorf("CountryCode = %q, the JSON decoder says %q", got, want)
		}
	})
}

// A member's name is found only where a name begins, not from an escaped
// quote inside another string (fuzzing found "\"country_code").
func TestMemberNameStart(t *testing.T) {
	for in, want := range map[string]string{
		`{"\"country_code":"A"}`:                              "",
		`{"a":1, "country_code":"AT"}`:                        "AT",
		"{\n\t\"country_code\" : \"CH\"}":                     "CH",
		`{"x":"\"country_code\":\"FR\"","country_code":"IT"}`: "IT",
	} {
		if got := string(CountryCode([]byte(in))); got != want {
			t.Errorf("CountryCode(%s) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`{"\"city":"x"}`:               "",
		`{"\"city":"x","city":"bern"}`: "bern",
		`{"a":"b", "city":"zug"}`:      "zug",
	} {
		if got := string(GeoString([]byte(in), "city")); got != want {
			t.Errorf(`GeoString(%s, "city") = %q, want %q`, in, got, want)
		}
	}
}
