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
// POP running the Fastly module, in the same run with the same load. The
// worker runs built by TinyGo (what ships) and by standard Go, each
// batching events across requests (the default, worker.DefaultBatchWait),
// and the TinyGo build once more with each request delivering its own
// events (batch_wait_ms=0). All deliver to one in-process sink that
// counts events and POSTs. Also: each worker module's size as uploaded, and workerd's CPU
// per request (the whole process: its HTTP server, the JavaScript, the
// Go module and the delivery fetches; workerd's clocks stand still
// inside a request, so the worker cannot time itself).
func runWorkers(binDir, popWasm string, d time.Duration, conns, threads int) error {
	root, err := build.RepoRoot()
	if err != nil {
		return err
	}
	workerd, ok := deps.Workerd.Path(root)
	if !ok {
		return fmt.Errorf("%s", deps.Advice([]deps.Program{deps.Workerd}))
	}
	type variant struct {
		name, wasm string
		tc         build.Toolchain
		vars       map[string]string
		wd         *stack.Workerd
		res        result
		cpu        time.Duration
		events     int64
		posts      int64
		settle     time.Duration // from wrk's end to the last delivery
	}
	variants := []*variant{
		{name: "workerd TinyGo", wasm: build.Worker.InDir(binDir), tc: build.TinyGo},
		{name: "workerd Go", wasm: filepath.Join(binDir, WorkerGoFile), tc: build.Go},
		{name: "TinyGo, unbatched", wasm: build.Worker.InDir(binDir), tc: build.TinyGo, vars: map[string]string{worker.ConfigBatchWait: "0"}},
	}
	for _, v := range variants {
		if _, err := os.Stat(v.wasm); err != nil {
			return fmt.Errorf("%v: build it with edgepixel-build -toolchain %s -o %s worker", err, v.tc, v.wasm)
		}
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
	path := "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2Fa&ref=https%3A%2F%2Fnews.ycombinator.com%2F"
	for i, v := range variants {
		fmt.Fprintf(os.Stderr, "bench: starting the worker in workerd (%s) ...\n", v.name)
		vars := map[string]string{worker.ConfigIngestURL: "http://" + sink + "/ingest", worker.ConfigSecret: "bench-secret", worker.ConfigPop: "bench"}
		for k, val := range v.vars {
			vars[k] = val
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		v.wd, err = stack.StartWorkerd(sctx, stack.WorkerdOptions{Bin: workerd, Root: root, Wasm: v.wasm, Dir: filepath.Join(dir, fmt.Sprintf("workerd-%d", i)), Vars: vars})
		cancel()
		if err != nil {
			return err
		}
		defer v.wd.Stop()
	}
	addr := func(v *variant) string { return strings.TrimPrefix(v.wd.URL, "http://") }
	for _, a := range []string{addr(variants[0]), addr(variants[1]), addr(variants[2]), popAddr, bareAddr} {
		if _, err := wrk(a+path, 2*time.Second, conns, threads); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // warm-up deliveries end

	for _, v := range variants {
		counts.batched.Store(0)
		counts.posts.Store(0)
		fmt.Fprintf(os.Stderr, "bench: pixel through the worker in workerd, %s (%v, %d connections) ...\n", v.name, d, conns)
		cpu0 := procCPU(v.wd.Proc.Pid())
		if v.res, err = wrk(addr(v)+path, d, conns, threads); err != nil {
			return err
		}
		// Deliveries in waitUntil end after the answers: wait until the
		// sink has had nothing new for a second (at most 20 s).
		t0, last, lastN := time.Now(), time.Now(), counts.posts.Load()
		for time.Since(last) < time.Second && time.Since(t0) < 20*time.Second {
			time.Sleep(100 * time.Millisecond)
			if n := counts.posts.Load(); n != lastN {
				last, lastN = time.Now(), n
			}
		}
		v.settle = last.Sub(t0)
		v.cpu = procCPU(v.wd.Proc.Pid()) - cpu0
		v.events, v.posts = counts.batched.Load(), counts.posts.Load()
	}
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
	fmt.Printf("%-22s %12s %12s %12s %12s %12s %8s %8s\n", "figure", variants[0].name, variants[1].name, variants[2].name, "POP (wasm)", "bare", "TG/POP", "TG/bare")
	row := func(name string, f func(r result) float64, unit string) {
		w, p, b := f(variants[0].res), f(popRes), f(bareRes)
		fmt.Printf("%-22s %12s %12s %12s %12s %12s %8.2f %8.2f\n", name, fmtNum(w, unit), fmtNum(f(variants[1].res), unit), fmtNum(f(variants[2].res), unit), fmtNum(p, unit), fmtNum(b, unit), w/p, w/b)
	}
	row("requests/s", func(r result) float64 { return r.rps }, "")
	row("latency p50", func(r result) float64 { return r.p50 }, "ms")
	row("latency p99", func(r result) float64 { return r.p99 }, "ms")
	fmt.Println()
	for _, v := range variants {
		if v.res.requests == 0 {
			continue
		}
		perPost := 0.0
		if v.posts > 0 {
			perPost = float64(v.events) / float64(v.posts)
		}
		fmt.Printf("%-22s CPU %7.1f us per request (whole workerd process, deliveries included); %d events delivered in %d POSTs (%.1f per POST), the last %v after the load, for %d requests wrk counted (+up to %d in flight at its stop; %d errors)\n",
			v.name, v.cpu.Seconds()*1e6/float64(v.res.requests), v.events, v.posts, perPost, v.settle.Round(10*time.Millisecond), v.res.requests, conns, v.res.errors)
	}
	fmt.Println()
	var tgSize int64
	for _, v := range variants[:2] {
		raw, gz, err := sizes(v.wasm)
		if err != nil {
			return err
		}
		if v.tc == build.TinyGo {
			tgSize = gz
		}
		fmt.Printf("%-22s %7.2f MiB (%.2f MiB gzipped, as wrangler uploads it)", "worker module, "+string(v.tc), float64(raw)/(1<<20), float64(gz)/(1<<20))
		if v.tc == build.Go && tgSize > 0 {
			fmt.Printf("; TinyGo's is %.2fx its gzipped size", float64(tgSize)/float64(gz))
		}
		fmt.Println()
	}
	return nil
}

// WorkerGoFile is the standard-Go build of the worker in the bin
// directory (`make bench` builds it there beside TinyGo's).
const WorkerGoFile = "edgepixel-worker-go.wasm"

// benchPop serves the POP running the Fastly module, delivering to sink.
func benchPop(ctx context.Context, wasm, sink, dir string) (addr string, stop func(), err error) {
	manifest, _, err := benchManifest(dir, "fastly.toml", sink, "")
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: compiling %s and starting the POP ...\n", wasm)
	p, err := pop.New(ctx, pop.Config{
		WasmPath: wasm, Manifest: manifest, CompileCacheDir: filepath.Join(dir, "cache"),
		Stdout: io.Discard, Stderr: guestStderr,
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
