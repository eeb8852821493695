package wire

import (
	"github.com/edgepixel/edgepixel/shared/event"
	"reflect"
	"strings"
	"testing"
)

// Encoded holds events as a batch would: short ones (a one-byte length)
// and long ones (a longer length, shifted in place) alike, and what it
// drops or keeps leaves the rest intact.
func TestEncoded(t *testing.T) {
	in := sample(7)
	in[2].URL = "https://example.com/" + strings.Repeat("x", 1000) // a two-byte length
	in[5].Props = `{"k":"` + strings.Repeat("y", 3000) + `"}`
	var enc Encoded
	for i := range in {
		enc.Add(&in[i])
	}
	if enc.Len() != len(in) {
		t.Fatalf("Len %d", enc.Len())
	}
	check := func(what string, want []int) {
		t.Helper()
		var evs = make([]int, 0, enc.Len())
		for i := range enc.Len() {
			e, err := enc.Event(i)
			if err != nil {
				t.Fatalf("%s: event %d: %v", what, i, err)
			}
			j := int(e.Time - in[0].Time)
			if !reflect.DeepEqual(e, in[j]) {
				t.Fatalf("%s: event %d decoded as %+v", what, i, e)
			}
			if enc.Time(i) != in[j].Time {
				t.Fatalf("%s: Time(%d) = %d", what, i, enc.Time(i))
			}
			evs = append(evs, j)
		}
		if !reflect.DeepEqual(evs, want) {
			t.Fatalf("%s: holds %v, want %v", what, evs, want)
		}
		// A batch of its events is what Append makes of the same events.
		var sel = sampleAt(in, want)
		if got, want := enc.AppendBatch(nil, enc.Len()), Append(nil, sel); string(got) != string(want) {
			t.Fatalf("%s: AppendBatch differs from Append", what)
		}
		c := &Counters{Instance: in[0].ID, Pop: "p", Sites: []SiteCounts{{Site: "demo", Time: 1, Hits: 2, Events: 2}}}
		if got, want := enc.AppendBatchWithCounters(nil, enc.Len(), c), AppendWithCounters(nil, sel, c); string(got) != string(want) {
			t.Fatalf("%s: AppendBatchWithCounters differs from AppendWithCounters", what)
		}
		if n := enc.Len(); n > 1 {
			out, err := Decode(nil, enc.AppendBatch(nil, n-1))
			if err != nil || len(out) != n-1 || !reflect.DeepEqual(out, sampleAt(in, want[:n-1])) {
				t.Fatalf("%s: a batch of the first %d: %d events, %v", what, n-1, len(out), err)
			}
		}
	}
	check("all", []int{0, 1, 2, 3, 4, 5, 6})
	enc.Drop(2)
	check("after Drop(2)", []int{2, 3, 4, 5, 6})
	enc.Keep(func(i int) bool { return i != 1 && i != 3 })
	check("after Keep", []int{2, 4, 6})
	enc.Drop(enc.Len())
	check("empty", []int{})
	enc.Add(&in[5])
	check("again", []int{5})
}

func sampleAt(in []event.Event, idx []int) []event.Event {
	out := make([]event.Event, 0, len(idx))
	for _, i := range idx {
		out = append(out, in[i])
	}
	return out
}

// Adding an event to warm storage allocates nothing: an edge instance
// buffers every hit this way.
func TestEncodedAddAllocations(t *testing.T) {
	in := sample(1)[0]
	var enc Encoded
	enc.Add(&in)
	enc.Drop(1)
	if a := testing.AllocsPerRun(1000, func() {
		enc.Add(&in)
		enc.Drop(1)
	}); a != 0 {
		t.Errorf("%.1f allocations per Add", a)
	}
}
