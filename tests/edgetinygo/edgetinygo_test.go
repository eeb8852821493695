// Package edgetinygo runs the own tests of the packages of the edge module
// built by TinyGo, under the POP. It is a package of its own, not part of
// the end-to-end tests, so that `go test ./...` runs its minutes of TinyGo
// builds beside the other packages instead of after the end-to-end tests.
package edgetinygo

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
)

var (
	root string // the repository root
	pop  string // the edgepixel-pop binary, `tinygo test`'s emulator
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("edgetinygo: -short: skipping the TinyGo builds")
		os.Exit(0)
	}
	var err error
	if root, err = build.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "edgetinygo:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "edgetinygo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgetinygo:", err)
		os.Exit(1)
	}
	pop = build.Pop.InDir(dir)
	if err := build.Pop.Build(context.Background(), build.TinyGo, root, pop, nil); err != nil {
		fmt.Fprintln(os.Stderr, "edgetinygo:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tinyGoTestsBroken lists the edge module's packages whose own tests do
// not build or cannot pass with TinyGo under the POP, and why. The package
// itself is in the shipped module and tested there (the end-to-end tests
// run the TinyGo module); only its _test.go files stand in the way. Each
// must still fail: one that passes fails the test until it is taken off
// the list. Those marked noFilesystem are not run: a guest under the POP will
// never have a filesystem, and building their tests cost most of this
// test's time (the referrer tables' test binary took wasm-ld over 15
// minutes to link, past this test's limit).
var tinyGoTestsBroken = map[string]broken{
	"shared/event": {"its tests pass integer constants beyond 32 bits as int, and TinyGo's wasm int has 32 bits", false},
	"shared/wire":  {"its tests pass integer constants beyond 32 bits as int (TinyGo's wasm int has 32 bits) and call testing.B.Elapsed, which TinyGo's testing lacks", false},
	// The enrichment tables' tests read their sources under data/ and
	// regenerate tables.go to compare; `edgepixel-pop run`, like Viceroy,
	// gives a guest no filesystem. The tables themselves are exercised
	// through the TinyGo module end to end (tests/enrich_test.go).
	"edge/enrich/bot":      {"its tests read data/ and tables.go, and a guest under the POP has no filesystem", true},
	"edge/enrich/referrer": {"its tests read data/ and tables.go, and a guest under the POP has no filesystem", true},
	// Its oracle test runs `go` to find medama-io/go-useragent's corpus.
	"edge/enrich/useragent": {"its tests read data/ and run the go command, which a guest cannot", true},
}

// broken is why a package's tests fail with TinyGo under the POP; those
// that need files or the go command (noFilesystem), which no guest has,
// are not run at all.
type broken struct {
	why          string
	noFilesystem bool
}

// TestTinyGoPackageTests runs the own tests of every package of this
// repository in the edge module built with TinyGo, as TinyGo builds them,
// under the POP: `tinygo test` with a wasip1 target whose emulator is
// `edgepixel-pop run`, as compute-sdk-go's Makefile runs its tests under
// Viceroy. TinyGo differs from Go where the spec leaves room (int is 32
// bits in TinyGo's wasm; the order of evaluation within an expression),
// so code the Go build passes can fail here.
func TestTinyGoPackageTests(t *testing.T) {
	// A hang guard, inside go test's -timeout (25m in the Makefile): the
	// builds take minutes on a quiet machine, and one CI run that shared
	// the cores with other builds and fleet tests needed over 15.
	ctx, cancel := context.WithTimeout(context.Background(), 23*time.Minute)
	defer cancel()
	c, err := build.TinyGo.Compiler(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := edgePackagesWithTests(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "wasip1-pop.json")
	spec := fmt.Sprintf(`{"inherits": ["wasip1"], "emulator": %q}`, pop+" run {}")
	if err := os.WriteFile(target, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for rel := range tinyGoTestsBroken {
		if !strings.Contains(" "+strings.Join(pkgs, " ")+" ", " ./"+rel+" ") {
			t.Errorf("%s is listed in tinyGoTestsBroken but is no package of the edge module with tests: take it off the list", rel)
		}
	}
	// One tinygo test for the packages expected to pass (it stops at the
	// first that does not build), one for each listed as broken.
	var good []string
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p, "./")
		b, isBroken := tinyGoTestsBroken[rel]
		why := b.why
		if !isBroken {
			good = append(good, p)
			continue
		}
		if b.noFilesystem {
			t.Logf("%s: not tested with TinyGo: %s", rel, why)
			continue
		}
		if res, _ := tinyGoTest(ctx, t, c, target, p); res[rel] == "ok" {
			t.Errorf("%s passes with TinyGo now: take it off tinyGoTestsBroken (%s)", rel, why)
		} else {
			t.Logf("%s: not tested with TinyGo: %s", rel, why)
		}
	}
	res, out := tinyGoTest(ctx, t, c, target, good...)
	for _, p := range good {
		if rel := strings.TrimPrefix(p, "./"); res[rel] != "ok" {
			t.Errorf("%s: %q with TinyGo", rel, res[rel])
		}
	}
	if t.Failed() {
		t.Logf("tinygo test %s:\n%s", strings.Join(good, " "), out)
	}
}

// tinyGoTest runs tinygo test on pkgs and returns each package's outcome
// ("ok", "FAIL", or "" when it did not run) and the output.
func tinyGoTest(ctx context.Context, t *testing.T, c *build.Compiler, target string, pkgs ...string) (map[string]string, string) {
	// TinyGo's compile-time interpreter gives up on a package
	// initialiser after -interp-timeout of wall time (3 minutes by
	// default), however little CPU it had: on a loaded machine
	// crypto/internal/fips140/nistec's init timed out so (make test runs
	// these builds at low priority beside the race tests). The limit the
	// module's own builds use (tests/build) guards against a hang here too.
	cmd := exec.CommandContext(ctx, c.Bin, append([]string{"test", "-interp-timeout=20m", "-target=" + target}, pkgs...)...)
	cmd.Dir, cmd.Env = root, c.Env(os.Environ())
	// When ctx ends, end tinygo's whole process group: its linker
	// (wasm-ld) would otherwise live on, holding the output pipe, and Run
	// would wait for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	// Apart: LLVM's warnings on stderr come in pieces, and one landed in
	// the middle of a package's "ok" line when both shared a buffer.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	t.Logf("tinygo test %s: %v in %v", strings.Join(pkgs, " "), err, time.Since(began).Round(time.Millisecond))
	// Each package ends with "ok  \tPATH\t..." or "FAIL\tPATH" on stdout.
	res := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(ok|FAIL)\s+(\S+)`).FindAllStringSubmatch(stdout.String(), -1) {
		res[strings.TrimPrefix(m[2], "github.com/edgepixel/edgepixel/")] = m[1]
	}
	return res, stdout.String() + stderr.String()
}

// edgePackagesWithTests lists, as ./dir, the packages of this repository
// in the edge module (as TinyGo builds it: wasip1, tag tinygo) that have
// tests.
func edgePackagesWithTests(t *testing.T) []string {
	cmd := exec.Command("go", "list", "-deps", "-tags=tinygo", "-f",
		"{{if and .Module .Module.Main (or .TestGoFiles .XTestGoFiles)}}{{.Dir}}{{end}}", build.Edge.Pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []string
	for _, d := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(rel))
	}
	if len(pkgs) == 0 {
		t.Fatal("no package of the edge module has tests")
	}
	return pkgs
}
