package record

import (
	"bytes"
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func mkEvents(t testing.TB, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		ms := time.Now().UnixMilli()
		id, err := event.NewID(ms, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = event.Event{ID: id, Time: ms, Site: "demo", Name: "pageview", URL: "https://example.com/"}
	}
	return out
}

func TestPlainBatchIsUnchanged(t *testing.T) {
	evs := mkEvents(t, 3)
	b := wire.Append(nil, evs)
	// A request with nothing but one batch is spooled as the batch itself,
	// which an older loader reads.
	if p := Encode([][]byte{b}, nil); !bytes.Equal(p, b) {
		t.Fatal("a lone batch was wrapped")
	}
	got, bad, err := Decode(nil, nil, b)
	if err != nil || len(bad) != 0 || !reflect.DeepEqual(got, evs) {
		t.Fatalf("%v %v %v", got, bad, err)
	}
	if n, err := Count(b); n != 3 || err != nil {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	evs := mkEvents(t, 5)
	now := time.Now().UnixMilli()
	long := strings.Repeat("x", MaxRaw+100)
	bad := []BadRow{
		NewBadRow(now, SourceNDJSON, "demo", "bad_json", "unexpected end", []byte(`{"site":"demo"`)),
		NewBadRow(now, SourceWire, "", "invalid_event", strings.Repeat("e", 5000), []byte(long)),
	}
	if len(bad[1].Raw) != MaxRaw || len(bad[1].Error) != MaxError {
		t.Fatalf("not truncated: raw %d error %d", len(bad[1].Raw), len(bad[1].Error))
	}
	if bad[0].ID == bad[1].ID || bad[0].ID != NewBadRow(now+5, SourceNDJSON, "", "x", "y", []byte(`{"site":"demo"`)).ID {
		t.Fatal("bad row ids are not derived from source and raw alone")
	}
	p := Encode([][]byte{wire.Append(nil, evs[:2]), wire.Append(nil, evs[2:])}, bad)
	if n, err := Count(p); n != 5 || err != nil {
		t.Fatalf("count %d %v", n, err)
	}
	gotEvs, gotBad, err := Decode(nil, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotEvs, evs) || !reflect.DeepEqual(gotBad, bad) {
		t.Fatalf("round trip:\n%+v\n%+v", gotEvs, gotBad)
	}
	// Only bad rows, no events.
	p = Encode(nil, bad[:1])
	gotEvs, gotBad, err = Decode(nil, nil, p)
	if err != nil || len(gotEvs) != 0 || !reflect.DeepEqual(gotBad, bad[:1]) {
		t.Fatalf("%v %v %v", gotEvs, gotBad, err)
	}
	// Every truncation of an envelope is an error, never a panic or a
	// silently shorter record.
	p = Encode([][]byte{wire.Append(nil, evs)}, bad)
	for i := len(EnvelopeMagic); i < len(p); i++ {
		if _, _, err := Decode(nil, nil, p[:i]); err == nil {
			t.Fatalf("truncated at %d of %d decoded", i, len(p))
		}
	}
	if _, _, err := Decode(nil, nil, append(p, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

// FuzzDecode: arbitrary payloads never panic, and whatever decodes
// re-encodes to a payload that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	evs := mkEvents(f, 2)
	f.Add(wire.Append(nil, evs))
	f.Add(Encode([][]byte{wire.Append(nil, evs), wire.Append(nil, nil)},
		[]BadRow{NewBadRow(1, SourceNDJSON, "s", "bad_json", "e", []byte("{"))}))
	f.Add([]byte("EPX1\x00\x01\x05abc"))
	f.Add([]byte("EPX1\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, p []byte) {
		n, cerr := Count(p)
		evs, bad, err := Decode(nil, nil, p)
		if err != nil {
			return
		}
		if cerr != nil || n != len(evs) {
			t.Fatalf("Count %d %v, Decode %d events", n, cerr, len(evs))
		}
		again, againBad, err := Decode(nil, nil, Encode([][]byte{wire.Append(nil, evs)}, bad))
		if err != nil || len(again) != len(evs) || len(againBad) != len(bad) {
			t.Fatalf("re-encoding: %d/%d events, %d/%d bad rows, %v", len(again), len(evs), len(againBad), len(bad), err)
		}
	})
}
