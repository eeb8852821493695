package pop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
)

// Tests for execution limits, fresh instances, pool shrinking and hot
// reload, mostly with testdata/limitguest. None asserts on how fast
// something happens, only that it happens within generous deadlines: the
// machines running them are shared and slow.

func limitGuest(c *Config) {
	c.WasmPath = guestPath("limitguest")
	c.Instances, c.MaxInstances = 1, 1
}

// getWithin is p.get with a deadline, so a limit that fails to fire fails
// the test instead of hanging it.
func (p *testPOP) getWithin(t *testing.T, path string, d time.Duration) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: d}
	resp, err := client.Get(p.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp, string(data)
}

// metric returns the value of one metric line (name with labels).
func (p *testPOP) metric(t *testing.T, series string) int {
	t.Helper()
	var buf bytes.Buffer
	p.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("metric %s: %q", series, line)
			}
			return n
		}
	}
	t.Fatalf("metric %s missing:\n%s", series, buf.String())
	return 0
}

// idOf splits the limitguest's /id answer: instance id and how many
// requests that instance has served.
func idOf(t *testing.T, body string) (string, int) {
	t.Helper()
	id, n, ok := strings.Cut(body, " ")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || len(id) != 16 {
		t.Fatalf("not an /id answer: %q", body)
	}
	return id, count
}

// expectFreshInstance checks that the next request is served, by an
// instance other than before that has served nothing else: whatever the
// failed instance held is gone.
func expectFreshInstance(t *testing.T, p *testPOP, before string) {
	t.Helper()
	resp, body := p.getWithin(t, "/id", 60*time.Second)
	if resp.StatusCode != 200 {
		t.Fatalf("request after the failure: %d %q", resp.StatusCode, body)
	}
	id, n := idOf(t, body)
	if id == before || n != 1 {
		t.Errorf("request after the failure served by %s (request %d); the failed instance was %s", id, n, before)
	}
}

func TestMemoryLimit(t *testing.T) {
	p := startPOP(t, nil, limitGuest)
	_, body := p.get(t, "/id")
	first, _ := idOf(t, body)
	// Well under Fastly's 128 MB: fine, and the instance lives on.
	if resp, body := p.get(t, "/alloc?mb=48"); resp.StatusCode != 200 || body != "allocated 48 MiB" {
		t.Fatalf("48 MiB: %d %q", resp.StatusCode, body)
	}
	if _, body := p.get(t, "/id"); !strings.HasPrefix(body, first+" ") {
		t.Fatalf("an allocation under the limit replaced the instance: %q", body)
	}
	resp, body := p.getWithin(t, "/alloc?mb=200", 60*time.Second)
	if resp.StatusCode != 500 {
		t.Fatalf("200 MiB: %d %q, want 500", resp.StatusCode, body)
	}
	expectFreshInstance(t, p, first)
	poptest.WaitFor(t, "the guest's out-of-memory report", func() bool { return contains(p.Stderr.String(), "out of memory") })
	if n := p.metric(t, `edgepixel_pop_limit_breaches_total{limit="memory"}`); n != 1 {
		t.Errorf("memory breaches %d, want 1", n)
	}
	if n := p.metric(t, "edgepixel_pop_instances_failed_total"); n != 1 {
		t.Errorf("failed instances %d, want 1", n)
	}
}

func TestMemoryLimitConfigurable(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		limitGuest(c)
		c.MemoryLimit = 48 << 20
	})
	if resp, body := p.getWithin(t, "/alloc?mb=64", 60*time.Second); resp.StatusCode != 500 {
		t.Fatalf("64 MiB under a 48 MiB limit: %d %q", resp.StatusCode, body)
	}
	if n := p.metric(t, `edgepixel_pop_limit_breaches_total{limit="memory"}`); n != 1 {
		t.Errorf("memory breaches %d, want 1", n)
	}
}

