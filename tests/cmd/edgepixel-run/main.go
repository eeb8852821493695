// Command edgepixel-run brings up the whole edgepixel stack on this machine
// for local development and self-hosting trials: private redis-server and
// clickhouse-server processes, the aggregator with its dashboard, and a local
// POP running the edge module. `make run` builds everything and starts it.
//
// All state lives under -dir, so a second run keeps the data. Where Redis or
// ClickHouse is not installed it says how to install it and runs the
// aggregator on its embedded fallbacks (in-process dedupe, on-disk storage).
// Ctrl-C stops everything, the POP first so buffered events are delivered.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/stack"
)

func main() {
	var (
		dir     = flag.String("dir", envOr("EDGEPIXEL_RUN_DIR", ".edgepixel/data"), "where all data and logs live (env EDGEPIXEL_RUN_DIR)")
		binDir  = flag.String("bin", envOr("EDGEPIXEL_RUN_BIN", ".edgepixel/bin"), "where `make build` put the binaries and the .wasm (env EDGEPIXEL_RUN_BIN)")
		aggAddr = flag.String("aggregator-addr", envOr("EDGEPIXEL_RUN_AGGREGATOR_ADDR", "127.0.0.1:8080"), "aggregator and dashboard address (env EDGEPIXEL_RUN_AGGREGATOR_ADDR)")
		popAddr = flag.String("pop-addr", envOr("EDGEPIXEL_RUN_POP_ADDR", "127.0.0.1:7676"), "local POP address (env EDGEPIXEL_RUN_POP_ADDR)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		fatal(log, err)
	}
	bin := stack.InDir(*binDir)
	for _, p := range []string{bin.Pop, bin.Aggregator, bin.Wasm} {
		if _, err := os.Stat(p); err != nil {
			fatal(log, fmt.Errorf("%s is missing: run `make build` first (or `make run`, which builds)", p))
		}
	}
	o := stack.Options{
		Dir:            absDir,
		Bin:            bin,
		AggregatorAddr: *aggAddr,
		PopAddr:        *popAddr,
		Progress:       progress.New(os.Stderr),
	}
	if _, ok := localsrv.RedisAvailable(); !ok {
		o.NoRedis = true
		log.Warn("redis-server is not installed: dedupe runs in-process and forgets on restart; install it with: sudo apt-get install -y redis-server")
	}
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		o.NoClickHouse = true
		log.Warn("clickhouse-server is not installed: events are stored on disk under " + filepath.Join(absDir, "aggregator") + "; install it with: sudo apt-get install -y clickhouse-server clickhouse-client")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s, err := stack.Start(startCtx, o)
	cancel()
	if err != nil {
		fatal(log, fmt.Errorf("%w (logs in %s)", err, filepath.Join(absDir, "logs")))
	}

	fmt.Printf(`
edgepixel is running.

  dashboard   %[1]s/
  pixel       %[2]s/p.gif?site=demo&url=https%%3A%%2F%%2Fexample.com%%2F
  events      POST %[2]s/e   {"site":"demo","name":"signup"}
  logs        %[3]s

Put this on a page:

  <img src="%[2]s/p.gif?site=demo" alt="" width="1" height="1" referrerpolicy="no-referrer-when-downgrade">

Try:  curl -i '%[2]s/p.gif?site=demo&url=https%%3A%%2F%%2Fexample.com%%2Fa&ref=https%%3A%%2F%%2Fnews.ycombinator.com%%2F'

Ctrl-C stops everything; data stays in %[4]s.
`, s.AggregatorURL, s.PopURL, filepath.Join(absDir, "logs"), absDir)

	select {
	case <-ctx.Done():
	case <-s.Pop.Done():
		log.Error("the POP exited; see its log", "log", filepath.Join(absDir, "logs", "pop.log"))
	case <-s.Aggregator.Done():
		log.Error("the aggregator exited; see its log", "log", filepath.Join(absDir, "logs", "aggregator.log"))
	}
	log.Info("stopping: POP first so buffered events reach the aggregator")
	if err := s.Stop(); err != nil {
		fatal(log, err)
	}
	log.Info("stopped")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fatal(log *slog.Logger, err error) {
	log.Error(err.Error())
	os.Exit(1)
}
