package gen

import (
	"slices"
	"testing"
)

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		p      string
		lits   []string
		anchor bool
		exact  bool
	}{
		{`Googlebot\/`, []string{"Googlebot/"}, false, true},
		{`[wW]get`, []string{"wget", "Wget"}, false, true},
		{`^curl`, []string{"curl"}, true, true},
		{`Ahrefs(Bot|SiteAudit)`, []string{"AhrefsBot", "AhrefsSiteAudit"}, false, true},
		{`AdsBot-Google([^-]|$)`, []string{"AdsBot-Google"}, false, true},
		{`(sistrix|SISTRIX) [cC]rawler`, []string{"sistrix crawler", "sistrix Crawler", "SISTRIX crawler", "SISTRIX Crawler"}, false, true},
		{`Current[\s\S]*RSS Reader`, []string{"RSS Reader"}, false, false},
		{`colou?r`, []string{"colour", "color"}, false, true},
	} {
		lits, anchor, exact := expand(tc.p)
		if !slices.Equal(lits, tc.lits) || anchor != tc.anchor || exact != tc.exact {
			t.Errorf("expand(%q) = %q %t %t, want %q %t %t", tc.p, lits, anchor, exact, tc.lits, tc.anchor, tc.exact)
		}
	}
}
