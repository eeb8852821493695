package urlescape

import (
	"slices"
	"strings"
	"testing"
	"unicode"
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
// changes nothing. URL's is normal too, and names no page (NoPage) where
// its input named one: decoding escapes must not make a scheme.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/caf%c3%a9", "/it's", "%", "%2", "%zz", "a b", "\xff", "%6Aavascript:x", "java%73cript:x?a#b", "//%0%%330"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u := URL(s); URL(u) != u || NoPage(u) && !NoPage(s) {
			t.Fatalf("URL(%q) = %q: not normal, or a page became no page", s, u)
		}
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
		{"https://E.example:8443/caf\u00e9?q=it's&r=%7e#frag", "https://e.example:8443/caf%C3%A9?q=it%27s&r=~"},
		{"https://e.example?q=a b", "https://e.example/?q=a%20b"},
		{"https://e.example", "https://e.example/"},
		// The edge's other rules (pageurl), tracking parameters aside.
		{" HTTPS://user:pw@Example.COM.:443/a/./b/../c\\d?utm_source=x&b=1 ", "https://example.com/a/c/d?utm_source=x&b=1"},
		{"http://b\u00fccher.example/", "http://xn--bcher-kva.example/"},
		{"https://e.example/a?", "https://e.example/a"},
		{"//x", "//x/"},
		{"/..//x", "/.//x"},
		{"/a b/%2f", "/a%20b/%2F"},
		{"//e.example/x|y", "//e.example/x%7Cy"},
		{"e.example/x|y", "e.example/x%7Cy"},
		{"", ""},
		{"https://e.example/already%20normal?x=1", "https://e.example/already%20normal?x=1"},
		// A first segment whose colon appears once decoded stays a path,
		// as the edge stores it (pageurl): not a javascript: URL.
		{"%6Aavascript:alert(1)", "./javascript:alert(1)"},
		{"%6A%61vascript:x?q=1", "./javascript:x?q=1"},
		{"a%3Ab", "a%3Ab"},
		// A host whose decoding leaves a '%' or bytes that are not UTF-8
		// is no name: it stays escaped, and reads the same again (a
		// fuzzer's "%8%30" became "%80", then U+FFFD's A-label; another's
		// "%0%%330" became "%2500", then "%00"). Decoded once, as a path
		// is: a '%' that starts no escape is "%25".
		{"//%8%30", "//%2580/"},
		{"//%0%%330", "//%250%2530/"},
		{"/%8%30", "/%2580"},
		{"//%80/", "//%80/"},
		{"http://%25x/", "http://%25x/"},
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

func TestNoPage(t *testing.T) {
	for _, s := range []string{"javascript:alert(1)", "JavaScript:void(0)", " \x01javascript:x", "java\tscr\nipt:x", "\u00a0javascript:x", "\u3000DATA:,", "vbscript:msgbox", "data:text/html,<b>x</b>", "DATA:,", "file:///Users/alice/page.html", "File:x", "mailto:a@b", "about:blank", " ABOUT:srcdoc", "content://com.android.chrome.FileProvider/downloads/saved.html"} {
		if !NoPage(s) {
			t.Errorf("NoPage(%q) = false", s)
		}
	}
	for _, s := range []string{"https://example.com/javascript:x", "/data:x", "javascripts:x", "xjavascript:x", "java script:x", "javascript", "data", "", "blob:https://a/b", "android-app://com.google.android.gm/", "files:x", "/file:x", "%6Aavascript:x"} {
		if NoPage(s) {
			t.Errorf("NoPage(%q) = true", s)
		}
	}
	if n := testing.AllocsPerRun(100, func() { NoPage("JavaScript:alert(1)") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzNoPage(f *testing.F) {
	for _, s := range []string{"javascript:x", " Data:,", "vb\tscript:", "https://a/"} {
		f.Add(s)
	}
	// The same rule, written plainly: strip as the URL standard does, cut
	// at the first ':', compare in lower case.
	ref := func(s string) bool {
		s = strings.TrimLeftFunc(s, func(r rune) bool { return r <= ' ' || unicode.IsSpace(r) })
		s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
		scheme, _, ok := strings.Cut(s, ":")
		if !ok {
			return false
		}
		// ASCII case only: strings.ToLower would take the Kelvin sign
		// for a 'k', which no browser does.
		switch strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, scheme) {
		case "javascript", "vbscript", "data", "file", "content", "mailto", "about":
			return true
		}
		return false
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := NoPage(s), ref(s); got != want {
			t.Fatalf("NoPage(%q) = %v, want %v", s, got, want)
		}
	})
}

func TestParams(t *testing.T) {
	var got []string
	for k, v := range Params("fail%6Fver=https://c/in?a=1&b&=x&%zz=2;c=3&") {
		got = append(got, k+"|"+v)
	}
	want := []string{"failover|https://c/in?a=1", "b|", "|x", "%zz|2;c=3"}
	if !slices.Equal(got, want) {
		t.Errorf("Params = %q, want %q", got, want)
	}
	for range Params("a=1&b=2") {
		break // stopping early must not panic
	}
}

// NoPageSchemes, the messages' list, names exactly the schemes NoPage
// refuses, in order.
func TestNoPageSchemesAgree(t *testing.T) {
	var want string
	for i, s := range noPageSchemes {
		switch {
		case i == 0:
		case i == len(noPageSchemes)-1:
			want += " or "
		default:
			want += ", "
		}
		want += s
	}
	if NoPageSchemes != want {
		t.Errorf("NoPageSchemes = %q, noPageSchemes say %q", NoPageSchemes, want)
	}
}

func TestUnescape(t *testing.T) {
	for _, c := range []struct {
		in   string
		plus bool
		want string
	}{
		{"a%20b+c", false, "a b+c"},
		{"a%20b+c", true, "a b c"},
		{"%2B+%zz%4", true, "+ %zz%4"},
		{"plain", true, "plain"},
		{"%E2%82%AC", false, "€"},
	} {
		if got := Unescape(c.in, c.plus); got != c.want {
			t.Errorf("Unescape(%q, %v) = %q, want %q", c.in, c.plus, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { Unescape("no-escape+here", false) }); n != 0 {
		t.Errorf("%v allocations for nothing to decode", n)
	}
}
