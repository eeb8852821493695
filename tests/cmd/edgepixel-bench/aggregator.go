package main

// The aggregator section: signed batches over HTTP into the real
// aggregator binary, with the spool fsynced before every 200, Redis
// dedupe and ClickHouse, all on loopback, measured from the first batch
// sent to the last row committed in ClickHouse.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// Goals the figures are printed against.
const (
	goalEventsPerSec = 200_000
	goalRedisBytes   = 40
)

type aggOptions struct {
	binDir   string
	duration time.Duration
	senders  int
	batch    int // events per batch: the edge's default batch_max_events
}

func runAggregator(o aggOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgepixel-bench-agg-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" { // BENCH_KEEP=1 keeps the servers' files and logs

		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(os.Stderr, "bench: starting redis-server, clickhouse-server and the aggregator in %s ...\n", dir)
	s, err := stack.Start(ctx, stack.Options{Dir: dir, Bin: stack.InDir(o.binDir), NoPop: true})
	if err != nil {
		return err
	}
	defer s.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: s.Redis.Addr})
	defer rdb.Close()
	// Wait for the loader to have created the schema.
	if err := waitFor(30*time.Second, func() bool { _, err := chCount(s.ClickHouse.HTTPURL); return err == nil }); err != nil {
		return errors.New("the events table never appeared")
	}

	gen := newBatchGen(o.batch)
	fmt.Fprintf(os.Stderr, "bench: aggregator warm-up (2s) ...\n")
	if _, err := load(s.AggregatorURL, s.Secret, gen, o.senders, 2*time.Second); err != nil {
		return err
	}
	if _, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), time.Minute); err != nil {
		return err
	}

	memBefore, err := usedMemory(rdb)
	if err != nil {
		return err
	}
	ioBefore, err := procWriteBytes(s.Aggregator.Pid())
	if err != nil {
		return err
	}
	rowsBefore := gen.sent.Load()
	bodyBefore := gen.bodyBytes.Load()
	fmt.Fprintf(os.Stderr, "bench: aggregator under load (%v, %d senders, %d events a batch) ...\n", o.duration, o.senders, o.batch)
	start := time.Now()
	lat, err := load(s.AggregatorURL, s.Secret, gen, o.senders, o.duration)
	if err != nil {
		return err
	}
	ingestDone := time.Since(start)
	events := gen.sent.Load() - rowsBefore
	committedAt, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), 2*time.Minute)
	if err != nil {
		return err
	}
	e2e := committedAt.Sub(start)
	ioAfter, err := procWriteBytes(s.Aggregator.Pid())
	if err != nil {
		return err
	}
	memAfter, err := usedMemory(rdb)
	if err != nil {
		return err
	}
	bodies := gen.bodyBytes.Load() - bodyBefore

	// The same load with every event client-named (s.js names each):
	// what the copies' claims and marks cost the pipeline and Redis.
	fmt.Fprintf(os.Stderr, "bench: aggregator under load, every event client-named (%v) ...\n", o.duration)
	named := newBatchGenCopy(o.batch, 0x5eed)
	namedMemBefore, err := usedMemory(rdb)
	if err != nil {
		return err
	}
	countBefore, err := chCount(s.ClickHouse.HTTPURL)
	if err != nil {
		return err
	}
	namedStart := time.Now()
	if _, err := load(s.AggregatorURL, s.Secret, named, o.senders, o.duration); err != nil {
		return err
	}
	namedAt, err := waitRows(s.ClickHouse.HTTPURL, countBefore+named.sent.Load(), 2*time.Minute)
	if err != nil {
		return err
	}
	namedMemAfter, err := usedMemory(rdb)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: bare net/http that only reads the body, same load (%v) ...\n", min(o.duration, 5*time.Second))
	bare, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		return err
	}
	bareLat, err := load("http://"+bare, s.Secret, newBatchGen(o.batch), o.senders, min(o.duration, 5*time.Second))
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: redis memory of the old layout (one key per id), 100,000 ids ...\n")
	oldPerID, err := oldLayoutBytes(rdb, 100_000)
	if err != nil {
		return err
	}

	perID := float64(memAfter-memBefore) / float64(events)
	fmt.Printf("\naggregator: %d senders, batches of %d events (%.0f KB), %v of load, GOMAXPROCS=%d (this process)\n", o.senders, o.batch,
		float64(gen.bodySize)/1024, o.duration, runtime.GOMAXPROCS(0))
	fmt.Printf("HTTP in -> HMAC, decode, spool fsync -> 200; loader: Redis claim, ClickHouse Native insert, Redis mark\n\n")
	fmt.Printf("%-34s %16s %22s %8s\n", "figure", "aggregator", "baseline / goal", "ratio")
	row := func(name, a, b string, ratio float64) {
		fmt.Printf("%-34s %16s %22s %8.2f\n", name, a, b, ratio)
	}
	eps := float64(events) / e2e.Seconds()
	row("events/s, HTTP in to ClickHouse", fmt.Sprintf("%.0f", eps), fmt.Sprintf("%d goal", goalEventsPerSec), eps/goalEventsPerSec)
	ieps := float64(events) / ingestDone.Seconds()
	row("events/s acknowledged (ingest)", fmt.Sprintf("%.0f", ieps), fmt.Sprintf("%d goal", goalEventsPerSec), ieps/goalEventsPerSec)
	row("batch ack p50", fmt.Sprintf("%.3f ms", lat.pct(50)), fmt.Sprintf("%.3f ms bare", bareLat.pct(50)), lat.pct(50)/bareLat.pct(50))
	row("batch ack p99", fmt.Sprintf("%.3f ms", lat.pct(99)), fmt.Sprintf("%.3f ms bare", bareLat.pct(99)), lat.pct(99)/bareLat.pct(99))
	row("redis bytes per remembered id", fmt.Sprintf("%.1f", perID), fmt.Sprintf("%d goal", goalRedisBytes), perID/goalRedisBytes)
	row("  vs one key per id (old layout)", fmt.Sprintf("%.1f", perID), fmt.Sprintf("%.1f old", oldPerID), perID/oldPerID)
	namedEPS := float64(named.sent.Load()) / namedAt.Sub(namedStart).Seconds()
	row("events/s, every event client-named", fmt.Sprintf("%.0f", namedEPS), fmt.Sprintf("%.0f plain", eps), namedEPS/eps)
	namedPerEvent := float64(namedMemAfter-namedMemBefore) / float64(named.sent.Load())
	row("  redis bytes per named event", fmt.Sprintf("%.1f", namedPerEvent), fmt.Sprintf("%.1f plain", perID), namedPerEvent/perID)
	amp := float64(ioAfter-ioBefore) / float64(bodies)
	row("spool write amplification", fmt.Sprintf("%.3f", amp), "1.000 ideal", amp)
	fmt.Printf("\n%d events in %d batches (%.1f MB of bodies); all in ClickHouse %.2fs after the first was sent (load ran %.2fs)\n",
		events, lat.n(), float64(bodies)/1e6, e2e.Seconds(), ingestDone.Seconds())
	fmt.Printf("write amplification: bytes the aggregator process caused to be written to disk (/proc/PID/io write_bytes: spool records,\n" +
		"  page rewrites after each group-commit fsync, checkpoints) per byte of batch body received\n")
	return nil
}

