package attack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Client is an HTTP client whose connections come from the loopback
// address src and are kept alive (one per host), as a browser's would be.
func Client(src string, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableCompression: true},
		Timeout:   timeout,
	}
}

// Result is what normal clients got during a run of Load.
type Result struct {
	OK, Failed int
	// Errors counts the failures by what went wrong (at most 20 kinds; the
	// rest are "other").
	Errors    map[string]int
	Latencies []time.Duration // of the hits answered as they should be
	Took      time.Duration
}

// Load runs workers goroutines, each calling hit back to back until ctx
// ends, and times every call. hit returns nil for a hit answered as it
// should be, else what went wrong.
func Load(ctx context.Context, workers int, hit func(worker int) error) *Result {
	r := &Result{Errors: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				err := hit(w)
				d := time.Since(t0)
				mu.Lock()
				if err == nil {
					r.OK++
					r.Latencies = append(r.Latencies, d)
				} else {
					r.Failed++
					r.addError(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.Took = time.Since(began)
	return r
}

func (r *Result) addError(err error) {
	var ue *url.Error
	if errors.As(err, &ue) { // the URL is in every message: keep the cause
		err = ue.Err
	}
	k := err.Error()
	if _, ok := r.Errors[k]; !ok && len(r.Errors) >= 20 {
		k = "other"
	}
	r.Errors[k]++
}

// PerSecond is the rate of hits answered as they should be.
func (r *Result) PerSecond() float64 {
	if r.Took <= 0 {
		return 0
	}
	return float64(r.OK) / r.Took.Seconds()
}

// Percentile is the p-th percentile (0 to 100) of the answered hits'
// latency, 0 without any.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.Latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(float64(len(l))*p/100))]
}

// P99 is the 99th percentile of the answered hits' latency.
func (r *Result) P99() time.Duration { return r.Percentile(99) }

// String reads like "2345 answered (781/s, p50 1.2ms, p99 9.8ms), 0 failed".
func (r *Result) String() string {
	s := fmt.Sprintf("%d answered (%.0f/s, p50 %v, p99 %v), %d failed", r.OK, r.PerSecond(),
		r.Percentile(50).Round(10*time.Microsecond), r.P99().Round(10*time.Microsecond), r.Failed)
	if len(r.Errors) > 0 {
		var parts []string
		for k, v := range r.Errors {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
		}
		slices.Sort(parts)
		s += ": " + strings.Join(parts, "; ")
	}
	return s
}
