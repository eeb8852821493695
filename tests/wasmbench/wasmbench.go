// Package wasmbench measures the edge's enrichment packages inside
// WebAssembly, built by standard Go (GOOS=wasip1) and by TinyGo, run under
// wazero: the CPU cost per hit of all enrichment together and of each
// package, the module's size and an instance's start, each beside a
// baseline module without enrichment (./guest/baseline). The work is
// ./corpus; the guest program is ./guest.
//
// Costs are CPU time, not wall time: the host runs each guest on one
// locked OS thread and gives it that thread's CPU clock
// (CLOCK_THREAD_CPUTIME_ID on Linux; elsewhere the wall clock) as its
// monotonic clock, so other processes on a busy machine do not inflate
// the figures. The cost of reading the clock is measured in the guest and
// subtracted. The figures are printed by `make bench` (section "enrich")
// and logged by this package's test:
//
//	go test -run Wasm -v ./tests/wasmbench/
//
// TinyGo is used when the project's TinyGo is at hand (see Toolchains).
package wasmbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// Packages of the guest and its baseline, relative to the module root.
const (
	GuestPkg    = "./tests/wasmbench/guest"
	BaselinePkg = "./tests/wasmbench/guest/baseline"
	// FloorPkg is a POP guest that only answers (the guestcpu section of
	// edgepixel-bench measures it beside the edge module).
	FloorPkg = "./tests/wasmbench/guest/floor"
)

// Toolchain builds a guest package into a .wasm file with the project's
// one build recipe (tests/build).
type Toolchain struct {
	Name string // "go" or "tinygo"
	c    *build.Compiler
}

// Build compiles pkg (a package path relative to the module root) to the
// .wasm file out.
func (tc Toolchain) Build(pkg, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(tc.c.Bin, tc.c.Args(pkg, out)...)
	cmd.Dir, cmd.Env = root, tc.c.Env(os.Environ())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", tc.c.Bin, strings.Join(cmd.Args[1:], " "), err, out)
	}
	return nil
}

// Toolchains returns standard Go, and TinyGo when the project's TinyGo is
// at hand (on PATH, or built under .edgepixel by make; it is not built
// here, which takes minutes); note says why TinyGo is missing, "" when it
// is there.
func Toolchains() (tcs []Toolchain, note string) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err.Error()
	}
	ctx := context.Background()
	goc, err := build.Go.Compiler(ctx, root, nil)
	if err != nil {
		return nil, err.Error()
	}
	tcs = []Toolchain{{"go", goc}}
	if _, err := exec.LookPath("tinygo"); err != nil {
		if _, err := os.Stat(filepath.Join(build.TinyGoDir(root), "root", "build", "tinygo")); err != nil {
			return tcs, "no TinyGo on PATH or under .edgepixel (make wasm builds it): standard Go only"
		}
	}
	tgc, err := build.TinyGo.Compiler(ctx, root, progress.New(io.Discard))
	if err != nil {
		return tcs, "TinyGo: " + err.Error()
	}
	return append(tcs, Toolchain{"tinygo", tgc}), ""
}

// ModuleRoot returns the directory of the go.mod in use.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the edgepixel module: run from the checkout")
	}
	return filepath.Dir(gomod), nil
}

// Guest is a compiled module under its own wazero runtime.
type Guest struct {
	Size int64 // bytes of the .wasm file
	r    wazero.Runtime
	mod  wazero.CompiledModule
}

