package pixel

import (
	"crypto/rand"
	"testing"
	"time"
)

// A pixel hit allocates only its id's random bytes (read through an
// io.Reader) and the few short strings it derives (the truncated address,
// unescaped url and ref), never per buffered event: the Batcher keeps
// events encoded.
func TestServeAllocations(t *testing.T) {
	b := &Batcher{MaxEvents: 500, MaxAge: time.Second, MaxBuffered: 20000}
	now := time.Now()
	meta := Meta{Now: now, Pop: "bench", Rand: rand.Reader, ClientIP: "192.0.2.7", UserAgent: "Mozilla/5.0", Country: "NL"}
	hit := Hit{Method: "GET", Path: PathPixel, Meta: func() *Meta { return &meta },
		RawQuery: "site=example.com&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"}
	var resp Response
	for range 2 { // warm: the buffers reach their size
		Serve(&hit, nil, b, now, &resp)
		b.drop(b.Len())
	}
	a := testing.AllocsPerRun(1000, func() {
		Serve(&hit, nil, b, now, &resp)
		if b.Len() >= 400 {
			b.drop(b.Len())
		}
	})
	if a > 4 {
		t.Errorf("%.1f allocations per pixel hit, want at most 4", a)
	}
	if resp.Status != 200 || resp.Drop != "" {
		t.Fatalf("answered %d, drop %q", resp.Status, resp.Drop)
	}
	// Without escapes in the query, only the id's bytes and the truncated
	// address are new.
	hit.RawQuery = "site=example.com&url=https://example.com/a"
	if a := testing.AllocsPerRun(1000, func() {
		Serve(&hit, nil, b, now, &resp)
		if b.Len() >= 400 {
			b.drop(b.Len())
		}
	}); a > 2 {
		t.Errorf("%.1f allocations per pixel hit without escapes, want at most 2", a)
	}
}
