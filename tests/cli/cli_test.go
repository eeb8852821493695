package cli

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A fatal error's later lines (a server's last log lines) reach the
// terminal as lines, not quoted into the log line with \n escapes.
func TestFatalPrintsLinesAsLines(t *testing.T) {
	if os.Getenv("CLI_TEST_FATAL") != "" {
		Fatal(slog.New(slog.NewTextHandler(os.Stderr, nil)), errors.New("server: exited; its last lines:\n\n    level=ERROR msg=\"line 2: bad\""))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFatalPrintsLinesAsLines$")
	cmd.Env = append(os.Environ(), "CLI_TEST_FATAL=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "msg=\"server: exited; its last lines:\"\n\n    level=ERROR msg=\"line 2: bad\"\n") {
		t.Errorf("output:\n%s", out)
	}
}
