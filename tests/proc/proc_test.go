package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child's own children end with it: Stop signals the whole group.
func TestStopEndsTheGroup(t *testing.T) {
	var out Buffer
	p, err := Start("sh", Options{Out: &out}, "sh", "-c", "sleep 300 & echo $!; wait")
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	for deadline := time.Now().Add(10 * time.Second); grandchild == 0; {
		grandchild, _ = strconv.Atoi(strings.TrimSpace(out.String()))
		if time.Now().After(deadline) {
			t.Fatalf("no pid printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("not exited after Stop")
	}
	// The grandchild is gone once reaped by init; give it a moment.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(grandchild, 0) == nil; {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild)); bytes.Contains(b, []byte(") Z ")) {
			break // a zombie: dead, waiting for its reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still runs after Stop", grandchild)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A process that ignores SIGTERM is killed after the grace period, and
// Stop says so.
func TestStopKillsAfterGrace(t *testing.T) {
	p, err := Start("stubborn", Options{}, "sh", "-c", "trap '' TERM; sleep 300")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the trap be set
	err = p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want a kill after the grace period", err)
	}
	if p.Err() == nil {
		t.Error("Err() = nil for a killed process")
	}
}

// A server that dies while starting is reported with the end of its log.
func TestWaitReadyShowsTheLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	p, err := Start("server", Options{Log: log}, "sh", "-c", "echo 'cannot bind 127.0.0.1:1: address in use'; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), func() error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "exited during startup") || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("WaitReady = %v", err)
	}
	// A server that never gets ready is killed when ctx ends.
	p, err = Start("slow", Options{Log: log}, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(ctx, func() error { return errors.New("not yet") }); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady = %v, want the deadline", err)
	}
	if !p.Exited() {
		t.Error("not killed when WaitReady gave up")
	}
}

// The log is appended to across runs: a startup error shows the last
// lines of this run only, as lines, so the cause (a server's last words)
// is not buried under an earlier run's output or escaped into one line.
func TestWaitReadyShowsThisRunsLastLines(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(log, []byte("earlier run: stale cause\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start("server", Options{Log: log}, "sh", "-c", `i=1; while [ $i -le 40 ]; do echo "startup line $i"; i=$((i+1)); done; echo 'level=ERROR msg="line 2: the token is \"short\""'; exit 1`)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), func() error { return errors.New("not yet") })
	if err == nil {
		t.Fatal("WaitReady = nil for a server that exited")
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "\n    level=ERROR msg=\"line 2: the token is \\\"short\\\"\"") {
		t.Errorf("the cause is not a plain line of the error:\n%s", msg)
	}
	if strings.Contains(msg, "stale cause") {
		t.Errorf("an earlier run's output is in the error:\n%s", msg)
	}
	if strings.Contains(msg, "startup line 26\n") || !strings.Contains(msg, "startup line 27\n") {
		t.Errorf("want the last %d lines:\n%s", failureLines, msg)
	}
	// A second run that says little shows none of the first one's lines.
	p, err = Start("server", Options{Log: log}, "sh", "-c", "echo 'second run: its own cause'; exit 1")
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), func() error { return errors.New("not yet") })
	if err == nil || !strings.HasSuffix(err.Error(), "\n    second run: its own cause") || strings.Contains(err.Error(), "startup line") {
		t.Errorf("the second run's error:\n%v", err)
	}
	// A log replaced by a shorter one is read from its start.
	if got := LastLines(log, 1<<20, 1); len(got) != 1 || !strings.Contains(got[0], "its own cause") {
		t.Errorf("LastLines past the end = %q", got)
	}
}

// A server that says why in a log of its own (SetLog, as ClickHouse's
// error log), written just before it exits, is reported with that log.
func TestWaitReadyFollowsTheServersOwnLog(t *testing.T) {
	dir := t.TempDir()
	errLog := filepath.Join(dir, "err.log")
	if err := os.WriteFile(errLog, []byte("an earlier run's error\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := LogSize(errLog)
	p, err := Start("server", Options{Log: filepath.Join(dir, "stdout.log")}, "sh", "-c", "echo starting; sleep 0.3; echo 'Address already in use' >> "+errLog+"; exit 70")
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), func() error {
		if LogSize(errLog) > from {
			p.SetLog(errLog, from)
		}
		return errors.New("not yet")
	})
	if err == nil || !strings.HasSuffix(err.Error(), errLog+":\n\n    Address already in use") {
		t.Fatalf("WaitReady = %v", err)
	}
}

const netnsChildEnv = "PROC_TEST_NETNS_CHILD"

// A child in a private network namespace has its own loopback: a port
// taken here is free there.
func TestPrivateNetwork(t *testing.T) {
	if os.Getenv(netnsChildEnv) != "" {
		return // TestMain ran the child's part
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out Buffer
	p, err := Start("netns child", Options{Env: []string{netnsChildEnv + "=" + l.Addr().String()}, Out: &out, PrivateNetwork: true},
		os.Args[0], "-test.run=^TestPrivateNetwork$")
	if err != nil {
		t.Skipf("no private network namespace here: %v", err)
	}
	<-p.Done()
	if p.Err() != nil || !strings.Contains(out.String(), "listened on "+l.Addr().String()) {
		t.Fatalf("child: %v\n%s", p.Err(), out.String())
	}
}

func TestMain(m *testing.M) {
	if addr := os.Getenv(netnsChildEnv); addr != "" {
		if err := LoopbackUp(); err != nil {
			fmt.Println("loopback:", err)
			os.Exit(1)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Close()
		l.Close()
		fmt.Println("listened on", addr)
	}
	os.Exit(m.Run())
}

func TestFreeAddr(t *testing.T) {
	a, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("FreeAddr gave %s, which is not free: %v", a, err)
	}
	l.Close()
}

// TestFreeAddrBelowEphemeral: a port from the kernel's ephemeral range can
// be taken by any outgoing connection before the server binds it.
func TestFreeAddrBelowEphemeral(t *testing.T) {
	lo := ephemeralLow()
	if lo-freeFloor < 1000 {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	for range 20 {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		if n < freeFloor || n >= lo {
			t.Fatalf("FreeAddr gave port %d, outside [%d, %d)", n, freeFloor, lo)
		}
	}
}