func TestWallBudget(t *testing.T) {
	g := newGate(t, 0) // never answers on its own
	p := startPOP(t, manifest(t, g.manifest(t)), func(c *Config) {
		limitGuest(c)
		c.WallBudget = 500 * time.Millisecond
		// Instance startup (replacements included) is not what this test
		// is about, and on a loaded machine it can take longer than that.
		c.startupWallBudget = -1
	})
	_, body := p.get(t, "/id")
	first, _ := idOf(t, body)
	resp, body := p.getWithin(t, "/spin", 60*time.Second)
	if resp.StatusCode != 503 || !contains(body, "wall limit") {
		t.Fatalf("spinning guest: %d %q, want 503", resp.StatusCode, body)
	}
	expectFreshInstance(t, p, first)
	// A guest blocked in a hostcall (a backend that never answers) or
	// asleep is stopped too.
	for _, path := range []string{"/gate", "/sleep?ms=600000"} {
		if resp, body := p.getWithin(t, path, 60*time.Second); resp.StatusCode != 503 || !contains(body, "wall limit") {
			t.Errorf("%s: %d %q, want 503", path, resp.StatusCode, body)
		}
	}
	if resp, _ := p.get(t, "/id"); resp.StatusCode != 200 {
		t.Errorf("after the breaches: %d", resp.StatusCode)
	}
	if n := p.metric(t, `edgepixel_pop_limit_breaches_total{limit="wall"}`); n != 3 {
		t.Errorf("wall breaches %d, want 3", n)
	}
	if n := p.metric(t, `edgepixel_pop_limit_breaches_total{limit="cpu"}`); n != 0 {
		t.Errorf("cpu breaches %d, want 0 (no CPU budget)", n)
	}
}

