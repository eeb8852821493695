package attack

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The attack clients are the instrument of the hostile tests: these check
// that they report what a server did, against servers whose behaviour is
// known.

func TestAddrsAndSlug(t *testing.T) {
	if got := strings.Join(Addrs("127.0.0.254", 3), " "); got != "127.0.0.254 127.0.1.1 127.0.1.2" {
		t.Errorf("Addrs: %s", got)
	}
	if got := Slug("Repro: aggregator out of file descriptors, 2"); got != "repro-aggregator-out-of-file-descriptors-2" {
		t.Errorf("Slug: %s", got)
	}
}

// rawServer accepts connections on loopback and hands each to serve.
func rawServer(t *testing.T, serve func(c net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func readHead(c net.Conn) error {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

const answer408 = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

func TestCrowdReportsWhatTheServerDid(t *testing.T) {
	const n = 20
	stalled := []byte("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	for _, c := range []struct {
		name  string
		serve func(c net.Conn)
		wait  time.Duration
		check func(r Report) bool
	}{
		{"answers 408 and closes", func(c net.Conn) {
			readHead(c)
			io.WriteString(c, answer408)
			c.Close()
		}, 5 * time.Second, func(r Report) bool { return r.First[408] == n && r.Closed == n && r.Open() == 0 && r.More == 0 }},
		{"closes without an answer", func(c net.Conn) {
			readHead(c)
			c.Close()
		}, 5 * time.Second, func(r Report) bool { return r.First[0] == n && r.Closed == n }},
		{"holds the connection", func(c net.Conn) {
			readHead(c)
			time.Sleep(10 * time.Second)
			c.Close()
		}, 100 * time.Millisecond, func(r Report) bool { return r.First[0] == n && r.Closed == 0 && r.Open() == n }},
		{"answers twice and keeps it open", func(c net.Conn) {
			readHead(c)
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(10 * time.Second)
			c.Close()
		}, 500 * time.Millisecond, func(r Report) bool {
			return r.First[204] == n && r.Answers[200] == n && r.More == n && r.Closed == 0
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := rawServer(t, c.serve)
			cr := Open(addr, Addrs("127.0.0.10", 2), n, Send(stalled))
			r := cr.Stop(c.wait)
			if r.Conns != n || !c.check(r) {
				t.Errorf("report: %v", r)
			}
		})
	}
}

func TestTrickleWritesUntilStopped(t *testing.T) {
	got := make(chan int, 1)
	addr := rawServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- len(b)
	})
	cr := Open(addr, []string{"127.0.0.1"}, 1, Trickle([]byte("head"), 10*time.Millisecond, 1000, func(int) []byte { return []byte("x") }))
	time.Sleep(300 * time.Millisecond)
	cr.Stop(0)
	if n := <-got; n < 4+10 || n > 4+100 {
		t.Errorf("the server read %d bytes in 300 ms of a byte every 10 ms", n)
	}
}

func TestRepeatIsBoundedAndRedials(t *testing.T) {
	// The server answers 429 before the body and closes, reading what
	// else comes first, so that the close is not a reset that could
	// discard the answer.
	addr := rawServer(t, func(c net.Conn) {
		readHead(c)
		io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	})
	body := make([]byte, 1<<20)
	cr := Repeat(addr, []string{"127.0.0.1"}, 3, 5, func() [][]byte {
		return [][]byte{[]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"), body}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && sum(cr.report().Answers) < 15 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // no 16th
	r := cr.Stop(0)
	if r.Answers[429] != 15 || r.Conns != 15 {
		t.Errorf("3 senders of 5 requests each, closed after every answer: %v", r)
	}
}

func TestLoadCountsAndPercentiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	i := 0
	start := time.Now()
	r := Load(ctx, 1, func(int) error {
		if i++; i == 100 {
			cancel()
		}
		if i%10 == 0 {
			return &net.OpError{Op: "dial", Err: errors.New("refused")}
		}
		time.Sleep(time.Duration(i%10) * time.Millisecond)
		return nil
	})
	if r.OK != 90 || r.Failed != 10 || len(r.Errors) != 1 {
		t.Errorf("%v", r)
	}
	// Bounds that hold however loaded the machine is (no test fails on a
	// timing): at least the longest sleep, at most the whole run.
	if p, all := r.P99(), time.Since(start); p < 9*time.Millisecond || p > all {
		t.Errorf("p99 %v of sleeps up to 9 ms, in a run of %v", p, all)
	}
}

func TestClientComesFromItsAddress(t *testing.T) {
	from := make(chan string, 1)
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from <- r.RemoteAddr
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := Client(NormalSource, time.Second).Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if host, _, _ := net.SplitHostPort(<-from); host != NormalSource {
		t.Errorf("request from %s, want %s", host, NormalSource)
	}
}

// TestBoundsMatchTheReadme: with the defaults the README gives L ≈ 530
// MiB and RSS ≤ 1 GiB + 32 MiB for the aggregator.
func TestBoundsMatchTheReadme(t *testing.T) {
	b := AggregatorBound{LoaderMaxRows: 50000, MaxConns: 4096, GCPercent: 400, MaxBodyMemory: 256 << 20, MemoryLimit: 1 << 30}
	if l := MiB(b.Live()); l < 525 || l > 535 {
		t.Errorf("L = %.1f MiB", l)
	}
	if b.Bytes() != 1<<30+32<<20 {
		t.Errorf("RSS bound %.1f MiB", MiB(b.Bytes()))
	}
	p := PopBound{Start: 64 << 20, Warm: 0, Max: 2, Instance: PopInstanceLimit, MaxConns: 10, BodyMemory: 1 << 20}
	if want := int64(64<<20 + 2*128<<20 + 10*200<<10 + 1<<20 + 48<<20); p.Bytes() != want {
		t.Errorf("POP bound %d, want %d", p.Bytes(), want)
	}
}

func TestMemoryAndOpenFilesOfAProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	peak, now, err := Memory(pid)
	if err != nil || peak < now || now == 0 {
		t.Errorf("memory: peak %d, now %d, %v", peak, now, err)
	}
	if err := ResetPeak(pid); err != nil {
		t.Error(err)
	}
	if n, err := OpenFiles(pid); err != nil || n < 3 {
		t.Errorf("open files: %d, %v", n, err)
	}
	restore, err := LimitOpenFiles(pid, 64)
	if err != nil {
		t.Fatal(err)
	}
	if soft := softNofile(t, pid); soft != "64" {
		t.Errorf("soft limit %s after LimitOpenFiles(64)", soft)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if soft := softNofile(t, pid); soft == "64" {
		t.Error("the limit was not restored")
	}
}

// softNofile reads a process's soft open-file limit from /proc/PID/limits.
func softNofile(t *testing.T, pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); strings.HasPrefix(line, "Max open files") && len(f) > 0 {
			return f[0]
		}
	}
	t.Fatal("no open-file limit in /proc/PID/limits")
	return ""
}
