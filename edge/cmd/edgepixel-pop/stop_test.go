package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A component of the POP whose dependency breaks for good makes the
// process exit non-zero with the reason (for a supervisor to restart it),
// /healthz turning unhealthy first. Each test breaks one dependency of the
// real binary. One that is retried by design (an HTTP log collector that
// is down) keeps the POP up and shows in /healthz and /metrics.

// healthz is /healthz's status and body (0 if it could not be asked).
func (p *popProc) healthz() (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.admin + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// exitsUnhealthyFirst waits (up to 60 s) for the process to exit,
// polling /healthz meanwhile; it checks that the exit is non-zero, that
// /healthz answered 503 before, and that stderr gives the reason.
func exitsUnhealthyFirst(t *testing.T, p *popProc, reason string) {
	t.Helper()
	saw503 := false
	deadline := time.After(60 * time.Second)
	for {
		select {
		case <-p.exited:
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("exit: %v, want a non-zero status", p.err)
			}
			if !saw503 {
				t.Error("/healthz never answered 503 before the exit")
			}
			if !strings.Contains(p.stderr.String(), reason) {
				t.Errorf("stderr does not give the reason %q:\n%s", reason, lastLines(p.stderr.String(), 20))
			}
			return
		case <-deadline:
			t.Fatalf("still running 60 s after its dependency broke\n%s", lastLines(p.stderr.String(), 20))
		case <-time.After(50 * time.Millisecond):
			if code, _ := p.healthz(); code == http.StatusServiceUnavailable {
				saw503 = true
			}
		}
	}
}

// TestExitWhenGuestCannotStart: the guest's start-up dependency (a KV
// entry it checks) breaks, no instance can start any more.
func TestExitWhenGuestCannotStart(t *testing.T) {
	toml := filepath.Join(t.TempDir(), "fastly.toml")
	os.WriteFile(toml, []byte("manifest_version = 3\n[local_server.kv_stores]\npoison = []\n"), 0o644)
	p := startProc(t, toml, "--instances", "1", "--max-instances", "1")
	if code, body := p.healthz(); code != 200 {
		t.Fatalf("healthz before: %d %s", code, body)
	}
	http.Get(p.url + "/poison")
	exitsUnhealthyFirst(t, p, "no guest instance could start")
}

// TestExitWhenLogFileFails: the disk under a file log endpoint is full.
func TestExitWhenLogFileFails(t *testing.T) {
	p := startProc(t, "", "--instances", "1", "--max-instances", "1", "--log-endpoint", "guestlog=file:/dev/full")
	if resp, err := http.Get(p.url + "/log?msg=hello"); err == nil {
		resp.Body.Close()
	}
	exitsUnhealthyFirst(t, p, "log endpoint guestlog: writing /dev/full")
}

// TestExitWhenAccessLogFails: the disk under the access log is full.
func TestExitWhenAccessLogFails(t *testing.T) {
	p := startProc(t, "", "--instances", "1", "--max-instances", "1", "--access-log", "/dev/full")
	if resp, err := http.Get(p.url + "/counter"); err == nil {
		resp.Body.Close()
	}
	exitsUnhealthyFirst(t, p, "access log")
}

// TestLogCollectorDownIsNotAStop: deliveries to an HTTP log endpoint
// whose collector refuses connections are retried; the POP stays up and
// healthy, and says what is failing.
func TestLogCollectorDownIsNotAStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/logs"
	ln.Close() // nothing listens there now
	p := startProc(t, "", "--instances", "1", "--max-instances", "1",
		"--log-endpoint", "guestlog="+dead+"?period=100ms")
	for range 3 {
		if resp, err := http.Get(p.url + "/log?msg=hello"); err == nil {
			resp.Body.Close()
		}
	}
	var body string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var code int
		code, body = p.healthz()
		if code != 200 {
			t.Fatalf("healthz %d with only a log collector down: %s", code, body)
		}
		if strings.Contains(body, "degraded: log endpoint guestlog: deliveries failing") {
			break
		}
	}
	if !strings.Contains(body, "degraded: log endpoint guestlog") {
		t.Fatalf("healthz does not show the failing deliveries:\n%s", body)
	}
	if first, _, _ := strings.Cut(body, "\n"); first != "degraded (serving)" {
		t.Errorf("healthz's first line %q with a degraded condition", first)
	}
	if v := p.metricInt(t, `edgepixel_pop_log_failing_seconds{endpoint="guestlog",kind="http"}`); v < 1 {
		t.Errorf("failing-seconds gauge %d", v)
	}
	select {
	case <-p.exited:
		t.Fatalf("the POP exited: %v", p.err)
	default:
	}
	if resp, err := http.Get(p.url + "/counter"); err != nil || resp.StatusCode != 200 {
		t.Errorf("serving with the collector down: %v", err)
	}
}

// A POP whose stdout and stderr readers are gone (the Fastly CLI's, or a
// pipe's, ended first by Ctrl-C) still stops gracefully on SIGINT: Go's
// default ended it by SIGPIPE at its "shutting down" line, before the
// module flushed the hits it had answered (a tester's, under `fastly
// compute serve`).
func TestStopsWithOutputGone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(popBin, "--addr", "127.0.0.1:0", "--admin-addr", "", "--compile-cache", binCacheDir, binGuestWasm)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "Listening on ") {
	}
	r.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Errorf("exit %v (%v), want an end by SIGINT after a graceful stop, not by SIGPIPE", cmd.ProcessState, err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("the POP did not stop")
	}
}

// TestHealthzUnjournaled: a manifest whose edgepixel config store sets
// no journal while edgepixel_journal is configured (a misspelt key)
// degrades /healthz, not only the log, and the edit that puts the key
// right, taken by the watch, clears it (a tester's POP said ok).
func TestHealthzUnjournaled(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "fastly.toml")
	write := func(key string) {
		t.Helper()
		m := "manifest_version = 3\n[local_server.config_stores.edgepixel]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixel.contents]\n" + key + " = \"edgepixel_journal\"\n"
		if err := os.WriteFile(toml, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("jurnal")
	p := startProc(t, toml, "--instances", "1", "--max-instances", "1", "--log-endpoint", "edgepixel_journal=file:"+filepath.Join(dir, "journal"))
	const why = "degraded: log endpoint edgepixel_journal is configured, but config store edgepixel sets no journal"
	if code, body := p.healthz(); code != 200 || !strings.Contains(body, why) {
		t.Fatalf("healthz with the journal's key misspelt: %d\n%s", code, body)
	}
	time.Sleep(1100 * time.Millisecond) // a new modification time for the watch
	write("journal")
	var body string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, body = p.healthz(); body == "ok\n" {
			return
		}
	}
	t.Fatalf("healthz once the key is put right:\n%s", body)
}
