package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/stack"
	"github.com/edgepixel/edgepixel/wrangler/worker"
)

// runWorkers is the workers section: the pixel on the Cloudflare worker
// in workerd (directly, not through `wrangler dev`, whose Node proxy
// would be what is measured), beside the bare net/http GIF server and the
// POP running the Fastly module, in the same run with the same load.
// Both edges deliver to one in-process sink that counts events. Also:
// the worker module's size as uploaded, and workerd's CPU per request
// (the whole process: its HTTP server, the JavaScript, the Go module and
// the delivery fetches; workerd's clocks stand still inside a request,
// so the worker cannot time itself).
func runWorkers(binDir, popWasm string, d time.Duration, conns, threads int) error {
	root, err := build.RepoRoot()
	if err != nil {
		return err
	}
	workerd, ok := deps.Workerd.Path(root)
	if !ok {
		return fmt.Errorf("%s", deps.Advice([]deps.Program{deps.Workerd}))
	}
	wasm := build.Worker.InDir(binDir)
	if _, err := os.Stat(wasm); err != nil {
		return fmt.Errorf("%v: build it with edgepixel-build -dir %s worker", err, binDir)
	}
	ctx := context.Background()
	sink, counts, err := countingSink()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "edgepixel-bench-workers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	popAddr, stopPop, err := benchPop(ctx, popWasm, sink, dir)
	if err != nil {
		return err
	}
	defer stopPop()
	bareAddr, err := serve(http.HandlerFunc(bareGIF))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: starting the worker in workerd ...\n")
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	wd, err := stack.StartWorkerd(sctx, stack.WorkerdOptions{Bin: workerd, Root: root, Wasm: wasm, Dir: filepath.Join(dir, "workerd"),
		Vars: map[string]string{worker.ConfigIngestURL: "http://" + sink + "/ingest", worker.ConfigSecret: "bench-secret", worker.ConfigPop: "bench"}})
	cancel()
	if err != nil {
		return err
	}
	defer wd.Stop()
	wdAddr := strings.TrimPrefix(wd.URL, "http://")

	path := "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"
	for _, a := range []string{wdAddr, popAddr, bareAddr} {
		if _, err := wrk(a+path, 2*time.Second, conns, threads); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // warm-up deliveries end
	counts.batched.Store(0)

	fmt.Fprintf(os.Stderr, "bench: pixel through the worker in workerd (%v, %d connections) ...\n", d, conns)
	cpu0 := procCPU(wd.Proc.Pid())
	wdRes, err := wrk(wdAddr+path, d, conns, threads)
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // deliveries in waitUntil end after the answers
	cpu := procCPU(wd.Proc.Pid()) - cpu0
	wdDelivered := counts.batched.Load()
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

	fmt.Printf("\nworkers: pixel, %d connections, %v per target, wrk %d threads\n\n", conns, d, threads)
	fmt.Printf("%-28s %14s %14s %14s %9s %9s\n", "figure", "workerd", "POP (wasm)", "bare net/http", "wd/POP", "wd/bare")
	row := func(name string, w, p, b float64, unit string) {
		fmt.Printf("%-28s %14s %14s %14s %9.2f %9.2f\n", name, fmtNum(w, unit), fmtNum(p, unit), fmtNum(b, unit), w/p, w/b)
	}
	row("requests/s", wdRes.rps, popRes.rps, bareRes.rps, "")
	row("latency p50", wdRes.p50, popRes.p50, bareRes.p50, "ms")
	row("latency p99", wdRes.p99, popRes.p99, bareRes.p99, "ms")
	if wdRes.requests > 0 {
		fmt.Printf("%-28s %11.1f us (whole workerd process, %d requests)\n", "workerd CPU per request", cpu.Seconds()*1e6/float64(wdRes.requests), wdRes.requests)
	}
	fmt.Printf("events delivered by the worker: %d for %d pixel requests wrk counted (+up to %d in flight at its stop; %d errors)\n",
		wdDelivered, wdRes.requests, conns, wdRes.errors)
	raw, gz, err := sizes(wasm)
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %11.2f MiB (%.2f MiB gzipped, as wrangler uploads it), %s\n", "worker module", float64(raw)/(1<<20), float64(gz)/(1<<20), build.Go)
	return nil
}

// benchPop serves the POP running the Fastly module, delivering to sink.
func benchPop(ctx context.Context, wasm, sink, dir string) (addr string, stop func(), err error) {
	manifest, _, err := benchManifest(dir, "fastly.toml", sink, "")
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: compiling %s and starting the POP ...\n", wasm)
	p, err := pop.New(ctx, pop.Config{
		WasmPath: wasm, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
		Stdout: io.Discard, Stderr: os.Stderr,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", nil, err
	}
	addr, err = serve(p)
	return addr, func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p.Shutdown(sctx)
		cancel()
	}, err
}

// procCPU is the user plus system CPU time a process has used so far
// (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields count from its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// sizes returns a file's size and its gzipped size.
func sizes(path string) (raw, gz int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return int64(len(b)), int64(buf.Len()), nil
}
