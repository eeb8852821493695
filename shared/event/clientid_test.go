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

func TestParseClientID(t *testing.T) {
	good := v7(t, now-1000)
	for _, s := range []string{good.String(), strings.ToUpper(good.String())} {
		if id, err := ParseClientID(s, now); err != nil || id != good {
			t.Errorf("ParseClientID(%s) = %v, %v", s, id, err)
		}
	}
	v4 := good
	v4[6] = v4[6]&0x0F | 0x40
	badVariant := good
	badVariant[8] &= 0x3F
	for name, s := range map[string]string{
		"not a uuid":  "hello",
		"no dashes":   strings.ReplaceAll(good.String(), "-", ""),
		"v4":          v4.String(),
		"variant":     badVariant.String(),
		"too old":     v7(t, now-MaxClientIDAge-1).String(),
		"too far out": v7(t, now+MaxClientIDAhead+1).String(),
		"zero":        ID{}.String(),
	} {
		if _, err := ParseClientID(s, now); !errors.Is(err, ErrClientID) {
			t.Errorf("%s: %s accepted (%v)", name, s, err)
		}
	}
	for _, ms := range []int64{now - MaxClientIDAge, now + MaxClientIDAhead} {
		if _, err := ParseClientID(v7(t, ms).String(), now); err != nil {
			t.Errorf("at the bound %d: %v", ms-now, err)
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
