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

// decode is Decode without counters, as the tests before them read.
func decode(p []byte) ([]event.Event, []BadRow, error) {
	var d Decoded
	err := Decode(&d, p)
	return d.Events, d.Bad, err
}

func TestPlainBatchIsUnchanged(t *testing.T) {
	evs := mkEvents(t, 3)
	b := wire.Append(nil, evs)
	// A request with nothing but one batch is spooled as the batch itself,
	// which an older loader reads.
	if p := Encode([][]byte{b}, nil, nil); !bytes.Equal(p, b) {
		t.Fatal("a lone batch was wrapped")
	}
	got, bad, err := decode(b)
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
	p := Encode([][]byte{wire.Append(nil, evs[:2]), wire.Append(nil, evs[2:])}, bad, nil)
	if n, err := Count(p); n != 5 || err != nil {
		t.Fatalf("count %d %v", n, err)
	}
	gotEvs, gotBad, err := decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotEvs, evs) || !reflect.DeepEqual(gotBad, bad) {
		t.Fatalf("round trip:\n%+v\n%+v", gotEvs, gotBad)
	}
	// Only bad rows, no events.
	p = Encode(nil, bad[:1], nil)
	gotEvs, gotBad, err = decode(p)
	if err != nil || len(gotEvs) != 0 || !reflect.DeepEqual(gotBad, bad[:1]) {
		t.Fatalf("%v %v %v", gotEvs, gotBad, err)
	}
	// Every truncation of an envelope is an error, never a panic or a
	// silently shorter record.
	p = Encode([][]byte{wire.Append(nil, evs)}, bad, nil)
	for i := len(EnvelopeMagic); i < len(p); i++ {
		if _, _, err := decode(p[:i]); err == nil {
			t.Fatalf("truncated at %d of %d decoded", i, len(p))
		}
	}
	if _, _, err := decode(append(p, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

// FuzzDecode: arbitrary payloads never panic, and whatever decodes
// re-encodes to a payload that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	evs := mkEvents(f, 2)
	f.Add(wire.Append(nil, evs))
	f.Add(Encode([][]byte{wire.Append(nil, evs), wire.Append(nil, nil)},
		[]BadRow{NewBadRow(1, SourceNDJSON, "s", "bad_json", "e", []byte("{"))}, nil))
	f.Add(Encode([][]byte{wire.Append(nil, evs)}, nil, []wire.Counters{sampleCounters()}))
	f.Add([]byte("EPX1\x00\x01\x05abc"))
	f.Add([]byte("EPX1\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, p []byte) {
		n, cerr := Count(p)
		var d Decoded
		if err := Decode(&d, p); err != nil {
			return
		}
		if cerr != nil || n != len(d.Events) {
			t.Fatalf("Count %d %v, Decode %d events", n, cerr, len(d.Events))
		}
		var again Decoded
		err := Decode(&again, Encode([][]byte{wire.Append(nil, d.Events)}, d.Bad, d.Counters))
		if err != nil || len(again.Events) != len(d.Events) || len(again.Bad) != len(d.Bad) || !reflect.DeepEqual(again.Counters, d.Counters) {
			t.Fatalf("re-encoding: %d/%d events, %d/%d bad rows, %d/%d counters, %v", len(again.Events), len(d.Events),
				len(again.Bad), len(d.Bad), len(again.Counters), len(d.Counters), err)
		}
	})
}

func sampleCounters() wire.Counters {
	inst, _ := event.NewID(time.Now().UnixMilli(), rand.Reader)
	return wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{
		{Site: "demo", Time: time.Now().UnixMilli(), Hits: 3, Events: 2, Drops: []wire.Drop{{Reason: "bad_json", N: 1}}}}}
}

// Counters travel in version 2 envelopes, and in version 2 batches spooled
// as signed; records without them keep version 1.
func TestCounters(t *testing.T) {
	evs := mkEvents(t, 2)
	c1, c2 := sampleCounters(), sampleCounters()
	bad := []BadRow{NewBadRow(1, SourceNDJSON, "s", "bad_json", "e", []byte("{"))}
	for name, tc := range map[string]struct {
		p     []byte
		magic string
		want  []wire.Counters
	}{
		"envelope":          {Encode([][]byte{wire.Append(nil, evs)}, bad, []wire.Counters{c1, c2}), EnvelopeMagicCounters, []wire.Counters{c1, c2}},
		"counters only":     {Encode(nil, nil, []wire.Counters{c1}), EnvelopeMagicCounters, []wire.Counters{c1}},
		"signed batch":      {wire.AppendWithCounters(nil, evs, &c1), wire.MagicCounters, []wire.Counters{c1}},
		"batch in envelope": {Encode([][]byte{wire.AppendWithCounters(nil, evs, &c1)}, bad, nil), EnvelopeMagic, []wire.Counters{c1}},
		"none":              {Encode([][]byte{wire.Append(nil, evs)}, bad, nil), EnvelopeMagic, nil},
	} {
		if m := string(tc.p[:4]); m != tc.magic {
			t.Errorf("%s: magic %s, want %s", name, m, tc.magic)
		}
		var d Decoded
		if err := Decode(&d, tc.p); err != nil || !reflect.DeepEqual(d.Counters, tc.want) {
			t.Errorf("%s: %v, counters %+v", name, err, d.Counters)
		}
		for i := len(EnvelopeMagic); i < len(tc.p); i++ {
			if err := Decode(&Decoded{}, tc.p[:i]); err == nil {
				t.Fatalf("%s: truncated at %d of %d decoded", name, i, len(tc.p))
			}
		}
	}
}
