package tests

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// maxGuestAllocsPerHit bounds the TinyGo module's heap allocations per
// enriched pixel hit: each one brings the next collection (which scans
// every global) closer, and TinyGo's testing.AllocsPerRun is a stub that
// reports 0, so the edge packages' own allocation tests cannot see them.
// Today's hits allocate only for the corpus's rarer pages (an
// international host, a URL that normalisation rewrites). Flushes are
// kept out of the count (the batch's age limit is set beyond the test),
// since how many hits a flush follows depends on the machine's speed.
const maxGuestAllocsPerHit = 2

// allocCounter counts calls of TinyGo's allocator (runtime.alloc).
type allocCounter struct {
	mu sync.Mutex
	n  int
}

func (a *allocCounter) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if def.Name() != "runtime.alloc" {
		return nil
	}
	return a
}

func (a *allocCounter) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
}

func (a *allocCounter) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (a *allocCounter) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

func (a *allocCounter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// TestGuestAllocations serves the enrichment corpus's hits (tests/wasmbench)
// through the POP running the real TinyGo module, with today's visitor
// salt, and counts the guest's heap allocations per hit with a wazero
// function listener on its allocator.
func TestGuestAllocations(t *testing.T) {
	allocs := &allocCounter{}
	g := startGuestPOP(t, allocs, nil)
	g.send(t, 2*len(corpus.Hits)) // warm: the instance, its buffers, the salt
	const hits = 10 * 21
	var per float64
	for try := 0; ; try++ {
		starts, before := len(g.p.InstanceStartups()), allocs.count()
		g.send(t, hits)
		per = float64(allocs.count()-before) / hits
		if len(g.p.InstanceStartups()) == starts || try == 2 {
			break // else an instance's start was counted too: again
		}
	}
	t.Logf("TinyGo guest: %.2f heap allocations per enriched pixel hit (%d hits, no flush)", per, hits)
	if per > maxGuestAllocsPerHit {
		t.Errorf("TinyGo guest: %.2f heap allocations per enriched pixel hit, want at most %d: `edgepixel-bench --sections guestcpu --guest-profile x` lists their callers", per, maxGuestAllocsPerHit)
	}
}

// collectionCounter counts the TinyGo guest's garbage collections by their
// root marking (runtime.markRoot, called for every word of the module's
// data and stack a collection scans; runGC itself is inlined).
type collectionCounter struct{ allocCounter }

func (c *collectionCounter) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if def.Name() != "runtime.markRoot" {
		return nil
	}
	return c
}

// TestGuestFreshStartCollects starts fresh instances of the real TinyGo
// module, each serving one enriched hit, and requires that none of them
// collects garbage: the module's initial heap (build.InitialHeapFlag) must
// hold what its initialisation and a first hit allocate, since each
// collection scans all of the module's data and dominated a fresh
// instance's start.
func TestGuestFreshStartCollects(t *testing.T) {
	marks := &collectionCounter{}
	g := startGuestPOP(t, marks, func(c *pop.Config) { c.MaxInstances, c.FreshInstances = 1, true })
	const starts = 5
	g.send(t, starts)
	if n := len(g.p.InstanceStartups()); n < starts {
		t.Fatalf("%d instance starts for %d hits on fresh instances", n, starts)
	}
	if n := marks.count(); n != 0 {
		t.Errorf("%d fresh TinyGo instances, each serving one hit, marked %d roots: they collected garbage (is the initial heap, build.InitialHeapFlag, too small for the module's initialisation?)", starts, n)
	}
}

// guestPOP is a POP running the real TinyGo module, delivering to a sink
// that discards, with today's visitor salt.
type guestPOP struct {
	p    *pop.Server
	addr string
}

// startGuestPOP starts a guestPOP whose guests report to listeners, with
// cfg applied to its configuration (nil: a warm pool of one instance).
func startGuestPOP(t *testing.T, listeners experimental.FunctionListenerFactory, cfg func(*pop.Config)) *guestPOP {
	t.Helper()
	sink := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sink.Serve(sl)
	t.Cleanup(func() { sink.Close() })
	dir := t.TempDir()
	day := privacy.Day(time.Now())
	for name, v := range map[string]string{"secret": "e2e-secret", "salt": privacy.NewSalt(day, [16]byte{7}).String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	toml := fmt.Sprintf(`manifest_version = 3
name = "guestalloc"
[local_server.backends.aggregator]
url = "http://%s"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
batch_max_age_ms = "3600000"
batch_max_events = "10000"
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = %q }, { key = %q, file = %q }]
`, sl.Addr(), filepath.Join(dir, "secret"), privacy.SaltKey(day), filepath.Join(dir, "salt"))
	manifest, err := fastlytoml.Parse([]byte(toml), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := experimental.WithFunctionListenerFactory(context.Background(), listeners)
	c := pop.Config{WasmPath: wasm[build.TinyGo], Manifest: manifest, Instances: 1,
		Stdout: io.Discard, Stderr: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if cfg != nil {
		cfg(&c)
	}
	p, err := pop.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.Shutdown(sctx)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &guestPOP{p: p, addr: l.Addr().String()}
}

// send sends n of the corpus's hits, one at a time, each of which must be
// answered and counted.
func (g *guestPOP) send(t *testing.T, n int) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		h := corpus.Hits[i%len(corpus.Hits)]
		q := url.Values{"site": {"guestalloc"}, "url": {h.URL}, "ref": {h.Referrer}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+g.addr+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("User-Agent", h.UserAgent)
		if h.SecPurpose != "" {
			req.Header.Set("Sec-Purpose", h.SecPurpose)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Edgepixel-Drop") != "" {
			t.Fatalf("hit %d: %s, drop %q", i, resp.Status, resp.Header.Get("X-Edgepixel-Drop"))
		}
	}
}
