// Package tokenfile reads a secret token kept in a file of its own, so
// that it stays out of command lines (which every user of a machine can
// read in /proc/PID/cmdline) and environments: the aggregator's
// --log-token-file and --admin-token-file, and the POP's HTTP log
// endpoints' bearer_file, which may name the same file.
package tokenfile

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// ErrEmpty is Read's error for a file that holds nothing but white space.
var ErrEmpty = errors.New("is empty")

// Read returns the token in the file at path, without the white space
// around it (an editor's or echo's final newline). An unreadable file's
// error is os.ReadFile's; an empty one's, "PATH is empty: ...", wraps
// ErrEmpty and says how to make a token.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %w: put the token in it (a new one: head -c 24 /dev/urandom | base64 | tr '+/' '-_' > %s)", path, ErrEmpty, flaghint.ShellQuote(path))
	}
	return tok, nil
}
