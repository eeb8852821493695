// Command edgepixel-bench measures edgepixel against baselines in one run,
// with one load generator, and prints each figure beside its baseline.
// Sections: pop (below), aggregator (aggregator.go), hostile (hostile.go),
// durable (durable.go).
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
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/stack"
)

func main() {
	var (
		binDir   = flag.String("bin", ".edgepixel/bin", "where `make build` put edgepixel.wasm")
		duration = flag.Duration("duration", 10*time.Second, "load duration per target")
		conns    = flag.Int("connections", 32, "concurrent connections")
		threads  = flag.Int("threads", 2, "wrk threads")
		sections = flag.String("sections", "pop,aggregator,hostile,durable", "which sections to run")
		agg      aggOptions
		hostile  hostileOptions
	)
	flag.DurationVar(&agg.duration, "agg-duration", 8*time.Second, "aggregator: load duration (the loader then drains what was acknowledged)")
	flag.IntVar(&agg.senders, "agg-senders", 16, "aggregator: concurrent batch senders")
	flag.IntVar(&agg.batch, "agg-batch", 500, "aggregator: events per batch (the edge's batch_max_events)")
	flag.DurationVar(&hostile.duration, "hostile-duration", 3*time.Second, "hostile: normal load measured during each attack")
	flag.IntVar(&hostile.workers, "hostile-clients", 4, "hostile: normal keep-alive clients")
	probe := flag.Int(rssProbeFlag, 0, "internal: run as the resident-memory probe with this many instances")
	probeManifest := flag.String("rss-manifest", "", "internal: the probe's fastly.toml")
	probeCache := flag.String("rss-cache", "", "internal: the probe's compile cache")
	probeWasm := flag.String("rss-wasm", "", "internal: the probe's module")
	flag.Parse()
	if *probe > 0 {
		if err := rssProbe(*probe, *probeWasm, *probeManifest, *probeCache); err != nil {
			fmt.Fprintln(os.Stderr, "bench: rss probe:", err)
			os.Exit(1)
		}
		return
	}
	agg.binDir, hostile.binDir = *binDir, *binDir
	if strings.Contains(*sections, "pop") {
		if err := run(stack.InDir(*binDir).Wasm, *duration, *conns, *threads); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "durable") { // durable.go
		if err := runDurable(stack.InDir(*binDir).Wasm, *duration, *conns, *threads); err != nil {
			fmt.Fprintln(os.Stderr, "bench: durable modes:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*sections, "aggregator") {
		if err := runAggregator(agg); err != nil {
			fmt.Fprintln(os.Stderr, "bench: aggregator:", err)
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

func run(wasm string, d time.Duration, conns, threads int) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: run `make deps-bench` (apt-get install wrk)")
	}
	ctx := context.Background()

	// The sink stands in for the aggregator and counts delivered events.
	var delivered atomic.Int64
	sink, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n, err := wire.Count(b); err == nil {
			delivered.Add(int64(n))
		}
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "edgepixel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("bench-secret"), 0o600)
	manifestPath := filepath.Join(dir, "fastly.toml")
	os.WriteFile(manifestPath, []byte(fmt.Sprintf(`manifest_version = 3
name = "edgepixel-bench"
[local_server.backends.aggregator]
url = "http://%s"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "bench"
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = %q }]
`, sink, secretFile)), 0o644)
	manifest, err := fastlytoml.Load(manifestPath)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: compiling %s and starting the POP ...\n", wasm)
	p, err := pop.New(ctx, pop.Config{
		WasmPath: wasm, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
		Stdout: io.Discard, Stderr: os.Stderr,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	popAddr, err := serve(p)
	if err != nil {
		return err
	}
	bareAddr, err := serve(http.HandlerFunc(bareGIF))
	if err != nil {
		return err
	}

	path := "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"
	// Warm both (the POP's instances start lazily on first traffic).
	for _, a := range []string{popAddr, bareAddr} {
		if _, err := wrk(a+path, 2*time.Second, conns, threads); err != nil {
			return err
		}
	}
	// Idle instances exit after the batch age and flush; wait for that so
	// warm-up events are not counted as the measured run's.
	time.Sleep(time.Second)
	delivered.Store(0)

	fmt.Fprintf(os.Stderr, "bench: pixel through the POP (%v, %d connections) ...\n", d, conns)
	popRes, err := wrk(popAddr+path, d, conns, threads)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: pixel from bare net/http (%v, %d connections) ...\n", d, conns)
	bareRes, err := wrk(bareAddr+path, d, conns, threads)
	if err != nil {
		return err
	}
	// One connection: the latency of a single visitor with nothing queued.
	fmt.Fprintf(os.Stderr, "bench: both again with 1 connection ...\n")
	pop1, err := wrk(popAddr+path, d/2, 1, 1)
	if err != nil {
		return err
	}
	bare1, err := wrk(bareAddr+path, d/2, 1, 1)
	if err != nil {
		return err
	}
	// Let the POP's instances flush what they buffered during the run.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	p.Shutdown(sctx)
	cancel()

	fmt.Printf("\npixel: %d connections, %v per target, wrk %d threads, GOMAXPROCS=%d\n\n", conns, d, threads, runtime.GOMAXPROCS(0))
	fmt.Printf("%-28s %14s %14s %8s\n", "figure", "POP (wasm)", "bare net/http", "ratio")
	row := func(name string, a, b float64, unit string) {
		fmt.Printf("%-28s %14s %14s %8.2f\n", name, fmtNum(a, unit), fmtNum(b, unit), a/b)
	}
	row("requests/s", popRes.rps, bareRes.rps, "")
	row("latency p50", popRes.p50, bareRes.p50, "ms")
	row("latency p99", popRes.p99, bareRes.p99, "ms")
	fmt.Printf("%-28s %14.3f\n", "p99 difference (ms)", popRes.p99-bareRes.p99)
	row("requests/s, 1 connection", pop1.rps, bare1.rps, "")
	row("latency p50, 1 connection", pop1.p50, bare1.p50, "ms")
	row("latency p99, 1 connection", pop1.p99, bare1.p99, "ms")
	// wrk counts only responses completed before it stops; the requests it
	// had in flight (up to one per connection) were served and delivered too.
	fmt.Printf("\nevents delivered by the POP: %d for %d pixel requests wrk counted, +up to %d in flight at its stops (%d errors)\n",
		delivered.Load(), popRes.requests+pop1.requests, conns+1, popRes.errors+pop1.errors)

	fmt.Fprintf(os.Stderr, "bench: cold start, %d fresh instances ...\n", coldStarts)
	startups, err := measureColdStart(ctx, wasm, manifest, filepath.Join(dir, "cache"))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: resident memory per warm instance ...\n")
	rss, err := warmInstanceRSS(wasm, manifestPath, filepath.Join(dir, "cache"))
	if err != nil {
		return err
	}
	fmt.Printf("\ncold start: one fresh instance of the edge module, compiled code from the disk cache, %d samples\n\n", len(startups))
	fmt.Printf("%-28s %14s %14s %8s\n", "figure", "fresh instance", "warm request", "ratio")
	row("instance ready p50", percentileOf(startups, 0.50), pop1.p50, "ms")
	row("instance ready p99", percentileOf(startups, 0.99), pop1.p99, "ms")
	fmt.Printf("%-28s %11.1f MiB\n", "resident memory per warm instance", rss/1024)
	return nil
}

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
	if unit == "ms" {
		return fmt.Sprintf("%.3f ms", v)
	}
	return fmt.Sprintf("%.0f", v)
}
