package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The JSON handler writes a duration as the text handler does ("1m0s"),
// at the top level, in a group and in a logger's own attributes; a
// tester's aggregator logged "in":60000000000.
func TestJSONDurationText(t *testing.T) {
	var b bytes.Buffer
	log, err := New(&b, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.With("every", 250*time.Millisecond).Info("exiting", "in", time.Minute, slog.Group("g", "wait", 90*time.Second), "n", 3)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", b.String(), err)
	}
	g, _ := rec["g"].(map[string]any)
	if rec["in"] != "1m0s" || rec["every"] != "250ms" || g["wait"] != "1m30s" || rec["n"] != 3.0 {
		t.Errorf("got %s", b.String())
	}
	b.Reset()
	text, _ := New(&b, "text", "info")
	text.Info("exiting", "in", time.Minute)
	if !strings.Contains(b.String(), "in=1m0s") {
		t.Errorf("text: %s", b.String())
	}
}

func TestParseLevel(t *testing.T) {
	for s, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(s); err != nil || got != want {
			t.Errorf("%q: %v, %v", s, got, err)
		}
	}
	for s, want := range map[string]string{
		"warning": `--log-level "warning": want debug, info, warn or error; did you mean warn?`,
		"inf":     `--log-level "inf": want debug, info, warn or error; did you mean info?`,
		"loud":    `--log-level "loud": want debug, info, warn or error`,
		"":        `--log-level "": want debug, info, warn or error`,
	} {
		if _, err := ParseLevel(s); err == nil || err.Error() != want {
			t.Errorf("%q: got %v, want %s", s, err, want)
		}
	}
}

func TestFormat(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "yaml", "info"); err == nil || err.Error() != `--log-format "yaml": want text or json` {
		t.Errorf("yaml: %v", err)
	}
	// The level is checked first, as the aggregator always did.
	if _, err := New(&bytes.Buffer{}, "yaml", "loud"); err == nil || !strings.HasPrefix(err.Error(), "--log-level") {
		t.Errorf("both bad: %v", err)
	}
	var b bytes.Buffer
	log, _ := New(&b, "json", "warn")
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), `"msg":"shown"`) {
		t.Errorf("json at warn: %s", b.String())
	}
}
