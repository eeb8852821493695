package main

// Cold start and memory of the POP's guest instances: how long one fresh
// instance of the standard-Go edge module takes to be ready (compiled code
// from the disk cache, so this is instantiation, Go runtime start and the
// module's init), and how much resident memory a warm instance holds.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop"
)

// coldStarts is how many fresh instances are timed.
const coldStarts = 60

// measureColdStart serves requests one at a time in fresh-instance mode, so
// every request retires its instance and the pool starts a new one; the
// POP records each instance's startup.
func measureColdStart(ctx context.Context, wasm string, m *fastlytoml.Manifest, cacheDir string) ([]time.Duration, error) {
	p, err := pop.New(ctx, pop.Config{
		WasmPath: wasm, Manifest: m, CompileCacheDir: cacheDir,
		Instances: 1, MaxInstances: 1, FreshInstances: true,
		Stdout: io.Discard, Stderr: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	defer p.Shutdown(context.Background())
	addr, err := serve(p)
	if err != nil {
		return nil, err
	}
	for len(p.InstanceStartups()) <= coldStarts {
		resp, err := http.Get("http://" + addr + "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2F")
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fresh instance answered %s", resp.Status)
		}
	}
	return p.InstanceStartups(), nil
}

// rssProbeFlag makes the bench binary a child that starts a POP with N warm
// instances, has every one of them serve, and prints its resident memory.
// Measuring in a child keeps the parent's own heap out of the figure.
const rssProbeFlag = "rss-probe"

// rssProbe is the child's side; see rssProbeFlag.
func rssProbe(n int, wasm, manifestPath, cacheDir string) error {
	m, err := fastlytoml.Load(manifestPath)
	if err != nil {
		return err
	}
	p, err := pop.New(context.Background(), pop.Config{
		WasmPath: wasm, Manifest: m, CompileCacheDir: cacheDir,
		Instances: n, MaxInstances: n, IdleTimeout: -1,
		Stdout: io.Discard, Stderr: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	addr, err := serve(p)
	if err != nil {
		return err
	}
	// n concurrent clients for a while: every instance serves and its
	// heap reaches its working size.
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for range 300 {
				if resp, err := http.Get("http://" + addr + "/p.gif?site=bench&url=https%3A%2F%2Fexample.com%2F"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	kb, err := rssKB()
	if err != nil {
		return err
	}
	fmt.Println(kb)
	return nil
}

// warmInstanceRSS runs two probes, with 1 and 1+extra instances, and
// attributes the difference to the extra instances.
func warmInstanceRSS(wasm, manifestPath, cacheDir string) (perInstanceKB float64, err error) {
	const extra = 8
	probe := func(n int) (int, error) {
		cmd := exec.Command(os.Args[0], "--"+rssProbeFlag, strconv.Itoa(n), "--rss-manifest", manifestPath,
			"--rss-cache", cacheDir, "--rss-wasm", wasm)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return 0, fmt.Errorf("rss probe with %d instances: %w", n, err)
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	}
	one, err := probe(1)
	if err != nil {
		return 0, err
	}
	many, err := probe(1 + extra)
	if err != nil {
		return 0, err
	}
	return float64(many-one) / extra, nil
}

// rssKB reads this process's resident set size.
func rssKB() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

// percentileOf returns the q-quantile (0..1) of ds in milliseconds.
func percentileOf(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	return float64(s[i]) / 1e6
}
