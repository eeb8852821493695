package main

// Guest CPU per hit, compared (section "guestcpu"): several builds of the
// edge module, each under a POP of its own, serve the enrichment corpus's
// hits (enrichpop.go) in alternating rounds, so a change in the machine's
// load falls on every build alike. Each round's hits are timed by the
// POP on the instance thread's CPU clock (pop.Server.GuestTimes); the
// figures are over all rounds. With --guest-profile, a build runs with a
// wazero function listener instead: calls and inclusive time per hit of
// the guest functions the pattern names, and where the guest's heap
// allocations come from (callers of TinyGo's runtime.alloc, or Go's
// runtime.mallocgc). The listener slows the guest, so those times are
// for attribution, not figures.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/tests/wasmbench"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

type guestCPUOptions struct {
	wasm    string // name=path,name=path
	rounds  int
	hits    int // per round and build
	profile string
	// hostProfile, when set, is where a pprof CPU profile of the timed
	// rounds goes: the host's side of a hit (hostcalls, wazero, the Go
	// scheduler and system calls on the instance's thread).
	hostProfile string
	// conns is how many keep-alive clients send each round's hits; with
	// more than one, requests wait in the POP's queue for the one
	// instance, which then takes each without going idle.
	conns int
	// maxInstances bounds each POP's pool (pop.Config.MaxInstances; 0:
	// the POP's default).
	maxInstances int
	// floor adds the floor guest (tests/wasmbench/guest/floor, built with
	// TinyGo when at hand) as a last build: the host's share of a hit,
	// which each build's figures are then printed against.
	floor bool
}

