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
