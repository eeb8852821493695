package referrer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"

	gen "github.com/edgepixel/edgepixel/edge/enrich/internal/gen/lib"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   Input
		want Result
	}{
		{Input{}, Result{Channel: Direct}},
		{Input{Referrer: "https://www.google.com/", PageHost: "example.com"},
			Result{Host: "www.google.com", Domain: "google.com", Channel: Search, Name: "Google"}},
		{Input{Referrer: "https://www.google.co.uk/search?q=x"},
			Result{Host: "www.google.co.uk", Domain: "google.co.uk", Channel: Search, Name: "Google"}},
		{Input{Referrer: "https://duckduckgo.com/"}, Result{Host: "duckduckgo.com", Domain: "duckduckgo.com", Channel: Search, Name: "DuckDuckGo"}},
		{Input{Referrer: "https://www.bing.com/search?q=a"}, Result{Host: "www.bing.com", Domain: "bing.com", Channel: Search, Name: "Bing"}},
		{Input{Referrer: "https://l.facebook.com/l.php?u=x"}, Result{Host: "l.facebook.com", Domain: "facebook.com", Channel: Social, Name: "Facebook"}},
		{Input{Referrer: "https://t.co/abc"}, Result{Host: "t.co", Domain: "t.co", Channel: Social, Name: "Twitter"}},
		// Matomo's lists name x.com/i/grok (an AI assistant's path) and
		// www.facebook.com (a search engine, for its search page): the
		// hosts are the social networks' (tester89).
		{Input{Referrer: "https://x.com/someone/status/1"}, Result{Host: "x.com", Domain: "x.com", Channel: Social, Name: "Twitter"}},
		{Input{Referrer: "https://www.facebook.com/"}, Result{Host: "www.facebook.com", Domain: "facebook.com", Channel: Social, Name: "Facebook"}},
		{Input{Referrer: "https://grok.com/chat"}, Result{Host: "grok.com", Domain: "grok.com", Channel: Referral, Name: "Grok"}},
		// "google.{}" is Google under an ICANN suffix, not a blog or a
		// bucket under a private one (tester89).
		{Input{Referrer: "https://google.blogspot.com/"}, Result{Host: "google.blogspot.com", Domain: "google.blogspot.com", Channel: Referral}},
		{Input{Referrer: "https://google.github.io/x"}, Result{Host: "google.github.io", Domain: "google.github.io", Channel: Referral}},
		{Input{Referrer: "https://www.google.co.uk/"}, Result{Host: "www.google.co.uk", Domain: "google.co.uk", Channel: Search, Name: "Google"}},
		{Input{Referrer: "http://0.0.1/", PageHost: "10.0.0.1"}, Result{Host: "0.0.1", Domain: "0.0.1", Channel: Referral}},
		{Input{Referrer: "http://10.0.0.1:8080/a", PageHost: "10.0.0.1"}, Result{Host: "10.0.0.1", Domain: "10.0.0.1", Channel: Internal}},
		{Input{Referrer: "https://github.io/", PageHost: "me.github.io"}, Result{Host: "github.io", Domain: "github.io", Channel: Referral}},
		// A name with an empty label, which the WHATWG URL parser keeps and
		// DNS cannot resolve: no list names it, and it shares no site.
		{Input{Referrer: "https://.google.com/"}, Result{Host: ".google.com", Domain: ".google.com", Channel: Referral}},
		{Input{Referrer: "https://www..google.com/"}, Result{Host: "www..google.com", Domain: "www..google.com", Channel: Referral}},
		{Input{Referrer: "https://.shop.example/", PageHost: "shop.example"}, Result{Host: ".shop.example", Domain: ".shop.example", Channel: Referral}},
		{Input{Referrer: "https://.shop.example/", PageHost: ".shop.example"}, Result{Host: ".shop.example", Domain: ".shop.example", Channel: Internal}},
		{Input{Referrer: "https://co.uk/", PageHost: "a.b.co.uk"}, Result{Host: "co.uk", Domain: "co.uk", Channel: Referral}},
		{Input{Referrer: "https://c.b.co.uk/", PageHost: "a.b.co.uk"}, Result{Host: "c.b.co.uk", Domain: "b.co.uk", Channel: Internal}},
		{Input{Referrer: "https://news.ycombinator.com/item?id=1"}, Result{Host: "news.ycombinator.com", Domain: "ycombinator.com", Channel: Social, Name: "Hacker News"}},
		{Input{Referrer: "https://chatgpt.com/"}, Result{Host: "chatgpt.com", Domain: "chatgpt.com", Channel: Referral, Name: "ChatGPT"}},
		{Input{Referrer: "https://mail.google.com/mail/u/0/"}, Result{Host: "mail.google.com", Domain: "google.com", Channel: Email, Name: "Gmail"}},
		{Input{Referrer: "android-app://com.google.android.gm/"}, Result{Host: "com.google.android.gm", Domain: "android.gm", Channel: Email, Name: "Gmail"}},
		{Input{Referrer: "https://blog.example.org/post"}, Result{Host: "blog.example.org", Domain: "example.org", Channel: Referral}},
		// Internal: same registrable domain.
		{Input{Referrer: "https://www.example.com/a", PageHost: "shop.example.com"},
			Result{Host: "www.example.com", Domain: "example.com", Channel: Internal}},
		{Input{Referrer: "https://a.github.io/", PageHost: "b.github.io"}, // github.io is a public suffix
			Result{Host: "a.github.io", Domain: "a.github.io", Channel: Referral}},
		// Campaign media come first.
		{Input{Referrer: "https://www.google.com/", Medium: "CPC"}, Result{Host: "www.google.com", Domain: "google.com", Channel: Paid, Name: "Google"}},
		{Input{Referrer: "https://www.google.com/", PaidClick: true}, Result{Host: "www.google.com", Domain: "google.com", Channel: Paid, Name: "Google"}},
		{Input{Medium: "paid_social"}, Result{Channel: Paid}},
		{Input{Medium: "Email", Source: "newsletter"}, Result{Channel: Email}},
		{Input{Medium: "social"}, Result{Channel: Social}},
		{Input{Source: "qr-poster"}, Result{Channel: Referral}},
		// Spam: marked, referral.
		{Input{Referrer: "http://0-0.fr/"}, Result{Host: "0-0.fr", Domain: "0-0.fr", Channel: Referral, Spam: true}},
		{Input{Referrer: "https://www.0-0.fr/x", Medium: "email"}, Result{Host: "www.0-0.fr", Domain: "0-0.fr", Channel: Referral, Spam: true}},
		// Odd referrers.
		{Input{Referrer: "https://192.0.2.1:8080/x"}, Result{Host: "192.0.2.1", Domain: "192.0.2.1", Channel: Referral}},
		{Input{Referrer: "not a url"}, Result{Channel: Direct}},
		{Input{Referrer: "HTTPS://WWW.GOOGLE.DE"}, Result{Host: "www.google.de", Domain: "google.de", Channel: Search, Name: "Google"}},
	} {
		if got := Classify(tc.in); got != tc.want {
			t.Errorf("Classify(%+v)\n got  %+v\n want %+v", tc.in, got, tc.want)
		}
	}
}

