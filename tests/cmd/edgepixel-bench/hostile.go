package main

// The hostile section: a whole stack (redis-server, clickhouse-server, the
// aggregator, the POP running the real edge module, on loopback) under
// each attack the end-to-end suite runs (tests/attack), one at a time,
// while normal clients send hits through the POP. Each attack's figures
// are printed beside the same load without an attack: the normal hits'
// rate and p99, and the peak resident memory of the POP and of the
// aggregator (with the bound the README documents for the flags used).
// Each attack gets a fresh stack, so that what one leaves (rows to merge,
// memory) does not weigh on the next.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/attack"
	"github.com/edgepixel/edgepixel/tests/stack"
)

type hostileOptions struct {
	binDir   string
	duration time.Duration // of normal load per attack
	workers  int           // normal clients
	only     string        // --hostile-attacks: names' parts, comma-separated; "" for all
}

func runHostile(o hostileOptions) error {
	// Each attack meets a stack of its own, started for it: with one
	// stack for all, ClickHouse took on each attack's rows and merges, and
	// the baseline fell fourfold over the section (stop 54's run).
	type row struct {
		base, during attack.Phase
		cpu          [2]cpuShare // no attack, during
		popBound     int64       // the README's, for the POP's memory at its start
	}
	var parts *cpuParts
	var rows []row
	var popBound, aggBound int64 // the largest of the rows
	// The distinct site names' posts again, all for one site, to tell
	// what the names cost from what the posts do.
	scenarios := append(attack.Scenarios(attack.IdleConns()), attack.Scenario{Name: "the same posts, one site", Start: attack.OneSiteFlood})
	for _, sc := range scenarios {
		if !o.runs(sc.Name) {
			continue
		}
		r, cpu, p, pb, ab, err := hostileRound(o, sc.Name, sc.Start)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		rows, parts, popBound, aggBound = append(rows, row{r[0], r[1], cpu, pb}), p, max(popBound, pb), ab
	}
	if len(rows) == 0 {
		return fmt.Errorf("no attack's name contains any of --hostile-attacks %q", o.only)
	}

	fmt.Printf("\nhostile traffic: a whole stack on loopback under each attack of the end-to-end suite, one at a time; normal hits\n"+
		"from %d keep-alive clients (pixel GETs, every fifth an event POST) for %v during each attack and %v just before it, GOMAXPROCS=%d\n\n",
		o.workers, o.duration, o.duration, runtime.GOMAXPROCS(0))
	fmt.Printf("%-28s %8s %10s %6s %10s %10s %6s\n", "normal hits during", "hits/s", "no attack", "ratio", "p99", "no attack", "ratio")
	for _, r := range rows {
		a, b := r.during.Hits, r.base.Hits
		fmt.Printf("%-28s %8.0f %10.0f %6.2f %10s %10s %6.2f\n", r.during.Name, a.PerSecond(), b.PerSecond(), a.PerSecond()/b.PerSecond(),
			ms(a.P99()), ms(b.P99()), float64(a.P99())/float64(b.P99()))
	}
	fmt.Printf("\npeak resident memory, MiB (the README's bounds for the flags used: POP %.0f, aggregator %.0f)\n\n", attack.MiB(popBound), attack.MiB(aggBound))
	fmt.Printf("%-28s %8s %10s %6s %10s %10s %6s\n", "during", "POP", "no attack", "ratio", "aggregator", "no attack", "ratio")
	for _, r := range rows {
		a, b := r.during, r.base
		fmt.Printf("%-28s %8.1f %10.1f %6.2f %10.1f %10.1f %6.2f\n", a.Name, attack.MiB(a.PopPeak), attack.MiB(b.PopPeak), float64(a.PopPeak)/float64(b.PopPeak),
			attack.MiB(a.AggregatorPeak), attack.MiB(b.AggregatorPeak), float64(a.AggregatorPeak)/float64(b.AggregatorPeak))
	}
	// Where the cores went: an attack's cost on two shared cores is often
	// another part's work it causes (ClickHouse loading its rows).
	fmt.Printf("\nCPU, cores of the two, before each attack (no attack) and during it\n\n%-28s %-10s | %s\n", "", "", parts.header())
	for _, r := range rows {
		fmt.Printf("%-28s %-10s | %s\n%-28s %-10s | %s\n", r.during.Name, "no attack", r.cpu[0].cells(), "", "during", r.cpu[1].cells())
	}
	for _, rr := range rows {
		r := rr.during
		for _, p := range r.Outcome.Problems {
			fmt.Printf("\nBROKEN during %s: %s", r.Name, p)
		}
		if r.PopPeak > rr.popBound || r.AggregatorPeak > aggBound {
			fmt.Printf("\nBROKEN during %s: peak RSS over the documented bound", r.Name)
		}
	}
	fmt.Println()
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// runs says whether the attack named name is one --hostile-attacks asks
// for.
func (o hostileOptions) runs(name string) bool {
	if o.only == "" {
		return true
	}
	for _, w := range strings.Split(o.only, ",") {
		if w = strings.TrimSpace(w); w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// hostileRound starts a whole stack, measures the normal hits without an
// attack and then during it, and stops the stack. It returns the two
// phases and the README's memory bounds of the POP and the aggregator
// for the flags used.
func hostileRound(o hostileOptions, name string, start func(attack.Targets) (*attack.Attack, error)) (_ [2]attack.Phase, cpu [2]cpuShare, parts *cpuParts, popBound, aggBound int64, err error) {
	var out [2]attack.Phase
	dir, err := os.MkdirTemp("", "edgepixel-bench-hostile-")
	if err != nil {
		return out, cpu, nil, 0, 0, err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	o2, targets, err := attack.UnderAttack(stack.Options{Dir: dir, Bin: stack.InDir(o.binDir), CompileCache: "default"})
	if err != nil {
		return out, cpu, nil, 0, 0, err
	}
	fmt.Fprintf(os.Stderr, "bench: starting a whole stack for %s in %s ...\n", name, dir)
	s, err := stack.Start(context.Background(), o2)
	if err != nil {
		return out, cpu, nil, 0, 0, err
	}
	defer s.Stop()
	tg := targets(s)
	_, popStart, err := attack.Memory(tg.PopPid)
	if err != nil {
		return out, cpu, nil, 0, 0, err
	}
	hits := attack.NewHits(s.PopURL, o.workers)
	defer hits.Close()
	hits.For(time.Second, "warm-up")
	parts = &cpuParts{}
	parts.add("POP", tg.PopPid)
	parts.add("aggregator", tg.AggregatorPid)
	chPid, redisPid := -1, -1 // not running: an empty column
	if s.ClickHouse != nil {
		chPid = s.ClickHouse.Pid()
	}
	if s.Redis != nil {
		redisPid = s.Redis.Pid()
	}
	parts.add("clickhouse-server", chPid)
	parts.add("redis-server", redisPid)
	parts.add("bench (clients, attack)", 0)
	for i, start := range []func(attack.Targets) (*attack.Attack, error){nil, start} {
		phase := name
		if start == nil {
			phase = "no attack, before " + name
		}
		fmt.Fprintf(os.Stderr, "bench: %s (%v of normal hits) ...\n", phase, o.duration)
		before := parts.sample()
		p, err := attack.Measure(tg, hits, phase, start, o.duration)
		if err != nil {
			return out, cpu, nil, 0, 0, err
		}
		cpu[i] = parts.share(before, parts.sample())
		if p.Hits.Failed > 0 {
			p.Outcome.Problems = append(p.Outcome.Problems, "normal hits: "+p.Hits.String())
		}
		out[i] = p
	}
	return out, cpu, parts, attack.PopBoundFor(popStart).Bytes(), attack.AggregatorBoundFor.Bytes(), nil
}