// gate is a backend that holds each request until released (or answers
// after a delay), so a test can keep guest requests in flight for exactly
// as long as it needs.
type gate struct {
	url     string
	arrived atomic.Int32
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T, delay time.Duration) *gate {
	g := &gate{release: make(chan struct{})}
	srv := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		g.arrived.Add(1)
		if delay > 0 {
			time.Sleep(delay)
		} else {
			select {
			case <-g.release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	g.url = srv
	t.Cleanup(g.open) // before the backend closes (cleanups run last-first)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) manifest(t *testing.T) string {
	return fmt.Sprintf("[local_server.backends.gate]\nurl = %q\n", g.url)
}

// newBackendFunc starts an HTTP backend for the test and returns its URL.
func newBackendFunc(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCPUBudget(t *testing.T) {
	g := newGate(t, time.Second)
	p := startPOP(t, manifest(t, g.manifest(t)), func(c *Config) {
		limitGuest(c)
		c.CPUBudget = 300 * time.Millisecond
		c.WallBudget = time.Minute
	})
	// Time asleep or waiting for a backend is not CPU time.
	if resp, body := p.getWithin(t, "/sleep?ms=1000", 60*time.Second); resp.StatusCode != 200 || body != "slept 1000" {
		t.Fatalf("sleeping 1s on a 300ms CPU budget: %d %q", resp.StatusCode, body)
	}
	if resp, body := p.getWithin(t, "/gate", 60*time.Second); resp.StatusCode != 200 || body != "gate: ok" {
		t.Fatalf("waiting 1s for a backend on a 300ms CPU budget: %d %q", resp.StatusCode, body)
	}
	_, body := p.get(t, "/id")
	first, n := idOf(t, body)
	if n != 3 {
		t.Fatalf("the sleeping requests did not stay on one instance: %q", body)
	}
	resp, body := p.getWithin(t, "/spin", 60*time.Second)
	if resp.StatusCode != 503 || !contains(body, "cpu limit") {
		t.Fatalf("spinning guest: %d %q, want 503", resp.StatusCode, body)
	}
	expectFreshInstance(t, p, first)
	if n := p.metric(t, `edgepixel_pop_limit_breaches_total{limit="cpu"}`); n != 1 {
		t.Errorf("cpu breaches %d, want 1", n)
	}
}

func TestPanicThenCleanInstance(t *testing.T) {
	// The conformance guest panics on /panic; what it served before must
	// not be visible to the next visitor.
	p := startPOP(t, nil, func(c *Config) { c.Instances, c.MaxInstances = 1, 1 })
	p.get(t, "/counter")
	_, body := p.get(t, "/counter")
	before, n, _ := strings.Cut(body, " ")
	if n != "2" {
		t.Fatalf("%q", body)
	}
	if resp, _ := p.get(t, "/panic"); resp.StatusCode != 500 {
		t.Fatalf("panic: %d", resp.StatusCode)
	}
	_, body = p.get(t, "/counter")
	if id, n, _ := strings.Cut(body, " "); id == before || n != "1" {
		t.Errorf("after the panic: %q (instance before: %s)", body, before)
	}
}

func TestFreshInstances(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		limitGuest(c)
		c.MaxInstances = 2
		c.FreshInstances = true
	})
	seen := map[string]bool{}
	for i := range 3 {
		resp, body := p.getWithin(t, "/id", 60*time.Second)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		id, n := idOf(t, body)
		if n != 1 || seen[id] {
			t.Fatalf("request %d: %q: not a fresh instance (seen %v)", i, body, seen)
		}
		seen[id] = true
	}
	// Each ended cleanly after its one request: next_request said there
	// are no more, and the code after ServeMany ran.
	poptest.WaitFor(t, "three instances to end", func() bool {
		return strings.Count(p.Stdout.String(), "limitguest: serve loop ended") >= 3
	})
	for id := range seen {
		if !contains(p.Stdout.String(), "serve loop ended "+id+" after 1\n") {
			t.Errorf("instance %s did not end after its request:\n%s", id, p.Stdout)
		}
	}
	if n := p.metric(t, "edgepixel_pop_instances_failed_total"); n != 0 {
		t.Errorf("failed instances %d", n)
	}
}

func TestPoolShrinksWhenIdle(t *testing.T) {
	g := newGate(t, 0)
	p := startPOP(t, manifest(t, g.manifest(t)), func(c *Config) {
		c.WasmPath = guestPath("limitguest")
		c.Instances, c.MaxInstances = 1, 3
		c.IdleTimeout = 200 * time.Millisecond
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := p.getWithin(t, "/gate", 60*time.Second)
			if resp.StatusCode != 200 || body != "gate: ok" {
				t.Errorf("held request: %d %q", resp.StatusCode, body)
			}
		}()
	}
	// Three requests held at once need three instances.
	poptest.WaitFor(t, "three requests in flight", func() bool { return g.arrived.Load() == 3 })
	if n := p.live.Load(); n != 3 {
		t.Fatalf("%d live instances serving three held requests", n)
	}
	g.open()
	wg.Wait()
	poptest.WaitFor(t, "the pool to shrink to its warm size", func() bool { return p.live.Load() == 1 })
	if n := p.metric(t, "edgepixel_pop_instances_idle_exits_total"); n != 2 {
		t.Errorf("idle exits %d, want 2", n)
	}
	// They left through the front door: no failures, post-loop code ran.
	if n := p.metric(t, "edgepixel_pop_instances_failed_total"); n != 0 {
		t.Errorf("failed instances %d", n)
	}
	poptest.WaitFor(t, "two clean exits", func() bool {
		return strings.Count(p.Stdout.String(), "limitguest: serve loop ended") == 2
	})
	// The warm instance stays (it is not above the warm size) and serves.
	time.Sleep(500 * time.Millisecond)
	if n := p.live.Load(); n != 1 {
		t.Errorf("%d live instances after idling at the warm size", n)
	}
	if resp, _ := p.get(t, "/id"); resp.StatusCode != 200 {
		t.Errorf("after shrinking: %d", resp.StatusCode)
	}
}

// replaceFile swaps path's content the way a build tool would: write
// elsewhere, rename into place.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHotReload(t *testing.T) {
	g := newGate(t, 0)
	wasm := filepath.Join(t.TempDir(), "main.wasm")
	replaceFile(t, wasm, readFile(t, guestPath("limitguest")))
	logs := &syncBuffer{}
	p := startPOP(t, manifest(t, g.manifest(t)), func(c *Config) {
		c.WasmPath = wasm
		c.Instances, c.MaxInstances = 1, 2
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	if _, body := p.get(t, "/version"); body != "limitguest" {
		t.Fatalf("/version: %q", body)
	}
	// A request in flight on the old version, held by the backend.
	type result struct {
		code int
		body string
	}
	inflight := make(chan result, 1)
	go func() {
		resp, body := p.getWithin(t, "/gate", 60*time.Second)
		inflight <- result{resp.StatusCode, body}
	}()
	poptest.WaitFor(t, "the request to be in flight", func() bool { return g.arrived.Load() == 1 })

	// The new version: the conformance guest, which answers /counter and
	// has no /version.
	replaceFile(t, wasm, readFile(t, guestWasm))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if resp, body := p.get(t, "/counter"); resp.StatusCode != 200 || !strings.HasSuffix(body, " 1") {
		t.Errorf("new version /counter: %d %q", resp.StatusCode, body)
	}
	if resp, body := p.get(t, "/version"); resp.StatusCode != 404 || body != "no route /version" {
		t.Errorf("new version /version: %d %q", resp.StatusCode, body)
	}
	select {
	case r := <-inflight:
		t.Fatalf("the in-flight request ended before its backend answered: %+v", r)
	default:
	}
	g.open()
	if r := <-inflight; r.code != 200 || r.body != "gate: ok" {
		t.Errorf("in-flight request on the old version: %+v", r)
	}
	// The old instance then ends cleanly and its runtime is released.
	poptest.WaitFor(t, "the old version's instance to end", func() bool {
		return contains(p.Stdout.String(), "limitguest: serve loop ended") && p.live.Load() == 1
	})
	poptest.WaitFor(t, "the old version to be released", func() bool {
		p.progMu.Lock()
		defer p.progMu.Unlock()
		return len(p.progs) == 1
	})
	if n := p.metric(t, `edgepixel_pop_reloads_total{result="ok"}`); n != 1 {
		t.Errorf("reloads %d", n)
	}
	if d := p.Degraded(); len(d) != 0 {
		t.Errorf("degraded after a good reload: %q", d)
	}

	// A broken module is refused; the current one keeps serving, and
	// /healthz shows the failure (Degraded) until a later reload succeeds.
	// The warning that it cannot be instrumented is a consequence of it
	// not being wasm: it is not logged.
	replaceFile(t, wasm, []byte("\x00asm\x01\x00\x00\x00garbage"))
	err := p.Reload(ctx)
	if err == nil {
		t.Error("Reload accepted a broken module")
	}
	if d := p.Degraded(); len(d) != 1 || !strings.Contains(d[0], wasm) || !strings.Contains(d[0], "reload failed") || err != nil && !strings.Contains(d[0], err.Error()) {
		t.Errorf("degraded after a failed reload: %q; want the module, the failure and its reason (%v)", d, err)
	}
	if strings.Contains(logs.String(), "instrumented") {
		t.Errorf("a module that is not wasm was reported as not instrumentable:\n%s", logs)
	}
	resp, body := p.get(t, "/counter")
	if resp.StatusCode != 200 {
		t.Errorf("after a failed reload: %d %q", resp.StatusCode, body)
	}
	current, _, _ := strings.Cut(body, " ")
	if n := p.metric(t, `edgepixel_pop_reloads_total{result="failed"}`); n != 1 {
		t.Errorf("failed reloads %d", n)
	}
	// The same module again is not a new version.
	replaceFile(t, wasm, readFile(t, guestWasm))
	if err := p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.metric(t, `edgepixel_pop_reloads_total{result="ok"}`); n != 1 {
		t.Errorf("reloading an unchanged module counted as a reload (%d)", n)
	}
	if d := p.Degraded(); len(d) != 0 {
		t.Errorf("degraded after the served module came back: %q", d)
	}
	// And the log says the failure is over, once: it showed the error
	// alone (a tester's).
	if n := strings.Count(logs.String(), "module reload no longer fails"); n != 1 {
		t.Errorf("the log says %d times that the reload no longer fails, want once:\n%s", n, logs)
	}
	if _, body := p.get(t, "/counter"); !strings.HasPrefix(body, current+" ") {
		t.Errorf("unchanged module: instance %s replaced: %q", current, body)
	}
}

func TestWatchReloads(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "main.wasm")
	replaceFile(t, wasm, readFile(t, guestPath("limitguest")))
	p := startPOP(t, nil, func(c *Config) {
		c.WasmPath = wasm
		c.Instances, c.MaxInstances = 1, 2
		c.Reload = true
		c.ReloadInterval = 20 * time.Millisecond
	})
	if _, body := p.get(t, "/version"); body != "limitguest" {
		t.Fatalf("/version: %q", body)
	}
	replaceFile(t, wasm, readFile(t, guestWasm))
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, _ := p.get(t, "/version")
		if resp.StatusCode == 404 {
			break // the conformance guest
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed module was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken file is logged and ignored.
	replaceFile(t, wasm, []byte("not wasm"))
	poptest.WaitFor(t, "the failed reload", func() bool {
		var buf bytes.Buffer
		p.WritePrometheus(&buf)
		return contains(buf.String(), `edgepixel_pop_reloads_total{result="failed"} 1`)
	})
	if resp, _ := p.get(t, "/counter"); resp.StatusCode != 200 {
		t.Errorf("after a broken file: %d", resp.StatusCode)
	}
}

// Guest time is the guest's run time per request: a sleep is not in it,
// and each request handed over is measured once its guest moves on.
func TestMeasureGuestTime(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) {
		limitGuest(c)
		c.MeasureGuestTime = true
	})
	if resp, body := p.get(t, "/sleep?ms=300"); resp.StatusCode != 200 {
		t.Fatalf("/sleep: %d %q", resp.StatusCode, body)
	}
	for range 2 {
		p.get(t, "/id")
	}
	// The third request's time is recorded when the guest asks for a
	// fourth, which it does once it has answered.
	var times []time.Duration
	poptest.WaitFor(t, "three requests measured", func() bool {
		times = p.GuestTimes(false)
		return len(times) >= 3
	})
	if len(times) != 3 {
		t.Fatalf("%d times for 3 requests: %v", len(times), times)
	}
	for i, d := range times {
		if d <= 0 || d >= 300*time.Millisecond {
			t.Errorf("request %d: guest time %v (the sleep must not count)", i, d)
		}
	}
	if got := p.GuestTimes(true); len(got) != 3 || len(p.GuestTimes(false)) != 0 {
		t.Errorf("reset: %d then %d", len(got), len(p.GuestTimes(false)))
	}
}

