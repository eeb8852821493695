package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// TestLauncher runs the fleet launcher `make cluster` runs, as a process:
// it must print where everything is, take a hit through each POP into
// the ClickHouse cluster once, stop everything it started on SIGINT, and
// start again on the same directory with the data kept. To keep its cost
// low the fleet has one shard of two replicas (still replicated tables
// on ZooKeeper, which a second start reloads) instead of two shards.
func TestLauncher(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a fleet of real servers")
	}
	root, err := build.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if missing := deps.Missing(root, []deps.Program{deps.Redis, deps.RedisCLI, deps.ClickHouse, deps.ZooKeeper}); len(missing) > 0 {
		t.Fatal(deps.Advice(missing))
	}
	tmp := t.TempDir()
	binDir := filepath.Join(tmp, "bin")
	// The edge module comes from the wasm cache when `make modules` or
	// another test built the same sources.
	if err := build.BuildInDir(context.Background(), build.TinyGo, root, binDir, nil, build.Edge, build.Pop, build.Aggregator, build.Fleet); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "cluster")
	cache := filepath.Join(tmp, "wazero-cache")
	var markers []string
	for run := 1; run <= 2; run++ {
		marker := fmt.Sprintf("launcher-%d-%d", time.Now().UnixNano(), run)
		markers = append(markers, marker)
		t.Logf("start %d on %s", run, dir)
		l := startLauncher(t, build.Fleet.InDir(binDir), "--bin", binDir, "--dir", dir, "--compile-cache", cache,
			"--shards", "1", "--replicas", "2", "--aggregators", "2")
		if len(l.pops) != 2 || len(l.clickhouse) != 2 {
			l.stop(t)
			t.Fatalf("start %d: the banner names %d POPs and %d ClickHouse servers, want 2 and 2:\n%s", run, len(l.pops), len(l.clickhouse), l.stdout.String())
		}
		for i, pop := range l.pops {
			if err := hit(pop, marker, i); err != nil {
				l.stop(t)
				t.Fatalf("start %d: POP %d: %v", run, i+1, err)
			}
		}
		// Every hit of every start so far is stored once, read through
		// the Distributed table on each server.
		for _, m := range markers {
			for _, ch := range l.clickhouse {
				if err := waitCount(ch, m, 2); err != nil {
					l.stop(t)
					t.Fatalf("start %d: %s: hits %s: %v\n%s", run, ch, m, err, aggregatorLogs(dir))
				}
			}
		}
		l.stop(t)
	}
}

// launcher is one running edgepixel-cluster.
type launcher struct {
	cmd        *exec.Cmd
	stdout     *proc.Buffer
	stderr     *proc.Buffer
	exited     chan struct{}
	pops       []string // POP base URLs, in the banner's order
	clickhouse []string // ClickHouse HTTP URLs
	// children are the processes the launcher started (all descendants),
	// as seen once it was ready.
	children []procID
}

var (
	popLine = regexp.MustCompile(`(?m)^\s*pop \d+\s+(http://\S+)/p\.gif`)
	chLine  = regexp.MustCompile(`(?m)^\s*clickhouse\s+shard \d+ replica \d+: (http://\S+) `)
)

// startLauncher starts it and waits for its banner's last line.
func startLauncher(t *testing.T, bin string, args ...string) *launcher {
	t.Helper()
	l := &launcher{stdout: &proc.Buffer{}, stderr: &proc.Buffer{}, exited: make(chan struct{})}
	l.cmd = exec.Command(bin, args...)
	l.cmd.Stdout, l.cmd.Stderr = l.stdout, l.stderr
	// If this test dies, so does the launcher, and with it (its own
	// Pdeathsig) everything it started.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.cmd.Wait(); close(l.exited) }()
	// The first start compiles the edge module and creates the schema on
	// a loaded machine; no figure is judged, so the limit is generous.
	deadline := time.After(10 * time.Minute)
	for !strings.Contains(l.stdout.String(), "Ctrl-C stops everything") {
		select {
		case <-l.exited:
			t.Fatalf("the launcher exited before it was ready (%v):\n%s\n%s", l.cmd.ProcessState, l.stdout, l.stderr)
		case <-deadline:
			l.stop(t)
			t.Fatalf("the launcher was not ready after 10 minutes:\n%s", l.stderr)
		case <-time.After(200 * time.Millisecond):
		}
	}
	out := l.stdout.String()
	for _, m := range popLine.FindAllStringSubmatch(out, -1) {
		l.pops = append(l.pops, m[1])
	}
	for _, m := range chLine.FindAllStringSubmatch(out, -1) {
		l.clickhouse = append(l.clickhouse, m[1])
	}
	l.children = descendants(l.cmd.Process.Pid)
	// ZooKeeper, 2 ClickHouse servers, 6 Redis nodes, 2 aggregators, 2 POPs.
	if len(l.children) < 13 {
		l.stop(t)
		t.Fatalf("the launcher runs %d processes, want at least 13: %v", len(l.children), l.children)
	}
	return l
}

