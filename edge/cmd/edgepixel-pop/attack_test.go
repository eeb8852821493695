package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/attack"
)

// Hostile traffic against the real binary, on loopback, each attack
// bounded in connections and time (issue 9), with the attack clients of
// tests/attack. For each: normal hits (GET /counter from another client
// address) keep being answered while the attack holds, and the POP's peak
// RSS stays within the bound the README documents for its flags. The
// figures (normal-hit throughput and p99 without and during the attack,
// peak RSS) are logged; no test fails on a timing, only on a hit not
// answered at all within 10 s.

// popProc is the binary serving the conformance guest.
type popProc struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	addr   string
	admin  string // http://127.0.0.1:PORT
	stderr *lockedBuf
	exited chan struct{}
	err    error // set before exited is closed

	startRSS int64 // VmRSS once serving, bytes
}

var adminURL = regexp.MustCompile(`msg="admin endpoints" url=(\S+)`)

// startProc runs the binary with flags, serving the conformance guest.
func startProc(t *testing.T, toml string, flags ...string) *popProc {
	t.Helper()
	return startModule(t, toml, binGuestWasm, flags...)
}

// startModule runs the binary with flags, serving the module at wasm.
func startModule(t *testing.T, toml, wasm string, flags ...string) *popProc {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the binary")
	}
	args := []string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--compile-cache", binCacheDir}
	if toml != "" {
		args = append(args, "-C", toml)
	}
	args = append(append(args, flags...), wasm)
	p := &popProc{cmd: exec.Command(popBin, args...), stderr: &lockedBuf{}, exited: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "Listening on "); ok {
				listening <- u
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("POP stderr:\n%s", lastLines(p.stderr.String(), 60))
		}
	})
	select {
	case p.url = <-listening:
	case <-p.exited:
		t.Fatalf("the POP exited at start: %v\n%s", p.err, p.stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the POP did not start\n%s", p.stderr)
	}
	p.addr = strings.TrimPrefix(p.url, "http://")
	for end := time.Now().Add(10 * time.Second); p.admin == ""; time.Sleep(10 * time.Millisecond) {
		if m := adminURL.FindStringSubmatch(p.stderr.String()); m != nil {
			p.admin = m[1]
		} else if time.Now().After(end) {
			t.Fatalf("no admin address logged:\n%s", p.stderr)
		}
	}
	_, p.startRSS = p.rss(t)
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// rss reads the process's peak and current resident set, in bytes.
func (p *popProc) rss(t *testing.T) (peak, now int64) {
	t.Helper()
	peak, now, err := attack.Memory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return peak, now
}

// metricInt is one series' value from /metrics (0 if missing).
func (p *popProc) metricInt(t *testing.T, series string) int64 {
	t.Helper()
	v, err := attack.Metric(p.admin+"/metrics", series)
	if err != nil {
		t.Fatal(err)
	}
	return int64(v)
}

// normalHits sends GET /counter from 127.0.0.2 with workers keep-alive
// clients until ctx ends. A hit not answered 200 within 10 s fails.
func normalHits(ctx context.Context, url string, workers int) *attack.Result {
	clients := make([]*http.Client, workers)
	for w := range clients {
		clients[w] = attack.Client(attack.NormalSource, 10*time.Second)
		defer clients[w].CloseIdleConnections()
	}
	return attack.Load(ctx, workers, func(w int) error {
		resp, err := clients[w].Get(url + "/counter")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("answered %s", resp.Status)
		}
		return nil
	})
}

// popAttack is one kind of hostile traffic: start sets it up and returns
// once it holds (its connections open); stop ends it and checks, after
// the normal hits, what the POP did to it.
type popAttack struct {
	name  string
	start func(t *testing.T, p *popProc)
	stop  func(t *testing.T, p *popProc)
}

