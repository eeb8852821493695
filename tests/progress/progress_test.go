package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunReportsElapsed(t *testing.T) {
	var b bytes.Buffer
	r := New(&b) // not a terminal: line by line
	r.every = 20 * time.Millisecond
	if err := r.Run("building x", func() error { time.Sleep(70 * time.Millisecond); return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := r.Run("building y", func() error { return boom }); err != boom {
		t.Fatalf("Run returned %v, want f's error", err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if lines[0] != "building x ..." || !strings.HasPrefix(lines[1], "  still building x (") {
		t.Errorf("start and tick lines: %q", lines)
	}
	if !strings.HasPrefix(lines[len(lines)-3], "building x: done in ") ||
		lines[len(lines)-2] != "building y ..." || !strings.HasPrefix(lines[len(lines)-1], "building y: failed after ") {
		t.Errorf("end lines: %q", lines)
	}
}

func TestNilReporterRunsSilently(t *testing.T) {
	var r *Reporter
	ran := false
	if err := r.Run("x", func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("nil Reporter: ran=%v err=%v", ran, err)
	}
	r.Printf("nothing %d", 1)
}

func TestRound(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1234 * time.Millisecond:  "1.2s",
		61499 * time.Millisecond: "1m1s",
		150 * time.Second:        "2m30s",
		40 * time.Millisecond:    "0s",
	} {
		if got := Round(d).String(); got != want {
			t.Errorf("Round(%v) = %s, want %s", d, got, want)
		}
	}
}