func TestChannelString(t *testing.T) {
	if Paid.String() != "paid" || Channel(200).String() != "unknown" {
		t.Error(Paid.String(), Channel(200).String())
	}
}

func TestClassifyAllocs(t *testing.T) {
	in := Input{Referrer: "https://www.google.co.uk/search?q=shoes", PageHost: "shop.example.com", Medium: "organic"}
	// publicsuffix.PublicSuffix allocates once: it first tries the name as
	// an IP address, and netip's parse error is boxed.
	if n := testing.AllocsPerRun(100, func() { Classify(in) }); n > 1 {
		t.Errorf("Classify allocates %v times", n)
	}
	direct := Input{PageHost: "example.com"}
	if n := testing.AllocsPerRun(100, func() { Classify(direct) }); n != 0 {
		t.Errorf("Classify allocates %v times without a referrer", n)
	}
}

// TestTablesCurrent fails when data/ changed but tables.go was not
// regenerated.
func TestTablesCurrent(t *testing.T) {
	src, err := gen.Referrer("data")
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("tables.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, have) {
		t.Errorf("tables.go is stale: run go run ./edge/enrich/internal/gen (%s)", filepath.Join("edge/enrich/referrer"))
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"https://www.google.com/", "android-app://com.x/", "http://[::1]:80/", "https://xn--bcher-kva.de/", "//a..b/", "https://bücher.de"} {
		f.Add(s, "example.com", "cpc")
	}
	f.Fuzz(func(t *testing.T, ref, page, medium string) {
		r := Classify(Input{Referrer: ref, PageHost: page, Medium: medium})
		if r.Channel > Referral || len(r.Host) > 2048 || len(r.Domain) > len(r.Host) || !utf8.ValidString(r.Name) {
			t.Fatalf("Classify(%q, %q, %q) = %+v", ref, page, medium, r)
		}
		for i := 0; i < len(r.Host); i++ {
			if r.Host[i] < 0x21 || r.Host[i] >= 0x7F {
				t.Fatalf("Classify(%q): host %q not printable ASCII", ref, r.Host)
			}
		}
		if r.Host != "" && !strings.HasSuffix(r.Host, r.Domain) {
			t.Fatalf("Classify(%q): domain %q not a suffix of %q", ref, r.Domain, r.Host)
		}
		// The registrable domain is the library's wherever it has one.
		if d, err := publicsuffix.EffectiveTLDPlusOne(r.Host); err == nil && !isIP(r.Host) && d != r.Domain {
			t.Fatalf("Classify(%q): domain %q, publicsuffix.EffectiveTLDPlusOne(%q) = %q", ref, r.Domain, r.Host, d)
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	for _, in := range []Input{
		{Referrer: "https://www.google.com/", PageHost: "example.com"},
		{Referrer: "https://blog.example.org/2025/06/post.html", PageHost: "example.com"},
		{PageHost: "example.com"},
	} {
		b.Run("", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify(in)
			}
		})
	}
}
