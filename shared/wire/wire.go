// Package wire is the batch format the edge sends to the aggregator, and the
// signature that authenticates it.
//
// A batch is compact binary rather than JSON because the edge encodes one on
// every flush and the aggregator decodes hundreds of thousands of events a
// second; binary is several times cheaper on both sides and has exact
// lengths, so a decoder can bound its work before it allocates.
//
// Layout (all integers are unsigned LEB128 varints unless noted):
//
//	batch  = magic "EPB1" count event*
//	event  = length body             ; length of body in bytes
//	body   = id(16 bytes) time field{13} field* [future fields]
//	field  = length bytes            ; a UTF-8 string (event.KindString)
//	       | value                   ; a number (event.KindUint), at most
//	                                 ; its field's Bits wide
//
// The fields are event.Fields' strings and numbers in that table's order.
// The first 13 are those of schema version 1 (site ... props) and a
// reserved field, always empty, that version 1 readers require. The fields
// added later (event.Field.Since > 1: method, browser, ..., bot_score, ...)
// follow; an event from an older sender ends before them, and they decode
// as "" and 0.
//
// Each event is length-prefixed so that a newer sender may append fields
// that an older decoder skips: an aggregator that predates a field drops
// it, one that knows it reads "" from an older edge.
//
// A batch may also carry the sending instance's counters (counters.go):
//
//	batch2 = magic "EPB2" count event* length counters
//
// An edge sends version 2 only when it has counts to report. An
// aggregator that predates it answers 400 (bad magic) to the whole batch;
// the edge then sends the same events again as version 1 and stops
// reporting counters to it, so upgrading the aggregator first is not
// required, only needed to receive the counts. Every aggregator since
// reads both versions.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Magic starts every batch; the digit is the format version.
const Magic = "EPB1"

// MagicCounters starts a batch of version 2: version 1's events followed
// by a counters record.
const MagicCounters = "EPB2"

// ContentType is the media type of an encoded batch.
const ContentType = "application/x-edgepixel-batch"

// MaxEvents bounds the events in one batch; the aggregator answers 413 to
// more, and the edge never builds a larger one.
const MaxEvents = 10000

// maxEventLen bounds one encoded event: the sum of the field limits plus
// headroom for length prefixes and fields added by newer senders.
const maxEventLen = 16 << 10

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("malformed batch")

// Append encodes events as one batch appended to dst.
func Append(dst []byte, events []event.Event) []byte {
	var enc Encoded
	for i := range events {
		enc.Add(&events[i])
	}
	return enc.AppendBatch(dst, enc.Len())
}

// AppendWithCounters encodes events and c as one batch of version 2.
func AppendWithCounters(dst []byte, events []event.Event, c *Counters) []byte {
	var enc Encoded
	for i := range events {
		enc.Add(&events[i])
	}
	return enc.AppendBatchWithCounters(dst, enc.Len(), c)
}

// Encoded is a sequence of events in their batch encoding (each event's
// length and body, as a batch holds them), kept in one byte slice and a
// slice of offsets: an edge instance holds its buffered events this way,
// so that its heap holds no pointers per event and a batch is the bytes
// it already has behind a header. The zero value is empty and ready.
type Encoded struct {
	data []byte
	offs []uint32 // where each event starts in data
	// e is the event being encoded: the field accessors are called
	// through function values, which escape analysis cannot see through,
	// so Add encodes a copy here rather than its argument, and the
	// caller's event can stay on its stack.
	e event.Event
}

// Add appends e, encoded.
func (enc *Encoded) Add(e *event.Event) {
	enc.offs = append(enc.offs, uint32(len(enc.data)))
	// The body's length goes first: reserve one byte, which fits most
	// events' length, and shift the body when it does not.
	start := len(enc.data)
	enc.data = append(enc.data, 0)
	enc.e = *e
	enc.data = appendEvent(enc.data, &enc.e)
	enc.e = event.Event{} // keep no strings of the caller's
	n := len(enc.data) - start - 1
	if n < 0x80 {
		enc.data[start] = byte(n)
		return
	}
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	enc.data = append(enc.data, l[:k-1]...)
	copy(enc.data[start+k:], enc.data[start+1:start+1+n])
	copy(enc.data[start:], l[:k])
}

// Len is the number of events.
func (enc *Encoded) Len() int { return len(enc.offs) }

// Size is the number of bytes the events take.
func (enc *Encoded) Size() int { return len(enc.data) }

// end is where the first n events end in data.
func (enc *Encoded) end(n int) int {
	if n == len(enc.offs) {
		return len(enc.data)
	}
	return int(enc.offs[n])
}