// runGuestCPU prints each build's guest CPU per hit over o.rounds
// alternating rounds, or, with o.profile, each build's profile.
func runGuestCPU(o guestCPUOptions) error {
	type build struct {
		name, path string
		pop        *pop.Server
		addr       string
		samples    []pop.GuestSample
		prof       *guestProfile
	}
	var builds []*build
	for _, nb := range namedBuilds(o.wasm) {
		builds = append(builds, &build{name: nb[0], path: nb[1]})
	}
	ctx := context.Background()
	sink, _, err := countingSink()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "edgepixel-bench-guestcpu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var floor *build
	if o.floor {
		name, path, err := buildFloor(dir)
		if err != nil {
			return fmt.Errorf("the floor guest: %v", err)
		}
		floor = &build{name: name, path: path}
		builds = append(builds, floor)
	}
	day := privacy.Day(time.Now())
	salts := map[string]string{privacy.SaltKey(day): privacy.NewSalt(day, [16]byte{1, 2, 3}).String()}
	manifest, _, err := benchManifestWith(dir, "fastly.toml", sink, "", salts)
	if err != nil {
		return err
	}
	var pattern *regexp.Regexp
	if o.profile != "" {
		if pattern, err = regexp.Compile(o.profile); err != nil {
			return fmt.Errorf("--guest-profile: %v", err)
		}
	}
	for _, b := range builds {
		pctx := ctx
		if pattern != nil {
			b.prof = newGuestProfile(pattern)
			pctx = experimental.WithFunctionListenerFactory(ctx, b.prof)
		}
		b.pop, err = pop.New(pctx, pop.Config{
			WasmPath: b.path, Manifest: manifest, Instances: 1, MaxInstances: o.maxInstances,
			Stdout: io.Discard, Stderr: io.Discard, MeasureGuestTime: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return fmt.Errorf("%s: %v", b.name, err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			b.pop.Shutdown(sctx)
		}()
		if b.addr, err = serve(b.pop); err != nil {
			return err
		}
		const warm = 200
		if err := driveN(enrichRequests(b.addr), 1, warm); err != nil { // warm up: instance, salts
			return fmt.Errorf("%s: %v", b.name, err)
		}
		takeSamples(b.pop, warm)
		if b.prof != nil {
			b.prof.reset()
		}
	}
	stop, err := startCPUProfile(o.hostProfile)
	if err != nil {
		return err
	}
	defer stop()
	for r := range o.rounds {
		fmt.Fprintf(os.Stderr, "bench: guest CPU, round %d of %d ...\n", r+1, o.rounds)
		for _, b := range builds {
			if err := driveN(enrichRequests(b.addr), max(o.conns, 1), o.hits); err != nil {
				return fmt.Errorf("%s: %v", b.name, err)
			}
			b.samples = append(b.samples, takeSamples(b.pop, o.hits)...)
		}
	}
	fmt.Printf("\nGuest CPU per enriched pixel hit, measured by the POP on the instance thread's CPU clock\n(%d alternating rounds of %d hits per build, %d connection(s), a warm pool of one instance; load average %s)\n",
		o.rounds, o.hits, max(o.conns, 1), loadAverage())
	if floor, ok := threadClockFloor(); ok {
		fmt.Printf("(two consecutive readings of the thread CPU clock differ by %.1f µs, p50: part of every figure)\n", us(floor))
	}
	fmt.Println()
	fmt.Printf("| build | hits | mean (µs) | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) |\n|---|---|---|---|---|---|---|\n")
	line := func(name string, times []time.Duration) {
		fmt.Printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", name, len(times), meanOf(times)*1e3,
			percentileOf(times, 0.5)*1e3, percentileOf(times, 0.9)*1e3, percentileOf(times, 0.99)*1e3, percentileOf(times, 0.999)*1e3)
	}
	// Each build three ways (splitGuest): a flush counting to the hit it
	// followed, each batch's flush spread over its hits, and the hits
	// that made no flush.
	for _, b := range builds {
		g := splitGuest(b.samples)
		line(b.name, g.all)
		if b == floor { // it makes no flush
			continue
		}
		line(b.name+", flush amortised", g.amortised)
		line(fmt.Sprintf("%s, hits without a flush (%d flushes)", b.name, g.flushes), g.noFlush)
	}
	if floor != nil {
		fmt.Printf("\nEach build against the %s of the same rounds: what the module adds to the host's share of a hit\n\n", floor.name)
		fmt.Printf("| build | p50 over the floor's | p99 over the floor's | p50 less the floor's (µs) | p99 less the floor's (µs) |\n|---|---|---|---|---|\n")
		f := splitGuest(floor.samples).all
		f50, f99 := percentileOf(f, 0.5)*1e3, percentileOf(f, 0.99)*1e3
		for _, b := range builds {
			if b == floor {
				continue
			}
			g := splitGuest(b.samples).amortised
			p50, p99 := percentileOf(g, 0.5)*1e3, percentileOf(g, 0.99)*1e3
			fmt.Printf("| %s, flush amortised | %.2f× | %.2f× | %.1f | %.1f |\n", b.name, p50/f50, p99/f99, p50-f50, p99-f99)
		}
	}
	if o.conns <= 1 {
		printGuestByHit(builds[0].name, builds[0].samples, o.hits)
	}
	fmt.Printf("\n| build | instance starts | start p50 (ms, wall) |\n|---|---|---|\n")
	for _, b := range builds {
		st := b.pop.InstanceStartups()
		fmt.Printf("| %s | %d | %.2f |\n", b.name, len(st), percentileOf(st, 0.5))
	}
	for _, b := range builds {
		if b.prof != nil {
			b.prof.print(os.Stdout, b.name, o.rounds*o.hits)
		}
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// buildFloor builds the floor guest into dir with TinyGo, the toolchain of
// the module edgepixel ships, or with Go when no TinyGo is at hand, and
// returns its name for the tables and its path.
func buildFloor(dir string) (name, path string, err error) {
	tcs, note := wasmbench.Toolchains()
	if len(tcs) == 0 {
		return "", "", fmt.Errorf("no toolchain to build it with (%s; run the bench from the repository, or pass --guestcpu-floor=false)", note)
	}
	tc := tcs[len(tcs)-1] // TinyGo, listed after Go, when at hand
	fmt.Fprintf(os.Stderr, "bench: building the floor guest (%s) ...\n", tc.Name)
	path = filepath.Join(dir, "floor-"+tc.Name+".wasm")
	if err := tc.Build(wasmbench.FloorPkg, path); err != nil {
		return "", "", err
	}
	return "floor guest (" + tc.Name + ", answers only)", path, nil
}

// namedBuilds parses a list of builds, name=path,name=path (a bare path
// is named by its file name), into name and path pairs.
func namedBuilds(list string) [][2]string {
	var nbs [][2]string
	for _, nv := range strings.Split(list, ",") {
		name, path, ok := strings.Cut(nv, "=")
		if !ok {
			name, path = filepath.Base(nv), nv
		}
		nbs = append(nbs, [2]string{name, path})
	}
	return nbs
}

// startCPUProfile starts a Go CPU profile of this process into file, if
// one is named; stop ends it.
func startCPUProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// driveN sends n of reqs, round robin, from conns keep-alive clients.
func driveN(reqs []*http.Request, conns, n int) error {
	return sendPixels(reqs, conns, conns, func(i int) bool { return i < n })
}

// guestProfile is a wazero function listener factory: it counts calls
// and inclusive time of the functions its pattern matches, and the
// callers of the guest's allocator.
type guestProfile struct {
	pattern *regexp.Regexp
	mu      sync.Mutex
	funcs   map[string]*funcStats
	allocs  map[string]int // caller chain -> allocations
}

type funcStats struct {
	calls int
	depth int
	since time.Time
	total time.Duration
}

func newGuestProfile(p *regexp.Regexp) *guestProfile {
	return &guestProfile{pattern: p, funcs: map[string]*funcStats{}, allocs: map[string]int{}}
}

func (g *guestProfile) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.funcs {
		f.calls, f.total = 0, 0
	}
	clear(g.allocs)
}

func isAllocator(name string) bool { return name == "runtime.alloc" || name == "runtime.mallocgc" }

func (g *guestProfile) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	name := def.Name()
	if def.GoFunction() != nil { // a hostcall
		name = def.ModuleName() + "." + name
	}
	if !isAllocator(name) && !g.pattern.MatchString(name) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.funcs[name] == nil {
		g.funcs[name] = &funcStats{}
	}
	return &funcListener{g: g, name: name, s: g.funcs[name]}
}

type funcListener struct {
	g    *guestProfile
	name string
	s    *funcStats
}

func (l *funcListener) Before(_ context.Context, _ api.Module, _ api.FunctionDefinition, params []uint64, stack experimental.StackIterator) {
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	l.s.calls++
	if l.s.depth == 0 {
		l.s.since = time.Now()
	}
	l.s.depth++
	if isAllocator(l.name) {
		// TinyGo's runtime.alloc takes the size first, a wasm32 uintptr:
		// an i32, whose upper 32 bits in params wazero leaves undefined.
		// Go's runtime.mallocgc takes its arguments on Go's own stack
		// (its wasm function's one parameter is the stack pointer), so
		// its sizes are not read.
		chain := []string{"?"}
		if l.name == "runtime.alloc" && len(params) > 0 {
			chain[0] = fmt.Sprintf("%d B:", uint32(params[0]))
		}
		stack.Next() // the allocator itself
		for len(chain) < 5 && stack.Next() {
			chain = append(chain, shortName(stack.Function().Definition().Name()))
		}
		l.g.allocs[strings.Join(chain, " < ")]++
	}
}

func (l *funcListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	l.s.depth--
	if l.s.depth == 0 {
		l.s.total += time.Since(l.s.since)
	}
}

func (l *funcListener) Abort(ctx context.Context, mod api.Module, def api.FunctionDefinition, _ error) {
	l.After(ctx, mod, def, nil)
}

func shortName(n string) string {
	n = strings.TrimPrefix(n, "github.com/edgepixel/edgepixel/")
	if i := strings.Index(n, "github.com/"); i >= 0 {
		n = n[i+len("github.com/"):]
	}
	return n
}

func (g *guestProfile) print(w io.Writer, name string, hits int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(w, "\nProfile of %s over %d hits (listener overhead included: for attribution only)\n\n| function | calls/hit | inclusive µs/hit |\n|---|---|---|\n", name, hits)
	names := slices.Collect(func(yield func(string) bool) {
		for n, f := range g.funcs {
			if f.calls > 0 && !yield(n) {
				return
			}
		}
	})
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(g.funcs[b].total, g.funcs[a].total) })
	for _, n := range names {
		f := g.funcs[n]
		fmt.Fprintf(w, "| %s | %.2f | %.2f |\n", shortName(n), float64(f.calls)/float64(hits), us(f.total)/float64(hits))
	}
	fmt.Fprintf(w, "\n| allocation callers | per hit |\n|---|---|\n")
	chains := slices.Collect(func(yield func(string) bool) {
		for c := range g.allocs {
			if !yield(c) {
				return
			}
		}
	})
	slices.SortFunc(chains, func(a, b string) int { return cmp.Compare(g.allocs[b], g.allocs[a]) })
	for _, c := range chains {
		fmt.Fprintf(w, "| %s | %.2f |\n", c, float64(g.allocs[c])/float64(hits))
	}
}

