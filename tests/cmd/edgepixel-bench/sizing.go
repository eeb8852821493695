package main

// The sizing section: what each part of the real pipeline costs per event,
// as the README's fleet sizing model needs it. Pixel hits (the enrich
// corpus: real user agents and referrers) go to a POP running the real
// edge module, which delivers signed batches to the aggregator, which
// dedupes through a Redis Cluster (3 masters with a replica each) and
// loads one clickhouse-server. Each part is a separate process; its CPU
// time (user + system, /proc/PID/stat), storage writes (/proc/PID/io) and
// memory are read before and after a fixed number of hits and divided by
// the events stored; the CPU time each part used while idle just before
// (idleFor), scaled to the phase's length, is taken off. CPU time per
// event is much less sensitive to other load on a shared machine than
// events/s, which is printed too.
//
// Three phases in one run, sharing the Redis Cluster and ClickHouse: a POP
// in front of 1 aggregator; a second POP in front of 2 aggregators (its
// backend list: the edge module spreads batches over them); and full
// batches posted straight to 1 aggregator, as a POP under load sends
// them, so that the aggregator's loads and ClickHouse's inserts are as big
// as under load (this machine cannot drive the POP that hard). The first
// phase is each figure's baseline. A fourth phase posts the same full
// batches to an aggregator of a replicated ClickHouse (one shard of 2
// replicas, insert quorum 2, ZooKeeper), so that replication's and
// ZooKeeper's costs are measured; its baseline is the third phase.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/stack"
)

type sizingOptions struct {
	binDir string
	events int // hits per pipeline phase
	conns  int
	agg    aggOptions // the batches phase: senders, batch size, duration
}

// part is one kind of process whose cost is measured: all its processes'
// figures are summed.
type part struct {
	name string
	pids []int
}

// usage is what a set of processes has used so far.
type usage struct {
	cpu   time.Duration
	write int64 // bytes caused to be written to storage
	rss   int64 // resident memory now, bytes
}

func usageOf(pids []int) usage {
	var u usage
	for _, pid := range pids {
		u.cpu += procCPU(pid)
		w, _ := procWriteBytes(pid)
		u.write += w
		r, _ := procRSS(pid)
		u.rss += r
	}
	return u
}

// phaseResult is one phase's figures.
type phaseResult struct {
	events    int64 // stored in the phase
	perSecond float64
	parts     []partCost
	redisMem  float64 // Redis used_memory added per event, all nodes, bytes
	perInsert float64 // events per ClickHouse INSERT
	load      string  // load average at the end of the phase
}

type partCost struct {
	cpuPerEv  float64 // µs, with the part's idle CPU over the phase taken off
	idle      float64 // the part's CPU while idle before the phase, ms per s
	writePerE float64 // bytes
	rss       int64   // bytes at the end of the phase
}

// sizingPhase is one way of pushing events through.
type sizingPhase struct {
	name     string
	ch       string // the ClickHouse server the phase's events are counted on
	baseline int    // index of the phase its ratios are against
	parts    []part // nil pids: the part is not in this phase
	// push sends events and returns how many were stored, once they are.
	push func() (int64, error)
}

