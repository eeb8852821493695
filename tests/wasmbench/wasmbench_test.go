package wasmbench

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

// TestWasm builds the guest with standard Go (and TinyGo too with
// EDGEPIXEL_WASMBENCH_TINYGO=1: its builds take minutes, and the TinyGo
// edge module's end-to-end tests already check the same enrichment, as
// does `make bench`'s enrich section with both), checks that it computes
// exactly what the packages compute natively over the corpus, and logs
// the figures. Nothing here fails on a timing.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wasm modules")
	}
	want := fmt.Sprintf("digest %x \n", corpus.Digest())
	tcs, note := Toolchains()
	if note != "" {
		t.Log(note)
	}
	if os.Getenv("EDGEPIXEL_WASMBENCH_TINYGO") != "1" {
		tcs = tcs[:1]
		t.Log("standard Go only (EDGEPIXEL_WASMBENCH_TINYGO=1 adds TinyGo)")
	}
	passes := 20
	if s := os.Getenv("EDGEPIXEL_WASMBENCH_PASSES"); s != "" {
		passes, _ = strconv.Atoi(s)
	}
	n, cold := MeasureNative(passes)
	t.Logf("native: all enrichment per hit p50 %v p99 %v CPU; slowest hit %d, median %v; caches cold p50 %v p99 %v", n.P50, n.P99, n.SlowestHit, n.Slowest, cold.P50, cold.P99)
	for _, tc := range tcs {
		t.Run(tc.Name, func(t *testing.T) {
			f, err := Measure(tc, t.TempDir(), passes, want)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: module %d B (baseline %d B, %+d B); start %v CPU (baseline %v)",
				f.Toolchain, f.Size, f.BaselineSize, f.Size-f.BaselineSize, f.Start, f.BaselineStart)
			t.Logf("%s: all enrichment per hit p50 %v p99 %v max %v CPU over %d hits (clock %v subtracted); slowest hit %d, median %v; %d allocs %d B per hit; heap %d B; caches cold p50 %v p99 %v",
				f.Toolchain, f.P50, f.P99, f.Max, f.Hits, f.Clock, f.SlowestHit, f.Slowest, f.Allocs, f.AllocBytes, f.HeapSys, f.Cold.P50, f.Cold.P99)
			for _, p := range f.Packages {
				t.Logf("%s:   %-10s %v per hit", f.Toolchain, p.Name, p.Mean)
			}
		})
	}
}

// BenchmarkEnrich is all enrichment of one corpus hit, natively.
func BenchmarkEnrich(b *testing.B) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		corpus.Enrich(&corpus.Hits[i%len(corpus.Hits)])
		i++
	}
}
