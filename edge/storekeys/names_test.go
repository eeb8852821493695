package storekeys

import "testing"

// TestNames: whole keys, site keys by their prefix, and the key a
// misspelling most likely meant, as the POP and the worker report it.
func TestNames(t *testing.T) {
	n := NewNames(Config, Secret, []string{"batch_wait_ms"})
	for key, want := range map[string]bool{
		"journal": true, "site.shop.example": true, "pixel_key.shop": true, "pixel_key.shop.previous": true,
		"site.": false, "jurnal": false, "sites.shop": false, "": false,
	} {
		if n.Has(key) != want {
			t.Errorf("Has(%q) = %v, want %v", key, !want, want)
		}
	}
	for key, want := range map[string]string{
		"jurnal":            "journal",
		"INGEST_URL":        "ingest_url",
		"batch_wait":        "batch_wait_ms",
		"sites.shop":        "site.shop",
		"sitee.shop":        "site.shop",
		"pixel_keys.shop":   "pixel_key.shop",
		"site":              "sites",
		"pixelkey":          "pixel_key." + Site,
		"nothing_like_this": "",
	} {
		if got := n.Nearest(key); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", key, got, want)
		}
	}
}
