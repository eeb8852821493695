package pixel

import (
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
)

// A pixel hit served through a Hit the platform reuses allocates nothing:
// the Batcher keeps events encoded, and the id's random bytes, the
// unescaped query values and the event itself live in the Hit's scratch.
// (TinyGo allocates where Go does not: `edgepixel-bench --sections
// guestcpu --guest-profile` lists what the guest module allocates.)
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
	if a != 0 {
		t.Errorf("%.1f allocations per pixel hit, want none", a)
	}
	if resp.Status != 200 || resp.Drop != "" {
		t.Fatalf("answered %d, drop %q", resp.Status, resp.Drop)
	}
	// Nor without escapes in the query.
	hit.RawQuery = "site=example.com&url=https://example.com/a"
	if a := testing.AllocsPerRun(1000, func() {
		Serve(&hit, nil, b, now, &resp)
		if b.Len() >= 400 {
			b.drop(b.Len())
		}
	}); a != 0 {
		t.Errorf("%.1f allocations per pixel hit without escapes, want none", a)
	}
	// Nor with every enrichment on: a page from a search
	// referrer, a browser's user agent, a visitor id from today's salt.
	// (A page URL that normalisation rewrites, such as one with campaign
	// parameters or a click id to remove, is a new string: one allocation.)
	var salts privacy.Salts
	salts[0] = privacy.NewSalt(privacy.Day(now), [16]byte{1})
	c := &Config{Salts: func(time.Time) *privacy.Salts { return &salts }}
	meta.UserAgent = uaChrome
	meta.ASN = 3320
	hit.RawQuery = "site=example.com&url=https%3A%2F%2Fwww.example.com%2Fpricing%3Fcolor%3Dblue&ref=https%3A%2F%2Fwww.google.com%2F&sw=390&t=" + strconv.FormatInt(now.UnixMilli(), 10)
	Serve(&hit, c, b, now, &resp)
	if a := testing.AllocsPerRun(1000, func() {
		Serve(&hit, c, b, now, &resp)
		if b.Len() >= 400 {
			b.drop(b.Len())
		}
	}); a != 0 {
		t.Errorf("%.1f allocations per enriched pixel hit, want none", a)
	}
	if resp.Status != 200 || resp.Drop != "" || b.Len() == 0 {
		t.Fatalf("answered %d, drop %q", resp.Status, resp.Drop)
	}
}
