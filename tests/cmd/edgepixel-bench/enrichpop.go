package main

// Enrichment through the POP: the guest CPU time per hit, as the POP
// measures it (pop.Server.GuestTimes), of each edge module serving the
// enrichment corpus's hits with its user agents, referrers, campaign
// links and prefetch headers, and today's visitor salt in the secret
// store, beside the same module serving the same number of hits that
// carry nothing to enrich (a site and no page, referrer or user agent).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// popHitCost is one module's guest time per hit through the POP, with
// enrichment and without.
type popHitCost struct {
	name                       string
	p50, p99, baseP50, baseP99 time.Duration
	hits, baseHits             int
}

// enrichRequests are the corpus hits as pixel requests.
func enrichRequests(addr string) []*http.Request {
	var reqs []*http.Request
	for _, h := range corpus.Hits {
		q := url.Values{"site": {"bench"}, "url": {h.URL}}
		if h.Referrer != "" {
			q.Set("ref", h.Referrer)
		}
		r, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/p.gif?"+q.Encode(), nil)
		r.Header.Set("User-Agent", h.UserAgent)
		if h.SecPurpose != "" {
			r.Header.Set("Sec-Purpose", h.SecPurpose)
		}
		if h.SecCHUA != "" {
			r.Header.Set("Sec-CH-UA", h.SecCHUA)
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// drive sends reqs round robin from conns keep-alive clients for d.
func drive(reqs []*http.Request, conns int, d time.Duration) error {
	deadline := time.Now().Add(d)
	return sendPixels(reqs, conns, 1, func(int) bool { return time.Now().Before(deadline) })
}

// sendPixels runs conns keep-alive clients; client c sends reqs[i%len]
// for i = c, c+step, ... while more(i), and each answer must be a 200
// without X-Edgepixel-Drop. It returns the first client's error.
func sendPixels(reqs []*http.Request, conns, step int, more func(i int) bool) error {
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for i := c; more(i); i += step {
				resp, err := client.Do(reqs[i%len(reqs)].Clone(context.Background()))
				if err != nil {
					errs[c] = err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Edgepixel-Drop") != "" {
					errs[c] = fmt.Errorf("pixel answered %s, drop %q", resp.Status, resp.Header.Get("X-Edgepixel-Drop"))
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// measureEnrichThroughPOP runs each module under a POP of its own.
func measureEnrichThroughPOP(mods []*benchModule, d time.Duration, conns int) ([]popHitCost, error) {
	ctx := context.Background()
	sink, _, err := countingSink()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "edgepixel-bench-enrichpop-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	now := time.Now()
	day := privacy.Day(now)
	salts := map[string]string{privacy.SaltKey(day): privacy.NewSalt(day, [16]byte{1, 2, 3}).String()}
	manifest, _, err := benchManifestWith(dir, "fastly.toml", sink, "", salts)
	if err != nil {
		return nil, err
	}
	var out []popHitCost
	for _, m := range mods {
		fmt.Fprintf(os.Stderr, "bench: enrichment through the POP, %s (%v with enrichment, %v without, %d connections) ...\n", m.name, d, d, conns)
		p, err := pop.New(ctx, pop.Config{
			WasmPath: m.path, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
			Stdout: io.Discard, Stderr: io.Discard, MeasureGuestTime: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return nil, err
		}
		addr, err := serve(p)
		if err != nil {
			return nil, err
		}
		c := popHitCost{name: m.name}
		bare, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/p.gif?site=bench", nil)
		bare.Header.Set("User-Agent", "")
		for _, run := range []struct {
			reqs     []*http.Request
			p50, p99 *time.Duration
			n        *int
		}{{[]*http.Request{bare}, &c.baseP50, &c.baseP99, &c.baseHits}, {enrichRequests(addr), &c.p50, &c.p99, &c.hits}} {
			if err := drive(run.reqs, conns, d/4); err != nil { // warm up: instances, salts
				return nil, err
			}
			p.GuestTimes(true)
			if err := drive(run.reqs, conns, d); err != nil {
				return nil, err
			}
			g := p.GuestTimes(true)
			*run.p50 = time.Duration(percentileOf(g, 0.50) * 1e6) // percentileOf's milliseconds
			*run.p99 = time.Duration(percentileOf(g, 0.99) * 1e6)
			*run.n = len(g)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.Shutdown(sctx)
		cancel()
		out = append(out, c)
	}
	return out, nil
}
