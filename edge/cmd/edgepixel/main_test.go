package main

import (
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
)

func TestSplitURI(t *testing.T) {
	for in, want := range map[string][2]string{
		"http://127.0.0.1:7676/p.gif?site=a&url=x": {"/p.gif", "site=a&url=x"},
		"https://pixel.example/e":                  {"/e", ""},
		"https://pixel.example":                    {"/", ""},
		"https://pixel.example?site=a":             {"/", "site=a"},
		"http://h/p.gif?site=a#frag":               {"/p.gif", "site=a"},
		"/p.gif?site=a":                            {"/p.gif", "site=a"},
		"":                                         {"/", ""},
	} {
		p, q := splitURI([]byte(in))
		if p != want[0] || q != want[1] {
			t.Errorf("splitURI(%q) = %q, %q; want %q, %q", in, p, q, want[0], want[1])
		}
	}
}

// The hot path's conversions allocate nothing: the path and query are
// views of the request's buffer, the known methods are constants.
func TestHitConversionsAllocateNothing(t *testing.T) {
	uri := []byte("http://127.0.0.1:7676/p.gif?site=a&url=x")
	get := []byte("GET")
	var p, q, m string
	if a := testing.AllocsPerRun(100, func() {
		p, q = splitURI(uri)
		m = methodName(get)
	}); a != 0 {
		t.Errorf("%.1f allocations", a)
	}
	if p != "/p.gif" || q != "site=a&url=x" || m != "GET" {
		t.Errorf("got %q %q %q", p, q, m)
	}
	// A view follows its buffer: the visitor must not rewrite it while a
	// hit is being served, and does not.
	uri[len(uri)-1] = 'y'
	if q != "site=a&url=y" {
		t.Errorf("the query is a copy, not a view: %q", q)
	}
	if got := methodName([]byte("PURGE")); got != "PURGE" {
		t.Errorf("methodName(PURGE) = %q", got)
	}
}

// A batch limit that does not parse, is not positive or is over the
// wire's maximum is reported with the value that applies instead, not
// dropped or clamped silently; one that parses applies quietly.
func TestSetBatchLimits(t *testing.T) {
	for _, tc := range []struct {
		n, ms   string
		events  int
		age     time.Duration
		reports []string
	}{
		{"", "", 500, 200 * time.Millisecond, nil},
		{"100", " 50 ", 100, 50 * time.Millisecond, nil},
		{"abc", "-5", 500, 200 * time.Millisecond, []string{
			`batch_max_events="abc" is not a whole number of events above 0; 500 applies`,
			`batch_max_age_ms="-5" is not a whole number of milliseconds above 0; 200 applies`}},
		{"0", "1.5", 500, 200 * time.Millisecond, []string{`batch_max_events="0"`, `batch_max_age_ms="1.5"`}},
		{"20000", "", 10000, 200 * time.Millisecond, []string{`batch_max_events="20000" is over 10000, the most one batch may carry; 10000 applies`}},
	} {
		b := pixel.Batcher{MaxEvents: 500, MaxAge: 200 * time.Millisecond}
		got := setBatchLimits(&b, tc.n, tc.ms)
		if b.MaxEvents != tc.events || b.MaxAge != tc.age {
			t.Errorf("%q, %q: MaxEvents %d MaxAge %v, want %d %v", tc.n, tc.ms, b.MaxEvents, b.MaxAge, tc.events, tc.age)
		}
		if len(got) != len(tc.reports) {
			t.Errorf("%q, %q: reported %q, want %d", tc.n, tc.ms, got, len(tc.reports))
			continue
		}
		for i, want := range tc.reports {
			if !strings.HasPrefix(got[i], want) {
				t.Errorf("%q, %q: reported %q, want %q", tc.n, tc.ms, got[i], want)
			}
		}
	}
}

// Entries the limiter would refuse as too long (a long site id) are
// hashed to fit, distinct per entry; shorter ones are kept as they are.
func TestERLEntry(t *testing.T) {
	if e := erlEntry("s:", "shop.example"); e != "s:shop.example" {
		t.Errorf("short entry %q", e)
	}
	at := strings.Repeat("a", erlMaxEntry-2)
	if e := erlEntry("s:", at); e != "s:"+at {
		t.Errorf("entry at the limit changed: %q", e)
	}
	long1, long2 := erlEntry("s:", at+"1"), erlEntry("s:", at+"2")
	if len(long1) > erlMaxEntry || !strings.HasPrefix(long1, "s:#") || long1 == long2 || long1 != erlEntry("s:", at+"1") {
		t.Errorf("long entries %q, %q", long1, long2)
	}
}