// AppendBatch appends the first n events as one batch (Append's format).
func (enc *Encoded) AppendBatch(dst []byte, n int) []byte {
	dst = append(dst, Magic...)
	dst = binary.AppendUvarint(dst, uint64(n))
	return append(dst, enc.data[:enc.end(n)]...)
}

// AppendBatchWithCounters appends the first n events and c as one batch
// of version 2 (AppendWithCounters' format).
func (enc *Encoded) AppendBatchWithCounters(dst []byte, n int, c *Counters) []byte {
	dst = append(dst, MagicCounters...)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, enc.data[:enc.end(n)]...)
	start := len(dst)
	dst = AppendCounters(dst, c)
	// The record's length goes before it: encode, then shift it right.
	n = len(dst) - start
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	dst = append(dst, l[:k]...)
	copy(dst[start+k:], dst[start:start+n])
	copy(dst[start:], l[:k])
	return dst
}

// Event decodes event i. Its strings are new copies (the path that needs
// them, a fallback or a loss, is not the hot one).
func (enc *Encoded) Event(i int) (event.Event, error) {
	start, end := int(enc.offs[i]), enc.end(i+1)
	_, k := binary.Uvarint(enc.data[start:end])
	var e event.Event
	if k <= 0 {
		return e, fmt.Errorf("%w: event %d: bad length", ErrMalformed, i)
	}
	b := enc.data[start:end]
	err := decodeEvent(&e, b, string(b), k)
	return e, err
}

// Time is event i's time, in unix milliseconds (0 if it does not decode).
func (enc *Encoded) Time(i int) int64 {
	start := int(enc.offs[i])
	_, k := binary.Uvarint(enc.data[start:])
	if k <= 0 || len(enc.data)-start-k < len(event.ID{}) {
		return 0
	}
	t, k2 := binary.Uvarint(enc.data[start+k+len(event.ID{}):])
	if k2 <= 0 {
		return 0
	}
	return int64(t)
}

// Drop removes the first n events, keeping the storage.
func (enc *Encoded) Drop(n int) {
	if n <= 0 {
		return
	}
	cut := enc.end(n)
	k := copy(enc.offs, enc.offs[n:])
	enc.offs = enc.offs[:k]
	for i := range enc.offs {
		enc.offs[i] -= uint32(cut)
	}
	enc.data = enc.data[:copy(enc.data, enc.data[cut:])]
}

// Keep keeps only the events for which keep returns true, in order.
func (enc *Encoded) Keep(keep func(i int) bool) {
	w, wb := 0, 0
	for i := range enc.offs {
		if !keep(i) {
			continue
		}
		start, end := int(enc.offs[i]), enc.end(i+1)
		enc.offs[w] = uint32(wb)
		wb += copy(enc.data[wb:], enc.data[start:end])
		w++
	}
	enc.offs, enc.data = enc.offs[:w], enc.data[:wb]
}

func appendEvent(b []byte, e *event.Event) []byte {
	b = append(b, e.ID[:]...)
	b = putUvarintGrow(b, uint64(e.Time))
	for _, f := range fields {
		switch {
		case f == nil: // the reserved field
			b = putUvarintGrow(b, 0)
		case f.Kind == event.KindUint:
			b = putUvarintGrow(b, f.Uint(e))
		default:
			s := f.Str(e)
			b = putUvarintGrow(b, uint64(len(*s)))
			b = append(b, *s...)
		}
	}
	return b
}

// putUvarintGrow is binary.AppendUvarint writing into b's spare room
// (grown when short) rather than appending byte by byte: under TinyGo
// every append is a call into its runtime, and an event has dozens of
// varints.
func putUvarintGrow(b []byte, v uint64) []byte {
	n := len(b)
	if cap(b)-n < binary.MaxVarintLen64 {
		b = slices.Grow(b, binary.MaxVarintLen64)
	}
	b = b[:n+binary.MaxVarintLen64]
	return b[:n+binary.PutUvarint(b[n:], v)]
}

// fields are the fields after id and time in wire order, nil for the
// reserved one; every event has at least the first required of them.
// Encoder and decoder share them so they cannot disagree.
var fields, required = wireFields()

func wireFields() (fields []*event.Field, required int) {
	for i := range event.Fields {
		f := &event.Fields[i]
		if f.Kind != event.KindString && f.Kind != event.KindUint { // id and time, written first
			continue
		}
		if f.Since > 1 && required == 0 {
			fields = append(fields, nil)
			required = len(fields)
		}
		fields = append(fields, f)
	}
	if required == 0 {
		fields = append(fields, nil)
		required = len(fields)
	}
	return fields, required
}

