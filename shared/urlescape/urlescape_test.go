package urlescape

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		escaped Set
		want    string
	}{
		{"/caf%c3%a9", Path, "/caf%C3%A9"},
		{"/café", Path, "/caf%C3%A9"},
		{"/%7Euser/%41bc", Path, "/~user/Abc"},
		{"/a b/100%", Path, "/a%20b/100%25"},
		{"/a%2Fb%3f%23", Path, "/a%2Fb%3F%23"},
		{"/it%27s%21%28%29%2A", Path, "/it's!()*"},
		{"q=it's&r=%27%28", Query, "q=it%27s&r=%27("},
		{"%2A%40", Host, "*%40"},
		{"/%zz%", Path, "/%25zz%25"},
		{"", Path, ""},
	} {
		if got := Normalize(tc.in, tc.escaped); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := Normalize(tc.want, tc.escaped); got != tc.want {
			t.Errorf("Normalize(%q) = %q: the normal form is not kept", tc.want, got)
		}
		if NormalEnd(tc.want, tc.escaped) != len(tc.want) {
			t.Errorf("NormalEnd(%q) = %d: the normal form is not normal", tc.want, NormalEnd(tc.want, tc.escaped))
		}
	}
	if n := testing.AllocsPerRun(100, func() { Normalize("/a/b-c_d.e~f/%C3%A9(x)", Path) }); n != 0 {
		t.Errorf("Normalize allocates %v times on a normal path", n)
	}
}

// The sets hold exactly the characters their comment names.
func TestSets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   Set
		chars string
	}{
		{"Path", Path, "\"<>`{}| ^\\"},
		{"Query", Query, "\"<>`{}| ^\\'"},
		{"Host", Host, "\"<>`{}| ^\\/?#@"},
		{"Host with ':'", Host.With(':'), "\"<>`{}| ^\\/?#@:"},
		{"marks", marks, "!'()*"},
	} {
		for c := 0; c < 256; c++ {
			if got, want := tc.set.Has(byte(c)), strings.IndexByte(tc.chars, byte(c)) >= 0; got != want {
				t.Errorf("%s.Has(%q) = %v, want %v", tc.name, rune(c), got, want)
			}
		}
	}
}

// Normalize's result is printable ASCII and normal: normalising it again
// changes nothing.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/caf%c3%a9", "/it's", "%", "%2", "%zz", "a b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, set := range []Set{Path, Query, Host} {
			n := Normalize(s, set)
			if NormalEnd(n, set) != len(n) || Normalize(n, set) != n {
				t.Fatalf("Normalize(%q) = %q is not normal", s, n)
			}
			for i := 0; i < len(n); i++ {
				if n[i] < 0x21 || n[i] >= 0x7F {
					t.Fatalf("Normalize(%q) = %q is not printable ASCII", s, n)
				}
			}
		}
	})
}

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://e.example/it%27s", "https://e.example/it's"},
		{"https://e.example/=cmd|calc", "https://e.example/=cmd%7Ccalc"},
		{"https://E.example:8443/caf\u00e9?q=it's&r=%7e#frag", "https://E.example:8443/caf%C3%A9?q=it%27s&r=~"},
		{"https://e.example?q=a b", "https://e.example?q=a%20b"},
		{"https://e.example", "https://e.example"},
		{"/a b/%2f", "/a%20b/%2F"},
		{"//e.example/x|y", "//e.example/x%7Cy"},
		{"e.example/x|y", "e.example/x%7Cy"},
		{"", ""},
		{"https://e.example/already%20normal?x=1", "https://e.example/already%20normal?x=1"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSchemeEnd(t *testing.T) {
	for in, want := range map[string]int{"https://x": 5, "a+b.c-d:x": 7, "1http://": -1, ":x": -1, "/p:q": -1, "mailto:": 6, "": -1, "http": -1} {
		if got := SchemeEnd(in); got != want {
			t.Errorf("SchemeEnd(%q) = %d, want %d", in, got, want)
		}
	}
}
