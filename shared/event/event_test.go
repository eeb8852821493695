package event

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestIDRoundTrip(t *testing.T) {
	const ms = 1_763_800_000_123
	id, err := NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := id.String()
	if len(s) != 36 || s[14] != '7' {
		t.Fatalf("not a UUIDv7: %s", s)
	}
	if c := s[19]; c != '8' && c != '9' && c != 'a' && c != 'b' {
		t.Fatalf("bad variant in %s", s)
	}
	back, err := ParseID(strings.ToUpper(s))
	if err != nil || back != id {
		t.Fatalf("ParseID(%s) = %v, %v", s, back, err)
	}
	got := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	if got != ms {
		t.Fatalf("timestamp %d, want %d", got, ms)
	}
}

func TestIDsSortByTime(t *testing.T) {
	a, _ := NewID(1000, rand.Reader)
	b, _ := NewID(1001, rand.Reader)
	if bytes.Compare(a[:], b[:]) >= 0 || a.String() >= b.String() {
		t.Fatalf("%s should sort before %s", a, b)
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, s := range []string{"", "x", "0000000000000000000000000000000000000", "0000000-00000-0000-0000-000000000000", "g0000000-0000-0000-0000-000000000000",
		"00000000-0000-0000-0000-0000-0000000"} { // a fifth dash once read past the end
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

func valid() Event {
	id, _ := NewID(1, rand.Reader)
	return Event{ID: id, Time: 1, Site: "s", Name: KindPageview}
}

func TestValidate(t *testing.T) {
	e := valid()
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Event){
		"missing id":   func(e *Event) { e.ID = ID{} },
		"missing time": func(e *Event) { e.Time = 0 },
		"after 2106":   func(e *Event) { e.Time = MaxTime + 1 },
		"missing site": func(e *Event) { e.Site = "" },
		"missing name": func(e *Event) { e.Name = "" },
		"url":          func(e *Event) { e.URL = strings.Repeat("a", MaxURLLen+1) },
		"props":        func(e *Event) { e.Props = strings.Repeat("a", MaxPropsLen+1) },
		"bot_score":    func(e *Event) { e.BotScore = BotScoreMax + 1 },
		"tier":         func(e *Event) { e.Tier = "weird" },
	}
	// The tiers and the scores there are, and no tier (an edge before
	// them).
	for _, tier := range []string{"", TierFull, TierAggregate} {
		e := valid()
		e.Tier, e.BotScore = tier, BotScoreMax
		if err := e.Validate(); err != nil {
			t.Errorf("tier %q, bot score %d: %v", tier, e.BotScore, err)
		}
	}
	// The last time ClickHouse's DateTime holds with the margin.
	if e := valid(); func() error { e.Time = MaxTime; return e.Validate() }() != nil {
		t.Error("MaxTime refused")
	}
	for want, mutate := range cases {
		e := valid()
		mutate(&e)
		err := e.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

// FuzzParseID: any string either fails or parses to the id whose
// canonical form is that string, lower-cased; never a panic.
func FuzzParseID(f *testing.F) {
	f.Add("0190b8b0-6a9e-7c3d-8f00-0123456789ab")
	f.Add("00000000-0000-0000-0000-0000-0000000")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err == nil && id.String() != strings.ToLower(s) {
			t.Fatalf("ParseID(%q) = %s", s, id)
		}
	})
}