// runAttack measures normal hits without the attack and during it, then
// stops it (with its checks), checks the RSS bound, and logs the figures.
func runAttack(t *testing.T, p *popProc, a popAttack, bound attack.PopBound) {
	t.Helper()
	const workers = 4
	// A second of warm-up first (connections, guest heaps), not counted.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	normalHits(ctx, p.url, workers)
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	base := normalHits(ctx, p.url, workers)
	cancel()
	a.start(t, p)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	during := normalHits(ctx, p.url, workers)
	cancel()
	a.stop(t, p)
	peak, _ := p.rss(t)
	bound.Start = p.startRSS
	t.Logf("%s: normal hits %.0f/s p99 %s without; %.0f/s p99 %s during (%d answered, %d failed); peak RSS %.1f MiB (%.1f at start, bound %.1f)",
		a.name, base.PerSecond(), base.P99().Round(10*time.Microsecond), during.PerSecond(), during.P99().Round(10*time.Microsecond),
		during.OK, during.Failed, attack.MiB(peak), attack.MiB(p.startRSS), attack.MiB(bound.Bytes()))
	reportFigure(a.name, base, during, peak)
	if base.Failed > 0 {
		t.Errorf("normal hits failed without an attack: %v", base.Errors)
	}
	if during.Failed > 0 || during.OK == 0 {
		t.Errorf("%s: %d normal hits failed, %d answered, during the attack: %v", a.name, during.Failed, during.OK, during.Errors)
	}
	if b := bound.Bytes(); peak > b {
		t.Errorf("%s: peak RSS %.1f MiB over the documented bound %.1f MiB", a.name, attack.MiB(peak), attack.MiB(b))
	}
}

// figures collects each attack's figures for TestMain to print at the end.
var figures struct {
	mu    sync.Mutex
	lines []string
}

// printFigures prints the figures of the attacks that ran, as a table.
func printFigures() {
	if len(figures.lines) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "\nnormal hits (4 keep-alive clients) without and during each attack, and the POP's peak RSS:\n%-28s %8s %10s %8s %10s %9s\n%s\n",
		"attack", "hits/s", "p99", "hits/s", "p99", "peak MiB", strings.Join(figures.lines, "\n"))
}

func reportFigure(name string, base, during *attack.Result, peak int64) {
	figures.mu.Lock()
	defer figures.mu.Unlock()
	figures.lines = append(figures.lines, fmt.Sprintf("%-28s %8.0f %10s %8.0f %10s %9.1f",
		name, base.PerSecond(), base.P99().Round(10*time.Microsecond), during.PerSecond(), during.P99().Round(10*time.Microsecond), attack.MiB(peak)))
}

// bound is the README's bound on the POP's resident memory for these
// tests' flags (see "Memory" in the edgepixel-pop section), with maxConns
// connections and two instances, both warm at start. runAttack sets its
// Start.
func bound(maxConns int) attack.PopBound {
	// The conformance guest's instance, compiled code shared.
	const perInstance = 64 << 20
	return attack.PopBound{Warm: 2, Max: 2, Instance: perInstance, MaxConns: maxConns, BodyMemory: 64 << 20}
}

// twoInstances are the flags of every attack test: the POP's pool kept
// small, so that an attack holding instances would show at once.
var twoInstances = []string{"--instances", "2", "--max-instances", "2"}

