package hostcall

import "bytes"

// CountryCode extracts "country_code" from a Fastly geolocation record.
// The record is flat JSON written by the platform; a full JSON decoder
// would cost more than the rest of a pixel hit under Go's wasm, and only
// one string field is wanted. Anything unexpected yields nil. The code
// returned is a slice of record, not a copy.
func CountryCode(record []byte) []byte {
	const key = `"country_code"`
	for off := 0; ; {
		i := Index(record[off:], key)
		if i < 0 {
			return nil
		}
		i += off
		if memberStart(record, i) {
			return countryCode(record[i+len(key):])
		}
		off = i + 1
	}
}

// memberStart reports whether the quote at record[q] begins a member's
// name: it follows '{' or ',' (white space between). Elsewhere a match
// began at an escaped quote inside another string, such as the name
// "\"country_code" (fuzzing found it; the platform writes no such name,
// but the scanner must not read one as the member).
func memberStart(record []byte, q int) bool {
	j := q - 1
	for j >= 0 && (record[j] == ' ' || record[j] == '\t' || record[j] == '\r' || record[j] == '\n') {
		j--
	}
	return j >= 0 && (record[j] == '{' || record[j] == ',')
}

// countryCode reads the country code after its member name.
func countryCode(rest []byte) []byte {
	rest = bytes.TrimLeft(rest, " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) < 2 || rest[0] != '"' {
		return nil
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || end > 8 {
		return nil
	}
	code := rest[1 : 1+end]
	for _, c := range code {
		if c < 'A' || c > 'Z' && c < 'a' || c > 'z' {
			return nil // escapes or anything but letters: not a country code
		}
	}
	return code
}

// GeoString returns a string field of a Fastly geolocation record
// ("region", "city", ...) as a slice of record, or nil when it is absent,
// not a string, or holds escapes (which a plain slice cannot unescape; the
// caller may fall back to a JSON decoder for those).
func GeoString(record []byte, key string) []byte { return geoString(geoValue(record, key)) }

// geoString reads a string member's value, as GeoString.
func geoString(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' {
		return nil
	}
	end := bytes.IndexByte(v[1:], '"')
	if end < 0 || bytes.IndexByte(v[1:1+end], '\\') >= 0 {
		return nil
	}
	return v[1 : 1+end]
}

// GeoNumber returns a non-negative integer field of a Fastly geolocation
// record ("as_number", ...), 0 when absent or not such a number.
func GeoNumber(record []byte, key string) uint32 { return geoNumber(geoValue(record, key)) }

// geoNumber reads a number member's value, as GeoNumber.
func geoNumber(v []byte) uint32 {
	var n uint64
	i := 0
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		n = n*10 + uint64(v[i]-'0')
		if n > 1<<32-1 {
			return 0
		}
	}
	if i == 0 || i < len(v) && v[i] != ',' && v[i] != '}' && v[i] != ' ' && v[i] != '\n' && v[i] != '\r' && v[i] != '\t' {
		return 0
	}
	return uint32(n)
}

// Location is what the edge keeps of a geolocation record: views into it.
type Location struct {
	Country, Region, City []byte
	ASN                   uint32
}

// GeoFields reads CountryCode, GeoString's "region" and "city" and
// GeoNumber's "as_number" of record, with the same answers, in one pass:
// it stops only at quotes, where every member name begins, instead of
// searching the whole record once per field.
func GeoFields(record []byte) Location {
	var g Location
	var country, region, city, asn bool // found
	for q := 0; q < len(record); q++ {
		j := bytes.IndexByte(record[q:], '"')
		if j < 0 {
			break
		}
		q += j
		name := record[q+1:]
		if len(name) == 0 {
			break
		}
		if c := name[0]; (c == 'c' || c == 'r' || c == 'a') && !memberStart(record, q) {
			continue
		}
		switch name[0] {
		case 'c':
			if !country && hasPrefix(name, `country_code"`) {
				country = true
				g.Country = countryCode(name[len(`country_code"`):])
			} else if !city {
				if v, ok := memberValue(name, "city"); ok {
					city = true
					g.City = geoString(v)
				}
			}
		case 'r':
			if !region {
				if v, ok := memberValue(name, "region"); ok {
					region = true
					g.Region = geoString(v)
				}
			}
		case 'a':
			if !asn {
				if v, ok := memberValue(name, "as_number"); ok {
					asn = true
					g.ASN = geoNumber(v)
				}
			}
		}
		if country && region && city && asn {
			break
		}
	}
	return g
}

// memberValue reports whether b (what follows a quote) is key as a member
// name, `key"` then blanks and ':', and returns what follows, as
// geoValue finds it.
func memberValue(b []byte, key string) ([]byte, bool) {
	if len(b) <= len(key) || b[len(key)] != '"' || !Equal(b[:len(key)], key) {
		return nil, false
	}
	rest := bytes.TrimLeft(b[len(key)+1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false
	}
	return bytes.TrimLeft(rest[1:], " \t\r\n"), true
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && Equal(b[:len(s)], s) }

// geoValue returns what follows `"key":` (blanks skipped), or nil.
func geoValue(record []byte, key string) []byte {
	for off := 0; off < len(record); {
		i := Index(record[off:], key)
		if i < 0 {
			return nil
		}
		i += off
		off = i + len(key)
		// The key must be a whole quoted member name.
		if i == 0 || record[i-1] != '"' || off >= len(record) || record[off] != '"' || !memberStart(record, i-1) {
			continue
		}
		rest := bytes.TrimLeft(record[off+1:], " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		return bytes.TrimLeft(rest[1:], " \t\r\n")
	}
	return nil
}

// Index is bytes.Index(b, []byte(s)) without the conversion and the
// comparison through strings, which TinyGo compiles to heap allocations:
// a hit searches its geolocation record and URI several times.
func Index(b []byte, s string) int {
	if len(s) == 0 {
		return 0
	}
	for i := 0; i+len(s) <= len(b); {
		j := bytes.IndexByte(b[i:len(b)-len(s)+1], s[0])
		if j < 0 {
			return -1
		}
		i += j
		if Equal(b[i:i+len(s)], s) {
			return i
		}
		i++
	}
	return -1
}

// Equal is string(b) == s, comparing bytes so TinyGo allocates no string.
func Equal(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if b[i] != s[i] {
			return false
		}
	}
	return true
}
