// Command edgepixel-cluster brings up a fleet on this machine, as separate
// processes on loopback ports: ZooKeeper, a ClickHouse cluster (2 shards x
// 2 replicas), a Redis Cluster (3 masters with a replica each) for dedupe,
// and two aggregators each with a local POP in front, each aggregator
// inserting into its own shard and reading every shard. Every POP knows
// every aggregator (its own first): a batch one refuses or leaves
// unanswered goes to another.
// `make cluster` builds everything and starts it. It shows each start's
// progress, prints where everything is, and Ctrl-C stops it all (the POPs
// first, so that what they hold reaches the aggregators).
//
// All state lives under -dir, so a second run keeps the data (but for
// the Redis Cluster's, see fleet.start).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/cli"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// clusterName is the remote_servers name the aggregators are given.
const clusterName = "edgepixel"

func main() {
	var (
		dir      = flag.String("dir", cli.EnvOr("EDGEPIXEL_CLUSTER_DIR", ".edgepixel/cluster"), "where all data and logs live (env EDGEPIXEL_CLUSTER_DIR)")
		binDir   = flag.String("bin", cli.EnvOr("EDGEPIXEL_CLUSTER_BIN", ".edgepixel/bin"), "where `make build` put the binaries and the .wasm (env EDGEPIXEL_CLUSTER_BIN)")
		shards   = flag.Int("shards", 2, "ClickHouse shards")
		replicas = flag.Int("replicas", 2, "ClickHouse replicas per shard")
		aggs     = flag.Int("aggregators", 2, "aggregators, each with a POP in front, spread over the shards")
		cache    = flag.String("compile-cache", os.Getenv("EDGEPIXEL_CLUSTER_COMPILE_CACHE"), "the POPs' compiled-code cache; empty: the POP's default, in the user's cache directory (env EDGEPIXEL_CLUSTER_COMPILE_CACHE)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	began := time.Now()
	if *aggs < 1 || *shards < 1 || *replicas < 1 {
		cli.Fatal(log, errors.New("-aggregators, -shards and -replicas must be at least 1"))
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		cli.Fatal(log, err)
	}
	if missing := deps.Missing("", []deps.Program{deps.Redis, deps.ClickHouse, deps.ZooKeeper}); len(missing) > 0 {
		cli.Fatal(log, errors.New(deps.Advice(missing)))
	}
	bin := stack.InDir(*binDir)
	for _, p := range []string{bin.Pop, bin.Aggregator, bin.Wasm} {
		if _, err := os.Stat(p); err != nil {
			cli.Fatal(log, fmt.Errorf("%s is missing: run `make build` first (or `make cluster`, which builds)", p))
		}
	}
	pr := progress.New(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := &fleet{log: log, compileCache: *cache}
	if f.compileCache == "" {
		f.compileCache = "default"
	}
	defer f.stop()
	if err := f.start(ctx, absDir, bin, pr, *shards, *replicas, *aggs); err != nil {
		f.stop()
		cli.Fatal(log, fmt.Errorf("%w (logs under %s)", err, absDir))
	}
	fmt.Print(f.banner(absDir, time.Since(began)))

	done := make(chan string, 2**aggs)
	for i, s := range f.stacks {
		go func() {
			select {
			case <-s.Pop.Done():
				done <- fmt.Sprintf("POP %d exited; see %s", i+1, filepath.Join(s.Options().Dir, "logs", "pop.log"))
			case <-s.Aggregator.Done():
				done <- fmt.Sprintf("aggregator %d exited; see %s", i+1, filepath.Join(s.Options().Dir, "logs", "aggregator.log"))
			}
		}()
	}
	failed := false
	select {
	case <-ctx.Done():
	case why := <-done:
		log.Error(why)
		failed = true
	}
	log.Info("stopping: POPs first so what they hold reaches the aggregators, then the aggregators, ClickHouse, Redis and ZooKeeper")
	if !f.stop() || failed {
		os.Exit(1)
	}
	log.Info("stopped")
}

type fleet struct {
	log          *slog.Logger
	compileCache string // stack.Options.CompileCache
	zk           *localsrv.ZooKeeper
	ch           *localsrv.ClickHouseCluster
	redis        *localsrv.RedisCluster
	stacks       []*stack.Stack
}

func (f *fleet) start(ctx context.Context, dir string, bin stack.Binaries, pr *progress.Reporter, shards, replicas, aggs int) error {
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if err := pr.Run("starting zookeeper", func() (err error) {
		f.zk, err = localsrv.StartZooKeeper(startCtx, filepath.Join(dir, "zookeeper"), 0)
		return err
	}); err != nil {
		return err
	}
	if err := pr.Run(fmt.Sprintf("starting %d clickhouse-servers (%d shards x %d replicas)", shards*replicas, shards, replicas), func() (err error) {
		f.ch, err = localsrv.StartClickHouseCluster(startCtx, filepath.Join(dir, "clickhouse"), f.zk, clusterName, shards, replicas)
		return err
	}); err != nil {
		return err
	}
	// The aggregators share one Redis Cluster for dedupe. It starts empty
	// on every run (its nodes get new ports, which a kept nodes.conf would
	// contradict): the aggregators see a new dedupe memory and check ids
	// up to the store's newest event against the store, as after any loss.
	if err := pr.Run("starting a redis cluster (3 masters, 3 replicas)", func() (err error) {
		rdir := filepath.Join(dir, "redis-cluster")
		if err := os.RemoveAll(rdir); err != nil {
			return err
		}
		f.redis, err = localsrv.StartRedisCluster(startCtx, rdir, 3, 1)
		return err
	}); err != nil {
		return err
	}
	// Every POP delivers to every aggregator, so all share one secret,
	// and each POP must know the others' addresses before they start.
	secret, err := stack.EnsureSecret(filepath.Join(dir, "secret"))
	if err != nil {
		return err
	}
	addrs := make([]string, aggs)
	for i := range addrs {
		if addrs[i], err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	for i := range aggs {
		sdir := filepath.Join(dir, "pop"+strconv.Itoa(i+1))
		if err := os.MkdirAll(sdir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sdir, "secret"), secret, 0o600); err != nil {
			return err
		}
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, "http://"+a)
			}
		}
		shard := f.ch.Shards[i%shards]
		server := shard[(i/shards)%len(shard)]
		o := stack.Options{
			Dir: sdir, Bin: bin,
			AggregatorAddr: addrs[i], DashboardAddr: "127.0.0.1:0", PopAddr: "127.0.0.1:0",
			NoRedis: true, NoClickHouse: true,
			AggregatorArgs:  []string{"--redis-cluster", strings.Join(f.redis.Addrs(), ","), "--clickhouse", server.HTTPURL, "--clickhouse-cluster", clusterName},
			PeerAggregators: peers,
			// POP 1 sends signed batches (Fastly's way) through the
			// backend list; the others journal each hit to their log
			// endpoint before answering (the self-hosted POP's default,
			// which survives a kill -9 of the POP). Both fail over to the
			// other aggregators, as in TestCluster.
			Delivery:     delivery(i),
			CompileCache: f.compileCache,
			Progress:     pr,
		}
		pr.Printf("aggregator and POP %d of %d (shard %d)", i+1, aggs, i%shards+1)
		s, err := stack.Start(startCtx, o)
		if err != nil {
			return err
		}
		f.stacks = append(f.stacks, s)
	}
	return nil
}

