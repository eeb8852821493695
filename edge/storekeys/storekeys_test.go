package storekeys

import (
	"strings"
	"testing"
)

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

func TestParseRateLimit(t *testing.T) {
	for value, want := range map[string]uint32{"": 0, "0": 0, "10": 10, " 250 ": 250, "10000": 10000} {
		if got, err := ParseRateLimit(value); got != want || err != nil {
			t.Errorf("ParseRateLimit(%q) = %d, %v; want %d", value, got, err, want)
		}
	}
	for _, value := range []string{"5", "9", "10001", "-1", "50/s", "1e3", "ten"} {
		if got, err := ParseRateLimit(value); got != 0 || err == nil || !strings.Contains(err.Error(), "no limit applies") {
			t.Errorf("ParseRateLimit(%q) = %d, %v; want 0 and an error", value, got, err)
		}
	}
}
