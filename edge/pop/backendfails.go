package pop

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Backend health. The guest decides what a backend's answer means, and
// edgepixel's module only logs a batch the aggregator refused and writes
// its hits to the fallback log endpoint: visitors still get 200 and the
// hits are kept, so a wrong aggregator_secret (every batch 401) showed
// nowhere but in the log. The host sees the status of every backend
// request it makes, so it keeps, per backend, whether its requests have
// been failing lately, and Degraded lists those, as it does a log
// endpoint that does not accept deliveries.

// backendFailRecent is how long after its last failed request a backend
// is still listed: a backend nobody has sent to since is not known to
// be well again, but neither is it known to be failing.
const backendFailRecent = 10 * time.Minute

// backendFailure is a backend's run of failed requests, since its last
// good one.
type backendFailure struct {
	since, last time.Time
	n           int
	why         string // the last failure: "status 401", or the error
	denied      bool   // the last failure was 401 or 403
	notFound    bool   // the last failure was 404 or 405
}

type backendFailures struct {
	mu      sync.Mutex
	failing map[string]*backendFailure // by backend name
}

// record notes the outcome of a request to backend name: its response's
// status, or err when there was none. 401 and 403 (credentials refused),
// 404 and 405 (no such path: a backend URL with a path of its own, or a
// wrong ingest_url, answers every batch so, which a tester's /healthz
// said ok through), 429, 5xx and no response at all are failures; any
// other answer ends a run. A 429 within a run of refused credentials keeps the run's reason:
// it is the aggregator's limit on failed authentications, which answers
// 429 once a wrong secret has failed its burst, and the secret is still
// what to check.
func (h *backendFailures) record(name string, code int, err error) {
	why, denied := "", code == http.StatusUnauthorized || code == http.StatusForbidden
	notFound := code == http.StatusNotFound || code == http.StatusMethodNotAllowed
	switch {
	case err != nil:
		why = err.Error()
	case denied || notFound || code == http.StatusTooManyRequests || code >= 500:
		why = fmt.Sprintf("status %d", code)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if why == "" {
		delete(h.failing, name)
		return
	}
	f := h.failing[name]
	if f == nil {
		if h.failing == nil {
			h.failing = map[string]*backendFailure{}
		}
		f = &backendFailure{since: time.Now()}
		h.failing[name] = f
	}
	if code == http.StatusTooManyRequests && f.denied {
		why, denied = f.why, true
	}
	f.last, f.n, f.why, f.denied, f.notFound = time.Now(), f.n+1, why, denied, notFound
}

// recent reports whether the run's last failure is recent enough to
// list the backend as failing.
func (f *backendFailure) recent() bool { return time.Since(f.last) <= backendFailRecent }

// degraded describes each backend whose requests failed in the last
// backendFailRecent with none succeeding since, one line each, with
// what to check.
func (h *backendFailures) degraded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, f := range h.failing {
		if !f.recent() {
			continue
		}
		hint := "check the backend URL and that it is up"
		switch {
		case f.denied:
			// The only credentials edgepixel's module sends a backend.
			hint = "check aggregator_secret, the backend URL and the clocks (a batch whose time is off by more than the aggregator's --replay-window is refused too)"
		case f.notFound:
			hint = "check the backend URL (a scheme, host and port: no path) and the path the guest asks for (edgepixel: ingest_url)"
		}
		requests := "requests"
		if f.n == 1 {
			requests = "request"
		}
		out = append(out, fmt.Sprintf("backend %s: %d %s failing for %s (last: %s); %s",
			name, f.n, requests, time.Since(f.since).Round(time.Second), f.why, hint))
	}
	slices.Sort(out)
	return out
}

// writePrometheus writes edgepixel_pop_backend_failing: 1 for a backend
// degraded lists, 0 for the others in names (fastly.toml's), so an alert
// can watch what /healthz only shows to a reader.
func (h *backendFailures) writePrometheus(w io.Writer, names []string) {
	h.mu.Lock()
	failing := map[string]bool{}
	for name, f := range h.failing {
		if f.recent() {
			failing[name] = true
		}
	}
	h.mu.Unlock()
	all := slices.Clone(names)
	for name := range failing {
		if !slices.Contains(all, name) {
			all = append(all, name) // a dynamic backend
		}
	}
	slices.Sort(all)
	const n = "edgepixel_pop_backend_failing"
	fmt.Fprintf(w, "# HELP %s 1 while a backend's requests have been failing (401, 403, 5xx or no response) with none succeeding since, within the last %v; /healthz says which and why.\n# TYPE %s gauge\n", n, backendFailRecent, n)
	for _, name := range all {
		v := 0
		if failing[name] {
			v = 1
		}
		fmt.Fprintf(w, "%s{backend=%q} %d\n", n, name, v)
	}
}
