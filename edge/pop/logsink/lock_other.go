//go:build !unix

package logsink

import "os"

// lockDir opens path; without flock, nothing stops a second POP from
// using the same queue directory.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
