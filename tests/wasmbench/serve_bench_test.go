package wasmbench

import (
	"crypto/rand"
	"net/url"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// corpusHits are the corpus's hits as the edge logic sees them, with
// today's visitor salt, so every enrichment runs.
func corpusHits(now time.Time) ([]pixel.Hit, []pixel.Meta, *pixel.Config) {
	day := privacy.Day(now)
	var salts privacy.Salts
	salts[0] = privacy.NewSalt(day, [16]byte{1, 2, 3})
	c := &pixel.Config{Salts: func(time.Time) *privacy.Salts { return &salts }}
	metas := make([]pixel.Meta, len(corpus.Hits))
	hits := make([]pixel.Hit, len(corpus.Hits))
	for i, h := range corpus.Hits {
		q := url.Values{"site": {"bench"}, "url": {h.URL}}
		if h.Referrer != "" {
			q.Set("ref", h.Referrer)
		}
		metas[i] = pixel.Meta{Now: now, ClientIP: "203.0.113.9", UserAgent: h.UserAgent, Pop: "lcl", Rand: rand.Reader,
			Country: "NL", ASN: h.ASN, SecPurpose: h.SecPurpose, SecCHUA: h.SecCHUA}
		m := &metas[i]
		hits[i] = pixel.Hit{Method: "GET", Path: pixel.PathPixel, RawQuery: q.Encode(), Meta: func() *pixel.Meta { return m }}
	}
	return hits, metas, c
}

// BenchmarkServeEnriched is one pixel hit of the corpus, all enrichment
// on, in native code: where the edge logic's time goes (go test -bench
// ServeEnriched -cpuprofile), not what the guest costs.
func BenchmarkServeEnriched(b *testing.B) {
	now := time.Now()
	hits, _, c := corpusHits(now)
	bt := &pixel.Batcher{MaxEvents: 500, MaxAge: time.Hour, MaxBuffered: 1 << 30}
	var resp pixel.Response
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pixel.Serve(&hits[i%len(hits)], c, bt, now, &resp)
		if resp.Status != 200 || resp.Drop != "" {
			b.Fatalf("answered %d, drop %q", resp.Status, resp.Drop)
		}
		if bt.Len() >= 500 { // a batch, encoded and signed as a flush would
			bt.Take([]byte("bench"), now)
			bt.Delivered()
		}
	}
}
