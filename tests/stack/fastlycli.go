package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FastlyCLIVersion is the release of the official Fastly CLI the tests
// install from npm (@fastly/cli).
const FastlyCLIVersion = "16.1.0"

// FastlyCLI returns the path of the Fastly CLI kept under
// root/.edgepixel/npm, installing it from npm on first use; npm's output
// goes to root/.edgepixel/npm-install.log. logf, if set, is told when an
// install starts. Without npm the error says what to install.
func FastlyCLI(root string, logf func(format string, args ...any)) (string, error) {
	prefix := filepath.Join(root, ".edgepixel", "npm")
	bin := filepath.Join(prefix, "node_modules", "@fastly", "cli-linux-x64", "fastly")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", errors.New("npm not found: the Fastly CLI comes from npm; install Node.js and npm " +
			"(Debian: apt-get install nodejs npm, or run `make deps` as root)")
	}
	logPath := filepath.Join(root, ".edgepixel", "npm-install.log")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer log.Close()
	if logf != nil {
		logf("installing @fastly/cli@%s from npm into %s (log: %s)", FastlyCLIVersion, prefix, logPath)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, "@fastly/cli@"+FastlyCLIVersion)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("npm install @fastly/cli@%s: %v (see %s)", FastlyCLIVersion, err, logPath)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("npm installed @fastly/cli but %s is missing (see %s)", bin, logPath)
	}
	return bin, nil
}
