package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// healthWatch polls /healthz over one kept-alive connection (so that it
// still works when the process can open no more files) and records what
// it saw until the process is gone.
type healthWatch struct {
	mu       sync.Mutex
	sawOK    bool
	failing  string // the first 503's reason
	failedAt time.Time
	stop     chan struct{}
	done     chan struct{}
}

func watchHealth(t *testing.T, p *aggProc) *healthWatch {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &healthWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			select {
			case <-h.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return // the process is gone (or closed the connection)
			}
			var v struct{ Status, Reason string }
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			h.mu.Lock()
			if resp.StatusCode == 200 {
				h.sawOK = true
			} else if h.failing == "" && resp.StatusCode == 503 {
				h.failing, h.failedAt = v.Reason, time.Now()
			}
			h.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		ok := h.sawOK
		h.mu.Unlock()
		if ok {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz never answered 200")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *healthWatch) close() {
	close(h.stop)
	<-h.done
}

// wantExitWithReason waits for the process to exit and checks that it
// exited non-zero with the reason on stderr, and that /healthz answered
// 503 with the reason before it went.
func wantExitWithReason(t *testing.T, p *aggProc, h *healthWatch, want string) {
	t.Helper()
	code := p.waitExit(60 * time.Second)
	exited := time.Now()
	h.close()
	log := p.log()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	last := lines[len(lines)-1]
	if code == 0 || !strings.HasPrefix(last, "edgepixel-aggregator: ") || !strings.Contains(last, want) {
		t.Fatalf("exit code %d, last line %q; want non-zero and the reason (%q)\n%s", code, last, want, log)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.Contains(h.failing, want) {
		t.Fatalf("/healthz did not turn 503 with the reason before the exit (saw %q)\n%s", h.failing, log)
	}
	t.Logf("exit %d after /healthz said failing for %v: %s", code, exited.Sub(h.failedAt).Round(time.Millisecond), last)
}

func prlimit(t *testing.T, pid int, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	if out, err := exec.Command("prlimit", append([]string{"--pid", strconv.Itoa(pid)}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("prlimit %v: %v %s", args, err, out)
	}
}

// Each component's dependency is broken in turn: the process must exit
// non-zero with the reason, /healthz unhealthy first. Redis going away is
// a pause, not a failure: the process stays and catches up.
func TestComponentFailuresExit(t *testing.T) {
	needDeps(t)
	c := &http.Client{Timeout: 10 * time.Second}
	sendOK := func(t *testing.T, p *aggProc, site string, n int) {
		t.Helper()
		if code, err := send(c, p.url(""), mkEvents(t, site, n)); code != 200 {
			t.Fatalf("batch: %d %v", code, err)
		}
	}

	t.Run("spool directory removed", func(t *testing.T) {
		p := startAgg(t, "", "--exit-delay", "500ms")
		sendOK(t, p, "a", 10)
		h := watchHealth(t, p)
		if err := os.RemoveAll(filepath.Join(p.dataDir, "spool")); err != nil {
			t.Fatal(err)
		}
		send(c, p.url(""), mkEvents(t, "a", 10)) // the open segment may take it; the loader cannot read it
		wantExitWithReason(t, p, h, "spool")
	})

	t.Run("spool file size limit", func(t *testing.T) {
		p := startAgg(t, "", "--exit-delay", "500ms")
		sendOK(t, p, "a", 10)
		h := watchHealth(t, p)
		// Files may not grow past 64 KiB any more (EFBIG): the next
		// appends fail, and not for a full disk, which is a pause
		// (TestFullDiskIsAPause).
		prlimit(t, p.cmd.Process.Pid, "--fsize=65536")
		for i := 0; i < 100 && p.alive(); i++ {
			send(c, p.url(""), mkEvents(t, "a", 100))
		}
		wantExitWithReason(t, p, h, "spool")
	})

	t.Run("out of file descriptors", func(t *testing.T) {
		p := startAgg(t, "", "--exit-delay", "500ms", "--fail-after", "2s")
		sendOK(t, p, "a", 10)
		// Wait for the load to be committed, then keep one connection for
		// /healthz and one for a batch, and take away every other file.
		time.Sleep(500 * time.Millisecond)
		h := watchHealth(t, p)
		bc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
		if code, err := send(bc, p.url(""), mkEvents(t, "a", 10)); code != 200 {
			t.Fatalf("%d %v", code, err)
		}
		// Descriptors already open keep working; a new one must be below
		// the limit, and 0-2 (stdio) are never free: nothing can be opened,
		// whatever the process closes meanwhile.
		prlimit(t, p.cmd.Process.Pid, "--nofile=3:3")
		// Spooled over the kept connection; the loader cannot open the
		// segment to read it.
		if code, err := send(bc, p.url(""), mkEvents(t, "a", 10)); code != 200 {
			t.Fatalf("batch over the kept connection: %d %v", code, err)
		}
		wantExitWithReason(t, p, h, "out of file descriptors")
	})

	t.Run("redis down is a pause", func(t *testing.T) {
		r, err := localsrv.StartRedis(context.Background(), t.TempDir(), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		p := startAgg(t, r.URL, "--fail-after", "1s")
		sendOK(t, p, "paused", 10)
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			sendOK(t, p, "paused", 10) // spooled meanwhile
		}
		time.Sleep(3 * time.Second) // three times --fail-after
		if !p.alive() {
			t.Fatalf("exited while Redis was down\n%s", p.log())
		}
		var ready struct {
			Loading struct{ Ready bool } `json:"loading"`
		}
		resp, err := http.Get(p.url("/readyz?loading=1"))
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		hz, err := http.Get(p.url("/healthz"))
		if err != nil {
			t.Fatal(err)
		}
		hz.Body.Close()
		if resp.StatusCode != 503 || ready.Loading.Ready || hz.StatusCode != 200 {
			t.Fatalf("while Redis is down: readyz?loading=1 %d %+v, healthz %d", resp.StatusCode, ready, hz.StatusCode)
		}
		if err := r.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for p.rows("paused") != 60 {
			if time.Now().After(deadline) {
				t.Fatalf("%d rows after Redis came back, want 60", p.rows("paused"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// A full disk under the spool is a pause (tester89 saw the stack stop
// after three restarts): batches are answered 503 spool_error with the
// system's reason while it lasts, the process stays up and says so on
// /readyz and /metrics, and once a file is removed it takes batches
// again by itself; every batch answered 200 is stored once, and none
// answered 503 is.
func TestFullDiskIsAPause(t *testing.T) {
	needDeps(t)
	mnt := localsrv.Tmpfs(t, 4<<20)
	data := filepath.Join(mnt, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	p := startAggIn(t, data, "", "--exit-delay", "500ms", "--fail-after", "1s")
	c := &http.Client{Timeout: 10 * time.Second}
	accepted := 0
	post := func(n int) (int, string) {
		t.Helper()
		resp, err := c.Do(signedBatch(p.url(""), mkEvents(t, "full", n)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ Reason, Error string }
		json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode == 200 {
			accepted += n
		}
		return resp.StatusCode, v.Reason + ": " + v.Error
	}
	if code, msg := post(10); code != 200 {
		t.Fatalf("before the disk fills: %d %s", code, msg)
	}
	filler := filepath.Join(mnt, "filler")
	localsrv.Fill(t, filler)
	refused := 0
	for range 20 {
		code, msg := post(50)
		switch {
		case code == 503 && strings.HasPrefix(msg, "spool_error: ") && strings.Contains(msg, "no space left on device") && !strings.Contains(msg, "restarts"):
			refused++
		case code != 200: // the segment's last page may take a batch
			t.Fatalf("a batch while the disk is full: %d %s", code, msg)
		}
	}
	if refused == 0 {
		t.Fatal("no batch was refused on a full disk")
	}
	time.Sleep(2 * time.Second) // past --exit-delay and --fail-after
	if !p.alive() {
		t.Fatalf("the aggregator exited on a full disk\n%s", p.log())
	}
	if resp, err := c.Get(p.url("/readyz")); err != nil || resp.StatusCode != 503 {
		t.Errorf("/readyz while the disk is full: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if m := metricLine(t, p, "edgepixel_aggregator_spool_no_room"); m != "edgepixel_aggregator_spool_no_room 1" {
		t.Errorf("metric while the disk is full: %q", m)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, msg := post(10); code != 200 {
		t.Fatalf("once the disk has room: %d %s\n%s", code, msg, p.log())
	}
	if m := metricLine(t, p, "edgepixel_aggregator_spool_no_room"); m != "edgepixel_aggregator_spool_no_room 0" {
		t.Errorf("metric once the disk has room: %q", m)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.rows("full") != accepted && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // nothing more arrives
	if got := p.rows("full"); got != accepted {
		t.Fatalf("stored %d events, want the %d answered 200\n%s", got, accepted, p.log())
	}
	t.Logf("%d batches refused while the disk was full; %d events accepted and stored", refused, accepted)
}

// metricLine returns the line of the aggregator's /metrics that starts
// with name and a space, or "".
func metricLine(t *testing.T, p *aggProc, name string) string {
	t.Helper()
	resp, err := p.dashGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for l := range strings.Lines(string(b)) {
		if strings.HasPrefix(l, name+" ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