// Load compiles the .wasm file at path. Close releases it.
func Load(path string) (*Guest, error) {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := wazero.NewRuntime(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.CompileModule(ctx, bin)
	if err != nil {
		r.Close(ctx)
		return nil, err
	}
	return &Guest{Size: int64(len(bin)), r: r, mod: mod}, nil
}

// Close releases the guest's runtime.
func (g *Guest) Close() { g.r.Close(context.Background()) }

// Run instantiates the guest with args, which runs its main to the end,
// on one locked OS thread whose CPU clock is the guest's monotonic clock.
// It returns the guest's standard output and the CPU time instantiation
// and main took.
//
// The host's garbage collector is off while the guest runs (after a
// collection). A collection stops each goroutine to scan its stack, and a
// goroutine in compiled wasm code cannot stop until the code calls the
// host: the Go runtime signals its thread again every few microseconds
// until then (runtime.suspendG), and handling the signals is CPU time on
// the guest's clock. A guest whose main is one long call (the corpus,
// pass after pass) took several times its CPU time in runs a collection
// began during. A POP's hit calls the host within microseconds, so there
// a collection costs the guest a few signals.
func (g *Guest) Run(args ...string) (string, time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var out, errOut bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").WithArgs(append([]string{"guest"}, args...)...).
		WithStdout(&out).WithStderr(&errOut).WithSysWalltime().WithSysNanosleep().
		WithNanotime(threadCPU, sys.ClockResolution(1))
	start := threadCPU()
	m, err := g.r.InstantiateModule(context.Background(), g.mod, cfg)
	d := time.Duration(threadCPU() - start)
	var exit *sys.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
		return "", d, fmt.Errorf("guest %v: %v\n%s", args, err, errOut.String())
	}
	if m != nil {
		m.Close(context.Background())
	}
	return out.String(), d, nil
}

// Figures are one toolchain's measurements, each beside its baseline
// where there is one.
type Figures struct {
	Toolchain string
	// Module sizes in bytes: with enrichment, and the baseline's.
	Size, BaselineSize int64
	// Instance start (instantiation and an empty main) in CPU time, median
	// of StartRuns: with enrichment, and the baseline's.
	Start, BaselineStart time.Duration
	// CPU time of all enrichment of one hit, over every hit of Passes
	// passes of the corpus, less the clock's own cost.
	HitCost
	// Cold is the same over corpus.ColdPasses(Passes), each hit with the
	// caches cold (ColdSweep).
	Cold         HitCost
	Passes, Hits int
	// Clock is the median cost of one clock reading pair, subtracted above.
	Clock time.Duration
	// Allocs and AllocBytes per hit, all enrichment.
	Allocs, AllocBytes uint64
	// Each package's mean CPU time per hit, in the guest's order.
	Packages []Package
	// HeapSys is the guest's heap after the run, bytes.
	HeapSys uint64
}

// Package is one enrichment package's mean cost per hit.
type Package struct {
	Name string
	Mean time.Duration
}

// StartRuns is how many instances Measure starts per module.
const StartRuns = 21

// ColdSweep is how many bytes of memory the cold figures (Figures.Cold,
// MeasureNative) write, one byte a 64-byte cache line, before each hit
// (corpus.Evict): more than a server core's L2 cache holds, so that the
// hit starts with its code and tables fetched again from L3 (or memory,
// where L3 is smaller), as a POP's instance takes a hit after the
// connections' goroutines, the kernel and other instances have run on
// its core.
const ColdSweep = 8 << 20

// Measure builds the guest and its baseline with tc into dir, checks that
// the guest computes what the packages compute natively (want is
// corpus.Digest's output line), and measures them.
func Measure(tc Toolchain, dir string, passes int, want string) (Figures, error) {
	f := Figures{Toolchain: tc.Name, Passes: passes}
	wasm, base := filepath.Join(dir, tc.Name+"-guest.wasm"), filepath.Join(dir, tc.Name+"-baseline.wasm")
	if err := tc.Build(GuestPkg, wasm); err != nil {
		return f, err
	}
	if err := tc.Build(BaselinePkg, base); err != nil {
		return f, err
	}
	g, err := Load(wasm)
	if err != nil {
		return f, err
	}
	defer g.Close()
	b, err := Load(base)
	if err != nil {
		return f, err
	}
	defer b.Close()
	f.Size, f.BaselineSize = g.Size, b.Size

	got, _, err := g.Run("digest")
	if err != nil {
		return f, err
	}
	if got != want {
		return f, fmt.Errorf("%s guest computes %q, natively %q", tc.Name, got, want)
	}
	if f.Start, err = medianStart(g); err != nil {
		return f, err
	}
	if f.BaselineStart, err = medianStart(b); err != nil {
		return f, err
	}

	out, _, err := g.Run("bench", strconv.Itoa(passes), strconv.Itoa(ColdSweep))
	if err != nil {
		return f, err
	}
	return f, parseBench(&f, out)
}

