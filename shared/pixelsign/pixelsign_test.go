package pixelsign

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

var (
	key    = []byte("0123456789abcdef-site-key")
	oldKey = []byte("fedcba9876543210-old-key")
)

const now = 1_800_000_000

func TestSignVerify(t *testing.T) {
	q, err := Sign(key, "site=news.example&e=open&utm_campaign=Nov%20letter&url=https%3A%2F%2Fnews.example%2Fa", now+3600)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(q, now, key); err != nil {
		t.Fatalf("Verify(%q) = %v", q, err)
	}
	if err := Verify(q, now, oldKey, key); err != nil {
		t.Errorf("with the previous key first: %v", err)
	}
	if err := Verify(q, now, oldKey); !errors.Is(err, ErrBadSig) {
		t.Errorf("another site's key: %v, want ErrBadSig", err)
	}
	if err := Verify(q, now+3601, key); !errors.Is(err, ErrExpired) {
		t.Errorf("after exp: %v, want ErrExpired", err)
	}
	if err := Verify(q, now+3600, key); err != nil {
		t.Errorf("at exp: %v, want nil", err)
	}

	// The same URL as a mailer may rewrite it: parameters reordered,
	// percent-encoding changed, space as %20 instead of +.
	v, _ := url.ParseQuery(q)
	var parts []string
	for _, name := range []string{"url", "sig", "utm_campaign", "exp", "e", "site"} {
		parts = append(parts, name+"="+strings.ReplaceAll(url.PathEscape(v.Get(name)), "/", "%2F"))
	}
	if err := Verify(strings.Join(parts, "&"), now, key); err != nil {
		t.Errorf("re-encoded %q: %v", strings.Join(parts, "&"), err)
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	q, err := Sign(key, "site=a.example&e=open&c=1", now+60)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query string
		want        error
	}{
		{"site changed", strings.Replace(q, "site=a.example", "site=b.example", 1), ErrBadSig},
		{"value changed", strings.Replace(q, "c=1", "c=2", 1), ErrBadSig},
		{"param added", q + "&x=1", ErrBadSig},
		{"param removed", strings.Replace(q, "c=1&", "", 1), ErrBadSig},
		{"exp extended", strings.Replace(q, "exp=", "exp=9", 1), ErrBadSig},
		{"duplicate sig", q + "&sig=AAAAAAAAAAAAAAAAAAAAAA", ErrMalformed},
		{"duplicate exp", q + "&exp=1", ErrMalformed},
		{"sig truncated", q[:len(q)-2], ErrMalformed},
		{"sig not base64", strings.Replace(q, "sig=", "sig=*", 1), ErrMalformed},
		{"bad escape", q + "&x=%zz", ErrMalformed},
		{"unsigned", "site=a.example&e=open", ErrUnsigned},
		{"empty", "", ErrUnsigned},
		{"no exp", "site=a.example&sig=AAAAAAAAAAAAAAAAAAAAAA", ErrMalformed},
		{"negative exp", "site=a.example&exp=-5&sig=AAAAAAAAAAAAAAAAAAAAAA", ErrMalformed},
		{"no site", "exp=5&sig=AAAAAAAAAAAAAAAAAAAAAA", ErrMalformed},
		{"two sites", q + "&site=b.example", ErrMalformed},
		{"empty site", "site=&exp=5&sig=AAAAAAAAAAAAAAAAAAAAAA", ErrMalformed},
		{"too many params", strings.Repeat("a=1&", MaxParams) + q, ErrMalformed},
	} {
		if err := Verify(tc.query, now, key); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify(%q) = %v, want %v", tc.name, tc.query, err, tc.want)
		}
	}
}

