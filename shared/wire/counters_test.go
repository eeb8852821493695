package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
)

func sampleCounters() Counters {
	inst, _ := event.NewID(1_700_000_000_000, rand.Reader)
	return Counters{Instance: inst, Pop: "FRA", Sites: []SiteCounts{
		{Site: "a.example", Time: 1_700_000_000_500, Hits: 10, Events: 12, Drops: []Drop{{"buffer_full", 1}, {"too_large", 2}}},
		{Site: "", Time: 1_700_000_000_500, Hits: 3, Drops: []Drop{{"missing_site", 3}}},
		{Site: "b.example", Time: 1_700_000_000_400, Hits: 1, Events: 1},
	}}
}

func TestCountersRoundTrip(t *testing.T) {
	c := sampleCounters()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCounters(AppendCounters(nil, &c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

// A version 2 batch carries events and counters; version 1 decodes with
// no counters, and Decode of version 2 still returns the events.
func TestBatchVersions(t *testing.T) {
	evs := sample(3)
	c := sampleCounters()
	b2 := AppendWithCounters(nil, evs, &c)
	if string(b2[:4]) != MagicCounters {
		t.Fatalf("magic %q", b2[:4])
	}
	if n, err := Count(b2); err != nil || n != 3 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	got, gc, err := DecodeBatch(nil, b2)
	if err != nil || !reflect.DeepEqual(got, evs) || gc == nil || !reflect.DeepEqual(*gc, c) {
		t.Fatalf("DecodeBatch v2: %v, counters %+v", err, gc)
	}
	if got, err := Decode(nil, b2); err != nil || !reflect.DeepEqual(got, evs) {
		t.Fatalf("Decode v2: %v", err)
	}
	// Counters alone: a batch with no events is how drops travel.
	b0 := AppendWithCounters(nil, nil, &c)
	if got, gc, err := DecodeBatch(nil, b0); err != nil || len(got) != 0 || gc == nil {
		t.Fatalf("counters only: %v %v %v", got, gc, err)
	}
	if _, gc, err := DecodeBatch(nil, Append(nil, evs)); err != nil || gc != nil {
		t.Fatalf("v1: counters %v, %v", gc, err)
	}
	// Each byte cut off the end is refused, never misread.
	for i := 1; i < len(b2)-len(Magic); i++ {
		if _, _, err := DecodeBatch(nil, b2[:len(b2)-i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut by %d: %v", i, err)
		}
	}
}

// A newer writer may append fields to a site and to the record; they are
// skipped.
func TestCountersSkipNewerFields(t *testing.T) {
	c := Counters{Instance: sampleCounters().Instance, Pop: "p", Sites: []SiteCounts{{Site: "s", Time: 5, Hits: 1, Events: 1}}}
	var b []byte
	b = append(b, c.Instance[:]...)
	b = appendString(b, "p")
	b = append(b, 1)
	body := appendString(nil, "s")
	body = append(body, 5, 1, 1, 0)
	body = append(body, 0)           // no notes
	body = append(body, 2, 'x', 'y') // a future field
	b = append(b, byte(len(body)))
	b = append(b, body...)
	b = append(b, 9, 9, 9) // a future record field
	got, err := DecodeCounters(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// Notes round-trip; a site written before notes existed (ending after its
// drops) decodes with none, and a reader that predates them skips them
// like any newer field.
func TestCountersNotes(t *testing.T) {
	c := sampleCounters()
	c.Sites[0].Notes = []Drop{{Reason: "no_salt", N: 7}}
	got, err := DecodeCounters(AppendCounters(nil, &c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	old := c
	old.Sites = append([]SiteCounts(nil), c.Sites...)
	old.Sites[0].Notes = nil
	if got, err := DecodeCounters(AppendCounters(nil, &old)); err != nil || got.Sites[0].Notes != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("without notes: %+v, %v", got, err)
	}
	line := AppendCountersLine(nil, &c)
	if !strings.Contains(string(line), `"notes":{"no_salt":7}`) {
		t.Errorf("counters line %s", line)
	}
	var sum SiteCounts
	sum.Add(c.Sites[0])
	sum.Add(c.Sites[0])
	if sum.Noted("no_salt") != 14 {
		t.Errorf("Add: %+v", sum)
	}
}

func TestCountersValidate(t *testing.T) {
	cases := map[string]func(*Counters){
		"missing instance": func(c *Counters) { c.Instance = event.ID{} },
		"no sites":         func(c *Counters) { c.Sites = nil },
		"bad time":         func(c *Counters) { c.Sites[0].Time = 0 },
		"drop reason":      func(c *Counters) { c.Sites[0].Drops[0].Reason = "Bad Reason" },
		"site longer":      func(c *Counters) { c.Sites[0].Site = strings.Repeat("s", event.MaxSiteLen+1) },
		"not clean":        func(c *Counters) { c.Sites[0].Site = "bad\xff" },
		"count over":       func(c *Counters) { c.Sites[0].Hits = MaxCount + 1 },
		"drop reasons":     func(c *Counters) { c.Sites[0].Drops = make([]Drop, MaxDropReasons+1) },
		"note reason":      func(c *Counters) { c.Sites[0].Notes = []Drop{{Reason: "No Salt", N: 1}} },
		"note reasons":     func(c *Counters) { c.Sites[0].Notes = make([]Drop, MaxDropReasons+1) },
	}
	for want, mutate := range cases {
		c := sampleCounters()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadCounters) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	for _, r := range []string{"a", "buffer_full", "x9"} {
		if !ValidReason(r) {
			t.Errorf("%q refused", r)
		}
	}
	for _, r := range []string{"", "9a", "A", "a-b", "a b", strings.Repeat("a", MaxReasonLen+1), "é"} {
		if ValidReason(r) {
			t.Errorf("%q accepted", r)
		}
	}
}

func TestMerge(t *testing.T) {
	c := sampleCounters()
	later := Counters{Instance: c.Instance, Pop: c.Pop, Sites: []SiteCounts{{Site: "a.example", Time: 1_700_000_000_900, Hits: 11, Events: 13,
		Drops: []Drop{{"buffer_full", 1}, {"too_large", 2}}}}} // counts only grow
	earlier := Counters{Instance: c.Instance, Pop: c.Pop, Sites: []SiteCounts{{Site: "b.example", Time: 1_700_000_000_100, Hits: 0}}}
	other := sampleCounters()
	got := Merge([]Counters{c, later, earlier, other, c})
	if len(got) != 2 || got[0].Instance != c.Instance || got[1].Instance != other.Instance {
		t.Fatalf("merged into %d records", len(got))
	}
	want := []SiteCounts{later.Sites[0], c.Sites[1], c.Sites[2]}
	if !reflect.DeepEqual(got[0].Sites, want) {
		t.Fatalf("got %+v\nwant %+v", got[0].Sites, want)
	}
}

// TestMergeCountsOverTime: a reading with more counted is the later one
// even when its time is earlier, as on the journal line of an event whose
// time a client's event id set.
func TestMergeCountsOverTime(t *testing.T) {
	c := sampleCounters()
	first := Counters{Instance: c.Instance, Sites: []SiteCounts{{Site: "a.example", Time: 1_700_000_000_900, Hits: 1, Events: 1}}}
	second := Counters{Instance: c.Instance, Sites: []SiteCounts{{Site: "a.example", Time: 1_700_000_000_100, Hits: 2, Events: 2}}}
	for _, order := range [][]Counters{{first, second}, {second, first}} {
		if got := Merge(order); len(got) != 1 || !reflect.DeepEqual(got[0].Sites, second.Sites) {
			t.Errorf("merged %+v, want %+v", got, second.Sites)
		}
	}
}

func FuzzDecodeCounters(f *testing.F) {
	c := sampleCounters()
	f.Add(AppendCounters(nil, &c))
	f.Add(AppendWithCounters(nil, sample(1), &c))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := DecodeCounters(b); err == nil {
			if again, err := DecodeCounters(AppendCounters(nil, &c)); err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("re-encoding differs: %v", err)
			}
		}
		DecodeBatch(nil, b)
	})
}

// lineOf is what the aggregator reads from a line: encoding/json into the
// event, plus the counts member.
type lineOf struct {
	event.Event
	Counts *struct {
		Instance event.ID         `json:"instance"`
		Hits     uint64           `json:"hits"`
		Events   uint64           `json:"events"`
		Drops    map[string]int64 `json:"drops"`
	} `json:"counts"`
}

// The hand-written line is what encoding/json reads back, for every field
// and for strings that need escaping.
func TestEventLine(t *testing.T) {
	for _, s := range []string{"plain", `quo"te\back`, "new\nline\ttab\r\x00\x1f", "é漢字😀", "bad\xffutf8\xc3", "\u2028<>&"} {
		e := full(t)
		for i := range event.Fields {
			if f := &event.Fields[i]; f.Str != nil {
				*f.Str(&e) = s + f.JSON
			}
		}
		e.Props = `{"k":"v"}`
		line := AppendEventLine(nil, &e, event.ID{}, nil)
		var got lineOf
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, line)
		}
		// encoding/json's own round trip is the reference, invalid UTF-8
		// included (both write U+FFFD).
		ref, _ := json.Marshal(&e)
		var want event.Event
		json.Unmarshal(ref, &want)
		if got.Event != want || got.Counts != nil {
			t.Fatalf("%q:\ngot  %+v\nwant %+v", s, got.Event, want)
		}
		if bytes.IndexByte(line, '\n') >= 0 {
			t.Fatalf("raw newline in %s", line)
		}
	}
	// Empty strings are left out; counts ride along.
	e := event.Event{ID: sample(1)[0].ID, Time: 5, Site: "s", Name: "pageview"}
	c := sampleCounters()
	line := AppendEventLine(nil, &e, c.Instance, &c.Sites[0])
	if bytes.Contains(line, []byte(`"url"`)) {
		t.Errorf("empty url written: %s", line)
	}
	var got lineOf
	if err := json.Unmarshal(line, &got); err != nil || got.Counts == nil || got.Counts.Instance != c.Instance ||
		got.Counts.Hits != 10 || got.Counts.Events != 12 || got.Counts.Drops["too_large"] != 2 {
		t.Fatalf("counts: %+v %v\n%s", got.Counts, err, line)
	}
}

func TestCountersLine(t *testing.T) {
	c := sampleCounters()
	line := AppendCountersLine(nil, &c)
	var got struct {
		Type     string   `json:"type"`
		Instance event.ID `json:"instance"`
		Pop      string   `json:"pop"`
		Sites    []struct {
			Site   string            `json:"site"`
			TsMS   int64             `json:"ts_ms"`
			Hits   uint64            `json:"hits"`
			Events uint64            `json:"events"`
			Drops  map[string]uint64 `json:"drops"`
		} `json:"sites"`
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	if got.Type != TypeCounters || got.Instance != c.Instance || got.Pop != "FRA" || len(got.Sites) != 3 ||
		got.Sites[0].Drops["buffer_full"] != 1 || got.Sites[1].Site != "" || got.Sites[2].TsMS != 1_700_000_000_400 {
		t.Fatalf("got %+v\n%s", got, line)
	}
}

func BenchmarkEventLine(b *testing.B) {
	e := sample(1)[0]
	c := sampleCounters()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEventLine(buf[:0], &e, c.Instance, &c.Sites[0])
	}
}

func TestSiteCountsAdd(t *testing.T) {
	s := SiteCounts{Site: "a", Hits: 1, Events: 1, Drops: []Drop{{Reason: "bad_json", N: 2}}}
	o := SiteCounts{Site: "b", Hits: 3, Events: 2, Drops: []Drop{{Reason: "too_large", N: 1}, {Reason: "bad_json", N: 5}}}
	s.Add(o)
	want := SiteCounts{Site: "a", Hits: 4, Events: 3, Drops: []Drop{{Reason: "bad_json", N: 7}, {Reason: "too_large", N: 1}}}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("Add: %+v, want %+v", s, want)
	}
	if o.Drops[1].N != 5 {
		t.Error("Add changed its argument")
	}
}

// TestDropString: drops print as reason=N, alone and in a slice, as the
// edge's log line at an instance's end prints them.
func TestDropString(t *testing.T) {
	ds := []Drop{{Reason: "missing_site", N: 2}, {Reason: "bad_json", N: 1}}
	if got, want := fmt.Sprintf("%v", ds), "[missing_site=2 bad_json=1]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
