package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/progress"
)

// lock holds an exclusive flock(2) on a file, so that two processes
// (two terminals' `make`, or `make test` running several test binaries)
// do not build the same thing into the same place at once. The kernel
// drops the lock when its holder dies, so an interrupted build leaves no
// stale lock behind.
type lock struct{ f *os.File }

// acquire takes the lock at path, waiting for another holder (reported to
// r as what) until ctx ends.
func acquire(ctx context.Context, path, what string, r *progress.Reporter) (*lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	try := func() (bool, error) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return err == nil, err
	}
	ok, err := try()
	if err == nil && !ok {
		err = r.Run(fmt.Sprintf("waiting for %s in another process (lock: %s)", what, path), func() error {
			for {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(250 * time.Millisecond):
				}
				if ok, err := try(); ok || err != nil {
					return err
				}
			}
		})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &lock{f}, nil
}

func (l *lock) release() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}