func TestSignErrorsAndReplaces(t *testing.T) {
	if _, err := Sign([]byte("short"), "site=a", now); !errors.Is(err, ErrShortKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := Sign(key, "e=open", now); err == nil {
		t.Error("no site: want an error")
	}
	// A cip no client is in (edgepixel-sign refuses to sign it).
	if err := CheckClient("notanip"); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("cip=notanip: %v, want an error", err)
	}
	for _, cip := range []string{"203.0.113.7", "203.0.113.0/24", "2001:db8::/48"} {
		if err := CheckClient(cip); err != nil {
			t.Errorf("cip=%s: %v", cip, err)
		}
	}
	if err := Verify("site=a&exp=1&sig=AAAAAAAAAAAAAAAAAAAAAA", 0, []byte("short")); !errors.Is(err, ErrBadSig) {
		t.Errorf("short verify key: %v, want ErrBadSig", err)
	}
	q1, _ := Sign(key, "site=a&c=1", now)
	q2, err := Sign(key, q1, now+10) // re-signing replaces exp and sig
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(q2, "sig=") != 1 || strings.Count(q2, "exp=") != 1 {
		t.Errorf("re-signed query %q has more than one sig or exp", q2)
	}
	if err := Verify(q2, now+10, key); err != nil {
		t.Errorf("re-signed: %v", err)
	}
	u, err := SignURL(key, "https://px.example/p.gif?site=a&e=open", now)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	if pu.Path != "/p.gif" || Verify(pu.RawQuery, now, key) != nil {
		t.Errorf("SignURL gave %q", u)
	}
}

// FuzzVerify checks that any query gets an answer without a panic, and
// that signing any query with a site makes one that verifies and stops
// verifying when a parameter is added.
func FuzzVerify(f *testing.F) {
	q, _ := Sign(key, "site=a&e=open", now)
	f.Add(q)
	f.Add("site=a&exp=1&sig=AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("a=%zz&&=&sig=&exp=")
	f.Fuzz(func(t *testing.T, query string) {
		Verify(query, now, key)
		v, err := url.ParseQuery(query)
		if err != nil || len(v[ParamSite]) != 1 || v.Get(ParamSite) == "" {
			return
		}
		signed, err := Sign(key, query, now)
		if err != nil {
			if len(v) <= MaxParams/2 {
				t.Fatalf("Sign(%q): %v", query, err)
			}
			return
		}
		if err := Verify(signed, now, key); err != nil {
			t.Fatalf("Verify(Sign(%q)) = %v; signed %q", query, err, signed)
		}
		if err := Verify(signed+"&zz=1", now, key); err == nil {
			t.Fatalf("%q verified with a parameter added", signed)
		}
	})
}

func TestClientAllowed(t *testing.T) {
	for _, tc := range []struct {
		query, client string
		want          bool
	}{
		{"site=s", "203.0.113.7", true},
		{"site=s&cip=", "203.0.113.7", true},
		{"site=s&cip=203.0.113.0%2F24", "203.0.113.7", true},
		{"site=s&cip=203.0.113.0%2F24", "::ffff:203.0.113.7", true},
		{"site=s&cip=203.0.113.0%2F24", "203.0.114.7", false},
		{"site=s&cip=203.0.113.7", "203.0.113.7", true},
		{"site=s&cip=203.0.113.7", "203.0.113.8", false},
		{"site=s&cip=::ffff:203.0.113.0%2F120", "203.0.113.9", true},
		{"site=s&cip=2001:db8:1::%2F48", "2001:db8:1:2::5", true},
		{"site=s&cip=2001:db8:1::%2F48", "2001:db8:2::5", false},
		{"site=s&cip=2001:db8:1::%2F48", "203.0.113.7", false},
		{"site=s&cip=junk", "203.0.113.7", false},
		{"site=s&cip=%zz", "203.0.113.7", false},
		{"site=s&cip=203.0.113.0%2F24", "", false},
	} {
		a, _ := netip.ParseAddr(tc.client)
		if got := ClientAllowed(tc.query, a); got != tc.want {
			t.Errorf("%s from %q: %v, want %v", tc.query, tc.client, got, tc.want)
		}
	}
}
