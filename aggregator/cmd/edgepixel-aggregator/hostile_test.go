package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// The aggregator's limits in TestHostileTraffic; the memory bound the
// README documents for them is rssBound.
const (
	hMaxConns       = 2048
	hMaxPerClient   = 256
	hMaxBodyMemory  = 64 << 20
	hMaxBody        = 4 << 20
	hMaxHeader      = 16 << 10
	hLoaderMaxRows  = 50000 // the default
	hGCPercent      = 400   // the default
	hMemoryLimit    = 384 << 20
	hAdminToken     = "admin-token-0123456789abcdef"
	hAttackAddrs    = 4 // fewer than hMaxBodyMemory / its per-client share (8)
	hPerClientShare = hMaxBodyMemory / 8
)

// liveBound is the README's bound on what the aggregator holds live:
//
//	48 MiB + loader-max-rows x 2 KiB + max-conns x 32 KiB + max-body-memory
//
// (the process at rest; three loads in flight; a connection's goroutine,
// buffers and header section; request bodies and their decoding).
func liveBound(loaderMaxRows, maxConns, maxBodyMemory int64) int64 {
	return 48<<20 + loaderMaxRows*2<<10 + maxConns*32<<10 + maxBodyMemory
}

// rssBound is the README's bound on resident memory: the garbage collector
// lets the heap grow to (1 + gc-percent/100) times the live memory, but
// not past memory-limit (when the live bound is below it), and the
// process holds about 32 MiB outside the heap.
func rssBound(live, gcPercent, memoryLimit int64) int64 {
	return min(memoryLimit, live*(100+gcPercent)/100) + 32<<20
}

type phaseResult struct {
	name           string
	batches, ok    int
	retries, fails int
	p50, p99       time.Duration
	perSec         float64
	peakRSS        int64 // bytes
	attack         string
}

// attacker opens connections from loopback source addresses other than
// the normal senders' 127.0.0.1, so the per-client cap applies to it
// alone.
type attacker struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func (a *attacker) dial(ip int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(ip))}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", a.addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second)) // nothing outlives the test
	a.mu.Lock()
	a.conns = append(a.conns, c)
	a.mu.Unlock()
	return c, nil
}

func (a *attacker) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

