package main

import "testing"

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
