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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/shared/wire"
)

const journalEndpoint = "edgepixel_journal"

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
	var batched, lines atomic.Int64
	sink, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n, err := wire.Count(b); err == nil {
			batched.Add(int64(n))
		} else {
			lines.Add(int64(strings.Count(string(b), "\n")))
		}
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		return err
	}
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("bench-secret"), 0o600)
	path := "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"
	type res struct{ one, many result }
	results := make([]res, len(durableModes))
	for i, mode := range durableModes {
		journal := ""
		if mode.durability != "" {
			journal = fmt.Sprintf("journal = %q\n", journalEndpoint)
		}
		manifestPath := filepath.Join(dir, fmt.Sprintf("fastly-%d.toml", i))
		os.WriteFile(manifestPath, []byte(fmt.Sprintf(`manifest_version = 3
name = "edgepixel-bench"
[local_server.backends.aggregator]
url = "http://%s"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "bench"
%s[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = %q }]
`, sink, journal, secretFile)), 0o644)
		manifest, err := fastlytoml.Load(manifestPath)
		if err != nil {
			return err
		}
		var eps []logsink.Endpoint
		if mode.durability != "" {
			eps = []logsink.Endpoint{{Name: journalEndpoint, Kind: logsink.HTTP, URL: "http://" + sink + "/ingest/ndjson",
				Queue: filepath.Join(dir, fmt.Sprintf("queue-%d", i)), Durability: mode.durability, Period: 250 * time.Millisecond}}
		}
		fmt.Fprintf(os.Stderr, "bench: durable modes: %s ...\n", mode.name)
		p, err := pop.New(ctx, pop.Config{
			WasmPath: wasm, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
			Stdout: io.Discard, Stderr: os.Stderr, LogEndpoints: eps,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		addr, err := serve(p)
		if err != nil {
			return err
		}
		if _, err := wrk(addr+path, 2*time.Second, conns, threads); err != nil { // warm up
			return err
		}
		if results[i].one, err = wrk(addr+path, d/2, 1, 1); err != nil {
			return err
		}
		if results[i].many, err = wrk(addr+path, d/2, conns, threads); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.Shutdown(sctx)
		cancel()
	}
	base := results[0]
	fmt.Printf("\ndurable modes: each hit's line written to a disk-queued log endpoint before its answer, vs batches only; %v per load, wrk %d threads\n\n", d/2, threads)
	fmt.Printf("%-28s %14s %14s %8s\n", "figure", "mode", "batches only", "ratio")
	row := func(name string, a, b float64) {
		fmt.Printf("%-28s %14s %14s %8.2f\n", name, fmtNum(a, "ms"), fmtNum(b, "ms"), a/b)
	}
	for i, mode := range durableModes[1:] {
		r := results[i+1]
		fmt.Printf("%s:\n", mode.name)
		row("  latency p50, 1 connection", r.one.p50, base.one.p50)
		row("  latency p99, 1 connection", r.one.p99, base.one.p99)
		row(fmt.Sprintf("  latency p50, %d connections", conns), r.many.p50, base.many.p50)
		row(fmt.Sprintf("  latency p99, %d connections", conns), r.many.p99, base.many.p99)
		fmt.Printf("  %-26s %11.0f us %11.0f us (1 connection p50, p99)\n", "added latency", 1000*(r.one.p50-base.one.p50), 1000*(r.one.p99-base.one.p99))
		fmt.Printf("  %-26s %11.0f us %11.0f us (%d connections p50, p99)\n", "", 1000*(r.many.p50-base.many.p50), 1000*(r.many.p99-base.many.p99), conns)
		row("  requests/s", r.many.rps, base.many.rps)
	}
	fmt.Printf("\nevents delivered: %d in batches, %d as journal lines (the journal modes deliver by lines only)\n", batched.Load(), lines.Load())
	return nil
}