// answer reads one response from c and returns its status (0 if none).
func answer(c net.Conn, br *bufio.Reader) int {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, c.m[k])
	}
	return strings.TrimSpace(b.String())
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The hostile-traffic suite for the aggregator, real process on loopback,
// each attack bounded in connections and time. During each attack two
// normal senders post signed batches as fast as they are answered; the
// suite checks that they keep being accepted, that every batch answered
// 200 is stored exactly once, and that peak RSS stays within rssBound. It
// logs the figures: normal batches per second and p99 with and without
// each attack, and the peak RSS.
func TestHostileTraffic(t *testing.T) {
	needDeps(t)
	p := startAgg(t, "",
		"--max-conns", strconv.Itoa(hMaxConns), "--max-conns-per-client", strconv.Itoa(hMaxPerClient),
		"--max-body-memory", strconv.Itoa(hMaxBodyMemory), "--max-body", strconv.Itoa(hMaxBody),
		"--max-header-bytes", strconv.Itoa(hMaxHeader), "--body-timeout", "5s", "--read-header-timeout", "3s",
		"--idle-timeout", "10s", "--max-sites", "100", "--admin-token", hAdminToken,
		"--max-body-memory-per-client", strconv.Itoa(hPerClientShare), "--loader-max-rows", strconv.Itoa(hLoaderMaxRows),
		"--gc-percent", strconv.Itoa(hGCPercent), "--memory-limit", strconv.Itoa(hMemoryLimit))
	live := liveBound(hLoaderMaxRows, hMaxConns, hMaxBodyMemory)
	if live > hMemoryLimit {
		t.Fatalf("the test's flags put the live bound (%d MiB) over --memory-limit", live>>20)
	}
	bound := rssBound(live, hGCPercent, hMemoryLimit)
	base := "http://" + p.addr
	const phaseFor = 3 * time.Second
	var accepted atomic.Int64 // events of normal batches answered 200

	phase := func(name string, attack func(ctx context.Context, a *attacker) string) phaseResult {
		p.resetPeak()
		a := &attacker{addr: p.addr}
		ctx, cancel := context.WithCancel(context.Background())
		notes := make(chan string, 1)
		if attack != nil {
			go func() { notes <- attack(ctx, a) }()
			time.Sleep(500 * time.Millisecond) // let it build up
		} else {
			notes <- ""
		}
		r := normalLoad(t, base, phaseFor, &accepted)
		cancel()
		r.name, r.attack = name, <-notes
		a.closeAll()
		r.peakRSS = p.status("VmHWM") << 10
		if !p.alive() {
			t.Fatalf("%s: the aggregator died\n%s", name, p.log())
		}
		return r
	}

	validHeaders := func() string {
		return "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: " + wire.ContentType + "\r\n" +
			wire.HeaderTimestamp + ": " + strconv.FormatInt(time.Now().Unix(), 10) + "\r\n" +
			wire.HeaderSignature + ": " + randHex(32) + "\r\n"
	}
	// many runs f on n connections spread over ips source addresses.
	many := func(ctx context.Context, a *attacker, n, ips int, f func(c net.Conn, st *counts)) *counts {
		st := &counts{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := a.dial(1 + i%ips)
				if err != nil {
					st.add("dial_error")
					return
				}
				f(c, st)
			}()
		}
		wg.Wait()
		return st
	}

	normalLoad(t, base, time.Second, &accepted) // warm up: the schema, pools, connections
	var results []phaseResult
	results = append(results, phase("no attack", nil))

	results = append(results, phase("stalled bodies (1000 conns, Content-Length 4 MiB, headers only)", func(ctx context.Context, a *attacker) string {
		st := many(ctx, a, 1000, 4, func(c net.Conn, st *counts) {
			io.WriteString(c, validHeaders()+"Content-Length: 4194304\r\n\r\n")
			st.add("open")
			<-ctx.Done()
		})
		return st.String()
	}))

	results = append(results, phase("slow headers (1000 conns, a byte every 500 ms)", func(ctx context.Context, a *attacker) string {
		st := many(ctx, a, 1000, 4, func(c net.Conn, st *counts) {
			io.WriteString(c, "POST /ingest HTTP/1.1\r\nHost: x\r\n")
			for ctx.Err() == nil {
				if _, err := c.Write([]byte("X")); err != nil {
					st.add("closed_by_server")
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
			st.add("still_open")
		})
		return st.String()
	}))

	results = append(results, phase("unfinished huge headers (500 conns, up to 1 MB each)", func(ctx context.Context, a *attacker) string {
		chunk := []byte("X-Filler: " + strings.Repeat("a", 64<<10) + "\r\n")
		st := many(ctx, a, 500, 4, func(c net.Conn, st *counts) {
			io.WriteString(c, "POST /ingest HTTP/1.1\r\nHost: x\r\n")
			go func() {
				for i := 0; i < 16 && ctx.Err() == nil; i++ {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			c.SetReadDeadline(time.Now().Add(phaseFor))
			st.add(strconv.Itoa(answer(c, bufio.NewReader(c))))
		})
		return st.String()
	}))

	results = append(results, phase("idle connections (1800 from 6 addresses)", func(ctx context.Context, a *attacker) string {
		st := many(ctx, a, 1800, 6, func(c net.Conn, st *counts) {
			// Refused connections are answered at once; admitted ones wait.
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			st.add(strconv.Itoa(answer(c, bufio.NewReader(c))))
			<-ctx.Done()
		})
		return st.String()
	}))

	results = append(results, phase("conflicting framing (Content-Length + Transfer-Encoding, 400 requests)", func(ctx context.Context, a *attacker) string {
		req := validHeaders() + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		st := many(ctx, a, 400, 2, func(c net.Conn, st *counts) {
			br := bufio.NewReader(c)
			io.WriteString(c, req+"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // a smuggled second request
			st.add(strconv.Itoa(answer(c, br)))
			if answer(c, br) == 0 {
				st.add("closed_after")
			} else {
				st.add("second_request_served")
			}
		})
		return st.String()
	}))

	results = append(results, phase(fmt.Sprintf("unsigned 4 MiB bodies (32 senders on %d addresses)", hAttackAddrs), func(ctx context.Context, a *attacker) string {
		body := make([]byte, 4<<20)
		rand.Read(body)
		st := many(ctx, a, 32, hAttackAddrs, func(c net.Conn, st *counts) {
			br := bufio.NewReader(c)
			for i := 0; i < 20 && ctx.Err() == nil; i++ {
				go func(c net.Conn) { // the body is shared: no copy per request
					io.WriteString(c, validHeaders()+"Content-Length: 4194304\r\n\r\n")
					c.Write(body)
				}(c)
				code := answer(c, br)
				st.add(strconv.Itoa(code))
				if code != 401 { // the rest of the body is not read: start over
					c.Close()
					if c, _ = a.dial(1 + i%hAttackAddrs); c == nil {
						return
					}
					br = bufio.NewReader(c)
				}
			}
		})
		return st.String()
	}))

	results = append(results, phase("credential guessing (admin token, 4 conns, one address)", func(ctx context.Context, a *attacker) string {
		st := many(ctx, a, 4, 1, func(c net.Conn, st *counts) {
			br := bufio.NewReader(c)
			req := "POST /admin/retention HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess-" + randHex(8) + "\r\nContent-Length: 2\r\n\r\n{}"
			for ctx.Err() == nil {
				if _, err := io.WriteString(c, req); err != nil {
					return
				}
				st.add(strconv.Itoa(answer(c, br)))
			}
		})
		return st.String()
	}))

	var siteTotal int
	results = append(results, phase("distinct site names (50,000 in signed batches)", func(ctx context.Context, a *attacker) string {
		c := &http.Client{Timeout: 30 * time.Second}
		st := &counts{}
		for b := 0; b < 100 && ctx.Err() == nil; b++ {
			evs := mkEvents(t, "x", 500)
			for i := range evs {
				evs[i].Site = fmt.Sprintf("junk-%d-%d.example", b, i)
			}
			code, _ := send(c, base, evs)
			st.add(strconv.Itoa(code))
			if code == 200 {
				siteTotal += len(evs)
			}
		}
		return st.String()
	}))

	results = append(results, phase("oversized NDJSON (signed 3 MB of 1M tiny lines)", func(ctx context.Context, a *attacker) string {
		body := bytes.Repeat([]byte("{}\n"), 1_000_000)
		ts := time.Now().Unix()
		req, _ := http.NewRequest("POST", base+"/ingest/ndjson", bytes.NewReader(body))
		req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(wire.HeaderSignature, wire.Sign([]byte(testSecret), ts, body))
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
	}))

	results = append(results, phase("no attack, after the others", nil))

	// Every batch answered 200 is stored, once.
	want := int(accepted.Load())
	deadline := time.Now().Add(90 * time.Second)
	for p.rows("normal") < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // anything doubled would show by now
	if got := p.rows("normal"); got != want {
		t.Errorf("%d normal events stored, %d answered 200: want exactly those", got, want)
	}

	// The site flood left live counts and /api/counts bounded.
	var api struct {
		Total uint64            `json:"total"`
		Sites map[string]uint64 `json:"sites"`
		Other uint64            `json:"other"`
	}
	resp, err := http.Get(base + "/api/counts")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	json.Unmarshal(raw, &api)
	if len(api.Sites) > 100 || api.Other == 0 {
		t.Errorf("/api/counts after %d junk sites: %d sites, other %d", siteTotal, len(api.Sites), api.Other)
	}
	t.Logf("/api/counts after %d distinct junk sites: %d bytes, %d sites, other %d, total %d", siteTotal, len(raw), len(api.Sites), api.Other, api.Total)

	t.Logf("documented bounds for these flags: live %d MiB, RSS %d MiB", live>>20, bound>>20)
	t.Logf("%-72s %8s %9s %8s %9s %9s %9s  %s", "phase", "batches", "ok", "retried", "batch/s", "p50", "p99", "peak RSS")
	for _, r := range results {
		t.Logf("%-72s %8d %9d %8d %9.0f %9v %9v  %d MiB", r.name, r.batches, r.ok, r.retries, r.perSec, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.peakRSS>>20)
		if r.attack != "" {
			t.Logf("    attack outcome: %s", r.attack)
		}
		if r.ok == 0 || r.fails > 0 {
			t.Errorf("%s: %d of %d normal batches accepted, %d failed", r.name, r.ok, r.batches, r.fails)
		}
		if r.peakRSS > bound {
			t.Errorf("%s: peak RSS %d MiB over the documented bound %d MiB", r.name, r.peakRSS>>20, bound>>20)
		}
	}
	if n := strings.Count(p.log(), "admin request refused"); n > 0 {
		t.Errorf("%d log lines for refused admin requests; want them summed up", n)
	}
}

// normalLoad runs two senders posting signed 100-event batches for site
// "normal" back to back for d, retrying 429/503 after Retry-After (as the
// edge does), and reports what they saw.
func normalLoad(t *testing.T, base string, d time.Duration, accepted *atomic.Int64) phaseResult {
	var mu sync.Mutex
	var r phaseResult
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for time.Since(start) < d {
				evs := mkEvents(t, "normal", 100)
				t0 := time.Now()
				code, retries := 0, 0
				for attempt := 0; attempt < 10; attempt++ {
					resp, err := c.Do(signedBatch(base, evs))
					if err != nil {
						code = 0
						time.Sleep(100 * time.Millisecond)
						retries++
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
					if code != 429 && code != 503 {
						break
					}
					retries++
					after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					time.Sleep(min(time.Duration(after)*time.Second, time.Second))
				}
				el := time.Since(t0)
				mu.Lock()
				r.batches++
				r.retries += retries
				if code == 200 {
					r.ok++
					lat = append(lat, el)
					accepted.Add(int64(len(evs)))
				} else {
					r.fails++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.perSec = float64(r.ok) / time.Since(start).Seconds()
	slices.Sort(lat)
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2]
		r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r
}
