// Package cli holds what the launchers' commands (edgepixel-run,
// edgepixel-cluster) share about their command lines: flag defaults taken
// from environment variables, and how a fatal error ends the command.
package cli

import (
	"log/slog"
	"os"
)

// EnvOr is the environment variable key, or def when it is unset or empty:
// a flag's default, so that every flag has an env-var equivalent.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Fatal logs err as an error and exits with status 1.
func Fatal(log *slog.Logger, err error) {
	log.Error(err.Error())
	os.Exit(1)
}
