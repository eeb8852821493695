// Command edgepixel-gotest runs the tests the way CI reports them: the
// usual pass/fail lines, the full output of every failing test, then each
// package's time and the slowest tests' times.
//
//	edgepixel-gotest test [go test flags] [packages]   # go test -json, summarised
//	edgepixel-gotest fuzz [-fuzztime 200000x] [-timeout 5m]   # every Fuzz target in the repository
//
// test exits with go test's status. fuzz runs each target on its own
// (go test -fuzz takes one), writes its output to
// .edgepixel/logs/fuzz/PKG.FUNC.log, prints each target's time and, when
// one fails, its log.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/progress"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "test":
		os.Exit(test(ctx, os.Args[2:], os.Stdout))
	case "fuzz":
		os.Exit(fuzz(ctx, os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: edgepixel-gotest test [go test flags] [packages]\n       edgepixel-gotest fuzz [-fuzztime N] [-timeout D]")
	os.Exit(2)
}

// test runs go test -json with args and summarises its events to w.
func test(ctx context.Context, args []string, w io.Writer) int {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s := newSummary(w)
	s.read(out)
	err = cmd.Wait()
	s.report(time.Since(start))
	if err != nil || s.failed > 0 {
		return 1
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json), with the build
// events `go test -json` adds (ImportPath).
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string
}

type timing struct {
	name    string
	elapsed float64
}

// summary follows the event stream. Output is held per top-level test and
// printed only if that test fails, as plain `go test` does.
type summary struct {
	w        io.Writer
	held     map[string][]string // "pkg\x00Test" or "pkg\x00" -> output lines
	packages []timing
	tests    []timing
	failed   int
	failures []string
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, held: map[string][]string{}}
}

func (s *summary) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.w, "%s\n", line) // not an event: pass it on
			continue
		}
		s.event(e)
	}
}

func (s *summary) event(e event) {
	top, _, _ := strings.Cut(e.Test, "/")
	key := e.Package + "\x00" + top
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
	case "build-fail":
		// The package's own "fail" event follows, with "[build failed]".
	case "output":
		// test2json's framing (=== RUN, PAUSE, CONT, NAME) says nothing the
		// --- lines do not.
		if !strings.HasPrefix(e.Output, "=== ") {
			s.held[key] = append(s.held[key], e.Output)
		}
	case "pass", "skip", "fail":
		if e.Test == "" { // the package's result
			s.pkgDone(e)
			return
		}
		if !strings.Contains(e.Test, "/") {
			s.tests = append(s.tests, timing{short(e.Package) + " " + e.Test, e.Elapsed})
		}
		if e.Action == "fail" && e.Test == top {
			for _, l := range s.held[key] {
				fmt.Fprint(s.w, l)
			}
			s.failures = append(s.failures, short(e.Package)+" "+e.Test)
		}
		if e.Test == top {
			delete(s.held, key)
		}
	}
}

func (s *summary) pkgDone(e event) {
	key := e.Package + "\x00"
	defer delete(s.held, key)
	switch e.Action {
	case "skip": // no test files
		return
	case "pass":
		fmt.Fprintf(s.w, "ok  \t%s\t%.1fs\n", e.Package, e.Elapsed)
	case "fail":
		s.failed++
		// The package's own output: a panic, TestMain's message, or the
		// FAIL line (which already names the package and time).
		for _, l := range s.held[key] {
			fmt.Fprint(s.w, l)
		}
		if len(s.held[key]) == 0 {
			fmt.Fprintf(s.w, "FAIL\t%s\t%.1fs\n", e.Package, e.Elapsed)
		}
		if len(s.failures) == 0 || !strings.HasPrefix(s.failures[len(s.failures)-1], short(e.Package)+" ") {
			s.failures = append(s.failures, short(e.Package))
		}
	}
	// Output of tests that never ended (a panic or timeout ends them all).
	for k, lines := range s.held {
		if strings.HasPrefix(k, e.Package+"\x00") && k != key {
			if e.Action == "fail" {
				for _, l := range lines {
					fmt.Fprint(s.w, l)
				}
			}
			delete(s.held, k)
		}
	}
	s.packages = append(s.packages, timing{short(e.Package), e.Elapsed})
}

