package main

// Fresh-instance start compared (section "coldstart"): several builds of
// the edge module, each started fresh for every request
// (measureColdStart), in alternating rounds so a change in the machine's
// load falls on every build alike, and each build's resident memory per
// warm instance (warmInstanceRSS). With --coldstart-cpuprofile, a Go CPU
// profile of the rounds shows where a start's time goes on the host's
// side (instantiation, hostcalls, the guest's compiled code as one).

import (
	"context"
	"fmt"
	"os"
	"time"
)

type coldStartOptions struct {
	wasm       string // name=path,name=path
	rounds     int
	cpuProfile string
}

func runColdStart(o coldStartOptions) error {
	type build struct {
		name, path string
		startups   []time.Duration
		rssKB      float64
	}
	var builds []*build
	for _, nb := range namedBuilds(o.wasm) {
		builds = append(builds, &build{name: nb[0], path: nb[1]})
	}
	sink, _, err := countingSink()
	if err != nil {
		return err
	}
	manifest, manifestPath, cacheDir, remove, err := benchWorkDir(sink)
	if err != nil {
		return err
	}
	defer remove()
	ctx := context.Background()
	// A first pass fills the compilation cache, so no round compiles.
	for _, b := range builds {
		if _, err := measureColdStart(ctx, b.path, manifest, cacheDir); err != nil {
			return fmt.Errorf("%s: %v", b.name, err)
		}
	}
	stop, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	for r := range o.rounds {
		fmt.Fprintf(os.Stderr, "bench: fresh starts, round %d of %d ...\n", r+1, o.rounds)
		for _, b := range builds {
			st, err := measureColdStart(ctx, b.path, manifest, cacheDir)
			if err != nil {
				return fmt.Errorf("%s: %v", b.name, err)
			}
			b.startups = append(b.startups, st...)
		}
	}
	for _, b := range builds {
		fmt.Fprintf(os.Stderr, "bench: resident memory per warm instance of %s ...\n", b.name)
		if b.rssKB, err = warmInstanceRSS(b.path, manifestPath, cacheDir); err != nil {
			return fmt.Errorf("%s: %v", b.name, err)
		}
	}
	fmt.Printf("\nFresh-instance start (spawn to the guest's first wait for a request, wall time), %d alternating rounds of %d starts per build; load average %s\n\n",
		o.rounds, coldStarts, loadAverage())
	fmt.Printf("| build | starts | p50 (ms) | p90 (ms) | p99 (ms) | warm instance RSS (MiB) |\n|---|---|---|---|---|---|\n")
	for _, b := range builds {
		fmt.Printf("| %s | %d | %.2f | %.2f | %.2f | %.2f |\n", b.name, len(b.startups),
			percentileOf(b.startups, 0.5), percentileOf(b.startups, 0.9), percentileOf(b.startups, 0.99), b.rssKB/1024)
	}
	return nil
}
