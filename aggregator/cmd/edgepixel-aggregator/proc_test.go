package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// Process-level tests: the real binary, built here, against a real
// redis-server and clickhouse-server, on loopback.

const testSecret = "process-test-secret-0123456789"

var (
	tmpRoot string // removed by TestMain

	binOnce sync.Once
	binPath string
	binErr  error

	depsOnce sync.Once
	redis    *localsrv.Redis
	ch       *localsrv.ClickHouse
	depsErr  error
	dbSeq    atomic.Int32
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		if tmpRoot, err = os.MkdirTemp("", "agg-process-test"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmpRoot)
		defer func() {
			if ch != nil {
				ch.Kill()
			}
			if redis != nil {
				redis.Stop()
			}
		}()
		return m.Run()
	}()
	os.Exit(code)
}

// aggBinary builds the command once (without -race, so that memory
// figures are those of the real binary).
func aggBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(tmpRoot, "edgepixel-aggregator")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// needDeps starts one redis-server and one clickhouse-server for the
// package's process tests.
func needDeps(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts redis-server, clickhouse-server and the aggregator")
	}
	_, haveRedis := localsrv.RedisAvailable()
	_, haveCH := localsrv.ClickHouseAvailable()
	if !haveRedis || !haveCH {
		t.Skip("redis-server or clickhouse-server not installed")
	}
	depsOnce.Do(func() {
		ctx := context.Background()
		if redis, depsErr = localsrv.StartRedis(ctx, filepath.Join(tmpRoot, "redis"), 0); depsErr != nil {
			return
		}
		ch, depsErr = localsrv.StartClickHouse(ctx, filepath.Join(tmpRoot, "ch"), 0, 0)
	})
	if depsErr != nil {
		t.Fatal(depsErr)
	}
}

// aggProc is a running aggregator process.
type aggProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string // host:port of --addr
	dash    string // http://host:port of --dashboard-addr
	dataDir string
	db      string

	mu    sync.Mutex
	lines []string // stderr, one log record a line

	done    chan struct{}
	exitErr error
}

// startAgg starts the aggregator with its own data dir, ClickHouse
// database and Redis db (redisURL overrides the shared Redis), plus args.
func startAgg(t *testing.T, redisURL string, args ...string) *aggProc {
	t.Helper()
	return startAggIn(t, t.TempDir(), redisURL, args...)
}

// startAggIn is startAgg with the data dir dataDir.
func startAggIn(t *testing.T, dataDir, redisURL string, args ...string) *aggProc {
	t.Helper()
	n := dbSeq.Add(1)
	p := &aggProc{t: t, dataDir: dataDir, db: fmt.Sprintf("proc%d", n), done: make(chan struct{})}
	if redisURL == "" {
		redisURL = strings.TrimSuffix(redis.URL, "/0") + "/" + strconv.Itoa(int(n)%16)
	}
	secretFile := filepath.Join(p.dataDir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0", "--data-dir", p.dataDir, "--secret-file", secretFile,
		"--redis", redisURL, "--clickhouse", ch.HTTPURL, "--clickhouse-db", p.db, "--log-format", "json"}, args...)
	p.cmd = exec.Command(aggBinary(t), all...)
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=single")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var rec struct{ Msg, Ingest, Dashboard string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "edgepixel aggregator started" {
				started <- [2]string{strings.TrimSuffix(strings.TrimPrefix(rec.Ingest, "http://"), "/ingest"), strings.TrimSuffix(rec.Dashboard, "/")}
			}
		}
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	select {
	case a := <-started:
		p.addr, p.dash = a[0], a[1]
	case <-p.done:
		t.Fatalf("the aggregator exited at start: %v\n%s", p.exitErr, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("the aggregator did not start\n%s", p.log())
	}
	return p
}

func (p *aggProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func (p *aggProc) url(path string) string { return "http://" + p.addr + path }

// stop ends the process (SIGTERM, then SIGKILL after 15 s).
func (p *aggProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitExit waits for the process to exit by itself and returns its exit
// code.
func (p *aggProc) waitExit(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("the aggregator still runs after %v\n%s", d, p.log())
	}
	if ee, ok := p.exitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.exitErr != nil {
		p.t.Fatal(p.exitErr)
	}
	return 0
}

func (p *aggProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// rows counts the stored events of site.
func (p *aggProc) rows(site string) int {
	p.t.Helper()
	resp, err := http.Post(ch.HTTPURL+"/", "text/plain", strings.NewReader(
		fmt.Sprintf("SELECT count() FROM %s.events WHERE site = '%s'", p.db, site)))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1 // the table is not there yet
	}
	return n
}

func mkEvents(t testing.TB, site string, n int) []event.Event {
	out := make([]event.Event, n)
	ms := time.Now().UnixMilli()
	for i := range out {
		id, err := event.NewID(ms, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = event.Event{ID: id, Time: ms, Site: site, Name: "pageview", URL: fmt.Sprintf("https://example.com/%d", i), Pop: "test"}
	}
	return out
}

// signedBatch returns a request for evs, signed now.
func signedBatch(base string, evs []event.Event) *http.Request {
	body := wire.Append(nil, evs)
	ts := time.Now().Unix()
	req, _ := http.NewRequest("POST", base+"/ingest", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(wire.HeaderSignature, wire.Sign([]byte(testSecret), ts, body))
	return req
}

func send(c *http.Client, base string, evs []event.Event) (int, error) {
	resp, err := c.Do(signedBatch(base, evs))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// dashGet GETs path on the dashboard listener with the admin token.
func (p *aggProc) dashGet(path string) (*http.Response, error) {
	tok, err := os.ReadFile(filepath.Join(p.dataDir, "dashboard-token"))
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", p.dash+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return http.DefaultClient.Do(req)
}
