package main

// The fleet section: the aggregator section's load (signed batches over
// HTTP, from the first batch sent to the last row committed in
// ClickHouse) into one aggregator, then into two sharing the same Redis
// Cluster (3 masters with a replica each) and ClickHouse, in one run.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/tests/stack"
)

func runFleet(o aggOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgepixel-bench-fleet-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(os.Stderr, "bench: fleet: starting a Redis Cluster, clickhouse-server and 2 aggregators in %s ...\n", dir)
	s, err := stack.Start(ctx, stack.Options{Dir: dir, Bin: stack.InDir(o.binDir), NoPop: true, RedisCluster: true, Aggregators: 2})
	if err != nil {
		return err
	}
	defer s.Stop()
	if err := waitFor(30*time.Second, func() bool { _, err := chCount(s.ClickHouse.HTTPURL); return err == nil }); err != nil {
		return fmt.Errorf("the events table never appeared")
	}
	urls := []string{s.AggregatorURL, s.More[0].URL}
	gen := newBatchGen(o.batch)
	// measure loads the first n aggregators with the senders split among
	// them and returns events/s from the first batch to the last row.
	measure := func(n int, d time.Duration) (float64, error) {
		before := gen.sent.Load()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Go(func() { _, errs[i] = load(urls[i], s.Secret, gen, max(o.senders/n, 1), d) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, err
			}
		}
		at, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), 2*time.Minute)
		if err != nil {
			return 0, err
		}
		return float64(gen.sent.Load()-before) / at.Sub(start).Seconds(), nil
	}
	fmt.Fprintf(os.Stderr, "bench: fleet warm-up (2s, both aggregators) ...\n")
	if _, err := measure(2, 2*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: fleet: 1 aggregator (%v, %d senders) ...\n", o.duration, o.senders)
	one, err := measure(1, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: fleet: 2 aggregators (%v, %d senders split) ...\n", o.duration, o.senders)
	two, err := measure(2, o.duration)
	if err != nil {
		return err
	}
	fmt.Printf("\nfleet: aggregators sharing a Redis Cluster (3 masters + 3 replicas) and one ClickHouse, all on this machine; %d senders, batches of %d events, %v each\n\n", o.senders, o.batch, o.duration)
	fmt.Printf("%-34s %16s %22s %8s\n", "figure", "2 aggregators", "baseline", "ratio")
	fmt.Printf("%-34s %16.0f %22s %8.2f\n", "events/s, HTTP in to ClickHouse", two, fmt.Sprintf("%.0f 1 aggregator", one), two/one)
	return nil
}
