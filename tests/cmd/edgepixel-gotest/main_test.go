package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A stream as `go test -json` writes it: a passing package, whose output
// must not show, and a failing one, whose failing test's output (subtests
// included) and package output must.
const stream = `{"Action":"start","Package":"github.com/edgepixel/edgepixel/a"}
{"Action":"run","Package":"github.com/edgepixel/edgepixel/a","Test":"TestQuiet"}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/a","Test":"TestQuiet","Output":"=== RUN   TestQuiet\n"}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/a","Test":"TestQuiet","Output":"    a_test.go:1: hidden\n"}
{"Action":"pass","Package":"github.com/edgepixel/edgepixel/a","Test":"TestQuiet","Elapsed":2.5}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/a","Output":"ok  \tgithub.com/edgepixel/edgepixel/a\t2.6s\n"}
{"Action":"pass","Package":"github.com/edgepixel/edgepixel/a","Elapsed":2.6}
{"Action":"run","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad"}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad","Output":"    b_test.go:4: context line\n"}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad/sub","Output":"    b_test.go:5: boom\n"}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad/sub","Output":"--- FAIL: TestBad/sub (0.00s)\n"}
{"Action":"fail","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad/sub","Elapsed":0.1}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad","Output":"--- FAIL: TestBad (0.20s)\n"}
{"Action":"fail","Package":"github.com/edgepixel/edgepixel/b","Test":"TestBad","Elapsed":7.25}
{"Action":"output","Package":"github.com/edgepixel/edgepixel/b","Output":"FAIL\tgithub.com/edgepixel/edgepixel/b\t7.3s\n"}
{"Action":"fail","Package":"github.com/edgepixel/edgepixel/b","Elapsed":7.3}
not json: passed on
`

func TestSummary(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	s.read(strings.NewReader(stream))
	s.report(10 * time.Second)
	got := out.String()
	for _, want := range []string{
		"ok  \tgithub.com/edgepixel/edgepixel/a\t2.6s\n",
		"    b_test.go:4: context line\n    b_test.go:5: boom\n--- FAIL: TestBad/sub",
		"FAIL\tgithub.com/edgepixel/edgepixel/b\t7.3s\n",
		"not json: passed on\n",
		"package times, slowest first (packages run in parallel):\n      7.3s  b\n      2.6s  a\n",
		"slowest tests:\n      7.2s  b TestBad\n      2.5s  a TestQuiet\n",
		"FAILED after 10s:\n  b TestBad\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	for _, hidden := range []string{"hidden", "=== RUN"} {
		if strings.Contains(got, hidden) {
			t.Errorf("summary shows %q:\n%s", hidden, got)
		}
	}
	if s.failed != 1 {
		t.Errorf("failed = %d, want 1", s.failed)
	}
}
