package spool

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// A write path that fails (here: the directory is gone when a new segment
// must start) fails the spool for good: Failed closes, the append and
// every later one get the reason, and Full reports it for readiness.
func TestWriteFailureFailsTheSpool(t *testing.T) {
	dir := t.TempDir() + "/spool"
	s := open(t, dir, Options{SegmentBytes: 100})
	ctx := context.Background()
	if err := s.Append(ctx, make([]byte, 90)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Failed():
		t.Fatal("failed before any fault")
	default:
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, make([]byte, 90)) // needs a new segment
	if err == nil || !strings.Contains(err.Error(), "start segment") {
		t.Fatalf("append into a removed directory: %v", err)
	}
	select {
	case <-s.Failed():
	case <-time.After(time.Second):
		t.Fatal("Failed not closed")
	}
	if !errors.Is(s.Err(), os.ErrNotExist) || !errors.Is(s.Err(), ErrFailed) {
		t.Errorf("Err = %v, want the cause, and ErrFailed", s.Err())
	}
	if err2 := s.Append(ctx, []byte("later")); err2 == nil || err2.Error() != s.Err().Error() {
		t.Errorf("a later append: %v, want the failure", err2)
	}
	if !s.Full(0) {
		t.Error("Full is false on a failed spool")
	}
}
