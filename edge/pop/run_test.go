package pop

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func runCmdGuest(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := Run(ctx, Config{
		WasmPath:        guestPath("cmdguest"),
		CompileCacheDir: cacheDir,
		Stdout:          &out,
		Stderr:          &errOut,
	}, args, strings.NewReader(stdin))
	if err != nil {
		t.Logf("Run: %v", err)
	}
	return code, out.String(), errOut.String()
}

func TestRunPassesArgsAndExitCode(t *testing.T) {
	code, out, errOut := runCmdGuest(t, "", "-test.v", "--", "7")
	if code != 7 {
		t.Errorf("exit code %d, want 7; stderr:\n%s", code, errOut)
	}
	// argv[0] is the module's file name without extension, as in Viceroy.
	if !strings.Contains(out, `argv0=cmdguest args=["-test.v" "--" "7"]`) {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(out, "FASTLY_HOSTNAME=localhost FASTLY_TRACE_ID=00000000000000000000000000000000\n") {
		t.Errorf("guest environment missing; stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "exiting with 7") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if code, _, _ := runCmdGuest(t, ""); code != 0 {
		t.Errorf("a guest returning from main: exit code %d, want 0", code)
	}
}

func TestRunStdin(t *testing.T) {
	code, out, _ := runCmdGuest(t, "from stdin\n", "stdin")
	if code != 0 || !strings.Contains(out, "from stdin\n") {
		t.Errorf("code %d, stdout:\n%s", code, out)
	}
}

// A guest that serves gets Viceroy's placeholder request once, and then
// no more: its ServeMany loop ends at once instead of waiting out its
// hour-long NextTimeout (past runCmdGuest's deadline, which would fail).
func TestRunPlaceholderRequest(t *testing.T) {
	code, out, errOut := runCmdGuest(t, "", "serve")
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "request GET http://example.com/ from 127.0.0.1 to 127.0.0.1 id 00000000000000000000000000000000\n") || !strings.Contains(out, "served=1\n") {
		t.Errorf("stdout:\n%s", out)
	}
	if strings.Contains(out, "discarded") {
		t.Errorf("the response to the placeholder request reached stdout:\n%s", out)
	}
}

func TestRunPanic(t *testing.T) {
	// A Go panic ends in proc_exit(2), not a trap: the code is passed on.
	if code, _, errOut := runCmdGuest(t, "", "panic"); code != 2 || !strings.Contains(errOut, "cmdguest panics") {
		t.Errorf("exit code %d, want 2; stderr:\n%s", code, errOut)
	}
}
