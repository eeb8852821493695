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
	h.record("other", 400, nil) // an answer, not a failure
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
	// The aggregator's limit on failed authentications answers 429 after
	// a wrong secret's burst of 401s: the run goes on, the secret still
	// named (found by a new-user tester: 429 ended it, and /healthz said
	// ok). A 429 alone is a failure of its own.
	h.record("aggregator", 204, nil)
	h.record("aggregator", 401, nil)
	h.record("aggregator", 429, nil)
	if d := h.degraded(); len(d) != 1 || !strings.Contains(d[0], "2 requests failing") || !strings.Contains(d[0], "status 401") || !strings.Contains(d[0], "aggregator_secret") {
		t.Errorf("after 401, 429: %q", d)
	}
	h.record("other", 429, nil)
	if d := h.degraded(); len(d) != 2 || !strings.Contains(strings.Join(d, "\n"), "backend other: 1 request failing") {
		t.Errorf("after a 429 alone: %q", d)
	}
	// A backend URL with a path answers every batch 404 (found by a
	// new-user tester: every hit lost, /healthz ok).
	h.record("pathed", 404, nil)
	if d := h.degraded(); len(d) != 3 || !strings.Contains(strings.Join(d, "\n"), "backend pathed: 1 request failing") || !strings.Contains(strings.Join(d, "\n"), "no path") {
		t.Errorf("after a 404: %q", d)
	}
}

// TestBackendFailingMetric: fastly.toml's backends are listed at 0, a
// failing one at 1, and a failing backend the guest registered is
// listed too.
func TestBackendFailingMetric(t *testing.T) {
	var h backendFailures
	h.record("aggregator", 401, nil)
	h.record("dynamic_1", 0, errors.New("connection refused"))
	h.record("origin", 200, nil)
	var b strings.Builder
	h.writePrometheus(&b, []string{"origin", "aggregator"})
	for _, want := range []string{
		"# TYPE edgepixel_pop_backend_failing gauge\n",
		"edgepixel_pop_backend_failing{backend=\"aggregator\"} 1\n" +
			"edgepixel_pop_backend_failing{backend=\"dynamic_1\"} 1\n" +
			"edgepixel_pop_backend_failing{backend=\"origin\"} 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
	h.record("aggregator", 204, nil)
	b.Reset()
	h.writePrometheus(&b, []string{"origin", "aggregator"})
	if !strings.Contains(b.String(), "edgepixel_pop_backend_failing{backend=\"aggregator\"} 0\n") {
		t.Errorf("after a success:\n%s", b.String())
	}
}