func medianStart(g *Guest) (time.Duration, error) {
	ds := make([]time.Duration, 0, StartRuns)
	for range StartRuns {
		_, d, err := g.Run("start")
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// parseBench reads the guest's "bench" output into f.
func parseBench(f *Figures, out string) error {
	var timer, hits, cold []int64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return fmt.Errorf("guest printed %q", line)
		}
		nums := make([]int64, 0, len(fields)-1)
		for _, s := range fields[1:] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				break // a unit
			}
			nums = append(nums, v)
		}
		if len(nums) == 0 {
			return fmt.Errorf("guest printed %q", line)
		}
		switch name := fields[0]; name {
		case "timer":
			timer = nums
		case "hit":
			hits = nums
		case "cold":
			cold = nums
		case "allocs":
			f.Allocs = uint64(nums[0])
		case "alloc_bytes":
			f.AllocBytes = uint64(nums[0])
		case "heap_sys":
			f.HeapSys = uint64(nums[0])
		default:
			f.Packages = append(f.Packages, Package{name, time.Duration(nums[0])})
		}
	}
	if len(timer) == 0 || len(hits) == 0 || len(cold) == 0 {
		return fmt.Errorf("guest printed no samples:\n%s", out)
	}
	slices.Sort(timer)
	clock := timer[len(timer)/2]
	f.Clock, f.Hits = time.Duration(clock), len(hits)
	f.HitCost, f.Cold = summarise(hits, clock), summarise(cold, clock)
	for i := range f.Packages {
		f.Packages[i].Mean = max(f.Packages[i].Mean-time.Duration(clock)/time.Duration(len(hits)), 0)
	}
	return nil
}

// HitCost is the distribution of the cost of all enrichment of one hit.
type HitCost struct {
	P50, P99, Max time.Duration
	// Slowest is the median cost of the corpus hit whose median is
	// highest (Hits[SlowestHit]): the dearest kind of hit without the
	// outliers a busy machine adds to P99.
	Slowest    time.Duration
	SlowestHit int
}

// summarise reads samples taken hit by hit over passes of the corpus
// (sample i is of corpus.Hits[i%len]) less clock. It sorts samples.
func summarise(samples []int64, clock int64) HitCost {
	var c HitCost
	n := len(corpus.Hits)
	for h := range n {
		var of []int64
		for i := h; i < len(samples); i += n {
			of = append(of, samples[i])
		}
		slices.Sort(of)
		if m := time.Duration(max(of[len(of)/2]-clock, 0)); m > c.Slowest {
			c.Slowest, c.SlowestHit = m, h
		}
	}
	slices.Sort(samples)
	at := func(q float64) time.Duration {
		return time.Duration(max(samples[int(q*float64(len(samples)-1))]-clock, 0))
	}
	c.P50, c.P99, c.Max = at(0.50), at(0.99), at(1)
	return c
}

// MeasureNative is the baseline of the per-hit figures: all enrichment of
// each corpus hit compiled natively for this host, timed the same way
// (thread CPU time, less the clock's own cost) over passes of the corpus,
// and over corpus.ColdPasses(passes) with the caches cold (ColdSweep).
func MeasureNative(passes int) (hot, cold HitCost) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	timer := make([]int64, 1000)
	for i := range timer {
		t := threadCPU()
		timer[i] = threadCPU() - t
	}
	slices.Sort(timer)
	// Each hit of n passes, sw evicted before each (nil: none).
	timed := func(n int, sw []byte) []int64 {
		per := make([]int64, 0, n*len(corpus.Hits))
		for range n {
			for i := range corpus.Hits {
				corpus.Evict(sw)
				t := threadCPU()
				nativeSink = corpus.Enrich(&corpus.Hits[i])
				per = append(per, threadCPU()-t)
			}
		}
		return per
	}
	clock := timer[len(timer)/2]
	return summarise(timed(passes, nil), clock), summarise(timed(corpus.ColdPasses(passes), make([]byte, ColdSweep)), clock)
}

var nativeSink corpus.Result
