package wire

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

// full returns an event with every field of event.Fields set to a value
// of its own, so a field the codec forgets shows up as a difference.
func full(t testing.TB) event.Event {
	e := sample(1)[0]
	for i := range event.Fields {
		switch f := &event.Fields[i]; f.Kind {
		case event.KindString:
			*f.Str(&e) = "v-" + f.JSON
		case event.KindUint:
			f.SetUint(&e, f.MaxUint()-uint64(i)) // its own, and as wide as the field
		}
	}
	return e
}

// fieldEnds returns where each of fields ends in body (an encoded
// event's body), reading numbers as varints and strings by length.
func fieldEnds(t testing.TB, body []byte) []int {
	off := 16
	_, k := binary.Uvarint(body[off:])
	off += k
	var ends []int
	for _, f := range fields {
		if off == len(body) {
			break
		}
		l, k := binary.Uvarint(body[off:])
		off += k
		if f == nil || f.Kind != event.KindUint {
			off += int(l)
		}
		ends = append(ends, off)
	}
	if off != len(body) {
		t.Fatalf("%d bytes after the known fields", len(body)-off)
	}
	return ends
}

// The codec carries every field of the table, whatever its version.
func TestCarriesEveryField(t *testing.T) {
	in := []event.Event{full(t)}
	out, err := Decode(nil, Append(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	for i := range event.Fields {
		f := &event.Fields[i]
		if f.Str != nil && *f.Str(&out[0]) != *f.Str(&in[0]) {
			t.Errorf("%s: sent %q, decoded %q", f.JSON, *f.Str(&in[0]), *f.Str(&out[0]))
		}
		if f.Uint != nil && f.Uint(&out[0]) != f.Uint(&in[0]) {
			t.Errorf("%s: sent %d, decoded %d", f.JSON, f.Uint(&in[0]), f.Uint(&out[0]))
		}
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatal("round trip differs")
	}
}

// A version 1 reader (every aggregator before method) reads id, time and
// exactly 13 fields, then skips the rest: the fields of version 1 must come
// first, in their old order, then the reserved empty one.
func TestLayoutForVersion1Readers(t *testing.T) {
	e := full(t)
	body := appendEvent(nil, &e)
	body = body[16:]
	_, k := binary.Uvarint(body)
	body = body[k:]
	var got []string
	for range 13 {
		l, k := binary.Uvarint(body)
		got = append(got, string(body[k:k+int(l)]))
		body = body[k+int(l):]
	}
	want := []string{"v-site", "v-name", "v-url", "v-referrer", "v-user_agent", "v-client_ip", "v-country",
		"v-utm_source", "v-utm_medium", "v-utm_campaign", "v-pop", "v-props", ""}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the first 13 fields are\n%q\nwant\n%q", got, want)
	}
	if required != 13 {
		t.Fatalf("%d required fields; version 1 readers need 13", required)
	}
	// What follows are the later fields, in table order.
	var later, wantLater []string
	for i := range event.Fields {
		f := &event.Fields[i]
		if f.Since == 1 {
			continue
		}
		l, k := binary.Uvarint(body)
		if f.Kind == event.KindUint {
			later = append(later, strconv.FormatUint(l, 10))
			wantLater = append(wantLater, strconv.FormatUint(f.Uint(&e), 10))
			body = body[k:]
			continue
		}
		later = append(later, string(body[k:k+int(l)]))
		wantLater = append(wantLater, "v-"+f.JSON)
		body = body[k+int(l):]
	}
	if len(body) != 0 {
		t.Fatalf("%d bytes after the last field", len(body))
	}
	if !reflect.DeepEqual(later, wantLater) {
		t.Fatalf("later fields %q, want %q", later, wantLater)
	}
}

// testdata/v1-batch.hex is a batch encoded by the wire code of git main
// before method existed (5fbb671): an edge not yet upgraded, or a spool
// written before the upgrade. It decodes, with method "".
func TestDecodesVersion1Batch(t *testing.T) {
	b := v1Batch(t)
	evs, err := Decode(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	for i, e := range evs {
		if e.Method != "" || e.Site != []string{"a", "b"}[i] || e.URL != "https://example.com/p"+string(rune('0'+i)) ||
			e.Props != `{"v":1}` || e.Pop != "AMS" || e.UTMCampaign != "camp" || e.Time != int64(1_790_000_000_000+i*61_000) {
			t.Errorf("event %d: %+v", i, e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("event %d: %v", i, err)
		}
	}
	// Re-encoded by this version, it decodes the same.
	again, err := Decode(nil, Append(nil, evs))
	if err != nil || !reflect.DeepEqual(again, evs) {
		t.Fatalf("re-encoded: %v", err)
	}
}

func v1Batch(t testing.TB) []byte {
	h, err := os.ReadFile("testdata/v1-batch.hex")
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An event may end after the required fields or after any later one (an
// older sender), but not inside a field; a number wider than its field is
// malformed.
func TestOptionalFieldsOnlyAtTheEnd(t *testing.T) {
	e := full(t)
	body := appendEvent(nil, &e)
	cut := func(body []byte) []byte {
		var b []byte
		b = append(b, Magic...)
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(body)))
		return append(b, body...)
	}
	ends := fieldEnds(t, body)
	for i := required; i < len(ends); i++ {
		evs, err := Decode(nil, cut(body[:ends[i-1]]))
		if err != nil {
			t.Fatalf("ending after field %d: %v", i, err)
		}
		want := e
		for _, f := range fields[i:] {
			if f.Kind == event.KindUint {
				f.SetUint(&want, 0)
			} else {
				*f.Str(&want) = ""
			}
		}
		if !reflect.DeepEqual(evs[0], want) {
			t.Fatalf("ending after field %d: %+v", i, evs[0])
		}
		// Inside the next field (its last byte cut), unless it is one
		// byte long: then that is ending after field i.
		if ends[i]-1 > ends[i-1] {
			if _, err := Decode(nil, cut(body[:ends[i]-1])); err == nil {
				t.Errorf("event cut inside %s decoded", fields[i].JSON)
			}
		}
	}
	if _, err := Decode(nil, cut(body[:ends[required-1]-1])); err == nil {
		t.Error("event cut inside the required fields decoded")
	}
	// A UInt8 field holding 256.
	for i, f := range fields {
		if f == nil || f.Kind != event.KindUint || f.Bits == 64 {
			continue
		}
		over := append([]byte(nil), body[:ends[i-1]]...)
		over = binary.AppendUvarint(over, f.MaxUint()+1)
		if _, err := Decode(nil, cut(over)); err == nil {
			t.Errorf("%s = %d decoded", f.JSON, f.MaxUint()+1)
		}
	}
}
