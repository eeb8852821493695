package strtab

import (
	"strconv"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	s := NewSet(map[string]uint16{"example.com": 1, "b.example.org": 2, "a.com": 3})
	for _, tc := range []struct {
		host  string
		val   uint16
		entry string
		ok    bool
	}{
		{"example.com", 1, "example.com", true},
		{"www.example.com", 1, "example.com", true},
		{"x.b.example.org", 2, "b.example.org", true},
		{"example.org", 0, "", false},
		{"com", 0, "", false},
		{"", 0, "", false},
		{"notexample.com", 0, "", false},
	} {
		v, e, ok := s.LookupSuffix(tc.host)
		if v != tc.val || e != tc.entry || ok != tc.ok {
			t.Errorf("LookupSuffix(%q) = %d %q %t, want %d %q %t", tc.host, v, e, ok, tc.val, tc.entry, tc.ok)
		}
	}
}

func TestMatcher(t *testing.T) {
	m, err := NewMatcher([]Pattern{
		{Text: "Googlebot", Val: 1},
		{Text: "Google", Val: 2},
		{Text: "curl", Anchor: true, Val: 3},
		{Text: "bingbot", Val: 4},
		{Text: "Y!J", Val: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s   string
		val int // -1: none
	}{
		{"Mozilla/5.0 (compatible; Googlebot/2.1)", 1},
		{"Google Favicon", 2},
		{"curl/8.0", 3},
		{"x curl/8.0", -1},
		{"Mozilla/5.0 (Windows NT 10.0) Chrome/120", -1},
		{"", -1},
		{"b", -1},
		{"curl", 3},
		{"cur", -1},
		{"a Y!J", 5},
		{"Y!", -1},
		{"xbingbot", 4},
	} {
		i, ok := m.Find(tc.s)
		got := -1
		if ok {
			got = int(m.Val[i])
		}
		if got != tc.val {
			t.Errorf("Find(%q) = %d, want %d", tc.s, got, tc.val)
		}
	}
	if _, err := NewMatcher([]Pattern{{Text: "x"}}); err == nil {
		t.Error("a 1-byte pattern was accepted")
	}
	if src := m.GoSource("x"); !strings.Contains(src, "strtab.Matcher{") {
		t.Errorf("GoSource: %s", src)
	}
}

func TestUint32Set(t *testing.T) {
	s := Uint32Set{3, 16509, 24940}
	for n, want := range map[uint32]bool{3: true, 16509: true, 24940: true, 0: false, 4: false, 1 << 31: false} {
		if s.Contains(n) != want {
			t.Errorf("Contains(%d) = %t", n, !want)
		}
	}
}

// Find answers as a search of every pattern at every position does: the
// leftmost position where one occurs, the longest there.
func FuzzMatcherFind(f *testing.F) {
	pats := []Pattern{
		{Text: "Go", Val: 0}, {Text: "Goo", Val: 1}, {Text: "Google", Val: 2}, {Text: "Googlebot", Val: 3},
		{Text: "Gox", Val: 4}, {Text: "curl", Anchor: true, Val: 5}, {Text: "cu", Val: 6},
		{Text: "bingbot", Val: 7}, {Text: "Y!J", Val: 8}, {Text: "ab", Anchor: true, Val: 9}, {Text: "abc", Val: 10},
	}
	m, err := NewMatcher(pats)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Googlebot", "a Google", "xGoxGoo", "curl", "xcurl", "abc", "xabc", "Y!", "bingbo", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := -1
		for i := 0; i < len(s) && want < 0; i++ {
			best := 0
			for _, p := range pats {
				if strings.HasPrefix(s[i:], p.Text) && (i == 0 || !p.Anchor) && len(p.Text) > best {
					want, best = int(p.Val), len(p.Text)
				}
			}
		}
		got := -1
		if k, ok := m.Find(s); ok {
			got = int(m.Val[k])
		}
		if got != want {
			t.Fatalf("Find(%q) = %d, want %d", s, got, want)
		}
	})
}

// Lookup and LookupSuffixJoin answer as a map of the entries does, for
// entries and keys that share hashes' low bits (the set is small, so most
// keys probe past occupied slots).
func FuzzSetLookup(f *testing.F) {
	entries := map[string]uint16{"": 7, "a": 1, "ab": 2, "abc": 3, "b.{}": 4, "example.com": 5, "co.uk": 6, "x.co.uk": 8}
	s := NewSet(entries)
	for _, p := range [][2]string{{"a", ""}, {"a", "b"}, {"", ""}, {"b.", "{}"}, {"example.", "com"}, {"zz", "z"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		want, ok := entries[a+b]
		if v, got := s.Lookup(a + b); got != ok || v != want {
			t.Fatalf("Lookup(%q) = %d %t, want %d %t", a+b, v, got, want, ok)
		}
		if v, got := s.lookupJoin(a, b); got != ok || v != want {
			t.Fatalf("lookupJoin(%q, %q) = %d %t, want %d %t", a, b, v, got, want, ok)
		}
	})
}

// Every entry of a set the size of the public suffix list is found, and
// the index is at most half full.
func TestSetIndex(t *testing.T) {
	m := map[string]uint16{}
	for i := range 10000 {
		m[strings.Repeat("x", i%7)+string(rune('a'+i%26))+strconv.Itoa(i)] = uint16(i)
	}
	s := NewSet(m)
	if len(s.Slot) < 2*len(m) || len(s.Slot)&(len(s.Slot)-1) != 0 {
		t.Fatalf("%d slots for %d entries", len(s.Slot), len(m))
	}
	for k, want := range m {
		if v, ok := s.Lookup(k); !ok || v != want {
			t.Fatalf("Lookup(%q) = %d %t, want %d", k, v, ok, want)
		}
		if _, ok := s.Lookup(k + "."); ok {
			t.Fatalf("Lookup(%q) found", k+".")
		}
	}
}
