package event

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

const now = 1_763_800_000_000

func v7(t testing.TB, ms int64) ID {
	id, err := NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestParseClientIDForm: an id is a UUIDv7 in its canonical form, either
// case; anything else is refused whatever its time.
func TestParseClientIDForm(t *testing.T) {
	good := v7(t, now-1000)
	for _, s := range []string{good.String(), strings.ToUpper(good.String())} {
		if id, skewed, err := ParseClientIDSkewed(s, now); err != nil || skewed || id != good {
			t.Errorf("ParseClientIDSkewed(%s) = %v, %v, %v", s, id, skewed, err)
		}
	}
	v4 := good
	v4[6] = v4[6]&0x0F | 0x40
	badVariant := good
	badVariant[8] &= 0x3F
	for name, s := range map[string]string{
		"not a uuid": "hello",
		"no dashes":  strings.ReplaceAll(good.String(), "-", ""),
		"v4":         v4.String(),
		"variant":    badVariant.String(),
		"zero":       ID{}.String(),
	} {
		if _, _, err := ParseClientIDSkewed(s, now); !errors.Is(err, ErrClientID) {
			t.Errorf("%s: %s accepted (%v)", name, s, err)
		}
	}
}

// TestParseClientIDSkewed: an id within the bounds is kept as it is; one
// beyond them, from a clock off by minutes or hours, is moved by whole
// quarter hours to within 7.5 minutes of now, keeping its
// other bits, and a retry seconds later gets the same id.
func TestParseClientIDSkewed(t *testing.T) {
	const minute, hour = 60_000, 3_600_000
	for _, off := range []int64{0, -MaxClientIDAge + ClockStep/2 + 1, ClockStep/2 - 1, -5 * hour} {
		c := v7(t, now+off)
		if id, skewed, err := ParseClientIDSkewed(c.String(), now); err != nil || skewed || id != c {
			t.Errorf("%d ms from now: %s %v %v, want it as it is", off, id, skewed, err)
		}
	}
	for _, tc := range []struct {
		off, want int64
		retries   bool // false: at a boundary, where a retry moves it otherwise
	}{
		{10*minute + 1, -5*minute + 1, true},
		{ClockStep / 2, -ClockStep / 2, false}, // the bound: half a step, down
		{15 * minute, 0, true},
		{-MaxClientIDAge, 0, true},
		{-MaxClientIDAge + ClockStep/2, -ClockStep / 2, false},
		{MaxClientIDSkew, 0, true},
		{-MaxClientIDSkew + 1, 1, false},
		{hour + 3000, 3000, true},                                 // a clock set an hour ahead, and 3 s fast
		{-25*hour - 4000, -4000, true},                            // a day and an hour behind
		{-MaxClientIDAge - 1, -1, true},                           // just past the oldest
		{5*hour + 8*minute, -7 * minute, false},                   // the nearest step
		{-30*hour + 7*minute + 30_000, -7*minute - 30_000, false}, // half a step: down
	} {
		c := v7(t, now+tc.off)
		laters := []int64{0}
		if tc.retries {
			laters = append(laters, 1000, 20_000) // s.js's retries
		}
		for _, later := range laters {
			id, skewed, err := ParseClientIDSkewed(c.String(), now+later)
			if err != nil || !skewed || id.Time()-now != tc.want {
				t.Errorf("%d ms from now, %d ms later: %d ms from now (skewed %v, %v), want %d", tc.off, later, id.Time()-now, skewed, err, tc.want)
			}
			if got := id.Time() - now - later; got < -ClockStep/2 || got > ClockStep/2 {
				t.Errorf("%d ms from now: moved to %d from now, want within half a step", tc.off, got)
			}
			if moved := c.WithTime(id.Time()); id != moved {
				t.Errorf("%d ms from now: %s, want %s (only its time moved)", tc.off, id, moved)
			}
		}
	}
	for _, s := range []string{"hello", v7(t, now+MaxClientIDSkew+1).String(), v7(t, now-MaxClientIDSkew-1).String(), v7(t, 0).String()} {
		if _, _, err := ParseClientIDSkewed(s, now); !errors.Is(err, ErrClientID) {
			t.Errorf("%s: %v, want refused", s, err)
		}
	}
}

func TestScope(t *testing.T) {
	c := v7(t, now)
	a := Scope(c, "a.com", -1)
	if a != Scope(c, "a.com", -1) {
		t.Fatal("not deterministic")
	}
	if a.Time() != c.Time() || a.String()[14] != '7' || !strings.ContainsRune("89ab", rune(a.String()[19])) {
		t.Fatalf("%s is not a UUIDv7 of the client's time %s", a, c)
	}
	if bytes.Equal(a[6:], c[6:]) {
		t.Fatal("client's random bits stored as is")
	}
	seen := map[ID]string{}
	for _, k := range []struct {
		site  string
		index int
	}{{"a.com", -1}, {"b.com", -1}, {"a.co", -1}, {"a.com", 0}, {"a.com", 1}, {"b.com", 0}} {
		id := Scope(c, k.site, k.index)
		if prev, dup := seen[id]; dup {
			t.Errorf("%s/%d collides with %s", k.site, k.index, prev)
		}
		seen[id] = k.site
	}
}

// FuzzParseClientIDSkewed: whatever an id's time, it is refused, kept as
// it is (then it is less than MaxClientIDAge less half a step before now,
// and less than half a step after), or moved by whole steps to within
// half a step of now with its other bits as they were.
func FuzzParseClientIDSkewed(f *testing.F) {
	for _, off := range []int64{0, 15 * 60_000, -MaxClientIDAge, MaxClientIDSkew, -MaxClientIDSkew - 1, ClockStep / 2} {
		f.Add(off)
	}
	f.Fuzz(func(t *testing.T, off int64) {
		ms := now + off%(1<<47)
		if ms < 0 || ms >= 1<<48 {
			return
		}
		c := v7(t, ms)
		id, skewed, err := ParseClientIDSkewed(c.String(), now)
		switch {
		case err != nil:
			if d := ms - now; d >= -MaxClientIDSkew && d <= MaxClientIDSkew {
				t.Fatalf("%d ms off refused: %v", d, err)
			}
		case !skewed:
			if id != c {
				t.Fatalf("%d ms off: %s kept as %s", ms-now, c, id)
			}
			if d := ms - now; d <= -MaxClientIDAge+ClockStep/2 || d >= ClockStep/2 {
				t.Fatalf("%d ms off kept as it is", d)
			}
		default:
			if d := id.Time() - now; d < -ClockStep/2 || d > ClockStep/2 || (id.Time()-ms)%ClockStep != 0 || c.WithTime(id.Time()) != id {
				t.Fatalf("%d ms off moved to %d off (%s from %s)", ms-now, d, id, c)
			}
		}
	})
}