// batchGen makes batches of fresh events from one encoded template, by
// patching each event's id and time in place: the load generator must
// not cost the machine more than the edge's encoding would.
type batchGen struct {
	tmpl      []byte
	idOffs    []int // offset of each event's id; its time follows it (6 bytes)
	bodySize  int
	counter   atomic.Uint64
	prefix    [6]byte
	sent      atomic.Int64 // events in acknowledged batches
	bodyBytes atomic.Int64
}

func newBatchGen(n int) *batchGen { return newBatchGenCopy(n, 0) }

// newBatchGenCopy is newBatchGen whose events, with copy not 0, are
// client-named (event.Event.Copy), as every event s.js sends is: the
// loader then claims and marks each event's copy in Redis as well.
func newBatchGenCopy(n int, copy uint64) *batchGen {
	evs := make([]event.Event, n)
	now := time.Now().UnixMilli()
	for i := range evs {
		id, _ := event.NewID(now, rand.Reader)
		evs[i] = event.Event{ID: id, Time: now, Site: "bench" + strconv.Itoa(i%5), Name: "pageview",
			URL:       "https://example.com/articles/" + strconv.Itoa(i) + "?utm_source=newsletter",
			Referrer:  "https://news.ycombinator.com/",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
			ClientIP:  "203.0.113.0", Country: "DE", UTMSource: "newsletter", Pop: "bench", Copy: copy}
	}
	g := &batchGen{tmpl: wire.Append(nil, evs)}
	g.bodySize = len(g.tmpl)
	rand.Read(g.prefix[:])
	// Find the ids again in the encoding: each is 16 bytes right after
	// the event's length prefix.
	for _, e := range evs {
		i := bytes.Index(g.tmpl, e.ID[:])
		g.idOffs = append(g.idOffs, i)
	}
	return g
}

