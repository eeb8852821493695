// Package tokenfile reads a secret token kept in a file of its own, so
// that it stays out of command lines (which every user of a machine can
// read in /proc/PID/cmdline) and environments: the aggregator's
// --log-token-file and --admin-token-file, and the POP's HTTP log
// endpoints' bearer_file, which may name the same file.
package tokenfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// ErrEmpty is Read's error for a file that holds nothing but white space.
var ErrEmpty = errors.New("is empty")

// Read returns the token in the file at path, without the white space
// around it (an editor's or echo's final newline). An unreadable file's
// error is os.ReadFile's, a missing one's with how to make a token; an
// empty one's, "PATH is empty: ...", wraps ErrEmpty and says the same; a
// token with a control character or a line break inside is refused too.
// A relative path is read from the working directory, as any file a
// command is given; the errors name it absolute, since a service's working
// directory is rarely where its user stood (systemd's is /).
func Read(path string) (string, error) {
	return read(path, "a new one: "+newToken(path))
}

// ReadIssued is Read for a token another program issued, which must be
// the same here (the aggregator's log token, which a POP's log endpoint
// sends): its errors say where the token comes from, issuer (e.g. "the
// aggregator's --log-token-file"), rather than how to make a new one.
func ReadIssued(path, issuer string) (string, error) {
	return read(path, "the one in "+issuer)
}

// Abs is path made absolute (path itself if the working directory is
// unknown), as Read reads it and as its errors, and a command's messages
// about any file it was given, name it: a service's working directory is
// rarely where its user stood (systemd's is /), and a relative path's
// "no such file" did not say where it looked.
func Abs(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// read is Read with hint, in parentheses, where a token is needed.
func read(path, hint string) (string, error) {
	path = Abs(path)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: write the token there (%s), or give the file that holds it", err, hint)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %w: put the token in it (%s)", path, ErrEmpty, hint)
	}
	// A line break or another control character inside would be
	// refused only when the token is sent (net/http: "invalid header
	// field value"), or never match what a client sends.
	if i := strings.IndexFunc(tok, func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
		return "", fmt.Errorf("%s holds more than one token (a control character or line break at byte %d): put one token in it (%s)", path, i, hint)
	}
	return tok, nil
}

// newToken is the command that writes a new token to path.
func newToken(path string) string {
	return "head -c 24 /dev/urandom | base64 | tr '+/' '-_' > " + flaghint.ShellQuote(path)
}
