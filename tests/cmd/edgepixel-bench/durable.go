package main

// Durable modes: what the journal costs a hit. The same edge module under
// the same POP, delivering by signed batches only (the baseline), and
// writing each hit's line before its answer to a log endpoint queued on
// disk, at durability write (handed to the kernel: survives the POP's
// death) and fsync (group-committed fsync: survives a machine crash).
// Latency at one connection is a single visitor's added wait; at many
// connections, it includes queueing behind the fsyncs of other hits.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/edge/storekeys"
)

type durableMode struct {
	name       string
	durability string // "" = no journal (the baseline)
}

var durableModes = []durableMode{{"batches only", ""}, {"journal write", logsink.DurabilityWrite}, {"journal fsync", logsink.DurabilityFsync}}

// runDurable prints the durable modes' latency beside the baseline's.
func runDurable(wasm string, d time.Duration, conns, threads int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgepixel-bench-durable-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// One sink stands in for the aggregator: batches and NDJSON lines.
	sink, counts, err := countingSink()
	if err != nil {
		return err
	}
	path := "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"
	addrs := make([]string, len(durableModes))
	pops := make([]*pop.Server, len(durableModes))
	for i, mode := range durableModes {
		journal := ""
		if mode.durability != "" {
			journal = fmt.Sprintf("journal = %q\n", storekeys.JournalLogEndpoint)
		}
		manifest, _, err := benchManifest(dir, fmt.Sprintf("fastly-%d.toml", i), sink, journal)
		if err != nil {
			return err
		}
		var eps []logsink.Endpoint
		if mode.durability != "" {
			eps = []logsink.Endpoint{{Name: storekeys.JournalLogEndpoint, Kind: logsink.HTTP, URL: "http://" + sink + "/ingest/ndjson",
				Queue: filepath.Join(dir, fmt.Sprintf("queue-%d", i)), Durability: mode.durability, Period: 250 * time.Millisecond}}
		}
		p, err := pop.New(ctx, pop.Config{
			WasmPath: wasm, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
			Stdout: io.Discard, Stderr: guestStderr, LogEndpoints: eps,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			p.Shutdown(sctx)
			cancel()
		}()
		pops[i] = p
		if addrs[i], err = serve(p); err != nil {
			return err
		}
		if _, err := wrk(addrs[i]+path, 2*time.Second, conns, threads); err != nil { // warm up
			return err
		}
	}
	// One visitor at a time, the modes taking turns request by request, so
	// that whatever else the machine does weighs on each alike.
	fmt.Fprintf(os.Stderr, "bench: durable modes: one visitor at a time, %v ...\n", d/2)
	one := make([]latencies, len(durableModes))
	clients := make([]*http.Client, len(durableModes))
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	for end := time.Now().Add(d / 2); time.Now().Before(end); {
		for i := range durableModes {
			t0 := time.Now()
			resp, err := clients[i].Get("http://" + addrs[i] + path)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			one[i].add(time.Since(t0))
		}
	}
	// The journal's write hostcall as the host timed it, during the one
	// visitor phase and then under load.
	metricsOf := func(i int) string {
		var b strings.Builder
		pops[i].WritePrometheus(&b)
		return b.String()
	}
	afterOne := make([]string, len(durableModes))
	for i := range durableModes {
		afterOne[i] = metricsOf(i)
	}
	many := make([]result, len(durableModes))
	for i, mode := range durableModes {
		fmt.Fprintf(os.Stderr, "bench: durable modes: %s, %d connections, %v ...\n", mode.name, conns, d/2)
		if many[i], err = wrk(addrs[i]+path, d/2, conns, threads); err != nil {
			return err
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\ndurable modes: each hit's line written to a disk-queued log endpoint before its answer, vs batches only\n")
	if f := strings.Fields(string(load)); len(f) > 0 {
		fmt.Printf("(machine load average %s over the last minute: the tails are the machine's as much as the journal's)\n", f[0])
	}
	fmt.Printf("(1 visitor: %d requests per mode, the modes taking turns; %d connections: wrk %v per mode)\n\n", one[0].n(), conns, d/2)
	fmt.Printf("%-30s %14s %14s %8s\n", "figure", "mode", "batches only", "ratio")
	row := func(name string, a, b float64, unit string) {
		fmt.Printf("%-30s %14s %14s %8.2f\n", name, fmtNum(a, unit), fmtNum(b, unit), a/b)
	}
	for i, mode := range durableModes[1:] {
		o, b := &one[i+1], &one[0]
		m, bm := many[i+1], many[0]
		fmt.Printf("%s:\n", mode.name)
		row("  latency p50, 1 visitor", o.pct(50), b.pct(50), "ms")
		row("  latency p99, 1 visitor", o.pct(99), b.pct(99), "ms")
		fmt.Printf("  %-28s %11.0f us %11.0f us\n", "added p50, p99, 1 visitor", 1000*(o.pct(50)-b.pct(50)), 1000*(o.pct(99)-b.pct(99)))
		row(fmt.Sprintf("  latency p50, %d conns", conns), m.p50, bm.p50, "ms")
		row(fmt.Sprintf("  latency p99, %d conns", conns), m.p99, bm.p99, "ms")
		row(fmt.Sprintf("  requests/s, %d conns", conns), m.rps, bm.rps, "")
		const hist = "edgepixel_pop_log_write_seconds"
		p50, p99, n := histQuantiles(hist, afterOne[i+1], "")
		fmt.Printf("  %-28s %11s %11s (p50, p99; host-timed, %d writes, 1 visitor)\n", "journal write hostcall", "<= "+fmtDur(p50), "<= "+fmtDur(p99), n)
		p50, p99, n = histQuantiles(hist, metricsOf(i+1), afterOne[i+1])
		fmt.Printf("  %-28s %11s %11s (p50, p99; host-timed, %d writes, %d conns)\n", "", "<= "+fmtDur(p50), "<= "+fmtDur(p99), n, conns)
	}
	fmt.Printf("\nevents delivered: %d in batches, %d as journal lines (the journal modes deliver by lines only)\n", counts.batched.Load(), counts.lines.Load())
	return nil
}

// histQuantiles reads the Prometheus histogram name from metrics text,
// less what it held in the earlier text before (may be ""), and returns
// the upper bounds of the buckets holding its p50 and p99, and its count.
func histQuantiles(name, metrics, before string) (p50, p99 float64, n uint64) {
	bs := histBuckets(name, metrics)
	if prev := histBuckets(name, before); len(prev) == len(bs) {
		for i := range bs {
			bs[i].cum -= prev[i].cum
		}
	}
	if len(bs) == 0 {
		return 0, 0, 0
	}
	n = bs[len(bs)-1].cum
	q := func(p float64) float64 {
		for _, b := range bs {
			if float64(b.cum) >= p*float64(n) {
				return b.le
			}
		}
		return math.Inf(1)
	}
	return q(0.5), q(0.99), n
}

type bucket struct {
	le  float64
	cum uint64
}

func histBuckets(name, metrics string) []bucket {
	var bs []bucket
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndex(line, " ")
		if i < 0 || j < 0 {
			continue
		}
		leS := line[i+4 : strings.Index(line[i+4:], `"`)+i+4]
		le, err := strconv.ParseFloat(leS, 64)
		if leS == "+Inf" {
			le, err = math.Inf(1), nil
		}
		cum, err2 := strconv.ParseUint(line[j+1:], 10, 64)
		if err == nil && err2 == nil {
			bs = append(bs, bucket{le, cum})
		}
	}
	return bs
}

func fmtDur(sec float64) string {
	switch {
	case math.IsInf(sec, 1):
		return "+Inf"
	case sec < 1e-3:
		return fmt.Sprintf("%.0f us", sec*1e6)
	}
	return fmt.Sprintf("%.0f ms", sec*1e3)
}
