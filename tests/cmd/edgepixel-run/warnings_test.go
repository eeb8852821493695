package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
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
	from := logEnds(dir)
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
	got := startWarnings(dir, from)
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
}

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
