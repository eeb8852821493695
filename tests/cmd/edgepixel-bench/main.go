// Command edgepixel-bench measures edgepixel against baselines in one run,
// with one load generator, and prints each figure beside its baseline.
// Sections: pop (below), aggregator (aggregator.go), hostile (hostile.go),
// guestcpu (guestcpu.go: guest CPU per enriched hit, TinyGo beside Go),
// durable (durable.go), dashboard (dashboard.go), sizing (sizing.go: each
// part's cost per event through the real pipeline), workers (workers.go: the
// Cloudflare worker in workerd beside the POP and bare net/http), enrich
// (enrich.go), coldstart (coldcompare.go: fresh-instance start and warm
// memory of several builds in alternating rounds; not in the default list,
// since pop measures both for the TinyGo and Go modules).
//
// Pixel serving: the local POP running the real edge module (delivering its
// batches to an in-process sink, so the POP and not the aggregator is
// measured) against a bare net/http server answering the same GIF with the
// same headers. Load comes from wrk (a separate C process, so the generator
// costs both sides the same), bounded in time, on loopback only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/tests/stack"
)

func main() {
	var (
		binDir   = flag.String("bin", ".edgepixel/bin", "where `make build` put edgepixel.wasm")
		duration = flag.Duration("duration", 10*time.Second, "load duration per target")
		conns    = flag.Int("connections", 32, "concurrent connections")
		threads  = flag.Int("threads", 2, "wrk threads")
		tinyWasm = flag.String("tinygo-wasm", "", "the TinyGo-built edge module (default: edgepixel.wasm in --bin)")
		goWasm   = flag.String("go-wasm", "", "the Go-built edge module (default: edgepixel-go.wasm in --bin)")
		sections = flag.String("sections", "pop,aggregator,fleet,sizing,hostile,durable,workers,enrich,guestcpu,dashboard,storage", "which sections to run")
		agg      aggOptions
		sizing   sizingOptions
		hostile  hostileOptions
		passes   = flag.Int("enrich-passes", 200, "enrich: passes over the corpus of hits per module (0: only the figures through the POP)")
		dash     dashOptions
		stored   = flag.Int("storage-events", 1_000_000, "storage: generated events stored")
		gcpu     guestCPUOptions
		cold     coldStartOptions
	)
	flag.StringVar(&cold.wasm, "coldstart-wasm", "", "coldstart: the builds to compare, name=path,name=path (default: the TinyGo and Go modules)")
	flag.IntVar(&cold.rounds, "coldstart-rounds", 5, "coldstart: alternating rounds")
	flag.StringVar(&cold.cpuProfile, "coldstart-cpuprofile", "", "coldstart: write a Go CPU profile of this process over the timed rounds to this `file`")
	flag.StringVar(&gcpu.wasm, "guestcpu-wasm", "", "guestcpu: the builds to compare, name=path,name=path (default: the TinyGo and Go modules)")
	flag.IntVar(&gcpu.rounds, "guestcpu-rounds", 10, "guestcpu: alternating rounds")
	flag.IntVar(&gcpu.hits, "guestcpu-hits", 2000, "guestcpu: hits per round and build")
	flag.StringVar(&gcpu.profile, "guest-profile", "", "guestcpu: instead of timing, profile the guest functions matching this regexp (and the callers of its allocator)")
	flag.IntVar(&gcpu.conns, "guestcpu-connections", 1, "guestcpu: keep-alive clients per build (more than one keeps the one instance busy, without idle waits between hits)")
	flag.BoolVar(&gcpu.floor, "guestcpu-floor", true, "guestcpu: also measure the floor guest (tests/wasmbench/guest/floor: answers as a pixel hit and does nothing else) and print each build against it")
	flag.IntVar(&gcpu.maxInstances, "guestcpu-max-instances", 0, "guestcpu: each POP's maximum instances (0: the POP's default)")
	flag.StringVar(&gcpu.hostProfile, "guestcpu-cpuprofile", "", "guestcpu: write a Go CPU profile of this process (the POPs and their guests, the client too) over the timed rounds to this `file`")
	flag.DurationVar(&dash.duration, "dash-duration", 8*time.Second, "dashboard: ingest duration with and without dashboards")
	flag.IntVar(&dash.senders, "dash-senders", 8, "dashboard: concurrent batch senders")
	flag.IntVar(&dash.clients, "dash-clients", 1000, "dashboard: WebSocket clients following /live")
	flag.BoolVar(&dash.clientsInBench, "dash-clients-in-bench", false, "dashboard: run the WebSocket clients in the bench's process, beside the senders (default: a child process, sharing the cores but not the senders' Go runtime)")
	flag.IntVar(&dash.rounds, "dash-rounds", 5, "dashboard: rounds of ingest with the clients, each between two without them")
	flag.IntVar(&dash.events, "dash-events", 10_000_000, "dashboard: generated events for the history figures (issue 12: a month of 10 million events)")
	flag.IntVar(&dash.queries, "dash-queries", 30, "dashboard: questions asked per history figure")
	flag.IntVar(&dash.rawQueries, "dash-raw-queries", 5, "dashboard: of those, asked of the raw events table (its p99 of few is their maximum)")
	flag.DurationVar(&dash.rawBudget, "dash-raw-budget", 3*time.Minute, "dashboard: time given to each question's raw events queries; those not answered by then are reported as such")
	flag.StringVar(&dash.clickhouse, "dash-clickhouse", "", "dashboard: measure the history figures alone on this clickhouse-server, which holds a previous run's --dash-events (kept with BENCH_KEEP=1)")
	flag.DurationVar(&agg.duration, "agg-duration", 8*time.Second, "aggregator: load duration (the loader then drains what was acknowledged)")
	flag.IntVar(&agg.senders, "agg-senders", 16, "aggregator: concurrent batch senders")
	flag.IntVar(&agg.batch, "agg-batch", 500, "aggregator: events per batch (the edge's batch_max_events)")
	flag.IntVar(&sizing.events, "sizing-events", 40_000, "sizing: pixel hits pushed through the pipeline per phase")
	flag.IntVar(&sizing.conns, "sizing-connections", 16, "sizing: concurrent keep-alive clients")
	flag.DurationVar(&hostile.duration, "hostile-duration", 3*time.Second, "hostile: normal load measured during each attack")
	flag.IntVar(&hostile.workers, "hostile-clients", 4, "hostile: normal keep-alive clients")
	flag.StringVar(&hostile.only, "hostile-attacks", "", "hostile: only the attacks whose names contain one of these, comma-separated (default all)")
	flag.StringVar(&popCPUProfile, "pop-cpuprofile", "", "pop: write a Go CPU profile of this process (wrk runs outside it) over each target's run at full connections, to this `file` name with a dot and the target's name appended")
	flag.BoolVar(&popServe, "pop-serve", false, "pop: only start the targets, print their names and addresses (tab-separated, one a line) and serve until stdin closes, for an outside load generator")
	probe := flag.Int(rssProbeFlag, 0, "internal: run as the resident-memory probe with this many instances")
	probeManifest := flag.String("rss-manifest", "", "internal: the probe's fastly.toml")
	probeCache := flag.String("rss-cache", "", "internal: the probe's compile cache")
	probeWasm := flag.String("rss-wasm", "", "internal: the probe's module")
	followN := flag.Int(followerFlag, 0, "internal: run as the dashboards' process with this many clients")
	followURL := flag.String("follow-url", "", "internal: the dashboards' process's dashboard URL")
	flag.Parse()
	if *followN > 0 {
		if err := runFollower(*followURL, *followN); err != nil {
			fmt.Fprintln(os.Stderr, "bench: dashboards' process:", err)
			os.Exit(1)
		}
		return
	}
	if *probe > 0 {
		if err := rssProbe(*probe, *probeWasm, *probeManifest, *probeCache); err != nil {
			fmt.Fprintln(os.Stderr, "bench: rss probe:", err)
			os.Exit(1)
		}
		return
	}
	agg.binDir, hostile.binDir, dash.binDir, sizing.binDir = *binDir, *binDir, *binDir, *binDir
	sizing.agg = agg
	if *tinyWasm == "" {
		*tinyWasm = stack.InDir(*binDir).Wasm
	}
	if *goWasm == "" {
		*goWasm = filepath.Join(*binDir, "edgepixel-go.wasm")
	}
	if strings.Contains(*sections, "pop") {
		mods, err := modulesFrom(*tinyWasm, *goWasm)
		if err == nil {
			err = run(mods, *duration, *conns, *threads)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "durable") { // durable.go
		if err := runDurable(*tinyWasm, *duration, *conns, *threads); err != nil {
			fmt.Fprintln(os.Stderr, "bench: durable modes:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "workers") { // workers.go
		if err := runWorkers(*binDir, *tinyWasm, *duration, *conns, *threads); err != nil {
			fmt.Fprintln(os.Stderr, "bench: workers:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "aggregator") {
		if err := runAggregator(agg); err != nil {
			fmt.Fprintln(os.Stderr, "bench: aggregator:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "fleet") { // fleet.go
		if err := runFleet(agg); err != nil {
			fmt.Fprintln(os.Stderr, "bench: fleet:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "sizing") { // sizing.go
		if err := runSizing(sizing); err != nil {
			fmt.Fprintln(os.Stderr, "bench: sizing:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "enrich") { // enrich.go
		mods, err := modulesFrom(*tinyWasm, *goWasm)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: enrich:", err)
		}
		if err := runEnrich(*passes, mods, *duration, *conns); err != nil {
			fmt.Fprintln(os.Stderr, "bench: enrich:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "guestcpu") { // guestcpu.go
		if gcpu.wasm == "" {
			gcpu.wasm = "TinyGo=" + *tinyWasm + ",Go=" + *goWasm
		}
		if err := runGuestCPU(gcpu); err != nil {
			fmt.Fprintln(os.Stderr, "bench: guestcpu:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "coldstart") { // coldcompare.go
		if cold.wasm == "" {
			cold.wasm = "TinyGo=" + *tinyWasm + ",Go=" + *goWasm
		}
		if err := runColdStart(cold); err != nil {
			fmt.Fprintln(os.Stderr, "bench: coldstart:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "storage") { // storage.go
		if err := runStorage(*stored); err != nil {
			fmt.Fprintln(os.Stderr, "bench: storage:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "dashboard") { // dashboard.go
		if err := runDashboard(dash); err != nil {
			fmt.Fprintln(os.Stderr, "bench: dashboard:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "hostile") {
		if err := runHostile(hostile); err != nil {
			fmt.Fprintln(os.Stderr, "bench: hostile:", err)
			os.Exit(1)
		}
	}
}

// popCPUProfile is --pop-cpuprofile; popServe is --pop-serve.
var (
	popCPUProfile string
	popServe      bool
)

// benchModule is one build of the edge module under measurement.
type benchModule struct {
	name, path string
	size       int64
	pop        *pop.Server
	addr       string
}

// modulesFrom lists the modules to measure, TinyGo (the shipped build)
// first; a path that does not exist is left out, with a note.
func modulesFrom(tinygo, gowasm string) ([]*benchModule, error) {
	var ms []*benchModule
	for _, m := range []*benchModule{{name: "TinyGo", path: tinygo}, {name: "Go", path: gowasm}} {
		fi, err := os.Stat(m.path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: no %s module at %s (%v): left out\n", m.name, m.path, err)
			continue
		}
		m.size = fi.Size()
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, errors.New("no edge module to measure: run `make modules` (or pass --tinygo-wasm, --go-wasm)")
	}
	return ms, nil
}

func run(mods []*benchModule, d time.Duration, conns, threads int) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: run `make deps-bench` (apt-get install wrk)")
	}
	ctx := context.Background()

	// The sink stands in for the aggregator and counts delivered events.
	sink, counts, err := countingSink()
	if err != nil {
		return err
	}
	manifest, manifestPath, cacheDir, remove, err := benchWorkDir(sink)
	if err != nil {
		return err
	}
	defer remove()
	newPOP := func(m *benchModule, measure bool) (*pop.Server, string, error) {
		p, err := pop.New(ctx, pop.Config{
			WasmPath: m.path, Manifest: manifest, CompileCacheDir: cacheDir,
			Stdout: io.Discard, Stderr: guestStderr, MeasureGuestTime: measure,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return nil, "", err
		}
		addr, err := serve(p)
		return p, addr, err
	}
	for _, m := range mods {
		fmt.Fprintf(os.Stderr, "bench: compiling %s (%s) and starting a POP ...\n", m.path, m.name)
		if m.pop, m.addr, err = newPOP(m, false); err != nil {
			return err
		}
	}
	native := newNativeEdge(2*runtime.GOMAXPROCS(0), sink, []byte("bench-secret"))
	nativeAddr, err := serve(native)
	if err != nil {
		return err
	}
	bareAddr, err := serve(http.HandlerFunc(bareGIF))
	if err != nil {
		return err
	}
	type target struct{ name, addr string }
	var targets []target
	for _, m := range mods {
		targets = append(targets, target{"POP " + m.name, m.addr})
	}
	targets = append(targets, target{"native edge", nativeAddr}, target{"bare GIF", bareAddr})
	if popServe {
		// Another program drives the load (comparing two builds of the
		// POP, each in its own bench process): name and address of each
		// target, one a line, then serve until stdin closes.
		for _, t := range targets {
			fmt.Printf("%s\t%s\n", t.name, t.addr)
		}
		io.Copy(io.Discard, os.Stdin)
		for _, m := range mods {
			m.pop.Shutdown(ctx)
		}
		native.Close()
		return nil
	}

	// Warm every target (the POP's instances start lazily on first traffic).
	for _, t := range targets {
		if _, err := wrk(t.addr+benchPath, 2*time.Second, conns, threads); err != nil {
			return err
		}
	}
	// Idle instances exit after the batch age and flush; wait for that so
	// warm-up events are not counted as the measured run's.
	time.Sleep(time.Second)
	counts.batched.Store(0)

	many := make([]result, len(targets))
	one := make([]result, len(targets))
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "bench: pixel from %s (%v, %d connections) ...\n", t.name, d, conns)
		profile := ""
		if popCPUProfile != "" {
			profile = popCPUProfile + "." + strings.ReplaceAll(t.name, " ", "-")
		}
		stop, err := startCPUProfile(profile)
		if err != nil {
			return err
		}
		many[i], err = wrk(t.addr+benchPath, d, conns, threads)
		stop()
		if err != nil {
			return err
		}
	}
	// One connection: the latency of a single visitor with nothing queued.
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "bench: pixel from %s (%v, 1 connection) ...\n", t.name, d/2)
		if one[i], err = wrk(t.addr+benchPath, d/2, 1, 1); err != nil {
			return err
		}
	}
	// Let every instance flush what it buffered during the run.
	for _, m := range mods {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m.pop.Shutdown(sctx)
		cancel()
	}
	native.Close()
	var popRequests, popErrors int64
	for i := range mods {
		popRequests += many[i].requests + one[i].requests
		popErrors += many[i].errors + one[i].errors
	}
	nativeRequests := many[len(mods)].requests + one[len(mods)].requests

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\npixel: %d connections, %v per target, wrk %d threads, GOMAXPROCS=%d, load average %s\n\n",
		conns, d, threads, runtime.GOMAXPROCS(0), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	fmt.Printf("%-24s", "figure")
	for _, t := range targets {
		fmt.Printf(" %12s", t.name)
	}
	for _, m := range mods {
		fmt.Printf(" %10s %10s", m.name+"/native", m.name+"/bare")
	}
	fmt.Println()
	nat, bare := len(mods), len(mods)+1
	table := func(name string, rs []result, get func(result) float64, unit string) {
		fmt.Printf("%-24s", name)
		for _, r := range rs {
			fmt.Printf(" %12s", fmtNum(get(r), unit))
		}
		for i := range mods {
			fmt.Printf(" %10.2f %10.2f", get(rs[i])/get(rs[nat]), get(rs[i])/get(rs[bare]))
		}
		fmt.Println()
	}
	rps := func(r result) float64 { return r.rps }
	p50 := func(r result) float64 { return r.p50 }
	p99 := func(r result) float64 { return r.p99 }
	table("requests/s", many, rps, "")
	table("latency p50", many, p50, "ms")
	table("latency p99", many, p99, "ms")
	table("requests/s, 1 conn", one, rps, "")
	table("latency p50, 1 conn", one, p50, "ms")
	table("latency p99, 1 conn", one, p99, "ms")
	// wrk counts only responses completed before it stops; the requests it
	// had in flight (up to one per connection) were served and delivered too.
	fmt.Printf("\nevents delivered by the POPs and the native edge: %d for %d pixel requests wrk counted, +up to %d in flight at its stops (%d errors)\n",
		counts.batched.Load(), popRequests+nativeRequests, len(mods)*(conns+1)+conns+1, popErrors)

	// Guest run time per hit, as the host measures it, beside the same
	// logic's time natively.
	fmt.Fprintf(os.Stderr, "bench: edge/pixel natively, per hit ...\n")
	nativeHit := measureNativeHit(d / 2)
	guest := make([]guestSplit, len(mods))
	for i, m := range mods {
		fmt.Fprintf(os.Stderr, "bench: guest time per hit, %s (%v, %d connections) ...\n", m.name, d/2, conns)
		p, addr, err := newPOP(m, true)
		if err != nil {
			return err
		}
		if _, err := wrk(addr+benchPath, d/2, conns, threads); err != nil {
			return err
		}
		guest[i] = splitGuest(p.GuestSamples(true))
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.Shutdown(sctx)
		cancel()
	}
	startups := make([][]time.Duration, len(mods))
	rss := make([]float64, len(mods))
	for i, m := range mods {
		fmt.Fprintf(os.Stderr, "bench: cold start, %d fresh instances of %s ...\n", coldStarts, m.name)
		if startups[i], err = measureColdStart(ctx, m.path, manifest, cacheDir); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: resident memory per warm instance of %s ...\n", m.name)
		if rss[i], err = warmInstanceRSS(m.path, manifestPath, cacheDir); err != nil {
			return err
		}
	}

	fmt.Printf("\nper hit and per instance: guest time per hit measured by the POP (the instance thread's CPU time\n")
	fmt.Printf("from taking a request to asking for the next: guest code and its hostcalls, waits excluded; a\n")
	fmt.Printf("flush counts to the hit it followed); native: pixel.Serve plus its flushes, timed in this process\n")
	if floor, ok := threadClockFloor(); ok {
		fmt.Printf("(two consecutive readings of the thread CPU clock differ by %.1f us, p50: part of every POP figure)\n", float64(floor)/1e3)
	}
	fmt.Println()
	fmt.Printf("%-34s", "figure")
	for _, m := range mods {
		fmt.Printf(" %12s", m.name)
	}
	fmt.Printf(" %12s", "baseline")
	for _, m := range mods {
		fmt.Printf(" %10s", m.name+"/base")
	}
	fmt.Println()
	row := func(name string, vals []float64, base float64, unit, baseName string) {
		fmt.Printf("%-34s", name)
		for _, v := range vals {
			fmt.Printf(" %12s", fmtNum(v, unit))
		}
		fmt.Printf(" %12s", fmtNum(base, unit))
		for _, v := range vals {
			if base > 0 {
				fmt.Printf(" %10.2f", v/base)
			} else {
				fmt.Printf(" %10s", "-")
			}
		}
		if baseName != "" {
			fmt.Printf("  (baseline: %s)", baseName)
		}
		fmt.Println()
	}
	each := func(f func(i int) float64) []float64 {
		v := make([]float64, len(mods))
		for i := range mods {
			v[i] = f(i)
		}
		return v
	}
	row("guest time per hit p50", each(func(i int) float64 { return percentileOf(guest[i].all, 0.50) }), percentileOf(nativeHit, 0.50), "us", "native")
	row("guest time per hit p99", each(func(i int) float64 { return percentileOf(guest[i].all, 0.99) }), percentileOf(nativeHit, 0.99), "us", "native")
	row("guest time per hit mean", each(func(i int) float64 { return meanOf(guest[i].all) }), meanOf(nativeHit), "us", "native")
	// The same hits with each batch's flush spread over the batch's hits
	// (splitGuest), and those that made no flush.
	row("  flush amortised, p50", each(func(i int) float64 { return percentileOf(guest[i].amortised, 0.50) }), percentileOf(nativeHit, 0.50), "us", "native")
	row("  flush amortised, p99", each(func(i int) float64 { return percentileOf(guest[i].amortised, 0.99) }), percentileOf(nativeHit, 0.99), "us", "native")
	row("  hits without a flush, p99", each(func(i int) float64 { return percentileOf(guest[i].noFlush, 0.99) }), percentileOf(nativeHit, 0.99), "us", "native")
	fmt.Printf("%-34s", "  hits measured (flushes)")
	for i := range mods {
		fmt.Printf(" %12s", fmt.Sprintf("%d (%d)", len(guest[i].all), guest[i].flushes))
	}
	fmt.Printf(" %12d\n", len(nativeHit))
	row("fresh instance ready p50", each(func(i int) float64 { return percentileOf(startups[i], 0.50) }), one[0].p50, "ms", "a warm request, 1 conn")
	row("fresh instance ready p99", each(func(i int) float64 { return percentileOf(startups[i], 0.99) }), one[0].p99, "ms", "")
	row("resident memory per warm instance", each(func(i int) float64 { return rss[i] / 1024 }), 4, "MiB", "the 4 MiB goal")
	row("module size", each(func(i int) float64 { return float64(mods[i].size) / (1 << 20) }), float64(mods[len(mods)-1].size)/(1<<20), "MiB", "the last module")
	return nil
}

// benchPath is the pixel request every load sends.
const benchPath = "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"

// bareGIF is the baseline: the same bytes and headers, nothing else.
func bareGIF(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "image/gif")
	h.Set("Content-Length", strconv.Itoa(len(pixel.GIF)))
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	w.WriteHeader(http.StatusOK)
	w.Write(pixel.GIF)
}

func serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(l, h)
	return l.Addr().String(), nil
}

type result struct {
	rps, p50, p99    float64 // p50, p99 in ms
	requests, errors int64
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reReqs   = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// wrk runs one bounded load against url and parses its report.
func wrk(addrPath string, d time.Duration, conns, threads int) (result, error) {
	secs := max(1, int(d.Seconds()))
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", "http://"+addrPath).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	s := string(out)
	var r result
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reReqs.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if m := reSock.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.errors += n
		}
	}
	r.p50 = percentile(s, "50%")
	r.p99 = percentile(s, "99%")
	if r.rps == 0 {
		return r, fmt.Errorf("could not read wrk's report:\n%s", s)
	}
	return r, nil
}

// percentile reads a line like "     99%    1.23ms" of wrk's latency
// distribution and returns milliseconds.
func percentile(report, label string) float64 {
	for _, line := range strings.Split(report, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == label {
			return parseDuration(f[1])
		}
	}
	return 0
}

func parseDuration(s string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}} {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err == nil {
				return v * u.ms
			}
		}
	}
	return 0
}

func fmtNum(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmt.Sprintf("%.3f ms", v)
	case "us":
		return fmt.Sprintf("%.1f us", v*1000)
	case "MiB":
		return fmt.Sprintf("%.2f MiB", v)
	}
	return fmt.Sprintf("%.0f", v)
}
