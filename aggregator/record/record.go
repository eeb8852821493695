// Package record defines what one spool record holds. The spool itself
// stores opaque payloads; ingest writes them and the loader reads them back
// through this package.
//
// There are two kinds of payload, told apart by their first four bytes:
//
//   - a plain wire batch ("EPB1..."), exactly the body the edge signed. Every
//     version of the aggregator writes and reads these, and ingest still
//     writes this kind whenever a request has nothing else to keep, so a
//     spool written by this version stays readable by the previous one in
//     the common case.
//   - an envelope ("EPX1..."): any number of wire batches plus bad rows
//     (events that failed validation, NDJSON lines that did not parse). A
//     request's good events and its bad rows go into one record, so they
//     are durable together with a single append (no half-spooled request
//     that a retry would duplicate). An NDJSON request can also carry more
//     events than one wire batch may hold (wire.MaxEvents), hence several.
//
// Envelope layout (integers are unsigned LEB128 varints):
//
//	envelope = "EPX1" nbatch (len batch){nbatch} nbad (len badrow){nbad}
//	badrow   = row_id(16 bytes) received_ms source site reason error raw [future fields]
//	string   = len bytes
//
// Like wire events, each bad row is length-prefixed so a newer writer can
// append fields an older reader skips.
//
// A record that carries edge counters (shared/wire, counters.go: what the
// edge instances counted) is an envelope of version 2, or the signed
// batch itself when it was a version 2 batch ("EPB2"):
//
//	envelope2 = "EPX2" nbatch (len batch){nbatch} nbad (len badrow){nbad} ncounters (len counters){ncounters}
//
// Records without counters keep the version 1 forms, so a spool holds
// version 2 records only once edges send counters. An aggregator from
// before counters cannot read them: drain the spool (stop ingest, let the
// loader catch up) before going back to one.
package record

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// EnvelopeMagic starts an envelope payload.
const EnvelopeMagic = "EPX1"

// EnvelopeMagicCounters starts an envelope that also carries counters.
const EnvelopeMagicCounters = "EPX2"

// MaxRaw bounds the raw payload kept with a bad row: enough to see what was
// wrong, not enough for one bad line to bloat the table.
const MaxRaw = 8 << 10

// MaxError bounds a bad row's error message.
const MaxError = 1 << 10

// maxBadRowLen bounds one encoded bad row: the field limits plus headroom.
const maxBadRowLen = MaxRaw + MaxError + 4<<10

// Sources of bad rows.
const (
	SourceWire   = "wire"   // an event of a signed binary batch
	SourceNDJSON = "ndjson" // a line of a log-streaming NDJSON body
)

// BadRow is an input that could not become an event. It is kept (spooled,
// then stored in the bad_rows table) rather than dropped, so losses are
// visible and can be replayed after a fix.
type BadRow struct {
	// ID is derived from the source and the untruncated raw bytes: the same
	// bad input delivered twice (a retried request) gets the same id, and
	// the bad_rows table collapses the copies.
	ID       event.ID
	Received int64  // unix milliseconds when the aggregator received it
	Source   string // SourceWire or SourceNDJSON
	Site     string // the site if it could be read, else ""
	Reason   string // short machine-readable reason (invalid_event, bad_time, bad_json, ...)
	Error    string // human-readable detail, at most MaxError bytes
	Raw      string // the input, at most MaxRaw bytes
}

// NewBadRow builds a bad row, deriving its id from source and raw and
// truncating raw and msg to their bounds.
func NewBadRow(received int64, source, site, reason, msg string, raw []byte) BadRow {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(raw)
	var id event.ID
	copy(id[:], h.Sum(nil))
	return BadRow{ID: id, Received: received, Source: source, Site: truncate(site, event.MaxSiteLen),
		Reason: reason, Error: truncate(msg, MaxError), Raw: truncate(string(raw), MaxRaw)}
}

// truncate cuts s to at most n bytes, backing off at most three bytes so
// as not to split a UTF-8 sequence (raw input need not be UTF-8 at all).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for k := n; k > 0 && k > n-3; k-- {
		if s[k]&0xC0 != 0x80 {
			return s[:k]
		}
	}
	return s[:n]
}

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("malformed spool record")

// Encode builds the payload for batches (wire batches), bad rows and edge
// counters. One batch and nothing else gives the batch itself, the plain
// kind.
func Encode(batches [][]byte, bad []BadRow, counters []wire.Counters) []byte {
	if len(batches) == 1 && len(bad) == 0 && len(counters) == 0 {
		return batches[0]
	}
	n := len(EnvelopeMagic) + 20
	for _, b := range batches {
		n += len(b) + 5
	}
	for i := range bad {
		n += 16 + 10 + len(bad[i].Source) + len(bad[i].Site) + len(bad[i].Reason) + len(bad[i].Error) + len(bad[i].Raw) + 5*6
	}
	p := make([]byte, 0, n)
	if len(counters) > 0 {
		p = append(p, EnvelopeMagicCounters...)
	} else {
		p = append(p, EnvelopeMagic...)
	}
	p = binary.AppendUvarint(p, uint64(len(batches)))
	for _, b := range batches {
		p = binary.AppendUvarint(p, uint64(len(b)))
		p = append(p, b...)
	}
	p = binary.AppendUvarint(p, uint64(len(bad)))
	var body []byte
	for i := range bad {
		r := &bad[i]
		body = append(body[:0], r.ID[:]...)
		body = binary.AppendUvarint(body, uint64(r.Received))
		for _, s := range [...]string{r.Source, r.Site, r.Reason, r.Error, r.Raw} {
			body = binary.AppendUvarint(body, uint64(len(s)))
			body = append(body, s...)
		}
		p = binary.AppendUvarint(p, uint64(len(body)))
		p = append(p, body...)
	}
	if len(counters) > 0 {
		p = binary.AppendUvarint(p, uint64(len(counters)))
		for i := range counters {
			body = wire.AppendCounters(body[:0], &counters[i])
			p = binary.AppendUvarint(p, uint64(len(body)))
			p = append(p, body...)
		}
	}
	return p
}

