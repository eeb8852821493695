package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStartWarnings: the warnings and errors the servers logged after the
// launcher noted their logs' ends are repeated, message first; earlier
// runs' lines and INFO lines are not.
func TestStartWarnings(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	old := `time=2026-12-04T18:13:39.397Z level=WARN msg="EDGEPIXEL_AGG_OLD is set but names no setting: ignored"` + "\n"
	os.WriteFile(filepath.Join(logs, "aggregator.log"), []byte(old), 0o644)
	tails := logTails(dir)
	appendTo := func(name, s string) {
		f, err := os.OpenFile(filepath.Join(logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	appendTo("aggregator", `time=2026-12-04T18:14:07.507Z level=INFO msg="listening" addr=127.0.0.1:8080
time=2026-12-04T18:14:07.508Z level=WARN msg="EDGEPIXEL_AGG_PUBLIC_COUNTRS is set but names no setting: ignored; did you mean EDGEPIXEL_AGG_PUBLIC_COUNTERS?"
`)
	appendTo("pop", `time=2026-12-04T18:16:57.267Z level=WARN msg="config store edgepixel: site.letter: \"sign=rejct\" not one of sign=off|mark|reject" config=/x/fastly.toml
time=2026-12-04T18:16:58.000Z level=ERROR msg=bare key=v
`)
	got := warningsSince(tails)
	want := []string{
		`pop: config store edgepixel: site.letter: "sign=rejct" not one of sign=off|mark|reject (config=/x/fastly.toml)`,
		`pop: bare (key=v)`,
		`aggregator: EDGEPIXEL_AGG_PUBLIC_COUNTRS is set but names no setting: ignored; did you mean EDGEPIXEL_AGG_PUBLIC_COUNTERS?`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("startWarnings:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if note := warningsNote(got, logs); !strings.Contains(note, "a setting below may not apply") || !strings.Contains(note, "\n  "+want[0]+"\n") {
		t.Errorf("note %q", note)
	}
	if warningsNote(nil, logs) != "" {
		t.Error("a note without warnings")
	}
	if again := warningsSince(tails); len(again) != 0 {
		t.Errorf("read twice: %q", again)
	}
}

// TestFollowWarnings: while the stack runs, each new WARN or ERROR line
// of a server's log is printed as it comes, a line still being written
// once it is whole, and a server's same message only once every
// repeatEvery, the next print counting those held back; a log replaced by
// a shorter one is read from its start.
func TestFollowWarnings(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	agg := filepath.Join(logs, "aggregator.log")
	os.WriteFile(agg, []byte(`time=2026-12-04T18:13:39.397Z level=WARN msg="before the start"`+"\n"), 0o644)
	tails := logTails(dir)
	appendTo := func(path, s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	var mu sync.Mutex
	var out strings.Builder
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { followWarnings(ctx, tails, w, 10*time.Millisecond, 300*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := out.String()
			mu.Unlock()
			if strings.Contains(got, want) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in:\n%s", want, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	noRoom := `time=2026-12-04T18:14:07.508Z level=WARN msg="spool: the disk has no room; batches are answered 503 until it has" err="no space left on device"` + "\n"
	appendTo(agg, `time=2026-12-04T18:14:07.507Z level=INFO msg="not repeated"`+"\n"+noRoom+noRoom+noRoom)
	appendTo(filepath.Join(logs, "pop.log"), `time=2026-12-04T18:14:08Z level=ERROR msg="log endpoint: the disk queue cannot write`)
	got := waitFor("aggregator: spool: the disk has no room; batches are answered 503 until it has (err=\"no space left on device\")\n")
	if strings.Contains(got, "not repeated") || strings.Contains(got, "before the start") || strings.Contains(got, "pop:") {
		t.Errorf("printed an INFO line, an earlier line or half a line:\n%s", got)
	}
	appendTo(filepath.Join(logs, "pop.log"), `" endpoint=aggregator`+"\n")
	waitFor("pop: log endpoint: the disk queue cannot write (endpoint=aggregator)\n")

	// The two held back are printed, the last with their count, once
	// `every` has passed; the same message after that is printed again.
	got = waitFor(" [2 more like it since ")
	if n := strings.Count(got, "disk has no room"); n != 2 {
		t.Errorf("the message printed %d times, want once and once with the count:\n%s", n, got)
	}
	appendTo(agg, noRoom)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(waitFor(""), "disk has no room") != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the message after `every` not printed again:\n%s", waitFor(""))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A log replaced by a shorter one (removed by hand, say) is read
	// from its start.
	os.WriteFile(agg, []byte(`time=2026-12-04T19:00:00Z level=ERROR msg="a new log"`+"\n"), 0o644)
	waitFor("aggregator: a new log\n")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRunEnvKnown: runEnv holds every variable the flags' help names, so
// none of them is warned about as unknown.
func TestRunEnvKnown(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`env (EDGEPIXEL_RUN_[A-Z_]+)`).FindAllStringSubmatch(string(src), -1)
	if len(named) < 6 {
		t.Fatalf("found %d variables in the flags' help", len(named))
	}
	for _, m := range named {
		if !runEnv[m[1]] {
			t.Errorf("%s is named in a flag's help but not in runEnv", m[1])
		}
	}
}
