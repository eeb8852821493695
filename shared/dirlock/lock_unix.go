//go:build unix

package dirlock

import (
	"errors"
	"os"
	"syscall"
)

// Lock takes an exclusive lock on the file path (created if missing) for
// as long as the returned file is open, without waiting: when another
// process holds it, the error is ErrHeld.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrHeld
		}
		return nil, err
	}
	return f, nil
}
