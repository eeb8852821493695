package main

// Enrichment inside the edge module: the guest CPU time of all enrichment
// of one hit, the module's size and an instance's start, for each
// toolchain (standard Go, and TinyGo when it is installed), measured by
// tests/wasmbench. Per-hit costs stand beside the same code compiled
// natively; size and start beside a module without enrichment. Then the
// whole edge module's guest time per hit through the POP, enriching the
// same corpus, beside hits with nothing to enrich (enrichpop.go).

import (
	"fmt"
	"os"
	"time"

	"github.com/edgepixel/edgepixel/tests/wasmbench"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// The goals for the shipped (TinyGo) module, printed beside the
// figures.
const (
	goalHitP99   = 20 * time.Microsecond
	goalTinySize = 2 << 20
)

func runEnrich(passes int, mods []*benchModule, d time.Duration, conns int) error {
	tcs, note := wasmbench.Toolchains()
	dir, err := os.MkdirTemp("", "edgepixel-bench-enrich-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	want := fmt.Sprintf("digest %x \n", corpus.Digest())
	var native, nativeCold wasmbench.HitCost
	if passes > 0 {
		fmt.Fprintf(os.Stderr, "bench: enrichment natively, %d passes ...\n", passes)
		native, nativeCold = wasmbench.MeasureNative(passes)
	} else {
		tcs = nil // --enrich-passes 0: through the POP only
	}
	var figs []wasmbench.Figures
	for _, tc := range tcs {
		fmt.Fprintf(os.Stderr, "bench: enrichment in wasm, building with %s (TinyGo takes minutes) ...\n", tc.Name)
		f, err := wasmbench.Measure(tc, dir, passes, want)
		if err != nil {
			return err
		}
		figs = append(figs, f)
	}

	var pops []popHitCost
	if len(mods) > 0 {
		if pops, err = measureEnrichThroughPOP(mods, d, conns); err != nil {
			return err
		}
	}

	if len(figs) > 0 {
		printInModule(figs, native, nativeCold, passes, note)
	}
	printThroughPOP(pops, conns)
	return nil
}

// printInModule prints the figures of the enrichment alone, in a module
// of its own (tests/wasmbench).
func printInModule(figs []wasmbench.Figures, native, nativeCold wasmbench.HitCost, passes int, note string) {
	fmt.Printf("\nenrichment: all packages on each of %d corpus hits x %d passes, guest CPU time under wazero\n", len(corpus.Hits), passes)
	fmt.Printf("(caches cold: %d passes, %d MiB of memory written before each hit, as other work between a POP's hits does)\n", corpus.ColdPasses(passes), wasmbench.ColdSweep>>20)
	if note != "" {
		fmt.Println(note)
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.2f us", float64(d)/1e3) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
	kb := func(n int64) string { return fmt.Sprintf("%d KiB", n>>10) }
	fmt.Printf("\n%-34s %14s %14s %8s\n", "figure", "wasm", "baseline", "ratio")
	for _, f := range figs {
		row := func(name, a, b string, ratio float64) {
			fmt.Printf("%-34s %14s %14s %8.2f\n", f.Toolchain+": "+name, a, b, ratio)
		}
		row("per hit p50 (vs native)", us(f.P50), us(native.P50), float64(f.P50)/float64(native.P50))
		row("per hit p99 (vs native)", us(f.P99), us(native.P99), float64(f.P99)/float64(native.P99))
		row("slowest hit's median (vs native)", us(f.Slowest), us(native.Slowest), float64(f.Slowest)/float64(native.Slowest))
		row("caches cold, p50 (vs native)", us(f.Cold.P50), us(nativeCold.P50), float64(f.Cold.P50)/float64(nativeCold.P50))
		row("caches cold, p99 (vs native)", us(f.Cold.P99), us(nativeCold.P99), float64(f.Cold.P99)/float64(nativeCold.P99))
		row("module size (vs no enrichment)", kb(f.Size), kb(f.BaselineSize), float64(f.Size)/float64(f.BaselineSize))
		row("instance start (vs no enrichment)", ms(f.Start), ms(f.BaselineStart), float64(f.Start)/float64(f.BaselineStart))
		fmt.Printf("%-34s %14d %14s\n", f.Toolchain+": allocations per hit", f.Allocs, "")
	}
	fmt.Printf("\nslowest hit: %s\n", hitLabel(figs, native))
	for _, f := range figs {
		fmt.Printf("\n%s, mean per hit:", f.Toolchain)
		for _, p := range f.Packages {
			fmt.Printf("  %s %s", p.Name, us(p.Mean))
		}
		fmt.Println()
	}
	for _, f := range figs {
		if f.Toolchain == "tinygo" {
			fmt.Printf("\ngoals (TinyGo): per hit p99 %s of %s (enrichment alone, in the module); module %s of %s\n", us(f.P99), us(goalHitP99), kb(f.Size), kb(goalTinySize))
		}
	}
}

// printThroughPOP prints the guest time per hit of the edge modules
// through the POP (enrichpop.go).
func printThroughPOP(pops []popHitCost, conns int) {
	us := func(d time.Duration) string { return fmt.Sprintf("%.2f us", float64(d)/1e3) }
	if len(pops) > 0 {
		fmt.Printf("\nthrough the POP: the edge module's guest CPU time per pixel hit (pop.Server.GuestTimes: the instance\n")
		fmt.Printf("thread's CPU time from taking a request to asking for the next, flushes included), %d connections,\n", conns)
		fmt.Printf("the corpus's %d hits with today's visitor salt; baseline: the same module, hits with only a site\n", len(corpus.Hits))
		fmt.Printf("(no page, referrer or user agent to enrich)\n\n")
		fmt.Printf("%-34s %14s %14s %8s\n", "figure", "enriched", "baseline", "ratio")
		for _, c := range pops {
			row := func(name string, a, b time.Duration) {
				fmt.Printf("%-34s %14s %14s %8.2f\n", c.name+": "+name, us(a), us(b), float64(a)/float64(b))
			}
			row("guest per hit p50", c.p50, c.baseP50)
			row("guest per hit p99", c.p99, c.baseP99)
			fmt.Printf("%-34s %14d %14d\n", c.name+": hits measured", c.hits, c.baseHits)
		}
	} else {
		fmt.Println("\nthrough the POP: no edge module to run (make modules, or --tinygo-wasm/--go-wasm)")
	}
	for _, c := range pops {
		if c.name == "TinyGo" {
			fmt.Printf("goal (TinyGo) through the POP: guest per hit p99 %s of %s (the whole hit, flushes included)\n", us(c.p99), us(goalHitP99))
		}
	}
}

// hitLabel names the corpus hits found slowest, by toolchain.
func hitLabel(figs []wasmbench.Figures, native wasmbench.HitCost) string {
	label := func(i int) string {
		h := corpus.Hits[i]
		return fmt.Sprintf("#%d %.60q", i, h.URL)
	}
	s := "native " + label(native.SlowestHit)
	for _, f := range figs {
		s += "; " + f.Toolchain + " " + label(f.SlowestHit)
	}
	return s
}
