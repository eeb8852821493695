//go:build unix

package dirlock

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestLock: a second Lock of the same file fails with ErrHeld while the
// first is open (flock locks are per open file, so this holds within one
// process too), and succeeds once it is closed.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), Name)
	f, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := Lock(path); !errors.Is(err, ErrHeld) {
		if g != nil {
			g.Close()
		}
		t.Fatalf("second lock: %v, want ErrHeld", err)
	}
	f.Close()
	g, err := Lock(path)
	if err != nil {
		t.Fatalf("lock after close: %v", err)
	}
	g.Close()
}
