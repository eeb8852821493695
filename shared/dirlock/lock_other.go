//go:build !unix

package dirlock

import "os"

// Lock opens path; without flock, nothing stops a second process from
// using the same directory.
func Lock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
