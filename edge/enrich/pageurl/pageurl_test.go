package pageurl

import (
	"regexp"
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/urlescape"
)

// pathOfURL evaluates event.PathOfURL, the path column's ALIAS in
// ClickHouse, in Go: both are RE2, and the pattern is the expression's
// own. The events table stores no path: this must give back Path.
var pathOfURL = func() func(string) string {
	expr := event.PathOfURL
	re := regexp.MustCompile(expr[strings.IndexByte(expr, '\'')+1 : strings.LastIndexByte(expr, '\'')])
	return func(u string) string {
		if m := re.FindStringSubmatch(u); m != nil {
			return m[1]
		}
		return ""
	}
}()

// The stored path is read from the stored URL (event.PathOfURL): it must
// be Path for every URL Normalize writes.
func TestPathOfURL(t *testing.T) {
	for _, raw := range []string{"https://example.com", "https://example.com/a/b?x=1&y", "", "/p?q", "example.com/a/b", "mailto:a@b", "a:b",
		"//host/p?x", "//x\\y?a", "https://h/" + strings.Repeat("a", MaxLen), "https://" + strings.Repeat("h", MaxLen) + "/p",
		"https://h/p?" + strings.Repeat("q", MaxLen), "HTTP://A.B:80/./x/../y?utm_source=z", "https://h:8080?x", "/x/./y?z", "?only=query", "./A0:", "x/../a:b?c"} {
		r := Normalize(raw)
		if got := pathOfURL(r.URL); got != r.Path {
			t.Errorf("Normalize(%q): path of URL %q is %q, Path %q", raw, r.URL, got, r.Path)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		raw                   string
		url, host, path, qury string
	}{
		{"https://example.com/", "https://example.com/", "example.com", "/", ""},
		{"https://example.com", "https://example.com/", "example.com", "/", ""},
		// A path that only its dot segments made empty is empty: "/" (a
		// second Normalize of "a:" gives the same).
		{"A:.", "a:/", "", "/", ""},
		{"https://example.com/.", "https://example.com/", "example.com", "/", ""},
		{"HTTPS://WWW.Example.COM:443/Docs/Page?x=1#top", "https://www.example.com/Docs/Page?x=1", "www.example.com", "/Docs/Page", "x=1"},
		{"http://example.com:80/a", "http://example.com/a", "example.com", "/a", ""},
		{"http://example.com:8080/a", "http://example.com:8080/a", "example.com", "/a", ""},
		{"https://example.com:0443/a", "https://example.com/a", "example.com", "/a", ""},
		{"https://example.com:/a", "https://example.com/a", "example.com", "/a", ""},
		{"https://user:secret@example.com/a", "https://example.com/a", "example.com", "/a", ""},
		{"https://example.com./a", "https://example.com/a", "example.com", "/a", ""},
		{"https://example.com../a", "https://example.com/a", "example.com", "/a", ""},
		// A dot spelled escaped or full-width is a dot once converted.
		{"https://example.com%2e/a", "https://example.com/a", "example.com", "/a", ""},
		{"https://example.com\u3002/a", "https://example.com/a", "example.com", "/a", ""},
		{"//%2e", "///", "", "/", ""},
		{"http://example.com:000/a", "http://example.com:0/a", "example.com", "/a", ""},
		{"http://a:b:8080/", "http://a%3ab:8080/", "a%3ab", "/", ""}, // a colon in a name is no host
		{"http://[::1]:8080/", "http://[::1]:8080/", "[::1]", "/", ""},
		{"/.//evil.example/x", "/.//evil.example/x", "", "/.//evil.example/x", ""}, // a path, not a host (RFC 3986 5.3)
		// International names to A-labels; the same page spelled three ways.
		{"https://bücher.de/", "https://xn--bcher-kva.de/", "xn--bcher-kva.de", "/", ""},
		{"https://BÜCHER.de/", "https://xn--bcher-kva.de/", "xn--bcher-kva.de", "/", ""},
		{"https://xn--bcher-kva.de/", "https://xn--bcher-kva.de/", "xn--bcher-kva.de", "/", ""},
		{"https://b%C3%BCcher.de/", "https://xn--bcher-kva.de/", "xn--bcher-kva.de", "/", ""},
		// Percent-encoding (RFC 3986 6.2.2.1, 6.2.2.2) and raw UTF-8.
		{"https://example.com/caf%c3%a9", "https://example.com/caf%C3%A9", "example.com", "/caf%C3%A9", ""},
		{"https://example.com/café", "https://example.com/caf%C3%A9", "example.com", "/caf%C3%A9", ""},
		{"https://example.com/%7Euser/%41bc", "https://example.com/~user/Abc", "example.com", "/~user/Abc", ""},
		{"https://example.com/a b", "https://example.com/a%20b", "example.com", "/a%20b", ""},
		{"https://example.com/100%", "https://example.com/100%25", "example.com", "/100%25", ""},
		{"https://example.com/a%2Fb", "https://example.com/a%2Fb", "example.com", "/a%2Fb", ""},
		// The marks: raw in a path, as browsers send them; ' escaped in a
		// query, as browsers send it there.
		{"https://example.com/it%27s%21", "https://example.com/it's!", "example.com", "/it's!", ""},
		{"https://example.com/it's/%28a%29%2a", "https://example.com/it's/(a)*", "example.com", "/it's/(a)*", ""},
		{"https://example.com/p?q=it's&r=%28%29", "https://example.com/p?q=it%27s&r=()", "example.com", "/p", "q=it%27s&r=()"},
		// Dot segments (6.2.2.3), backslashes.
		{"https://example.com/a/./b/../c", "https://example.com/a/c", "example.com", "/a/c", ""},
		{"https://example.com/a/b/..", "https://example.com/a/", "example.com", "/a/", ""},
		{"https://example.com/../../x", "https://example.com/x", "example.com", "/x", ""},
		{"https://example.com\\a\\b", "https://example.com/a/b", "example.com", "/a/b", ""},
		// A servlet container's session id in the path goes, in any
		// case and wherever it is; other path parameters stay.
		{"https://shop.example/cart;jsessionid=A1B2C3?x=1", "https://shop.example/cart?x=1", "shop.example", "/cart", "x=1"},
		{"https://shop.example/a;JSESSIONID=A1;v=2/b;jsessionid", "https://shop.example/a;v=2/b", "shop.example", "/a;v=2/b", ""},
		{"https://shop.example/a/..;jsessionid=1/b", "https://shop.example/b", "shop.example", "/b", ""},
		{"https://shop.example/;jsessionid=1", "https://shop.example/", "shop.example", "/", ""},
		{"https://shop.example/a%3Bjsessionid=1;jsessionidx=2", "https://shop.example/a%3Bjsessionid=1;jsessionidx=2", "shop.example", "/a%3Bjsessionid=1;jsessionidx=2", ""},
		// Tracking parameters removed, others kept in order.
		{"https://example.com/p?utm_source=x&id=7&gclid=abc&lang=en&mc_eid=123", "https://example.com/p?id=7&lang=en", "example.com", "/p", "id=7&lang=en"},
		{"https://example.com/p?utm_source=x&amp;utm_medium=email", "https://example.com/p", "example.com", "/p", ""},
		{"https://example.com/p?fbclid=1", "https://example.com/p", "example.com", "/p", ""},
		{"https://example.com/p?", "https://example.com/p", "example.com", "/p", ""},
		{"https://example.com/p?a=%7e&b=%2f", "https://example.com/p?a=~&b=%2F", "example.com", "/p", "a=~&b=%2F"},
		{"https://example.com/p?q=a+b&&x", "https://example.com/p?q=a+b&x", "example.com", "/p", "q=a+b&x"},
		// Relative and odd input.
		{"/blog/post?utm_campaign=x", "/blog/post", "", "/blog/post", ""},
		{"//cdn.Example.com/x", "//cdn.example.com/x", "cdn.example.com", "/x", ""},
		{"  https://example.com/a  ", "https://example.com/a", "example.com", "/a", ""},
		{"", "", "", "", ""},
		{"#frag", "", "", "", ""},
		{"https://[2001:DB8::1]:443/", "https://[2001:db8::1]/", "[2001:db8::1]", "/", ""},
	} {
		got := Normalize(tc.raw)
		want := Result{URL: tc.url, Host: tc.host, Path: tc.path, Query: tc.qury}
		if got != want {
			t.Errorf("Normalize(%q)\n got  %+v\n want %+v", tc.raw, got, want)
		}
	}
}

func TestNormalizeIdempotent(t *testing.T) {
	for _, s := range []string{"https://bücher.de/a/../b?utm_source=x&y=%7e", "HTTP://A.B:80/%zz%", "/x/./y?z"} {
		a := Normalize(s)
		if b := Normalize(a.URL); b != a {
			t.Errorf("Normalize(Normalize(%q)) = %+v, first %+v", s, b, a)
		}
	}
}

func TestNormalizeAllocs(t *testing.T) {
	u := "https://www.example.com/blog/2025/a-post?page=2"
	if n := testing.AllocsPerRun(100, func() { Normalize(u) }); n != 0 {
		t.Errorf("Normalize allocates %v times on a normal URL", n)
	}
}

func TestWithoutQuery(t *testing.T) {
	for _, raw := range []string{"https://example.com/a?b=1#c", "https://example.com/a%3Fb", "/a?", "https://example.com/" + strings.Repeat("a", MaxLen-len("https://example.com/")-1) + "?q=1"} {
		r := Normalize(raw)
		if w := event.WithoutQuery(r.URL); strings.Contains(w, "?") || !strings.HasPrefix(r.URL, w) || !strings.HasSuffix(w, r.Path) {
			t.Errorf("Normalize(%q) = %+v: without its query %q", raw, r, w)
		}
	}
}

func TestNormalizeBounded(t *testing.T) {
	r := Normalize("https://example.com/" + strings.Repeat("é", MaxLen))
	if len(r.URL) > MaxLen || !strings.HasPrefix(r.URL, "https://example.com/%C3%A9") || !strings.HasPrefix(r.URL, "https://example.com"+r.Path) {
		t.Errorf("long URL: %d bytes, path %d", len(r.URL), len(r.Path))
	}
}

// A page given as a path takes the origin of the page that sent it;
// anything else stays as it is.
func TestResolve(t *testing.T) {
	for _, tc := range []struct{ page, base, want string }{
		{"/relative/path", "https://shop.example/a/b?q=1", "https://shop.example/relative/path"},
		// The scheme lower-cased (RFC 3986 section 3.1), the host as sent:
		{"/p?x=1", "HTTPS://Shop.Example:8443", "https://Shop.Example:8443/p?x=1"},
		{"/p", "http://u@h.example/", "http://u@h.example/p"},
		{" /p ", "https://h.example", "https://h.example/p"},
		{"https://a.example/p", "https://h.example/", "https://a.example/p"},
		{"//cdn.example/p", "https://h.example/", "//cdn.example/p"},
		{"/\\evil.example", "https://h.example/", "/\\evil.example"},
		{"p", "https://h.example/", "p"},
		{"/p", "", "/p"},
		{"/p", "android-app://com.google.android.gm/", "/p"},
		{"/p", "https:///nohost", "/p"},
		{"/p", "/q", "/p"},
		{"javascript:alert(1)", "https://h.example/", "javascript:alert(1)"},
	} {
		if got := Resolve(tc.page, tc.base); got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, want %q", tc.page, tc.base, got, tc.want)
		}
		if got := Normalize(Resolve(tc.page, tc.base)); strings.HasPrefix(tc.want, "http") && (got.Host == "" || got.Path == "") {
			t.Errorf("Resolve(%q, %q): normalised %+v has no host or path", tc.page, tc.base, got)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"https://bücher.de/a/../b?utm_source=x&y=%7e#f", "HTTP://u@A.B:80/%zz%", "/a;;jsessionid=1;/..;jsessionid/b", "//x\\y?a&amp;b", "https://[::1", "a:b", "./A0:", "A:.", "//%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Normalize(s)
		for _, v := range []string{r.URL, r.Host, r.Path, r.Query} {
			if len(v) > MaxLen {
				t.Fatalf("Normalize(%q): %d bytes", s, len(v))
			}
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] >= 0x7F {
					t.Fatalf("Normalize(%q): %q is not printable ASCII", s, v)
				}
			}
		}
		if !strings.Contains(r.URL, r.Path) || !strings.Contains(r.URL, r.Query) {
			t.Fatalf("Normalize(%q) = %+v: parts not in URL", s, r)
		}
		if got := pathOfURL(r.URL); got != r.Path {
			t.Fatalf("Normalize(%q): path of URL %q is %q, Path %q (event.PathOfURL)", s, r.URL, got, r.Path)
		}
		// One spelling per page: a stored URL is its own normal form,
		// and the import's normalisation (urlescape.URL, aggregator/
		// ingest) leaves it as it is.
		if len(r.URL) < MaxLen-2 { // else it may have been cut
			if again := Normalize(r.URL); again != r {
				t.Fatalf("Normalize(%q) = %+v, but Normalize(%q) = %+v", s, r, r.URL, again)
			}
			if u := urlescape.URL(r.URL); u != r.URL {
				t.Fatalf("Normalize(%q).URL = %q, which urlescape.URL makes %q", s, r.URL, u)
			}
		}
		// An import's page is the edge's, tracking parameters aside.
		if u := urlescape.URL(s); !strings.ContainsAny(s, "?") && len(u) < MaxLen-2 {
			if u != r.URL {
				t.Fatalf("Normalize(%q).URL = %q, but urlescape.URL makes it %q", s, r.URL, u)
			}
		}
	})
}