// next returns a batch of events created now, with ids never used before.
func (g *batchGen) next(buf []byte) []byte {
	buf = append(buf[:0], g.tmpl...)
	now := uint64(time.Now().UnixMilli())
	var tv [10]byte
	tl := binary.PutUvarint(tv[:], now)
	for _, off := range g.idOffs {
		c := g.counter.Add(1)
		id := buf[off : off+16]
		binary.BigEndian.PutUint64(id[0:8], now<<16) // 48 bits of ms
		id[6] = 0x70 | g.prefix[0]&0x0F              // version 7
		id[7] = g.prefix[1]
		id[8] = 0x80 | g.prefix[2]&0x3F // variant
		id[9] = g.prefix[3]
		// 48 bits of counter times an odd constant: distinct for every
		// counter value, and the low bits (the dedupe shard) spread evenly.
		var x [8]byte
		binary.BigEndian.PutUint64(x[:], c*0x9E3779B97F4A7C15)
		copy(id[10:16], x[2:])
		if tl == 6 {
			copy(buf[off+16:off+22], tv[:6])
		}
	}
	return buf
}

type latencies struct {
	mu sync.Mutex
	ms []float64
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ms = append(l.ms, float64(d)/1e6)
	l.mu.Unlock()
}

func (l *latencies) n() int { return len(l.ms) }

func (l *latencies) pct(p float64) float64 {
	if len(l.ms) == 0 {
		return 0
	}
	s := slices.Clone(l.ms)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

// load runs senders posting batches back to back for d, each retried
// until it is acknowledged, and returns the acknowledgement latencies.
func load(base string, secret []byte, g *batchGen, senders int, d time.Duration) (*latencies, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: senders, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := &latencies{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for time.Now().Before(stop) {
				buf = g.next(buf)
				for attempt := 0; ; attempt++ {
					ts := time.Now().Unix()
					req, _ := http.NewRequest("POST", base+"/ingest", bytes.NewReader(buf))
					req.Header.Set("Content-Type", wire.ContentType)
					req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
					req.Header.Set(wire.HeaderSignature, wire.Sign(secret, ts, buf))
					t0 := time.Now()
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						g.bodyBytes.Add(int64(len(buf)))
						if resp.StatusCode == http.StatusOK {
							lat.add(time.Since(t0))
							g.sent.Add(int64(len(g.idOffs)))
							break
						}
						err = errors.New(resp.Status)
					}
					if attempt == 100 {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, fmt.Errorf("batches not acknowledged: %w", err)
	}
	return lat, nil
}

func chCount(base string) (int64, error) {
	v, err := chScalar(base, "SELECT count() FROM edgepixel.events")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// chScalar asks ClickHouse's HTTP interface at base a query whose answer
// is one value, and returns it as text.
func chScalar(base, q string) (string, error) {
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("clickhouse: %s", b)
	}
	return strings.TrimSpace(string(b)), nil
}

// waitRows waits until ClickHouse holds want rows and returns when it saw
// them.
func waitRows(base string, want int64, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := chCount(base)
		if err == nil && n >= want {
			if n > want {
				return time.Time{}, fmt.Errorf("%d rows in ClickHouse for %d events sent", n, want)
			}
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d rows in ClickHouse after %v (%v)", n, want, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMerges waits, up to limit, until the ClickHouse server at base runs
// no merge (system.merges is empty), and returns how long it waited and
// whether merges were still running at the limit. After a burst of
// inserts its background merges can take both cores for a minute; a
// round that starts while they run measures them as much as what it is
// for.
func waitMerges(base string, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	err := waitFor(limit, func() bool {
		v, err := chScalar(base, "SELECT count() FROM system.merges")
		return err == nil && v == "0"
	})
	return time.Since(start), err != nil
}

func waitFor(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return errors.New("timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func usedMemory(c *redis.Client) (int64, error) {
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO")
}

// oldLayoutBytes measures the layout before this one: one key per id
// (prefix and 16 raw bytes), a one-byte value, an expiry. It writes into
// database 15 of the same server and removes the keys afterwards.
func oldLayoutBytes(c0 *redis.Client, n int) (float64, error) {
	ctx := context.Background()
	opt := *c0.Options()
	opt.DB = 15
	c := redis.NewClient(&opt)
	defer c.Close()
	before, err := usedMemory(c)
	if err != nil {
		return 0, err
	}
	pipe := c.Pipeline()
	var id event.ID
	for i := 0; i < n; i++ {
		rand.Read(id[:])
		pipe.Set(ctx, "ep:"+string(id[:]), "d", 24*time.Hour)
		if i%10000 == 9999 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, err
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	after, err := usedMemory(c)
	if err != nil {
		return 0, err
	}
	c.FlushDB(ctx)
	return float64(after-before) / float64(n), nil
}

// procWriteBytes is what a process caused to be written to storage.
func procWriteBytes(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no write_bytes in /proc/PID/io")
}