// Count returns the number of events p holds, from the batch headers only.
func Count(p []byte) (int, error) {
	if !isEnvelope(p) {
		return wire.Count(p)
	}
	total := 0
	err := walk(p, func(batch []byte) error {
		n, err := wire.Count(batch)
		total += n
		return err
	}, nil, nil)
	return total, err
}

// Decoded is what a record holds.
type Decoded struct {
	Events   []event.Event
	Bad      []BadRow
	Counters []wire.Counters
}

// Decode appends p's events, bad rows and counters to d's. On error d
// may hold part of p.
func Decode(d *Decoded, p []byte) error {
	if !isEnvelope(p) {
		var c *wire.Counters
		var err error
		d.Events, c, err = wire.DecodeBatch(d.Events, p)
		if c != nil {
			d.Counters = append(d.Counters, *c)
		}
		return err
	}
	return walk(p, func(batch []byte) error {
		var c *wire.Counters
		var err error
		d.Events, c, err = wire.DecodeBatch(d.Events, batch)
		if c != nil {
			d.Counters = append(d.Counters, *c)
		}
		return err
	}, func(r BadRow) { d.Bad = append(d.Bad, r) }, func(c wire.Counters) { d.Counters = append(d.Counters, c) })
}

func isEnvelope(p []byte) bool {
	if len(p) < len(EnvelopeMagic) {
		return false
	}
	m := string(p[:len(EnvelopeMagic)])
	return m == EnvelopeMagic || m == EnvelopeMagicCounters
}

// walk calls onBatch for each batch, onBad (if not nil) for each bad row
// and onCounters (if not nil) for each counters record of envelope p,
// checking every length against the bytes that remain.
func walk(p []byte, onBatch func([]byte) error, onBad func(BadRow), onCounters func(wire.Counters)) error {
	v2 := string(p[:len(EnvelopeMagic)]) == EnvelopeMagicCounters
	p = p[len(EnvelopeMagic):]
	next := func(what string, max uint64) ([]byte, error) {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) || l > max {
			return nil, fmt.Errorf("%w: bad %s length", ErrMalformed, what)
		}
		b := p[k : k+int(l)]
		p = p[k+int(l):]
		return b, nil
	}
	nb, k := binary.Uvarint(p)
	if k <= 0 || nb > uint64(len(p)) {
		return fmt.Errorf("%w: bad batch count", ErrMalformed)
	}
	p = p[k:]
	for range nb {
		b, err := next("batch", uint64(len(p)))
		if err != nil {
			return err
		}
		if err := onBatch(b); err != nil {
			return err
		}
	}
	nr, k := binary.Uvarint(p)
	if k <= 0 || nr > uint64(len(p)) {
		return fmt.Errorf("%w: bad row count", ErrMalformed)
	}
	p = p[k:]
	for i := range nr {
		b, err := next("bad row", maxBadRowLen)
		if err != nil {
			return err
		}
		if onBad == nil {
			continue
		}
		r, err := decodeBadRow(b)
		if err != nil {
			return fmt.Errorf("%w: bad row %d: %v", ErrMalformed, i, err)
		}
		onBad(r)
	}
	if v2 {
		nc, k := binary.Uvarint(p)
		if k <= 0 || nc > uint64(len(p)) {
			return fmt.Errorf("%w: bad counters count", ErrMalformed)
		}
		p = p[k:]
		for i := range nc {
			b, err := next("counters", uint64(len(p)))
			if err != nil {
				return err
			}
			if onCounters == nil {
				continue
			}
			c, err := wire.DecodeCounters(b)
			if err != nil {
				return fmt.Errorf("%w: counters %d: %v", ErrMalformed, i, err)
			}
			onCounters(c)
		}
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(p))
	}
	return nil
}

func decodeBadRow(b []byte) (BadRow, error) {
	var r BadRow
	if len(b) < len(r.ID) {
		return r, errors.New("short id")
	}
	copy(r.ID[:], b)
	b = b[len(r.ID):]
	t, k := binary.Uvarint(b)
	if k <= 0 || t > 1<<53 {
		return r, errors.New("bad time")
	}
	r.Received = int64(t)
	b = b[k:]
	for _, s := range [...]*string{&r.Source, &r.Site, &r.Reason, &r.Error, &r.Raw} {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return r, errors.New("bad field length")
		}
		*s = string(b[k : k+int(l)])
		b = b[k+int(l):]
	}
	// Anything left are fields of a newer writer: skipped on purpose.
	return r, nil
}
