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

// TestFollowWarnings: while the stack runs, each new warning of a
// server's log is printed as it comes with the time it was logged, a line
// still being written once it is whole; a repeat of the last warning
// about the same subject is held back for `every`, then printed with the
// count, and printed at once with the count when another warning about
// the subject comes (the condition ended); two endpoints are two
// subjects; the edge module's own lines are warnings, its instance
// summaries not; what was held back and written last is printed as the
// follower stops; a log replaced by a shorter one is read from its start.
func TestFollowWarnings(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	agg, pop := filepath.Join(logs, "aggregator.log"), filepath.Join(logs, "pop.log")
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
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	const every = 400 * time.Millisecond
	go func() { followWarnings(ctx, tails, w, 10*time.Millisecond, every); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := printed()
			if strings.Contains(got, want) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in:\n%s", want, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	local := func(ts string) string {
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatal(err)
		}
		return at.Local().Format("15:04:05")
	}
	noRoom := func(ts string) string {
		return `time=` + ts + ` level=WARN msg="spool: the disk has no room; batches are answered 503 until it has" err="no space left on device"` + "\n"
	}

	appendTo(agg, `time=2026-12-04T18:14:07.507Z level=INFO msg="not repeated"`+"\n"+noRoom("2026-12-04T18:14:07.508Z")+noRoom("2026-12-04T18:14:08Z")+noRoom("2026-12-04T18:14:09Z"))
	appendTo(pop, `time=2026-12-04T18:14:08Z level=ERROR msg="log endpoint: the disk queue cannot write`)
	got := waitFor(local("2026-12-04T18:14:07.508Z") + ` aggregator: spool: the disk has no room; batches are answered 503 until it has (err="no space left on device")` + "\n")
	if strings.Contains(got, "not repeated") || strings.Contains(got, "before the start") || strings.Contains(got, "pop:") {
		t.Errorf("printed an INFO line, an earlier line or half a line:\n%s", got)
	}
	appendTo(pop, `" endpoint=edgepixel_journal`+"\n"+
		`time=2026-12-04T18:14:08Z level=ERROR msg="log endpoint: the disk queue cannot write" endpoint=edgepixel_fallback`+"\n"+
		"edgepixel: 6 events lost (delivery_failed) as the instance ended: no path took them\n"+
		"edgepixel: 8 events lost (delivery_failed) as the instance ended: no path took them\n"+
		"edgepixel: instance 0190: 3 hits, 3 events, drops map[]\n")
	got = waitFor("pop: edge module: 6 events lost (delivery_failed) as the instance ended: no path took them\n")
	for _, want := range []string{"pop: log endpoint: the disk queue cannot write (endpoint=edgepixel_journal)\n", "pop: log endpoint: the disk queue cannot write (endpoint=edgepixel_fallback)\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q: two endpoints are two subjects:\n%s", want, got)
		}
	}
	if strings.Contains(got, "instance 0190") || strings.Contains(got, "8 events lost") {
		t.Errorf("printed an instance summary, or a repeat at once:\n%s", got)
	}

	// The condition ends: the repeats held back come first, counted,
	// then the end at once; the condition's return is printed at once.
	appendTo(agg, `time=2026-12-04T18:14:10Z level=WARN msg="spool: the disk has room again; batches are taken" appends_refused=3`+"\n"+noRoom("2026-12-04T18:14:11Z"))
	got = waitFor(local("2026-12-04T18:14:11Z") + " aggregator: spool: the disk has no room")
	held := local("2026-12-04T18:14:09Z") + ` aggregator: spool: the disk has no room; batches are answered 503 until it has (err="no space left on device") [2 like it since ` + local("2026-12-04T18:14:08Z") + "]\n"
	ended := local("2026-12-04T18:14:10Z") + " aggregator: spool: the disk has room again; batches are taken (appends_refused=3)\n"
	if i, j := strings.Index(got, held), strings.Index(got, ended); i < 0 || j < i {
		t.Errorf("want %q, then %q, in:\n%s", held, ended, got)
	}

	// The module's repeat held back is printed once `every` has passed.
	waitFor("pop: edge module: 8 events lost (delivery_failed) as the instance ended: no path took them [1 like it]\n")

	// A log replaced by a shorter one (removed by hand, say) is read
	// from its start.
	os.WriteFile(agg, []byte(`time=2026-12-04T19:00:00Z level=ERROR msg="a new log"`+"\n"), 0o644)
	waitFor("aggregator: a new log\n")

	// Written just before the stop, and held back: printed as it stops.
	appendTo(agg, `time=2026-12-04T19:00:01Z level=ERROR msg="a new log"`+"\n"+`time=2026-12-04T19:00:02Z level=ERROR msg="stopping: counters lines lost"`+"\n")
	cancel()
	<-done
	got = printed()
	for _, want := range []string{"aggregator: a new log [1 like it since " + local("2026-12-04T19:00:01Z") + "]\n", "aggregator: stopping: counters lines lost\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("as it stops, no %q in:\n%s", want, got)
		}
	}
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