func BenchmarkNormalize(b *testing.B) {
	for _, u := range []string{
		"https://www.example.com/blog/2025/a-post?page=2",
		"https://www.Example.com/blog/a-post?utm_source=newsletter&utm_medium=email&id=3#comments",
	} {
		b.Run("", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Normalize(u)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"https://outlook.live.com/mail/0/inbox/id/AQQkADAwATM0MDAAMS1i", "https://outlook.live.com"},
		{" https://mail.google.com/mail/u/0/#inbox/FMfcgzQX ", "https://mail.google.com"},
		{"HTTP://Mail.Example:8080?x", "HTTP://Mail.Example:8080"},
		{"android-app://com.google.android.gm/", "android-app://com.google.android.gm"},
		{"https://user:pw@mail.example/inbox", ""},
		{"https:///nohost", ""},
		{"/inbox/1", ""},
		{"javascript://x/", ""},
		{"", ""},
	} {
		if got := Origin(tc.raw); got != tc.want {
			t.Errorf("Origin(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// What the edge stores of a page or referrer it did not drop as bad_url
// (urlescape.NoPage) is no URL of a scheme NoPage refuses: the check
// and the normalisation read a scheme alike (a reviewer's leading NBSP
// was skipped by Normalize, not by the check).
func FuzzNoPageStored(f *testing.F) {
	for _, s := range []string{"\u00a0javascript:x", "\u2003Data:,", "java\tscript:x", " vbscript:x", "https://a/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if urlescape.NoPage(s) {
			return
		}
		stored := strings.ToLower(Normalize(event.Clean(s, MaxLen)).URL)
		for _, scheme := range []string{"javascript:", "vbscript:", "data:", "file:", "content:", "mailto:", "about:"} {
			if strings.HasPrefix(stored, scheme) {
				t.Fatalf("NoPage(%q) = false, but it is stored as %q", s, stored)
			}
		}
	})
}