func TestAttackStalledBodies(t *testing.T) {
	p := startProc(t, "", append(twoInstances, "--body-idle-timeout", "1s")...)
	var cr *attack.Crowd
	const n = 64 // the repro had 8: as many as instances
	runAttack(t, p, popAttack{
		name: "stalled bodies",
		start: func(t *testing.T, p *popProc) {
			cr = attack.Open(p.addr, []string{"127.0.0.1"}, n, attack.Send([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")))
		},
		stop: func(t *testing.T, p *popProc) {
			if r := cr.Stop(10 * time.Second); r.First[408] != n || r.Closed != n {
				t.Errorf("stalled senders got %v; want %d 408s, all closed", r, n)
			}
			if v := p.metricInt(t, `edgepixel_pop_client_timeouts_total{phase="body"}`); v != n {
				t.Errorf("body timeouts counted %d, want %d", v, n)
			}
		},
	}, bound(n+8))
}

func TestAttackSlowBodies(t *testing.T) {
	p := startProc(t, "", append(twoInstances, "--body-timeout", "2s")...)
	var cr *attack.Crowd
	const n = 64
	x := []byte("x")
	runAttack(t, p, popAttack{
		name: "slow bodies",
		start: func(t *testing.T, p *popProc) {
			// A byte every 100 ms: never idle long, never done.
			cr = attack.Open(p.addr, []string{"127.0.0.1"}, n, attack.Trickle([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"),
				100*time.Millisecond, 100, func(int) []byte { return x }))
		},
		stop: func(t *testing.T, p *popProc) {
			if r := cr.Stop(10 * time.Second); r.First[408] != n {
				t.Errorf("slow senders got %v, want %d 408s", r, n)
			}
		},
	}, bound(n+8))
}

// TestAttackBodyMemory: many large bodies sent most of the way, then
// stalled: together they would need far more than --body-memory.
func TestAttackBodyMemory(t *testing.T) {
	const n = 150 // x 900 KiB: 132 MiB wanted, 64 MiB allowed
	p := startProc(t, "", append(twoInstances, "--body-idle-timeout", "5s")...)
	var cr *attack.Crowd
	part := []byte(strings.Repeat("b", 900<<10))
	runAttack(t, p, popAttack{
		name: "stalled large bodies",
		start: func(t *testing.T, p *popProc) {
			cr = attack.Open(p.addr, attack.Addrs("127.0.0.10", 1), n, attack.Send([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"), part))
			time.Sleep(500 * time.Millisecond) // the bodies arrive
		},
		stop: func(t *testing.T, p *popProc) {
			r := cr.Stop(10 * time.Second)
			// Those that fit wait for the rest (408 at the idle timeout);
			// the others were refused when the memory was full.
			if r.First[408]+r.First[503] != n || r.First[503] == 0 {
				t.Errorf("stalled large bodies got %v, want 408s and 503s, %d in all", r, n)
			}
			if v := p.metricInt(t, `edgepixel_pop_client_rejects_total{reason="body_memory"}`); v != int64(r.First[503]) {
				t.Errorf("body memory refusals counted %d, answered %d", v, r.First[503])
			}
		},
	}, bound(n+8))
}

func TestAttackSlowHeaders(t *testing.T) {
	p := startProc(t, "", append(twoInstances, "--header-timeout", "2s")...)
	var cr *attack.Crowd
	const n = 200
	runAttack(t, p, popAttack{
		name: "slow headers",
		start: func(t *testing.T, p *popProc) {
			cr = attack.Open(p.addr, []string{"127.0.0.1"}, n, attack.Trickle([]byte("GET /counter HTTP/1.1\r\n"), 200*time.Millisecond, 100,
				func(i int) []byte { return fmt.Appendf(nil, "X-Slow-%d: y\r\n", i) }))
		},
		stop: func(t *testing.T, p *popProc) {
			if r := cr.Stop(10 * time.Second); r.First[0] != n || r.Closed != n {
				t.Errorf("slow heads got %v; want all closed without an answer", r)
			}
			if v := p.metricInt(t, `edgepixel_pop_client_timeouts_total{phase="header"}`); v < n {
				t.Errorf("header timeouts counted %d, want at least %d", v, n)
			}
		},
	}, bound(n+8))
}

func TestAttackHugeHeaders(t *testing.T) {
	const held, cut = 1000, 50
	p := startProc(t, "", append(twoInstances, "--max-conns", "1100")...)
	var heldConns, cutConns *attack.Crowd
	srcs := attack.Addrs("127.0.0.10", 5)
	runAttack(t, p, popAttack{
		name: "unfinished huge headers",
		start: func(t *testing.T, p *popProc) {
			// Just under the limit: held until the header timeout.
			heldConns = attack.Open(p.addr, srcs[:4], held, attack.Send(attack.HugeHead("/counter"), []byte(strings.Repeat("f", 70<<10))))
			// And heads of a megabyte, which the POP cuts at its limit.
			chunk := []byte(strings.Repeat("g", 64<<10))
			cutConns = attack.Open(p.addr, srcs[4:], cut, attack.Send(append([][]byte{attack.HugeHead("/counter")}, attack.Repeated(chunk, 16)...)...))
		},
		stop: func(t *testing.T, p *popProc) {
			heldConns.Stop(0)
			if r := cutConns.Stop(10 * time.Second); r.First[431] != cut {
				t.Errorf("megabyte heads got %v, want %d 431s", r, cut)
			}
		},
	}, bound(1100))
}

func TestAttackIdleConnections(t *testing.T) {
	const n, maxConns = 3000, 1000
	p := startProc(t, "", append(twoInstances, "--max-conns", strconv.Itoa(maxConns))...)
	var cr *attack.Crowd
	runAttack(t, p, popAttack{
		name: "idle keep-alive connections",
		start: func(t *testing.T, p *popProc) {
			// One request, then idle: a keep-alive connection.
			cr = attack.Open(p.addr, attack.Addrs("127.0.0.10", 12), n, attack.Send([]byte("GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")))
		},
		stop: func(t *testing.T, p *popProc) {
			open := p.metricInt(t, "edgepixel_pop_conns_open")
			r := cr.Stop(0)
			if open > maxConns {
				t.Errorf("%d connections open, over --max-conns %d", open, maxConns)
			}
			if ev := p.metricInt(t, `edgepixel_pop_conns_evicted_total{reason="max_conns"}`); ev < n-maxConns {
				t.Errorf("%d idle connections closed to make room, want at least %d", ev, n-maxConns)
			}
			t.Logf("attack connections: %v", r)
		},
	}, bound(maxConns))
}

// TestAttackFileDescriptors lowers the running POP's open-file limit to
// 256, under its connection limit, so accept runs out of descriptors.
func TestAttackFileDescriptors(t *testing.T) {
	const n = 1000
	p := startProc(t, "", append(twoInstances, "--max-conns", "2000", "--max-conns-per-addr", "-1")...)
	if _, err := attack.LimitOpenFiles(p.cmd.Process.Pid, 256); err != nil {
		t.Fatal(err)
	}
	var cr *attack.Crowd
	runAttack(t, p, popAttack{
		name: "file descriptors exhausted",
		start: func(t *testing.T, p *popProc) {
			cr = attack.Open(p.addr, []string{"127.0.0.1"}, n, attack.Send([]byte("GET /counter HTTP/1.1\r\nHost: x\r\n\r\n")))
		},
		stop: func(t *testing.T, p *popProc) {
			cr.Stop(0)
			if v := p.metricInt(t, `edgepixel_pop_accept_errors_total{reason="fd_limit"}`); v == 0 {
				t.Error("accept never ran out of descriptors: the attack did not reach the limit")
			}
			if v := p.metricInt(t, `edgepixel_pop_conns_evicted_total{reason="fd_limit"}`); v == 0 {
				t.Error("no waiting connection was closed to get a descriptor back")
			}
		},
	}, bound(256))
}

func TestAttackConflictingFraming(t *testing.T) {
	const n = 200
	p := startProc(t, "", twoInstances...)
	var cr *attack.Crowd
	runAttack(t, p, popAttack{
		name: "conflicting framing",
		start: func(t *testing.T, p *popProc) {
			// A chunked body that ends at once, and by Content-Length a
			// second request hidden in it.
			cr = attack.Open(p.addr, []string{"127.0.0.1"}, n, attack.Send([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"0\r\n\r\nGET /counter?smuggled HTTP/1.1\r\nHost: x\r\n\r\n")))
		},
		stop: func(t *testing.T, p *popProc) {
			if r := cr.Stop(10 * time.Second); r.First[201] != n || r.Closed != n || r.More > 0 {
				t.Errorf("got %v; want %d answers (201), each connection closed after it", r, n)
			}
			if v := p.metricInt(t, `edgepixel_pop_client_rejects_total{reason="ambiguous_framing"}`); v != n {
				t.Errorf("ambiguous framing counted %d, want %d", v, n)
			}
		},
	}, bound(n+8))
}
