package referrer

import (
	"bufio"
	"os"
	"strings"
	"testing"

	weppos "github.com/weppos/publicsuffix-go/publicsuffix"
	"golang.org/x/net/publicsuffix"
)

// pslHosts returns, for every rule of data/public_suffix_list.dat, the
// rule's own domain and names one and two labels below it (a wildcard's
// label filled in, an exception's "!" dropped).
func pslHosts(t *testing.T) []string {
	f, err := os.Open("data/public_suffix_list.dat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hosts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "//") {
			continue
		}
		l = strings.TrimPrefix(strings.TrimPrefix(l, "!"), "*.")
		hosts = append(hosts, l, "x."+l, "www.x."+l, "a.b.c."+l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return hosts
}

// TestPublicSuffixAsWeppos holds publicSuffix to
// github.com/weppos/publicsuffix-go, whose rules data/ holds, for every
// rule of the list: the same list, a second implementation.
func TestPublicSuffixAsWeppos(t *testing.T) {
	hosts := pslHosts(t)
	if len(hosts) < 4*9000 {
		t.Fatalf("only %d hosts from the list", len(hosts))
	}
	bad := 0
	for _, h := range hosts {
		want := weppos.CookieJarList.PublicSuffix(h)
		if want == "" {
			// publicsuffix-go has no answer for a name that is itself a
			// suffix; x/net, and so publicSuffix, answer the name.
			want = h
		}
		all, icann := publicSuffix(h)
		if got := all; got != want {
			if bad++; bad <= 20 {
				t.Errorf("publicSuffix(%q) = %q, publicsuffix-go %q", h, got, want)
			}
		}
		// The ICANN section's rules alone, as publicsuffix-go's
		// IgnorePrivate finds them.
		rule := weppos.DefaultList.Find(h, &weppos.FindOptions{IgnorePrivate: true, DefaultRule: weppos.DefaultRule})
		if want = rule.Decompose(h)[1]; want == "" {
			want = h
		}
		if got := icann; got != want {
			if bad++; bad <= 20 {
				t.Errorf("publicSuffix(%q, icann) = %q, publicsuffix-go %q", h, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d hosts differ", bad, len(hosts))
	}
}

// TestPublicSuffixAsXNet holds publicSuffix to golang.org/x/net/publicsuffix,
// the library the Fastly module used, on names whose rules have not
// changed between its list and ours: ICANN suffixes, wildcards and
// exceptions, and common private ones.
func TestPublicSuffixAsXNet(t *testing.T) {
	for _, h := range []string{
		"example.com", "www.example.co.uk", "co.uk", "uk", "a.b.example.com.au",
		"shop.example", "localhost", "x.www.ck", "www.ck", "a.b.ck", "ck",
		"foo.bar.kawasaki.jp", "city.kawasaki.jp", "user.github.io", "github.io",
		"a.blogspot.com", "x.s3.amazonaws.com", "b.appspot.com", "xn--bcher-kva.de",
		"a.b.c.d.e.f.example.org", "nic.xn--p1ai", "example.xn--p1ai",
	} {
		want, _ := publicsuffix.PublicSuffix(h)
		if got, _ := publicSuffix(h); got != want {
			t.Errorf("publicSuffix(%q) = %q, x/net %q", h, got, want)
		}
	}
}

func TestPublicSuffixAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { publicSuffix("www.example.co.uk") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
