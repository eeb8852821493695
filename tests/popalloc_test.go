package tests

import (
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// maxHostAllocsPerHit bounds the Go heap allocations the POP makes per
// pixel hit served by the real TinyGo module, the request's own and its
// response's included (measured around Server.ServeHTTP, so net/http's
// connection handling is not counted). Every allocation is collector work
// on the host's cores, which the guests share.
const maxHostAllocsPerHit = 18

// TestPOPHostAllocations serves the corpus's hits straight into the POP's
// ServeHTTP and counts the Go heap allocations per hit across the whole
// process (the instance's goroutine included).
func TestPOPHostAllocations(t *testing.T) {
	g := startGuestPOP(t, &allocCounter{}, nil)
	reqs := make([]*http.Request, len(corpus.Hits))
	for i, h := range corpus.Hits {
		q := url.Values{"site": {"guestalloc"}, "url": {h.URL}, "ref": {h.Referrer}}
		r, err := http.NewRequest(http.MethodGet, "http://"+g.addr+"/p.gif?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.RequestURI = r.URL.RequestURI()
		r.RemoteAddr = "192.0.2.7:40000"
		r.Header.Set("User-Agent", h.UserAgent)
		if h.SecPurpose != "" {
			r.Header.Set("Sec-Purpose", h.SecPurpose)
		}
		reqs[i] = r
	}
	w := &discardWriter{h: http.Header{}}
	serve := func(n int) {
		for i := range n {
			clear(w.h)
			w.status = 0
			g.p.ServeHTTP(w, reqs[i%len(reqs)])
			if w.status != http.StatusOK || w.h.Get("X-Edgepixel-Drop") != "" {
				t.Fatalf("hit %d: status %d, drop %q", i, w.status, w.h.Get("X-Edgepixel-Drop"))
			}
		}
	}
	serve(2 * len(reqs)) // warm: the instance, its buffers, the salt
	const hits = 2000
	var per float64
	for try := 0; ; try++ {
		starts := len(g.p.InstanceStartups())
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		serve(hits)
		runtime.ReadMemStats(&after)
		per = float64(after.Mallocs-before.Mallocs) / hits
		if len(g.p.InstanceStartups()) == starts || try == 2 {
			break // else an instance's start was counted too: again
		}
	}
	t.Logf("POP host: %.2f Go heap allocations per pixel hit (%d hits)", per, hits)
	if per > maxHostAllocsPerHit {
		t.Errorf("POP host: %.2f Go heap allocations per pixel hit, want at most %d", per, maxHostAllocsPerHit)
	}
}

// discardWriter is a ResponseWriter that keeps the status and headers
// and, like net/http's, takes write deadlines.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

func (w *discardWriter) SetWriteDeadline(time.Time) error { return nil }
