// Package cli holds what the launchers' commands (edgepixel-run,
// edgepixel-cluster) share about their command lines: flag defaults taken
// from environment variables, and how a fatal error ends the command.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// EnvOr is the environment variable key, or def when it is unset or empty:
// a flag's default, so that every flag has an env-var equivalent.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Fatal logs err's first line as an error, prints the lines after it as
// they are (a server's last log lines, which the log's quoting would
// escape into one unreadable line) to stderr, where the launchers' log
// goes too, and exits with status 1.
func Fatal(log *slog.Logger, err error) {
	first, rest, _ := strings.Cut(err.Error(), "\n")
	log.Error(first)
	if rest != "" {
		fmt.Fprintln(os.Stderr, rest)
	}
	os.Exit(1)
}