// stop stops everything in reverse order and reports whether each part
// stopped by itself (a part that had to be killed is logged); it may be
// called again.
func (f *fleet) stop() bool {
	ok := true
	warn := func(msg string, err error) {
		f.log.Warn(msg, "err", err)
		ok = false
	}
	for _, s := range f.stacks {
		if err := s.Stop(); err != nil {
			warn("stopping a POP and aggregator", err)
		}
	}
	f.stacks = nil
	if f.ch != nil {
		if err := f.ch.Stop(); err != nil {
			warn("stopping clickhouse", err)
		}
		f.ch = nil
	}
	if f.redis != nil {
		if err := f.redis.Stop(); err != nil {
			warn("stopping the redis cluster", err)
		}
		f.redis = nil
	}
	if f.zk != nil {
		if err := f.zk.Stop(); err != nil {
			warn("stopping zookeeper", err)
		}
		f.zk = nil
	}
	return ok
}

func (f *fleet) banner(dir string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nthe edgepixel fleet is running (ready in %s).\n\n", progress.Round(took))
	fmt.Fprintf(&b, "  zookeeper   %s\n", f.zk.Addr)
	for s, reps := range f.ch.Shards {
		for r, c := range reps {
			fmt.Fprintf(&b, "  clickhouse  shard %d replica %d: %s (native %s)\n", s+1, r+1, c.HTTPURL, c.TCPAddr)
		}
	}
	fmt.Fprintf(&b, "  redis       cluster %s\n", strings.Join(f.redis.Addrs(), " "))
	for i, s := range f.stacks {
		fmt.Fprintf(&b, "  aggregator %d  %s (dashboard %s/, token in %s)\n",
			i+1, s.AggregatorURL, s.DashboardURL, filepath.Join(s.Options().Dir, "dashboard-token"))
	}
	for i, s := range f.stacks {
		to := []string{s.AggregatorURL}
		to = append(to, s.Options().PeerAggregators...)
		fmt.Fprintf(&b, "  pop %d       %s/p.gif?site=demo   %s -> %s\n", i+1, s.PopURL, delivery(i), strings.Join(to, ", then "))
	}
	fmt.Fprintf(&b, "\nEvery dashboard reads every shard (database edgepixel, cluster %s). Logs and data: %s\nCtrl-C stops everything; data stays.\n", clusterName, dir)
	return b.String()
}

// delivery is how POP i (from 0) delivers: the first signed batches, the
// others a journal.
func delivery(i int) string {
	if i == 0 {
		return stack.DeliveryBatches
	}
	return stack.DeliveryJournal
}