// takeSamples returns p's guest samples and empties them, once it holds
// n (or after a few seconds). A request's sample is taken when the guest
// asks for the next request, after the client has its answer: taken at
// once, a round's last sample could count as the next round's first and
// shift the per-hit table.
func takeSamples(p *pop.Server, n int) []pop.GuestSample {
	for deadline := time.Now().Add(5 * time.Second); len(p.GuestSamples(false)) < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return p.GuestSamples(true)
}

// printGuestByHit prints a build's guest CPU per hit of the corpus, the
// costliest first. With one connection a round's requests are served in
// the order driveN sends them, so the i-th sample of a round is corpus
// hit i mod its length. A hit's flush is kept out (hits without one).
func printGuestByHit(name string, samples []pop.GuestSample, perRound int) {
	n := len(corpus.Hits)
	byHit := make([][]time.Duration, n)
	for i, s := range samples {
		if s.BackendSends == 0 {
			byHit[(i%perRound)%n] = append(byHit[(i%perRound)%n], s.CPU)
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	p50 := func(i int) float64 { return percentileOf(byHit[i], 0.5) }
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(p50(b), p50(a)) })
	fmt.Printf("\n%s by corpus hit (hits without a flush), costliest first\n\n| hit | user agent | p50 (µs) | p90 (µs) |\n|---|---|---|---|\n", name)
	for _, i := range order {
		h := corpus.Hits[i]
		ua := h.UserAgent
		if len(ua) > 40 {
			ua = ua[len(ua)-40:]
		}
		fmt.Printf("| %d %s | …%s | %.1f | %.1f |\n", i, h.URL, ua, p50(i)*1e3, percentileOf(byHit[i], 0.9)*1e3)
	}
}
