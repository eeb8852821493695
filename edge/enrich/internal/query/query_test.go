package query

import (
	"net/url"
	"strings"
	"testing"
)

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		q, key, val, rest string
	}{
		{"", "", "", ""},
		{"a=1", "a", "1", ""},
		{"a=1&b=2", "a", "1", "b=2"},
		{"a=1;b=2", "a", "1", "b=2"},
		{"a=1&amp;b=2", "a", "1", "b=2"},
		{"a=1&AMP;b=2", "a", "1", "b=2"},
		{"a&b", "a", "", "b"},
		{"&&a=1", "", "", "&a=1"},
		{"a==1=2&", "a", "=1=2", ""},
		{"a=1&amp", "a", "1", "amp"},
	} {
		k, v, rest := Next(tc.q)
		if k != tc.key || v != tc.val || rest != tc.rest {
			t.Errorf("Next(%q) = %q, %q, %q; want %q, %q, %q", tc.q, k, v, rest, tc.key, tc.val, tc.rest)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		s, q, frag string
	}{
		{"https://e.com/p?a=1#f", "a=1", "f"},
		{"https://e.com/p#f?a=1", "", "f?a=1"},
		{"a=1&b=2", "a=1&b=2", ""},
		{"https://e.com/a=b", "", ""},
		{"/path", "", ""},
		{"?", "", ""},
	} {
		if q, frag := Split(tc.s); q != tc.q || frag != tc.frag {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tc.s, q, frag, tc.q, tc.frag)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"plain", "plain"},
		{"a+b", "a b"},
		{"caf%C3%A9", "café"},
		{"caf%c3%a9", "café"},
		{"100%", "100%"},
		{"%zz%4", "%zz%4"},
		{"%2B", "+"},
	} {
		if got := Unescape(tc.s); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestEqualKey(t *testing.T) {
	for _, tc := range []struct {
		k, name string
		want    bool
	}{
		{"utm_source", "utm_source", true},
		{"UTM_Source", "utm_source", true},
		{"utm%5Fsource", "utm_source", true},
		{"utm_sourc", "utm_source", false},
		{"utm+source", "utm_source", false},
	} {
		if got := EqualKey(tc.k, tc.name); got != tc.want {
			t.Errorf("EqualKey(%q, %q) = %t", tc.k, tc.name, got)
		}
	}
}

// FuzzQuery checks that reading any query ends, that Next only ever
// shortens it, and that Unescape agrees with net/url's QueryUnescape
// wherever that accepts the input.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a=1&amp;b=%zz", "&&;;=", "%", "k%3D=v+w", "caf%c3%a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		n := 0
		for rest := q; rest != ""; n++ {
			k, v, next := Next(rest)
			if len(next) >= len(rest) || !strings.HasSuffix(rest, next) || len(k)+len(v) > len(rest) {
				t.Fatalf("Next(%q) = %q, %q, %q", rest, k, v, next)
			}
			rest = next
		}
		if n > len(q) {
			t.Fatalf("%d parameters in %d bytes", n, len(q))
		}
		if want, err := url.QueryUnescape(q); err == nil {
			if got := Unescape(q); got != want {
				t.Fatalf("Unescape(%q) = %q, net/url says %q", q, got, want)
			}
		}
		if !NeedsUnescape(q) && Unescape(q) != q {
			t.Fatalf("Unescape(%q) changed a string without escapes", q)
		}
	})
}
