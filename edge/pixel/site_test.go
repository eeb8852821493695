package pixel

import (
	"slices"
	"testing"
)

// TestSigningSites: the sites a host can name that check signatures, by
// the module's own rule (Sites.Settings): a site's own settings, else
// site_default's, an empty own value being none.
func TestSigningSites(t *testing.T) {
	store := map[string]string{
		ConfigSites: "a.example b.example c.example", ConfigSiteDefault: "sign=reject",
		"site.b.example": "tier=aggregate", "site.d.example": "sign=mark", "site.c.example": "",
	}
	var keys []string
	for k := range store {
		keys = append(keys, k)
	}
	got := SigningSites(keys, func(k string) string { return store[k] })
	want := []Signing{
		{"a.example", ConfigSiteDefault, SignReject},
		{"c.example", ConfigSiteDefault, SignReject},
		{"d.example", "site.d.example", SignMark},
	}
	if !slices.Equal(got, want) {
		t.Errorf("SigningSites = %+v, want %+v", got, want)
	}
}
