package wire

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

// full returns an event with every field of event.Fields set to a value
// of its own, so a field the codec forgets shows up as a difference.
func full(t testing.TB) event.Event {
	e := sample(1)[0]
	for i := range event.Fields {
		if f := &event.Fields[i]; f.Str != nil {
			*f.Str(&e) = "v-" + f.JSON
		}
	}
	return e
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
	var later []string
	for len(body) > 0 {
		l, k := binary.Uvarint(body)
		later = append(later, string(body[k:k+int(l)]))
		body = body[k+int(l):]
	}
	var wantLater []string
	for i := range event.Fields {
		if f := &event.Fields[i]; f.Since > 1 {
			wantLater = append(wantLater, "v-"+f.JSON)
		}
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

// An event may end after the required fields but not inside them, nor in
// the middle of a later one.
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
	method := len("v-method") + 1
	if evs, err := Decode(nil, cut(body[:len(body)-method])); err != nil || evs[0].Method != "" || evs[0].Props != "v-props" {
		t.Fatalf("without method: %v", err)
	}
	for _, n := range []int{method - 1, method + 1, method + 3} {
		if _, err := Decode(nil, cut(body[:len(body)-n])); err == nil {
			t.Errorf("event cut %d bytes before its end decoded", n)
		}
	}
}
