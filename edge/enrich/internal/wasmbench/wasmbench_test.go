package wasmbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// toolchain builds a guest package into a .wasm file.
type toolchain struct {
	name  string
	build func(t *testing.T, pkg, out string)
}

func toolchains(t *testing.T) []toolchain {
	tcs := []toolchain{{"go", func(t *testing.T, pkg, out string) {
		run(t, exec.Command("go", "build", "-o", out, pkg), "GOOS=wasip1", "GOARCH=wasm")
	}}}
	tinygo := os.Getenv("EDGEPIXEL_TINYGO")
	if tinygo == "" {
		tinygo, _ = exec.LookPath("tinygo")
	}
	if tinygo == "" {
		t.Log("tinygo not on PATH (nor EDGEPIXEL_TINYGO): standard Go only")
		return tcs
	}
	return append(tcs, toolchain{"tinygo", func(t *testing.T, pkg, out string) {
		run(t, exec.Command(tinygo, "build", "-target=wasip1", "-no-debug", "-o", out, pkg))
	}})
}

func run(t *testing.T, cmd *exec.Cmd, env ...string) {
	t.Helper()
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

func moduleRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// guest is a compiled guest module under a wazero runtime.
type guest struct {
	r   wazero.Runtime
	mod wazero.CompiledModule
}

func load(t *testing.T, path string) *guest {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	return &guest{r, mod}
}

// run instantiates the guest with args (running its main) and returns
// its standard output and how long instantiation took.
func (g *guest) run(t *testing.T, args ...string) (string, time.Duration) {
	var out, errOut bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").WithArgs(append([]string{"guest"}, args...)...).
		WithStdout(&out).WithStderr(&errOut).WithSysNanotime().WithSysWalltime().WithSysNanosleep()
	start := time.Now()
	m, err := g.r.InstantiateModule(context.Background(), g.mod, cfg)
	d := time.Since(start)
	var exit *sys.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
		t.Fatalf("guest %v: %v\n%s", args, err, errOut.String())
	}
	if m != nil {
		m.Close(context.Background())
	}
	return out.String(), d
}

// TestWasm builds the guest with each toolchain, checks that it computes
// exactly what the packages compute natively over the corpus, and logs the
// figures: cost per hit, module size, instance start and heap, each beside
// a baseline module without enrichment. Nothing here fails on a timing.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wasm modules")
	}
	want := fmt.Sprintf("digest %x \n", Digest())
	for _, tc := range toolchains(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			wasm, base := filepath.Join(dir, "guest.wasm"), filepath.Join(dir, "baseline.wasm")
			tc.build(t, "./edge/enrich/internal/wasmbench/guest", wasm)
			tc.build(t, "./edge/enrich/internal/wasmbench/guest/baseline", base)
			g, b := load(t, wasm), load(t, base)

			if got, _ := g.run(t, "digest"); got != want {
				t.Fatalf("%s guest computes %q, natively %q", tc.name, got, want)
			}

			size := func(p string) int64 {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				return fi.Size()
			}
			startOf := func(g *guest) time.Duration {
				var ds []time.Duration
				for range 15 {
					_, d := g.run(t, "start")
					ds = append(ds, d)
				}
				slices.Sort(ds)
				return ds[len(ds)/2]
			}
			startOut, _ := g.run(t, "start")
			t.Logf("%s: module %d B (baseline %d B, enrichment %+d B); instance start p50 %v (baseline %v); %s",
				tc.name, size(wasm), size(base), size(wasm)-size(base), startOf(g), startOf(b), strings.TrimSpace(startOut))

			n := 200
			if s := os.Getenv("EDGEPIXEL_WASMBENCH_N"); s != "" {
				n, _ = strconv.Atoi(s)
			}
			out, _ := g.run(t, "bench", strconv.Itoa(n))
			t.Logf("%s: %d passes over %d hits:\n%s", tc.name, n, len(Corpus), out)
		})
	}
}

// BenchmarkEnrich is all enrichment of one corpus hit, natively.
func BenchmarkEnrich(b *testing.B) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Enrich(&Corpus[i%len(Corpus)])
		i++
	}
}
