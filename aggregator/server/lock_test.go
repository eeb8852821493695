//go:build unix

package server

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestDataDirLocked: a second aggregator on a data directory in use
// refuses to start, saying which directory and why, instead of sharing
// the first one's spool; once the first is closed, it starts.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Server, error) {
		return Open(Config{DataDir: dir, Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	second, err := open()
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("a second aggregator opened the data directory in use")
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "another aggregator holds it") {
		t.Errorf("error %q: want the directory and that another aggregator holds it", msg)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := open()
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
