package main

// The hostile section: a whole stack (redis-server, clickhouse-server, the
// aggregator, the POP running the real edge module, on loopback) under
// each attack the end-to-end suite runs (tests/attack), one at a time,
// while normal clients send hits through the POP. Each attack's figures
// are printed beside the same load without an attack: the normal hits'
// rate and p99, and the peak resident memory of the POP and of the
// aggregator (with the bound the README documents for the flags used).

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/edgepixel/edgepixel/tests/attack"
	"github.com/edgepixel/edgepixel/tests/stack"
)

type hostileOptions struct {
	binDir   string
	duration time.Duration // of normal load per attack
	workers  int           // normal clients
}

func runHostile(o hostileOptions) error {
	dir, err := os.MkdirTemp("", "edgepixel-bench-hostile-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	o2, targets, err := attack.UnderAttack(stack.Options{Dir: dir, Bin: stack.InDir(o.binDir), CompileCache: "default"})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: starting a whole stack for the attacks in %s ...\n", dir)
	s, err := stack.Start(context.Background(), o2)
	if err != nil {
		return err
	}
	defer s.Stop()
	tg := targets(s)
	_, popStart, err := attack.Memory(tg.PopPid)
	if err != nil {
		return err
	}
	popBound, aggBound := attack.PopBoundFor(popStart).Bytes(), attack.AggregatorBoundFor.Bytes()
	hits := attack.NewHits(s.PopURL, o.workers)
	defer hits.Close()

	phase := func(name string, start func(attack.Targets) (*attack.Attack, error)) (attack.Phase, error) {
		fmt.Fprintf(os.Stderr, "bench: %s (%v of normal hits) ...\n", name, o.duration)
		p, err := attack.Measure(tg, hits, name, start, o.duration)
		if err == nil && p.Hits.Failed > 0 {
			p.Outcome.Problems = append(p.Outcome.Problems, "normal hits: "+p.Hits.String())
		}
		return p, err
	}

	// Each attack's baseline is the same load just before it: the machine
	// (shared, two cores) and the memory earlier attacks left are then
	// those the attack meets.
	hits.For(time.Second, "warm-up")
	type row struct{ base, during attack.Phase }
	var rows []row
	for _, sc := range attack.Scenarios(attack.IdleConns()) {
		base, err := phase("no attack, before "+sc.Name, nil)
		if err != nil {
			return err
		}
		during, err := phase(sc.Name, sc.Start)
		if err != nil {
			return err
		}
		rows = append(rows, row{base, during})
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
	for _, rr := range rows {
		r := rr.during
		for _, p := range r.Outcome.Problems {
			fmt.Printf("\nBROKEN during %s: %s", r.Name, p)
		}
		if r.PopPeak > popBound || r.AggregatorPeak > aggBound {
			fmt.Printf("\nBROKEN during %s: peak RSS over the documented bound", r.Name)
		}
	}
	fmt.Println()
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