// stop sends SIGINT (Ctrl-C) and checks that the launcher stopped
// everything itself: it exits 0 saying so, and none of the processes it
// started outlives it. (Its children also die with it by Pdeathsig, but
// that is SIGKILL after its exit; a child it stopped was reaped before.)
func (l *launcher) stop(t *testing.T) {
	t.Helper()
	select {
	case <-l.exited:
		t.Errorf("the launcher had exited (%v):\n%s", l.cmd.ProcessState, l.stderr)
		return
	default:
	}
	l.cmd.Process.Signal(os.Interrupt)
	select {
	case <-l.exited:
	case <-time.After(5 * time.Minute):
		l.cmd.Process.Kill()
		<-l.exited
		t.Errorf("the launcher had not stopped 5 minutes after SIGINT; killed:\n%s", l.stderr)
		return
	}
	left := alive(l.children)
	if !l.cmd.ProcessState.Success() || !strings.Contains(l.stderr.String(), `msg=stopped`) {
		t.Errorf("after SIGINT the launcher exited with %v:\n%s", l.cmd.ProcessState, l.stderr)
	}
	if len(left) > 0 {
		t.Errorf("still running after the launcher exited: %v", left)
	}
}

// hit sends one pixel hit with marker in its page URL and checks that the
// edge took it.
func hit(pop, marker string, i int) error {
	u := pop + "/p.gif?site=demo&url=" + url.QueryEscape(fmt.Sprintf("https://example.com/%s/%d", marker, i))
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Edgepixel-Drop") != "" {
		return fmt.Errorf("GET %s: %s, drop %q", u, resp.Status, resp.Header.Get("X-Edgepixel-Drop"))
	}
	return nil
}

// waitCount waits until the events table read through ch holds want
// rows whose url has marker, and fails on more.
func waitCount(ch, marker string, want int) error {
	q := fmt.Sprintf("SELECT count() FROM edgepixel.events WHERE position(url, '%s') > 0", marker)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := count(ch, q)
		if err == nil && n > want {
			return fmt.Errorf("%d rows, want %d", n, want)
		}
		if err == nil && n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d rows after 3 minutes, want %d (%v)", n, want, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// aggregatorLogs returns the last lines of each aggregator's log under
// the fleet's dir: where rows that never arrived went (a migration that
// did not finish, a load that failed) is said there.
func aggregatorLogs(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*", "logs", "aggregator.log"))
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "the last lines of %s:\n    %s\n", p, strings.Join(proc.LastLines(p, 0, 30), "\n    "))
	}
	if len(paths) == 0 {
		fmt.Fprintf(&b, "no aggregator log under %s", dir)
	}
	return b.String()
}

func count(ch, q string) (int, error) {
	resp, err := http.Post(ch+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("clickhouse: %s", bytes.TrimSpace(b))
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// procID names a process across pid reuse: its pid and start time.
type procID struct {
	pid   int
	start string // /proc/PID/stat field 22, clock ticks since boot
	comm  string
}

func (p procID) String() string { return fmt.Sprintf("%s[%d]", p.comm, p.pid) }

// stat reads pid's parent, start time, state and command name.
func stat(pid int) (ppid int, start, state, comm string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", "", false
	}
	lp, rp := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if lp < 0 || rp < lp {
		return 0, "", "", "", false
	}
	f := strings.Fields(string(b[rp+1:])) // from field 3, state
	if len(f) < 20 {
		return 0, "", "", "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], f[0], string(b[lp+1 : rp]), true
}

// descendants lists every process under pid.
func descendants(pid int) []procID {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]procID{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, start, _, comm, ok := stat(p); ok {
			children[ppid] = append(children[ppid], procID{p, start, comm})
		}
	}
	var out []procID
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c.pid)
		}
	}
	walk(pid)
	return out
}

// alive returns those of ps still there (a zombie counts: nobody reaped it).
func alive(ps []procID) []procID {
	var out []procID
	for _, p := range ps {
		if _, start, state, _, ok := stat(p.pid); ok && start == p.start {
			out = append(out, procID{p.pid, p.start, p.comm + ":" + state})
		}
	}
	return out
}
