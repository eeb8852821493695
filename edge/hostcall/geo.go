package hostcall

import "bytes"

// CountryCode extracts "country_code" from a Fastly geolocation record.
// The record is flat JSON written by the platform; a full JSON decoder
// would cost more than the rest of a pixel hit under Go's wasm, and only
// one string field is wanted. Anything unexpected yields "".
func CountryCode(record []byte) string {
	const key = `"country_code"`
	i := bytes.Index(record, []byte(key))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(record[i+len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) < 2 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || end > 8 {
		return ""
	}
	code := rest[1 : 1+end]
	for _, c := range code {
		if c < 'A' || c > 'Z' && c < 'a' || c > 'z' {
			return "" // escapes or anything but letters: not a country code
		}
	}
	return string(code)
}
