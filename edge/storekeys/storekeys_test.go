package storekeys

import "testing"

func TestFallbackLogEndpoint(t *testing.T) {
	for value, want := range map[string]string{
		"":             DefaultFallbackLogEndpoint,
		"none":         "",
		"my_fallback":  "my_fallback",
		"None":         "None", // names are case-sensitive; only "none" is none
		DefaultBackend: DefaultBackend,
	} {
		if got := FallbackLogEndpoint(value); got != want {
			t.Errorf("FallbackLogEndpoint(%q) = %q, want %q", value, got, want)
		}
	}
}