// GuestSamples split a request's guest time where it was answered and
// count the backend requests made while serving it.
func TestGuestSamples(t *testing.T) {
	g := newGate(t, time.Millisecond)
	p := startPOP(t, manifest(t, g.manifest(t)), func(c *Config) {
		limitGuest(c)
		c.MeasureGuestTime = true
	})
	if resp, body := p.getWithin(t, "/after?n=50000000", 60*time.Second); resp.StatusCode != 200 || body != "answered" {
		t.Fatalf("/after: %d %q", resp.StatusCode, body)
	}
	if resp, body := p.getWithin(t, "/gate", 60*time.Second); resp.StatusCode != 200 || body != "gate: ok" {
		t.Fatalf("/gate: %d %q", resp.StatusCode, body)
	}
	p.get(t, "/id")
	var s []GuestSample
	poptest.WaitFor(t, "three requests measured", func() bool {
		s = p.GuestSamples(false)
		return len(s) >= 3
	})
	if len(s) != 3 {
		t.Fatalf("%d samples for 3 requests: %+v", len(s), s)
	}
	after, gate := s[0], s[1]
	if after.Answer <= 0 || after.CPU-after.Answer <= after.Answer || after.BackendSends != 0 {
		t.Errorf("/after: %+v: want the work after the answer to outweigh the answer, no backend request", after)
	}
	if gate.BackendSends != 1 || gate.Answer <= 0 || gate.Answer > gate.CPU {
		t.Errorf("/gate: %+v: want one backend request, answered within its time", gate)
	}
	if s[0].Instance != s[2].Instance {
		t.Errorf("one instance served all three: %+v", s)
	}
	times := p.GuestTimes(true)
	for i := range s {
		if times[i] != s[i].CPU {
			t.Errorf("GuestTimes[%d] = %v, GuestSamples' CPU %v", i, times[i], s[i].CPU)
		}
	}
}
