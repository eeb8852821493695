package nearest

import "testing"

func TestEditDistance(t *testing.T) {
	if d := editDistance("kitten", "sitting"); d != 3 {
		t.Errorf("editDistance = %d, want 3", d)
	}
}

// The names new users wrote for the aggregator's and the POP's settings
// find the setting; a name that could be several finds none.
func TestNearest(t *testing.T) {
	known := []string{"EDGEPIXEL_AGG_CLICKHOUSE", "EDGEPIXEL_AGG_CLICKHOUSE_DB", "EDGEPIXEL_AGG_REDIS", "EDGEPIXEL_AGG_REDIS_CLUSTER",
		"EDGEPIXEL_AGG_MAX_BODY", "EDGEPIXEL_AGG_MAX_CONNS", "EDGEPIXEL_POP_GEOIP_DB", "EDGEPIXEL_POP_TRUSTED_PROXIES", "EDGEPIXEL_AGG_SECRET_FILE",
		"EDGEPIXEL_POP_LOG_QUEUE_DIR", "EDGEPIXEL_POP_LOG_ENDPOINTS"}
	for name, want := range map[string]string{
		"EDGEPIXEL_AGG_CLICKHOUSE_URL":  "EDGEPIXEL_AGG_CLICKHOUSE",
		"EDGEPIXEL_AGG_REDIS_URL":       "EDGEPIXEL_AGG_REDIS",
		"EDGEPIXEL_POP_GEOIP":           "EDGEPIXEL_POP_GEOIP_DB",
		"EDGEPIXEL_POP_TRUSTED_PROXY":   "EDGEPIXEL_POP_TRUSTED_PROXIES",
		"EDGEPIXEL_AGG_SECRET_FIEL":     "EDGEPIXEL_AGG_SECRET_FILE", // two edits
		"EDGEPIXEL_AGG_MAX":             "",                          // MAX_BODY or MAX_CONNS
		"EDGEPIXEL_AGG_COLOUR":          "",
		"EDGEPIXEL_AGG_CLICKHOUSE_HOST": "EDGEPIXEL_AGG_CLICKHOUSE",
		// A word left out, or added, in the middle or at the start.
		"EDGEPIXEL_POP_QUEUE_DIR":          "EDGEPIXEL_POP_LOG_QUEUE_DIR",
		"EDGEPIXEL_POP_DISK_LOG_QUEUE_DIR": "EDGEPIXEL_POP_LOG_QUEUE_DIR",
		"AGG_REDIS_CLUSTER":                "EDGEPIXEL_AGG_REDIS_CLUSTER",
		"EDGEPIXEL_POP_LOG":                "", // LOG_QUEUE_DIR or LOG_ENDPOINTS
		"EDGEPIXEL_POP_QUEUE":              "",
	} {
		if got := Nearest(name, known); got != want {
			t.Errorf("Nearest(%s) = %q, want %q", name, got, want)
		}
	}
}

// A flag's words are split at '-': the flags new users wrote got no hint
// where the same names as variables got one (tester94).
func TestNearestFlag(t *testing.T) {
	known := []string{"trusted-proxies", "geoip-db", "redis", "redis-cluster", "log-queue-dir", "log-endpoint", "max-body", "max-conns",
		"max-conns-per-client", "secret", "secret-file", "log-token", "log-token-file"}
	for name, want := range map[string]string{
		"trusted-proxy": "trusted-proxies",
		"geoip":         "geoip-db",
		"redis-url":     "redis",
		"queue-dir":     "log-queue-dir",
		"max":           "", // max-body or max-conns
		// Not the global limit, two words less (a reviewer's).
		"max-conns-per-addr": "",
		// A file's path: not the flag that takes the secret itself.
		"secret-path":    "secret-file",
		"log-token-path": "log-token-file",
	} {
		if got := Nearest(name, known); got != want {
			t.Errorf("Nearest(%s) = %q, want %q", name, got, want)
		}
	}
}
