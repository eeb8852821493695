package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// Record framing on disk:
//
//	length  uint32 LE   ; payload bytes
//	crc     uint32 LE   ; CRC-32C of the length bytes and the payload
//	payload [length]byte
//
// The CRC covers the length too, so a corrupted length is caught rather
// than sending the reader off to read a wrong-sized record.
const headerLen = 8

// MaxRecord bounds one record's payload. It is far above any accepted batch
// (the ingest body limit) and protects the reader from allocating for a
// garbage length.
const MaxRecord = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn means the bytes at the end of a segment are not a whole, intact
// record: a write cut short by a crash, or garbage.
var errTorn = errors.New("spool: torn or corrupt record")

func appendRecord(dst, payload []byte) []byte {
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], c)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// readRecord reads one record from r. It returns io.EOF at a clean end
// (no bytes at all), errTorn for a short or corrupt record, and other
// errors from r. remain, if >= 0, bounds the bytes r can still deliver so
// that a garbage length never causes a large allocation.
func readRecord(r *bufio.Reader, remain int64) ([]byte, error) {
	var h [headerLen]byte
	n, err := io.ReadFull(r, h[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return nil, errTorn
	}
	if err != nil {
		return nil, err
	}
	l := binary.LittleEndian.Uint32(h[0:4])
	if l > MaxRecord || (remain >= 0 && int64(l) > remain-int64(n)) {
		return nil, errTorn
	}
	p := make([]byte, l)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errTorn
		}
		return nil, err
	}
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, p)
	if c != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, errTorn
	}
	return p, nil
}

// scan reads records from r (size bytes long) until the end or the first
// torn record. It returns the byte length of the intact prefix; fn is
// called with each intact record and the offset just past it.
func scan(r io.Reader, size int64, fn func(payload []byte, end int64) error) (valid int64, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		p, err := readRecord(br, size-valid)
		if err == io.EOF || err == errTorn {
			return valid, nil
		}
		if err != nil {
			return valid, err
		}
		valid += headerLen + int64(len(p))
		if fn != nil {
			if err := fn(p, valid); err != nil {
				return valid, err
			}
		}
	}
}