func runSizing(o sizingOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgepixel-bench-sizing-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	bin := stack.InDir(o.binDir)
	cache := filepath.Join(dir, "wazero-cache") // one compile for both POPs
	fmt.Fprintf(os.Stderr, "bench: sizing: starting a Redis Cluster, clickhouse-server, an aggregator and a POP in %s ...\n", dir)
	one, err := stack.Start(ctx, stack.Options{
		Dir: filepath.Join(dir, "one"), Bin: bin, RedisCluster: true,
		Delivery: stack.DeliveryBatches, CompileCache: cache,
	})
	if err != nil {
		return err
	}
	defer one.Stop()
	fmt.Fprintf(os.Stderr, "bench: sizing: starting 2 more aggregators and a POP in front of them ...\n")
	two, err := stack.Start(ctx, stack.Options{
		Dir: filepath.Join(dir, "two"), Bin: bin, NoRedis: true, NoClickHouse: true, Aggregators: 2,
		AggregatorArgs: []string{"--redis-cluster", strings.Join(one.RedisCluster.Addrs(), ","), "--clickhouse", one.ClickHouse.HTTPURL},
		Delivery:       stack.DeliveryBatches, CompileCache: cache,
	})
	if err != nil {
		return err
	}
	defer two.Stop()

	fmt.Fprintf(os.Stderr, "bench: sizing: starting ZooKeeper, a ClickHouse shard of 2 replicas and an aggregator of it ...\n")
	zk, err := localsrv.StartZooKeeper(ctx, filepath.Join(dir, "zk"), 0)
	if err != nil {
		return err
	}
	defer zk.Stop()
	const clusterName = "sizing"
	cl, err := localsrv.StartClickHouseCluster(ctx, filepath.Join(dir, "ch-cluster"), zk, clusterName, 1, 2)
	if err != nil {
		return err
	}
	defer cl.Stop()
	replicated, err := stack.Start(ctx, stack.Options{
		Dir: filepath.Join(dir, "replicated"), Bin: bin, NoRedis: true, NoClickHouse: true,
		AggregatorArgs: []string{"--redis-cluster", strings.Join(one.RedisCluster.Addrs(), ","),
			"--clickhouse", cl.Shards[0][0].HTTPURL, "--clickhouse-cluster", clusterName},
		Delivery: stack.DeliveryBatches, CompileCache: cache,
	})
	if err != nil {
		return err
	}
	defer replicated.Stop()

	var redisPids, chPids []int
	for _, n := range one.RedisCluster.Nodes {
		redisPids = append(redisPids, n.Pid())
	}
	for _, s := range cl.Servers() {
		chPids = append(chPids, s.Pid())
	}
	ch, chc := one.ClickHouse.HTTPURL, cl.Shards[0][0].HTTPURL
	names := []string{"pop", "aggregator", "redis (3+3 nodes)", "clickhouse (all servers)", "zookeeper"}
	parts := func(pop, aggs, chs, zks []int) []part {
		return []part{{names[0], pop}, {names[1], aggs}, {names[2], redisPids}, {names[3], chs}, {names[4], zks}}
	}
	gen := newBatchGen(o.agg.batch)
	// fullBatches posts full batches to one aggregator, so that its loads
	// and ClickHouse's inserts are as big as they get under load.
	fullBatches := func(ch string, s *stack.Stack) func() (int64, error) {
		return func() (int64, error) {
			before, err := chCount(ch)
			if err != nil {
				return 0, err
			}
			sent := gen.sent.Load()
			if _, err := load(s.AggregatorURL, s.Secret, gen, o.agg.senders, o.agg.duration); err != nil {
				return 0, err
			}
			n := gen.sent.Load() - sent
			if _, err := waitRows(ch, before+n, 3*time.Minute); err != nil {
				return 0, err
			}
			return n, nil
		}
	}
	one1 := []int{one.ClickHouse.Pid()}
	phases := []sizingPhase{
		{"1 aggregator", ch, 0, parts([]int{one.Pop.Pid()}, []int{one.Aggregator.Pid()}, one1, nil),
			func() (int64, error) { return pushHits(ch, one.PopURL, o.events, o.conns) }},
		{"2 aggregators", ch, 0, parts([]int{two.Pop.Pid()}, []int{two.Aggregator.Pid(), two.More[0].Proc.Pid()}, one1, nil),
			func() (int64, error) { return pushHits(ch, two.PopURL, o.events, o.conns) }},
		{"full batches", ch, 0, parts(nil, []int{one.Aggregator.Pid()}, one1, nil), fullBatches(ch, one)},
		{"2 replicas", chc, 2, parts(nil, []int{replicated.Aggregator.Pid()}, chPids, []int{zk.Pid()}), fullBatches(chc, replicated)},
	}
	for _, c := range []string{ch, chc} {
		if err := waitFor(5*time.Minute, func() bool { _, err := chCount(c); return err == nil }); err != nil {
			return fmt.Errorf("the events table never appeared on %s", c)
		}
	}
	// Warm both POPs (instances, compiled code) and the aggregators' connections.
	for _, pop := range []string{one.PopURL, two.PopURL} {
		if _, err := pushHits(ch, pop, 2000, o.conns); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var results []phaseResult
	for _, p := range phases {
		fmt.Fprintf(os.Stderr, "bench: sizing: %s ...\n", p.name)
		r, err := measurePhase(p.ch, one.RedisCluster, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		results = append(results, r)
	}
	stored, err := storedBytesPerEvent(ch)
	if err != nil {
		return err
	}

	fmt.Printf("\nsizing: each part's cost per event stored, the real processes on this machine: a POP running the TinyGo edge module\n")
	fmt.Printf("(%d corpus hits per POP phase, %d connections) -> aggregator(s) -> Redis Cluster (3 masters + 3 replicas) -> 1 clickhouse-server;\n", o.events, o.conns)
	fmt.Printf("full batches: %d senders posting signed batches of %d events to 1 aggregator for %v, no POP; 2 replicas: the same into\n", o.agg.senders, o.agg.batch, o.agg.duration)
	fmt.Printf("a ClickHouse shard of 2 replicas with ZooKeeper (--clickhouse-cluster, insert quorum 2), its ratios against full batches. CPU is user+system\n")
	fmt.Printf("less each part's idle CPU over the phase. Load average at each phase's end: %s\n\n", strings.Join(func() []string {
		var l []string
		for _, r := range results {
			l = append(l, r.load)
		}
		return l
	}(), "; "))
	fmt.Printf("%-42s %14s %14s %7s %14s %7s %14s %7s\n", "figure", "1 aggregator", "2 aggregators", "ratio", "full batches", "ratio", "2 replicas", "ratio")
	row := func(name, format string, get func(phaseResult) (float64, bool)) {
		fmt.Printf("%-42s", name)
		for i, r := range results {
			b, bok := get(results[phases[i].baseline])
			v, ok := get(r)
			switch {
			case !ok:
				fmt.Printf(" %14s", "-")
			default:
				fmt.Printf(" %14s", fmt.Sprintf(format, v))
			}
			if i == 0 {
				continue
			}
			if ok && bok && b != 0 {
				fmt.Printf(" %7.2f", v/b)
			} else {
				fmt.Printf(" %7s", "-")
			}
		}
		fmt.Println()
	}
	inPhase := func(r phaseResult, i int) bool { return len(r.parts) > i && r.parts[i].rss > 0 }
	row("events/s end to end", "%.0f", func(r phaseResult) (float64, bool) { return r.perSecond, true })
	for i, n := range names {
		row("CPU us/event, "+n, "%.1f", func(r phaseResult) (float64, bool) { return r.parts[i].cpuPerEv, inPhase(r, i) })
	}
	row("CPU us/event, all parts in the phase", "%.1f", func(r phaseResult) (float64, bool) {
		var sum float64
		for i := range names {
			if inPhase(r, i) {
				sum += r.parts[i].cpuPerEv
			}
		}
		return sum, true
	})
	for i, n := range names {
		row("idle CPU ms/s before, "+n, "%.1f", func(r phaseResult) (float64, bool) { return r.parts[i].idle, inPhase(r, i) })
	}
	for i, n := range names {
		// One decimal: a part that writes next to nothing (the POP
		// delivering by batches) printed "0" beside a ratio of 2.
		row("storage writes B/event, "+n, "%.1f", func(r phaseResult) (float64, bool) { return r.parts[i].writePerE, inPhase(r, i) })
	}
	for i, n := range names {
		row("resident memory MiB, "+n, "%.1f", func(r phaseResult) (float64, bool) { return float64(r.parts[i].rss) / (1 << 20), inPhase(r, i) })
	}
	row("redis used_memory B/event, all nodes", "%.1f", func(r phaseResult) (float64, bool) { return r.redisMem, true })
	row("events per clickhouse INSERT", "%.0f", func(r phaseResult) (float64, bool) { return r.perInsert, r.perInsert > 0 })
	fmt.Printf("%-42s %14.1f\n", "clickhouse bytes on disk/event, all tables", stored)
	return nil
}

// idleFor is how long each part's idle CPU is measured before a phase.
const idleFor = 3 * time.Second

// measurePhase runs one phase and returns each part's cost per event
// stored.
func measurePhase(ch string, rc *localsrv.RedisCluster, p sizingPhase) (phaseResult, error) {
	// Let what the warm-up or the last phase left (merges, loader polls)
	// finish, then take each part's idle CPU rate.
	time.Sleep(2 * time.Second)
	idle0 := make([]usage, len(p.parts))
	for i, pt := range p.parts {
		idle0[i] = usageOf(pt.pids)
	}
	time.Sleep(idleFor)
	before := make([]usage, len(p.parts))
	for i, pt := range p.parts {
		before[i] = usageOf(pt.pids)
	}
	memBefore, err := redisUsedMemory(rc)
	if err != nil {
		return phaseResult{}, err
	}
	insBefore, err := chEvent(ch, "InsertQuery")
	if err != nil {
		return phaseResult{}, err
	}
	start := time.Now()
	n, err := p.push()
	if err != nil {
		return phaseResult{}, err
	}
	took := time.Since(start)
	// The rows are in; what ClickHouse merges in the background and the
	// loader's last acknowledgements belong to this phase too.
	time.Sleep(2 * time.Second)
	elapsed := time.Since(start)
	r := phaseResult{events: n, perSecond: float64(n) / took.Seconds()}
	for i, pt := range p.parts {
		u := usageOf(pt.pids)
		idleRate := float64(before[i].cpu-idle0[i].cpu) / float64(idleFor) // CPU s per s
		busy := float64(u.cpu-before[i].cpu) - idleRate*float64(elapsed)
		c := partCost{
			cpuPerEv:  busy / 1e3 / float64(n),
			idle:      idleRate * 1e3,
			writePerE: float64(u.write-before[i].write) / float64(n),
			rss:       u.rss,
		}
		if len(pt.pids) == 0 {
			c = partCost{}
		}
		r.parts = append(r.parts, c)
	}
	memAfter, err := redisUsedMemory(rc)
	if err != nil {
		return phaseResult{}, err
	}
	r.redisMem = float64(memAfter-memBefore) / float64(n)
	if ins, err := chEvent(ch, "InsertQuery"); err == nil && ins > insBefore {
		r.perInsert = float64(n) / float64(ins-insBefore)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(load))
	r.load = strings.Join(f[:min(3, len(f))], " ")
	return r, nil
}

// chEvent is one of ClickHouse's cumulative counters (system.events).
func chEvent(ch, name string) (int64, error) {
	v, err := chScalar(ch, "SELECT sum(value) FROM system.events WHERE event = '"+name+"'")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// pushHits sends n corpus hits to the POP at base from conns keep-alive
// clients, then waits until ClickHouse holds a row for each hit the edge
// accepted. It returns how many were accepted; a hit refused or dropped,
// or a row too many or missing, is an error.
func pushHits(ch, base string, n, conns int) (int64, error) {
	before, err := chCount(ch)
	if err != nil {
		return 0, err
	}
	reqs := enrichRequests(strings.TrimPrefix(base, "http://"))
	var next, accepted atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for c := range conns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				resp, err := client.Do(reqs[i%int64(len(reqs))].Clone(context.Background()))
				if err != nil {
					errs[c] = err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs[c] = fmt.Errorf("pixel answered %s", resp.Status)
					return
				}
				if resp.Header.Get("X-Edgepixel-Drop") == "" {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if _, err := waitRows(ch, before+accepted.Load(), 3*time.Minute); err != nil {
		return 0, err
	}
	return accepted.Load(), nil
}

// redisUsedMemory is used_memory summed over every node of the cluster.
func redisUsedMemory(rc *localsrv.RedisCluster) (int64, error) {
	var sum int64
	for _, n := range rc.Nodes {
		v, err := localsrv.Command(context.Background(), n.Addr, "INFO", "memory")
		if err != nil {
			return 0, err
		}
		s, _ := v.(string)
		found := false
		for _, line := range strings.Split(s, "\n") {
			if x, ok := strings.CutPrefix(line, "used_memory:"); ok {
				b, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
				if err != nil {
					return 0, err
				}
				sum += b
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("no used_memory in INFO of %s", n.Addr)
		}
	}
	return sum, nil
}

// storedBytesPerEvent is ClickHouse's bytes on disk in active parts of
// every edgepixel table (events and rollups) per event stored.
func storedBytesPerEvent(ch string) (float64, error) {
	v, err := chScalar(ch, "SELECT sum(bytes_on_disk) / (SELECT count() FROM edgepixel.events) FROM system.parts WHERE active AND database = 'edgepixel'")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(v, 64)
}
