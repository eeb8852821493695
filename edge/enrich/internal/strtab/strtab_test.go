package strtab

import (
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
