package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCheckIdle: a run.json whose launcher is alive blocks a second stack
// (and `make run`'s build); one left by a dead launcher, or by a process
// that reused its PID, does not.
func TestCheckIdle(t *testing.T) {
	dir := t.TempDir()
	if err := checkIdle(dir); err != nil {
		t.Fatalf("no run.json: %v", err)
	}

	// A live process named as the launcher is: a copy of sleep.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep on PATH")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	launcher := filepath.Join(t.TempDir(), "edgepixel-run")
	if err := os.WriteFile(launcher, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(launcher, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	if err := writeState(dir, state{PID: cmd.Process.Pid, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := checkIdle(dir); err == nil {
		t.Fatal("a live launcher's run.json: want an error")
	}
	if code := idle([]string{"-dir", dir}); code != 1 {
		t.Fatalf("idle with a live launcher: exit %d, want 1", code)
	}

	// This test's own PID is alive but is not a launcher.
	if err := writeState(dir, state{PID: os.Getpid(), Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := checkIdle(dir); err != nil {
		t.Fatalf("a reused PID: %v", err)
	}

	cmd.Process.Kill()
	cmd.Wait()
	if err := writeState(dir, state{PID: cmd.Process.Pid, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if code := idle([]string{"-dir", dir}); code != 0 {
		t.Fatalf("idle after the launcher died: exit %d, want 0", code)
	}
}