const slowest = 15

func (s *summary) report(total time.Duration) {
	sort.SliceStable(s.packages, func(i, j int) bool { return s.packages[i].elapsed > s.packages[j].elapsed })
	sort.SliceStable(s.tests, func(i, j int) bool { return s.tests[i].elapsed > s.tests[j].elapsed })
	fmt.Fprintf(s.w, "\npackage times, slowest first (packages run in parallel):\n")
	for _, p := range s.packages {
		fmt.Fprintf(s.w, "  %7.1fs  %s\n", p.elapsed, p.name)
	}
	fmt.Fprintf(s.w, "\nslowest tests:\n")
	for i, t := range s.tests {
		if i == slowest {
			break
		}
		fmt.Fprintf(s.w, "  %7.1fs  %s\n", t.elapsed, t.name)
	}
	if s.failed > 0 {
		fmt.Fprintf(s.w, "\nFAILED after %s:\n", progress.Round(total))
		for _, f := range s.failures {
			fmt.Fprintf(s.w, "  %s\n", f)
		}
		return
	}
	fmt.Fprintf(s.w, "\nall %d packages passed in %s\n", len(s.packages), progress.Round(total))
}

// short drops the module path from a package path.
func short(pkg string) string {
	if s := strings.TrimPrefix(pkg, "github.com/edgepixel/edgepixel/"); s != pkg {
		return s
	}
	if pkg == "github.com/edgepixel/edgepixel" {
		return "."
	}
	return pkg
}

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)

// fuzz runs every Fuzz target under the repository root for fuzztime.
func fuzz(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("edgepixel-gotest fuzz", flag.ExitOnError)
	fuzztime := fs.String("fuzztime", "200000x", "each target's -fuzztime (a count of runs: a duration can fail on a loaded machine at the coordinator's own deadline)")
	timeout := fs.String("timeout", "5m", "each target's -timeout, the hard stop")
	fs.Parse(args)
	root, err := build.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	type target struct{ pkg, fn string }
	var targets []target
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Directories the go command ignores, and node_modules.
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range fuzzFunc.FindAllSubmatch(b, -1) {
			targets = append(targets, target{"./" + filepath.ToSlash(rel), string(m[1])})
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sort.Slice(targets, func(i, j int) bool {
		return targets[i].pkg+" "+targets[i].fn < targets[j].pkg+" "+targets[j].fn
	})
	logDir := filepath.Join(root, ".edgepixel", "logs", "fuzz")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := progress.New(os.Stdout)
	start := time.Now()
	for _, t := range targets {
		logPath := filepath.Join(logDir, strings.ReplaceAll(strings.TrimPrefix(t.pkg, "./"), "/", "_")+"."+t.fn+".log")
		err := r.Run(fmt.Sprintf("fuzz %s %s (%s)", t.pkg, t.fn, *fuzztime), func() error {
			f, err := os.Create(logPath)
			if err != nil {
				return err
			}
			defer f.Close()
			cmd := exec.CommandContext(ctx, "go", "test", "-run=^$", "-fuzz=^"+t.fn+"$", "-fuzztime="+*fuzztime, "-timeout="+*timeout, t.pkg)
			cmd.Dir = root
			cmd.Stdout, cmd.Stderr = f, f
			return cmd.Run()
		})
		if err != nil {
			fmt.Printf("%s:\n%s\n", logPath, readFile(logPath))
			return 1
		}
	}
	fmt.Printf("fuzzed %d targets in %s (logs in %s)\n", len(targets), progress.Round(time.Since(start)), logDir)
	return 0
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
