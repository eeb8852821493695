package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/attack"
)

// The aggregator's limits in TestHostileTraffic; the memory bound the
// README documents for them is bound.
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

var bound = attack.AggregatorBound{LoaderMaxRows: hLoaderMaxRows, MaxConns: hMaxConns, GCPercent: hGCPercent,
	MaxBodyMemory: hMaxBodyMemory, MemoryLimit: hMemoryLimit}

type phaseResult struct {
	name    string
	load    *attack.Result
	retries int
	peakRSS int64 // bytes
	attack  string
}

// The hostile-traffic suite for the aggregator, real process on loopback,
// each attack bounded in connections and time, with the attack clients of
// tests/attack (from loopback addresses other than the normal senders'
// 127.0.0.1, so the per-client cap applies to them alone). During each
// attack two normal senders post signed batches as fast as they are
// answered; the suite checks that they keep being accepted, that every
// batch answered 200 is stored exactly once, and that peak RSS stays
// within bound. It logs the figures: normal batches per second and p99
// with and without each attack, and the peak RSS.
func TestHostileTraffic(t *testing.T) {
	needDeps(t)
	p := startAgg(t, "",
		"--max-conns", strconv.Itoa(hMaxConns), "--max-conns-per-client", strconv.Itoa(hMaxPerClient),
		"--max-body-memory", strconv.Itoa(hMaxBodyMemory), "--max-body", strconv.Itoa(hMaxBody),
		"--max-header-bytes", strconv.Itoa(hMaxHeader), "--body-timeout", "5s", "--read-header-timeout", "3s",
		"--idle-timeout", "10s", "--max-sites", "100", "--admin-token", hAdminToken,
		"--max-body-memory-per-client", strconv.Itoa(hPerClientShare), "--loader-max-rows", strconv.Itoa(hLoaderMaxRows),
		"--gc-percent", strconv.Itoa(hGCPercent), "--memory-limit", strconv.Itoa(hMemoryLimit))
	if bound.Live() > hMemoryLimit {
		t.Fatalf("the test's flags put the live bound (%d MiB) over --memory-limit", bound.Live()>>20)
	}
	base := "http://" + p.addr
	pid := p.cmd.Process.Pid
	const phaseFor = 3 * time.Second
	var accepted atomic.Int64 // events of normal batches answered 200
	srcs := attack.Addrs("127.0.1.1", 6)

	// phase runs the attack that start begins (nil: none) while the
	// normal senders send; stop ends it and says what it met.
	phase := func(name string, start func() (stop func() string)) phaseResult {
		attack.ResetPeak(pid)
		stop := func() string { return "" }
		if start != nil {
			stop = start()
			time.Sleep(500 * time.Millisecond) // let it build up
		}
		r := normalLoad(t, base, phaseFor, &accepted)
		r.name, r.attack = name, stop()
		r.peakRSS, _, _ = attack.Memory(pid)
		if !p.alive() {
			t.Fatalf("%s: the aggregator died\n%s", name, p.log())
		}
		return r
	}
	// crowd is an attack by one crowd of connections.
	crowd := func(open func() *attack.Crowd) func() func() string {
		return func() func() string {
			cr := open()
			return func() string { return cr.Stop(0).String() }
		}
	}

	normalLoad(t, base, time.Second, &accepted) // warm up: the schema, pools, connections
	var results []phaseResult
	results = append(results, phase("no attack", nil))

	results = append(results, phase("stalled bodies (1000 conns, Content-Length 4 MiB, headers only)", crowd(func() *attack.Crowd {
		return attack.Open(p.addr, srcs[:4], 1000, attack.Send(attack.ForgedIngestHead("Content-Length: 4194304\r\n")))
	})))

	results = append(results, phase("slow headers (1000 conns, a byte every 500 ms)", crowd(func() *attack.Crowd {
		x := []byte("X")
		return attack.Open(p.addr, srcs[:4], 1000, attack.Trickle([]byte("POST /ingest HTTP/1.1\r\nHost: x\r\n"), 500*time.Millisecond, 1000,
			func(int) []byte { return x }))
	})))

	results = append(results, phase("unfinished huge headers (500 conns, up to 1 MB each)", crowd(func() *attack.Crowd {
		line := []byte("X-Filler: " + strings.Repeat("a", 64<<10) + "\r\n")
		return attack.Open(p.addr, srcs[:4], 500, attack.Send(append([][]byte{[]byte("POST /ingest HTTP/1.1\r\nHost: x\r\n")}, attack.Repeated(line, 16)...)...))
	})))

	results = append(results, phase("idle connections (1800 from 6 addresses)", crowd(func() *attack.Crowd {
		// Refused connections are answered at once; admitted ones wait.
		return attack.Open(p.addr, srcs, 1800, attack.Send(attack.Healthz))
	})))

	results = append(results, phase("conflicting framing (Content-Length + Transfer-Encoding, 400 requests)", crowd(func() *attack.Crowd {
		req := append(attack.ForgedIngestHead("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"), attack.Chunked("abc")+
			"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"...) // a smuggled second request
		return attack.Open(p.addr, srcs[:2], 400, attack.Send(req))
	})))

	results = append(results, phase(fmt.Sprintf("unsigned 4 MiB bodies (32 senders on %d addresses)", hAttackAddrs), crowd(func() *attack.Crowd {
		body := make([]byte, 4<<20)
		rand.Read(body)
		return attack.Repeat(p.addr, srcs[:hAttackAddrs], 32, 20, func() [][]byte {
			return [][]byte{attack.ForgedIngestHead("Content-Length: 4194304\r\n"), body}
		})
	})))

	results = append(results, phase("credential guessing (admin token, 4 conns, one address)", crowd(func() *attack.Crowd {
		req := []byte("POST /admin/retention HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess-0123456789\r\nContent-Length: 2\r\n\r\n{}")
		return attack.Repeat(p.addr, srcs[5:], 4, 0, func() [][]byte { return [][]byte{req} })
	})))

	var siteTotal int
	results = append(results, phase("distinct site names (50,000 in signed batches)", func() func() string {
		done, quit := make(chan string, 1), make(chan struct{})
		go func() {
			c := &http.Client{Timeout: 30 * time.Second}
			codes := map[int]int{}
			for b := 0; b < 100 && !closed(quit); b++ {
				evs := mkEvents(t, "x", 500)
				for i := range evs {
					evs[i].Site = fmt.Sprintf("junk-%d-%d.example", b, i)
				}
				code, _ := send(c, base, evs)
				codes[code]++
				if code == 200 {
					siteTotal += len(evs)
				}
			}
			done <- fmt.Sprint("batches answered ", codes)
		}()
		return func() string { close(quit); return <-done }
	}))

	results = append(results, phase("oversized NDJSON (signed 3 MB of 1M tiny lines)", func() func() string {
		done := make(chan string, 1)
		go func() {
			req := attack.Signed(base+"/ingest/ndjson", "application/x-ndjson", []byte(testSecret), bytes.Repeat([]byte("{}\n"), 1_000_000))
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
			if err != nil {
				done <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
		}()
		return func() string { return <-done }
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
	resp, err := p.dashGet("/api/counts")
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

	t.Logf("documented bounds for these flags: live %d MiB, RSS %d MiB", bound.Live()>>20, bound.Bytes()>>20)
	t.Logf("%-72s %8s %9s %8s %9s %9s %9s  %s", "phase", "batches", "ok", "retried", "batch/s", "p50", "p99", "peak RSS")
	for _, r := range results {
		l := r.load
		t.Logf("%-72s %8d %9d %8d %9.0f %9v %9v  %d MiB", r.name, l.OK+l.Failed, l.OK, r.retries, l.PerSecond(),
			l.Percentile(50).Round(100*time.Microsecond), l.P99().Round(100*time.Microsecond), r.peakRSS>>20)
		if r.attack != "" {
			t.Logf("    attack outcome: %s", r.attack)
		}
		if l.OK == 0 || l.Failed > 0 {
			t.Errorf("%s: %d of %d normal batches accepted, %d failed: %v", r.name, l.OK, l.OK+l.Failed, l.Failed, l.Errors)
		}
		if r.peakRSS > bound.Bytes() {
			t.Errorf("%s: peak RSS %d MiB over the documented bound %d MiB", r.name, r.peakRSS>>20, bound.Bytes()>>20)
		}
	}
	if n := strings.Count(p.log(), "admin request refused"); n > 0 {
		t.Errorf("%d log lines for refused admin requests; want them summed up", n)
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// normalLoad runs two senders posting signed 100-event batches for site
// "normal" back to back for d, retrying 429/503 after Retry-After (as the
// edge does), and reports what they saw.
func normalLoad(t *testing.T, base string, d time.Duration, accepted *atomic.Int64) phaseResult {
	var retries atomic.Int64
	c := &http.Client{Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	load := attack.Load(ctx, 2, func(int) error {
		evs := mkEvents(t, "normal", 100)
		var last error
		for attempt := 0; attempt < 10; attempt++ {
			if attempt > 0 {
				retries.Add(1)
			}
			resp, err := c.Do(signedBatch(base, evs))
			if err != nil {
				last = err
				time.Sleep(100 * time.Millisecond)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				accepted.Add(int64(len(evs)))
				return nil
			case 429, 503:
				last = errors.New(resp.Status)
				after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				time.Sleep(min(time.Duration(after)*time.Second, time.Second))
			default:
				return errors.New(resp.Status)
			}
		}
		return last
	})
	return phaseResult{load: load, retries: int(retries.Load())}
}
