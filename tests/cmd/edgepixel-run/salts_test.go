package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A rotation that wrote a salt calls hup each time, so the launcher's
// hup can signal whichever POP runs then; one that wrote none does not.
func TestSaltsEveryHangsUp(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		out  string
		want bool
	}{{"wrote 2026-12-06\n", true}, {"nothing to do\n", false}} {
		bin := filepath.Join(dir, "salt")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\nprintf '"+c.out+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		s := salts{bin: bin, dir: filepath.Join(dir, "secrets"), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hups := make(chan struct{}, 8)
		// every runs the salt command in dir: the test waits for it to
		// return, or the next case's command, or the removal of dir,
		// races with its last run (ci118: "directory not empty").
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			s.every(ctx, 10*time.Millisecond, func() error {
				select {
				case hups <- struct{}{}:
				default:
				}
				return nil
			})
		}()
		got := 0
		for got < 2 && ctx.Err() == nil {
			select {
			case <-hups:
				got++
			case <-time.After(300 * time.Millisecond):
				if !c.want {
					cancel()
				}
			}
		}
		cancel()
		<-ended
		if (got == 2) != c.want {
			t.Errorf("salt printing %q: %d hangups", c.out, got)
		}
	}
}
