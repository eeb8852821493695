package pop

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestBackendFailures: a run of refused requests is listed until one
// succeeds, and only while recent.
func TestBackendFailures(t *testing.T) {
	var h backendFailures
	h.record("aggregator", 401, nil)
	h.record("aggregator", 403, nil)
	h.record("other", 404, nil) // an answer, not a failure
	if d := h.degraded(); len(d) != 1 || !strings.HasPrefix(d[0], "backend aggregator: 2 requests failing") ||
		!strings.Contains(d[0], "status 403") || !strings.Contains(d[0], "aggregator_secret") {
		t.Errorf("after 401, 403: %q", d)
	}
	h.record("aggregator", 204, nil)
	if d := h.degraded(); len(d) != 0 {
		t.Errorf("after a success: %q", d)
	}
	h.record("aggregator", 0, errors.New("connection refused"))
	if d := h.degraded(); len(d) != 1 || !strings.Contains(d[0], "connection refused") || strings.Contains(d[0], "aggregator_secret") {
		t.Errorf("after an error: %q", d)
	}
	h.failing["aggregator"].last = time.Now().Add(-backendFailRecent - time.Second)
	if d := h.degraded(); len(d) != 0 {
		t.Errorf("a failure older than %v: %q", backendFailRecent, d)
	}
}
