package conformance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Results of `go test -json` (test2json events), per package and per
// top-level test. Subtests count as part of their test: a test fails if
// any of its subtests does.

// Package is one package's outcome.
type Package struct {
	Path   string // import path
	Result string // "pass", "fail", or "skip" (no test files)
	Tests  map[string]*Test
	Output []string // lines printed outside any test (build errors, crashes)
}

// Test is one top-level test's outcome.
type Test struct {
	Name   string
	Result string   // "pass", "fail", "skip"; "" if it never finished
	Output []string // its lines and its subtests'
}

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// ParseJSON reads test2json events until r ends; done is called with each
// package as it finishes (for progress). Lines that are not JSON (go's
// own messages when a build fails) are kept as output of a package "".
func ParseJSON(r io.Reader, done func(*Package)) (map[string]*Package, error) {
	pkgs := map[string]*Package{}
	get := func(path string) *Package {
		p, ok := pkgs[path]
		if !ok {
			p = &Package{Path: path, Tests: map[string]*Test{}}
			pkgs[path] = p
		}
		return p
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			p := get("")
			p.Output = append(p.Output, string(line))
			continue
		}
		p := get(e.Package)
		if e.Test == "" {
			switch e.Action {
			case "output":
				p.Output = append(p.Output, strings.TrimSuffix(e.Output, "\n"))
			case "pass", "fail", "skip":
				p.Result = e.Action
				if done != nil {
					done(p)
				}
			}
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		t, ok := p.Tests[top]
		if !ok {
			t = &Test{Name: top}
			p.Tests[top] = t
		}
		switch e.Action {
		case "output":
			t.Output = append(t.Output, strings.TrimSuffix(e.Output, "\n"))
		case "pass", "fail", "skip":
			if e.Test == top {
				t.Result = e.Action
			}
		}
	}
	return pkgs, sc.Err()
}

// Expectation is a test the POP is known to fail, and why.
type Expectation struct {
	Package string // path below the SDK module, e.g. "end_to_end_tests/bot-detection"
	Test    string // top-level test name
	Reason  string
}

// Row is one package in the report.
type Row struct {
	Suite, Package          string // Package below the SDK module
	Passed, Failed, Skipped int
	// Result is the package's own result ("fail" also for a build error
	// or a crash outside any test).
	Result string
}

// Verdict compares results with the expected failures. An expected
// failure that fails counts as skipped, with its reason; one that passes,
// or does not run, is a problem, so the table stays honest. Any other
// failure is a problem too.
type Verdict struct {
	Rows     []Row
	Skipped  []string // "package Test: reason"
	Problems []string
}

// Judge builds the verdict for one suite, whose packages are under dir
// of the SDK module (package paths are reported below module).
func Judge(v *Verdict, suite, module, dir string, pkgs map[string]*Package, expected []Expectation) {
	want := map[string]Expectation{}
	for _, e := range expected {
		if strings.HasPrefix(e.Package, dir+"/") {
			want[e.Package+" "+e.Test] = e
		}
	}
	seen := map[string]bool{}
	var paths []string
	for path := range pkgs {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		p := pkgs[path]
		if path == "" {
			if len(p.Output) > 0 {
				v.Problems = append(v.Problems, fmt.Sprintf("%s: go test said:\n%s", suite, indent(p.Output)))
			}
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
		row := Row{Suite: suite, Package: rel, Result: p.Result}
		var names []string
		for name := range p.Tests {
			names = append(names, name)
		}
		sort.Strings(names)
		failedTests := 0
		for _, name := range names {
			t := p.Tests[name]
			key := rel + " " + name
			e, expectedFail := want[key]
			seen[key] = true
			switch {
			case t.Result == "fail" && expectedFail:
				row.Skipped++
				v.Skipped = append(v.Skipped, fmt.Sprintf("%s %s: %s", rel, name, e.Reason))
			case t.Result == "fail":
				row.Failed++
				failedTests++
				v.Problems = append(v.Problems, fmt.Sprintf("%s %s failed:\n%s", rel, name, indent(t.Output)))
			case expectedFail:
				row.Passed++
				v.Problems = append(v.Problems, fmt.Sprintf("%s %s is listed as an expected failure (%s) but %s: take it off the list",
					rel, name, e.Reason, map[string]string{"pass": "passed", "skip": "skipped itself", "": "did not finish"}[t.Result]))
			case t.Result == "pass":
				row.Passed++
			case t.Result == "skip":
				row.Skipped++
				v.Skipped = append(v.Skipped, fmt.Sprintf("%s %s: skipped by the test itself:\n%s", rel, name, indent(t.Output)))
			default:
				row.Failed++
				failedTests++
				v.Problems = append(v.Problems, fmt.Sprintf("%s %s did not finish:\n%s", rel, name, indent(t.Output)))
			}
		}
		// A package that failed with no failing test failed outside the
		// tests: a build error, a crash, a timeout, or the runner itself.
		if p.Result == "fail" && failedTests == 0 && row.Skipped == 0 {
			row.Failed++
			v.Problems = append(v.Problems, fmt.Sprintf("%s failed outside its tests:\n%s", rel, indent(p.Output)))
		}
		if p.Result == "" {
			v.Problems = append(v.Problems, fmt.Sprintf("%s did not finish:\n%s", rel, indent(p.Output)))
		}
		v.Rows = append(v.Rows, row)
	}
	for _, e := range want {
		if !seen[e.Package+" "+e.Test] {
			v.Problems = append(v.Problems, fmt.Sprintf("%s %s is listed as an expected failure but did not run", e.Package, e.Test))
		}
	}
}

// Print writes the table and the skip reasons.
func (v *Verdict) Print(w io.Writer) {
	fmt.Fprintf(w, "%-18s %-36s %6s %6s %7s\n", "suite", "package", "passed", "failed", "skipped")
	var tp, tf, ts int
	for _, r := range v.Rows {
		note := ""
		if r.Result == "skip" {
			note = "  (no tests)"
		}
		fmt.Fprintf(w, "%-18s %-36s %6d %6d %7d%s\n", r.Suite, r.Package, r.Passed, r.Failed, r.Skipped, note)
		tp, tf, ts = tp+r.Passed, tf+r.Failed, ts+r.Skipped
	}
	fmt.Fprintf(w, "%-18s %-36s %6d %6d %7d\n", "total", "", tp, tf, ts)
	if len(v.Skipped) > 0 {
		fmt.Fprintln(w, "\nskipped:")
		for _, s := range v.Skipped {
			fmt.Fprintln(w, "  "+s)
		}
	}
}

func indent(lines []string) string {
	const max = 60
	if len(lines) > max {
		lines = append([]string{fmt.Sprintf("(last %d of %d lines)", max, len(lines))}, lines[len(lines)-max:]...)
	}
	return "    " + strings.Join(lines, "\n    ")
}
