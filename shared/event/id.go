package event

import (
	"errors"
	"io"
)

// ID identifies an event everywhere: it is minted once at the edge and is the
// key for deduplication in the aggregator and in storage. Its layout is a
// UUIDv7 (RFC 9562): 48 bits of unix milliseconds, then random bits, so ids
// sort by time and index well.
type ID [16]byte

// NewID mints an ID for the time ms, reading 10 random bytes from rnd.
func NewID(ms int64, rnd io.Reader) (ID, error) {
	var random [10]byte
	if _, err := io.ReadFull(rnd, random[:]); err != nil {
		return ID{}, err
	}
	return IDFrom(ms, &random), nil
}

// IDFrom is the ID for the time ms with the 10 random bytes random, for a
// caller that reads them into a buffer it reuses: a slice of a local
// array passed to an io.Reader is a heap allocation under TinyGo.
func IDFrom(ms int64, random *[10]byte) ID {
	var id ID
	copy(id[6:], random[:])
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
	id[6] = id[6]&0x0F | 0x70 // version 7
	id[8] = id[8]&0x3F | 0x80 // variant 10
	return id
}

// IsZero reports whether id is the zero value, which is never minted.
func (id ID) IsZero() bool { return id == ID{} }

const hexDigits = "0123456789abcdef"

// String formats id in the canonical 8-4-4-4-12 form.
func (id ID) String() string {
	var b [36]byte
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j] = hexDigits[c>>4]
		b[j+1] = hexDigits[c&0x0F]
		j += 2
	}
	return string(b[:])
}

// MarshalText formats id in the canonical form (so JSON carries it as a
// string).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the canonical form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ErrBadID is returned by ParseID for anything but the canonical form.
var ErrBadID = errors.New("event id: not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")

// ParseID parses the canonical form produced by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return ID{}, ErrBadID
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 { // the dashes, checked above
			i++
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return ID{}, ErrBadID
		}
		id[j] = hi<<4 | lo
		j++
	}
	return id, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