// Count returns the number of events a batch declares, checking only its
// header. The aggregator uses it to answer 413 before decoding.
func Count(b []byte) (int, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic && string(b[:len(Magic)]) != MagicCounters {
		if len(b) >= len(Magic) && string(b[:len(Magic)-1]) == Magic[:len(Magic)-1] && b[len(Magic)-1] > MagicCounters[len(Magic)-1] && b[len(Magic)-1] <= '9' {
			// A later format: the sender is newer than this reader.
			return 0, fmt.Errorf("%w: bad magic: batch format %q is newer than this aggregator reads (%s, %s): upgrade it", ErrMalformed, b[:len(Magic)], Magic, MagicCounters)
		}
		return 0, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	n, k := binary.Uvarint(b[len(Magic):])
	if k <= 0 {
		return 0, fmt.Errorf("%w: bad event count", ErrMalformed)
	}
	if n > MaxEvents {
		return int(min(n, 1<<31)), fmt.Errorf("%w: %d events, more than %d", ErrMalformed, n, MaxEvents)
	}
	return int(n), nil
}

// Decode parses a batch of either version, appending its events to dst;
// a version 2 batch's counters are checked but not returned (DecodeBatch
// returns them). It never allocates
// more than the input justifies: counts and lengths are checked against the
// bytes that remain before anything is made.
//
// The events' strings all point into one copy of b, made once: a string
// per field was 13 allocations an event and most of the aggregator's
// decoding and GC time. The price is that any one event keeps the whole
// batch's bytes alive; a caller keeping a few events long after the rest
// should strings.Clone what it keeps.
func Decode(dst []event.Event, b []byte) ([]event.Event, error) {
	dst, _, err := DecodeBatch(dst, b)
	return dst, err
}

// DecodeBatch parses a batch of either version like Decode, and returns
// the counters of a version 2 batch (nil for version 1). The counters'
// framing is checked, not their limits (Counters.Validate).
func DecodeBatch(dst []event.Event, b []byte) ([]event.Event, *Counters, error) {
	n, err := Count(b)
	if err != nil {
		return dst, nil, err
	}
	v2 := string(b[:len(Magic)]) == MagicCounters
	_, k := binary.Uvarint(b[len(Magic):])
	off := len(Magic) + k
	if n > len(b)-off { // every event takes at least one byte
		return dst, nil, fmt.Errorf("%w: %d events declared in %d bytes", ErrMalformed, n, len(b)-off)
	}
	// Offsets index b and s alike: b is parsed, s is sliced.
	s := string(b)
	for i := 0; i < n; i++ {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 || l > uint64(len(b)-off-k) || l > maxEventLen {
			return dst, nil, fmt.Errorf("%w: event %d: bad length", ErrMalformed, i)
		}
		start := off + k
		off = start + int(l)
		dst = append(dst, event.Event{})
		if err := decodeEvent(&dst[len(dst)-1], b[:off], s[:off], start); err != nil {
			return dst[:len(dst)-1], nil, fmt.Errorf("%w: event %d: %v", ErrMalformed, i, err)
		}
	}
	var c *Counters
	if v2 {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 || l > uint64(len(b)-off-k) {
			return dst, nil, fmt.Errorf("%w: bad counters length", ErrMalformed)
		}
		start := off + k
		off = start + int(l)
		cs, err := DecodeCounters(b[start:off])
		if err != nil {
			return dst, nil, err
		}
		c = &cs
	}
	if off != len(b) {
		return dst, nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-off)
	}
	return dst, c, nil
}

// decodeEvent decodes the event in b[off:] into e (which must be zero),
// taking its strings from s, a string holding the same bytes as b.
func decodeEvent(e *event.Event, b []byte, s string, off int) error {
	if len(b)-off < len(e.ID) {
		return errors.New("short id")
	}
	copy(e.ID[:], b[off:])
	off += len(e.ID)
	t, k := binary.Uvarint(b[off:])
	if k <= 0 || t > 1<<53 {
		return errors.New("bad time")
	}
	e.Time = int64(t)
	off += k
	for i, f := range fields {
		if i >= required && off == len(b) {
			break // an older sender: the later fields stay "" and 0
		}
		l, k := binary.Uvarint(b[off:])
		if f != nil && f.Kind == event.KindUint {
			if k <= 0 || l > f.MaxUint() {
				return fmt.Errorf("bad %s", f.JSON)
			}
			off += k
			f.SetUint(e, l)
			continue
		}
		if k <= 0 || l > uint64(len(b)-off-k) {
			return errors.New("bad field length")
		}
		off += k
		if l > 0 && f != nil { // an empty field stays "", not pinning the batch
			*f.Str(e) = s[off : off+int(l)]
		}
		off += int(l)
	}
	// Whatever remains are fields from a newer sender: skipped on purpose.
	return nil
}
