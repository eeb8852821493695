//go:build !unix

package main

import "errors"

// privateTempDir is compilecache_unix.go's; elsewhere there is none.
func privateTempDir(string) (string, error) {
	return "", errors.New("no private temporary directory on this system")
}
