// Command edgepixel-run brings up the whole edgepixel stack on this machine
// for local development and self-hosting trials: private redis-server and
// clickhouse-server processes, the aggregator with its dashboard, and a local
// POP running the edge module. `make run` installs what is missing, builds
// everything and starts it.
//
// All state lives under -dir, so a second run keeps the data. The edge
// module's settings come from -dir/edge-config.toml (config store keys) and
// its secrets from the files in -dir/secrets (pixel keys; the visitor salts,
// which the launcher keeps rotated with edgepixel-salt). Where Redis or
// ClickHouse is not installed it says how to install it and runs the
// aggregator on its embedded fallbacks (in-process dedupe, on-disk storage).
// Ctrl-C stops everything, the POP first so buffered events are delivered.
//
// While the stack runs, -dir holds run.json (its addresses, ports and
// process id); `edgepixel-run sql` (what `make sql` runs) reads it to open
// clickhouse-client on the running stack's ClickHouse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/defaultaddr"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/cli"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/progress"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// The two example queries the banner and the README show.
var exampleQueries = []string{
	"SELECT site, name, count() AS events FROM events GROUP BY site, name ORDER BY events DESC",
	"SELECT ts, site, name, url, referrer, country FROM events ORDER BY ts DESC LIMIT 10",
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sql" {
		os.Exit(sql(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "idle" {
		os.Exit(idle(os.Args[2:]))
	}
	var (
		dir      = flag.String("dir", cli.EnvOr("EDGEPIXEL_RUN_DIR", defaultDir), "where all data and logs live (env EDGEPIXEL_RUN_DIR)")
		binDir   = flag.String("bin", cli.EnvOr("EDGEPIXEL_RUN_BIN", defaultBin), "where make build put the binaries and the .wasm (env EDGEPIXEL_RUN_BIN)")
		aggAddr  = flag.String("aggregator-addr", cli.EnvOr("EDGEPIXEL_RUN_AGGREGATOR_ADDR", defaultAddr["aggregator-addr"]), "aggregator's public (ingest) address (env EDGEPIXEL_RUN_AGGREGATOR_ADDR)")
		dashAddr = flag.String("dashboard-addr", cli.EnvOr("EDGEPIXEL_RUN_DASHBOARD_ADDR", defaultAddr["dashboard-addr"]), "aggregator's private address: dashboard, /api/, /live, /metrics (env EDGEPIXEL_RUN_DASHBOARD_ADDR)")
		popAddr  = flag.String("pop-addr", cli.EnvOr("EDGEPIXEL_RUN_POP_ADDR", defaultAddr["pop-addr"]), "local POP address (env EDGEPIXEL_RUN_POP_ADDR)")
		durable  = flag.String("durability", cli.EnvOr("EDGEPIXEL_RUN_DURABILITY", "write"), "when the POP answers a hit, its line is written to the journal queue (write: survives the POP's death) or also fsynced (fsync: survives a machine crash) (env EDGEPIXEL_RUN_DURABILITY)")
		since    = flag.Int64("since", 0, "unix time in `seconds` when make run began, to report the whole start-up time")
		firstRun = flag.String("first-run", "", "how long a first make run takes, for the banner (the Makefile says)")
		version  = flag.Bool("version", false, "print the commit this binary was built from, and exit")
	)
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: edgepixel-run [flags] (what make run starts; make sql runs edgepixel-run sql)")
		flaghint.PrintDefaults(os.Stderr, flag.CommandLine)
	}
	flag.Parse()
	for _, w := range flaghint.UnknownEnv(os.Environ(), "EDGEPIXEL_RUN_", runEnv) {
		fmt.Fprintln(os.Stderr, "edgepixel-run: warning: "+w)
	}
	addrs := []listenAddr{{"aggregator-addr", *aggAddr, "EDGEPIXEL_RUN_AGGREGATOR_ADDR"}, {"dashboard-addr", *dashAddr, "EDGEPIXEL_RUN_DASHBOARD_ADDR"}, {"pop-addr", *popAddr, "EDGEPIXEL_RUN_POP_ADDR"}}
	if err := checkUsage(flag.CommandLine, *durable, addrs); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel-run: %v\n%s\n", err, flaghint.SeeHelp("edgepixel-run"))
		os.Exit(2)
	}
	if *version {
		fmt.Println("edgepixel-run", buildinfo.Version())
		return
	}
	log := slog.New(newTermHandler(os.Stderr, "make run", slog.LevelInfo))
	began := time.Now()
	if *since > 0 {
		began = time.Unix(*since, 0)
	}

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		cli.Fatal(log, err)
	}
	if err := checkIdle(absDir); err != nil {
		cli.Fatal(log, err)
	}
	// Said before anything starts, with what to do: a port in use is
	// most often another checkout's `make run`.
	if err := checkFree(addrs); err != nil {
		cli.Fatal(log, err)
	}
	popAdmin, err := popAdminAddr()
	if err != nil {
		cli.Fatal(log, err)
	}
	bin := stack.InDir(*binDir)
	for _, p := range []string{bin.Pop, bin.Aggregator, bin.Wasm} {
		if _, err := os.Stat(p); err != nil {
			cli.Fatal(log, fmt.Errorf("%s is missing: run `make build` first (or `make run`, which builds)", p))
		}
	}
	o := stack.Options{
		Dir:            absDir,
		Bin:            bin,
		AggregatorAddr: *aggAddr,
		DashboardAddr:  *dashAddr,
		PopAddr:        *popAddr,
		// The POP's default compile cache is shared with `fastly compute
		// serve` running the same module (README), which then starts at once.
		CompileCache: "default",
		Progress:     progress.New(os.Stderr),
		Durability:   *durable,
	}
	if o.EdgeConfig, err = readEdgeConfig(absDir); err != nil {
		cli.Fatal(log, err)
	}
	salt := salts{bin: build.Salt.InDir(*binDir), dir: filepath.Join(absDir, "secrets"), log: log}
	if _, err := os.Stat(salt.bin); err != nil {
		cli.Fatal(log, fmt.Errorf("%s is missing: run `make build` first (or `make run`, which builds)", salt.bin))
	}
	if _, err := salt.rotate(context.Background()); err != nil {
		cli.Fatal(log, err)
	}
	if _, ok := localsrv.RedisAvailable(); !ok {
		o.NoRedis = true
		log.Warn("redis-server is not installed: dedupe runs in-process and forgets on restart; install it with: sudo apt-get install -y redis-server")
	}
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		o.NoClickHouse = true
		log.Warn("clickhouse-server is not installed: events are stored on disk under " + filepath.Join(absDir, "aggregator") + "; install it with: sudo apt-get install -y clickhouse-server clickhouse-client")
	}

	// SIGHUP too: a closed terminal stops the stack as Ctrl-C does,
	// cleanly (the POP flushes, run.json goes), not by the signal's
	// default action, which left run.json behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	tails := logTails(absDir)
	s, err := stack.Start(startCtx, o)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C (or SIGTERM) while a server was starting: the error is
			// only the interrupted wait, and the last lines of that
			// server's log printed with it would pass for a cause.
			fmt.Fprintln(os.Stderr, "make run: interrupted while starting; what had started is stopped")
			os.Exit(130)
		}
		cli.Fatal(log, fmt.Errorf("%w\n\nAll logs are in %s.", err, filepath.Join(absDir, "logs")))
	}
	absBin, _ := filepath.Abs(*binDir)
	st := state{PID: os.Getpid(), Dir: absDir, Bin: absBin, AggregatorURL: s.AggregatorURL, DashboardURL: s.DashboardURL, PopURL: s.PopURL, Logs: filepath.Join(absDir, "logs")}
	if popAdmin != "" {
		st.PopAdminURL = "http://" + popAdmin
	}
	if s.ClickHouse != nil {
		st.ClickHouseHTTP = s.ClickHouse.HTTPURL
		st.ClickHouseTCP = s.ClickHouse.TCPAddr
		st.ClickHouseDB = "edgepixel"
	}
	if s.Redis != nil {
		st.RedisURL = s.Redis.URL
	}
	if err := writeState(absDir, st); err != nil {
		log.Warn("cannot write the state file; `make sql` will not find this stack", "err", err)
	}
	defer os.Remove(statePath(absDir))

	fmt.Print(banner(st, time.Since(began), *firstRun))
	fmt.Print(warningsNote(warningsSince(tails), st.Logs))
	// Not ctx: the logs are followed until the stack has stopped, for
	// what the servers say as they stop (counts a POP could not deliver).
	followCtx, stopFollowing := context.WithCancel(context.Background())
	following := make(chan struct{})
	go func() {
		defer close(following)
		followWarnings(followCtx, tails, os.Stderr, time.Second, repeatEvery)
	}()
	// The salts' SIGHUP goes to the POP running when it is sent: a
	// restarted POP is a new process (the first one's kept getting it,
	// and a restarted POP never read a new day's salt).
	var popMu sync.Mutex
	// The manifest is written again first: it names the salt files, and
	// the one just written may be new.
	go salt.every(ctx, time.Hour, func() error {
		popMu.Lock()
		defer popMu.Unlock()
		if err := s.WriteManifest(); err != nil {
			return err
		}
		return s.Pop.Signal(syscall.SIGHUP)
	})

	failed := supervise(ctx, log, s, filepath.Join(absDir, "logs"), &popMu)
	if failed == nil {
		log.Info("stopping: POP first so buffered events reach the aggregator")
	} else {
		log.Info("stopping the rest of the stack")
	}
	err = s.Stop()
	stopFollowing()
	<-following
	if err != nil {
		os.Remove(statePath(absDir))
		cli.Fatal(log, err)
	}
	log.Info("stopped")
	if failed != nil {
		// Not the status of a clean stop: a script or a service manager
		// tells the two apart (a tester's).
		os.Exit(1)
	}
}

func banner(st state, took time.Duration, firstRun string) string {
	ready := fmt.Sprintf("ready %s after make run began", progress.Round(took))
	// What a first run takes is said of a run that built or fetched
	// something, not beside a start of seconds (a tester's).
	if firstRun != "" && took >= time.Minute {
		ready += "; a first run takes " + firstRun
	}
	token := filepath.Join(st.Dir, "dashboard-token")
	b := fmt.Sprintf(`
edgepixel is running (%[1]s).

  dashboard   %[5]s/   (log in with the token in %[6]s)
  pixel       %[3]s/p.gif?site=demo&url=https%%3A%%2F%%2Fexample.com%%2F
  events      POST %[3]s/e   {"site":"demo","name":"signup"}
  ingest      %[2]s   (the aggregator's public address, where POPs deliver)
  loss        curl -H "Authorization: Bearer $(cat %[7]s)" '%[5]s/api/loss'   (hits answered vs events stored, all sites and the POP's own refusals; ?site=demo for one)
  logs        %[4]s
%[8]s
Put this on a page:

  <img src="%[3]s/p.gif?site=demo" alt="" width="1" height="1" referrerpolicy="no-referrer-when-downgrade">

Try:  curl -s -o /dev/null -D - '%[3]s/p.gif?site=demo&url=https%%3A%%2F%%2Fexample.com%%2Fa&ref=https%%3A%%2F%%2Fnews.ycombinator.com%%2F'
`, ready, st.AggregatorURL, st.PopURL, st.Logs, st.DashboardURL, token, flaghint.ShellQuote(token), popAdminLine(st.PopAdminURL))
	if st.ClickHouseTCP != "" {
		sql := makeSQL(st.Dir, st.Bin)
		b += fmt.Sprintf(`
The stored events, from another terminal in this checkout: clickhouse-client
(on %[2]s, database %[3]s), or one query at a time:

  %[1]s
  %[1]s Q="%[4]s"
  %[1]s Q="%[5]s"
`, sql, st.ClickHouseTCP, st.ClickHouseDB, exampleQueries[0], exampleQueries[1])
	} else {
		b += fmt.Sprintf("\nWithout ClickHouse the events are stored as NDJSON files under %s.\n", filepath.Join(st.Dir, "aggregator"))
	}
	return b + fmt.Sprintf("\nCtrl-C stops everything; data stays in %s.\n", st.Dir)
}

// runEnv are the variables edgepixel-run reads (EDGEPIXEL_RUN_TEST_MAIN:
// its tests'), so that a misspelt one is warned about (found by a
// new-user tester: EDGEPIXEL_RUN_POP_ADR was ignored without a word).
var runEnv = map[string]bool{
	"EDGEPIXEL_RUN_DIR": true, "EDGEPIXEL_RUN_BIN": true, "EDGEPIXEL_RUN_AGGREGATOR_ADDR": true, "EDGEPIXEL_RUN_DASHBOARD_ADDR": true,
	"EDGEPIXEL_RUN_POP_ADDR": true, "EDGEPIXEL_RUN_DURABILITY": true, "EDGEPIXEL_RUN_TEST_MAIN": true,
}

// defaultDir is where `make run` keeps the stack without
// EDGEPIXEL_RUN_DIR, and defaultBin its binaries without BIN (the
// Makefile's).
const (
	defaultDir = ".edgepixel/data"
	defaultBin = ".edgepixel/bin"
)

// makeSQL is the `make sql` command line that reaches the stack in dir
// run from the binaries in bin: make sql finds a stack elsewhere than
// defaultDir only through EDGEPIXEL_RUN_DIR, and runs bin's
// edgepixel-run only through BIN, so the banner's commands carry them
// then.
func makeSQL(dir, bin string) string {
	cmd := "make sql"
	if def, err := filepath.Abs(defaultBin); bin != "" && (err != nil || def != bin) {
		cmd += " BIN=" + flaghint.ShellQuote(bin)
	}
	if def, err := filepath.Abs(defaultDir); err != nil || def != dir {
		cmd = "EDGEPIXEL_RUN_DIR=" + flaghint.ShellQuote(dir) + " " + cmd
	}
	return cmd
}

// checkUsage refuses a command line the launcher cannot run as given, as
// the project's other commands do (exit status 2, naming the flag, and
// the variable when the environment gave the value). It runs before
// anything else: a usage error must leave -dir as it was, and the salt
// rotation, the first write, used to come before the --durability check.
// A stray argument is refused rather than ignored: it is most likely a
// flag without its dash, or a subcommand after a flag, which would
// otherwise start the whole stack.
func checkUsage(fs *flag.FlagSet, durability string, addrs []listenAddr) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: edgepixel-run takes flags only (a subcommand, sql or idle, comes first)", fs.Arg(0))
	}
	for _, a := range addrs {
		name := "--" + a.flag
		if !flaghint.Set(fs, a.flag) && os.Getenv(a.env) != "" {
			name = a.env
		}
		if err := flaghint.ListenAddr(name, a.addr, defaultAddr[a.flag]); err != nil {
			return err
		}
	}
	if durability != "write" && durability != "fsync" {
		err := fmt.Errorf("--durability %q: want write or fsync", durability)
		if !flaghint.Set(fs, "durability") {
			err = fmt.Errorf("%w\n(--durability is EDGEPIXEL_RUN_DURABILITY's value)", err)
		}
		return err
	}
	return nil
}

// listenAddr is an address the stack will listen on, the flag and the
// environment variable that choose it.
type listenAddr struct{ flag, addr, env string }

// defaultAddr is each address flag's default, which its error also gives
// as the form to follow.
var defaultAddr = map[string]string{
	"aggregator-addr": defaultaddr.Aggregator,
	"dashboard-addr":  defaultaddr.Dashboard,
	"pop-addr":        defaultaddr.POP,
}

// checkFree reports the first of addrs something already listens on,
// naming the variable that moves it, before Redis and ClickHouse start.
func checkFree(addrs []listenAddr) error {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a.addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is in use (another make run?): stop what listens there, or choose another address, e.g. %s=127.0.0.1:0 make run (0: any free port)", a.addr, a.env)
		}
		if err != nil {
			// Not this machine's address, or a host name that does
			// not resolve: nothing to stop, the address to change.
			return fmt.Errorf("cannot listen on %s (%s): %v; choose another address, e.g. %s=127.0.0.1:0 make run (0: any free port)", a.addr, a.env, err, a.env)
		}
		l.Close()
	}
	return nil
}

// sql opens clickhouse-client on the running stack's ClickHouse, or runs
// the one query given.
// checkIdle fails when a launcher still runs from dir: two stacks cannot
// share one data directory.
func checkIdle(dir string) error {
	if st, err := readState(dir); err == nil && st.running() {
		return fmt.Errorf("a stack already runs from %s (pid %d): stop it first (Ctrl-C in its terminal)", dir, st.PID)
	}
	return nil
}

// idle is `edgepixel-run idle [-dir DIR]`: exit status 1, saying why, when
// a stack runs from DIR. `make run` asks before it builds, so it never
// replaces the binaries a running stack was started from only to refuse.
func idle(args []string) int {
	fs := flag.NewFlagSet("edgepixel-run idle", flag.ExitOnError)
	dir := fs.String("dir", cli.EnvOr("EDGEPIXEL_RUN_DIR", defaultDir), "the data directory `make run` uses (env EDGEPIXEL_RUN_DIR)")
	fs.Parse(args)
	// A stray argument is refused, not ignored, as edgepixel-run's own.
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "make run: edgepixel-run idle: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	absDir, err := filepath.Abs(*dir)
	if err == nil {
		err = checkIdle(absDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		return 1
	}
	return 0
}

func sql(args []string) int {
	fs := flag.NewFlagSet("edgepixel-run sql", flag.ExitOnError)
	dir := fs.String("dir", cli.EnvOr("EDGEPIXEL_RUN_DIR", defaultDir), "the running stack's -dir (env EDGEPIXEL_RUN_DIR)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: edgepixel-run sql [-dir DIR] [QUERY]\nopens clickhouse-client on the stack `make run` started, or runs QUERY")
		flaghint.PrintDefaults(os.Stderr, fs)
	}
	fs.Parse(args)
	// One QUERY at most: a second word is most likely a query left
	// unquoted, of which only the first word would run.
	if fs.NArg() > 1 {
		fmt.Fprintf(os.Stderr, "make sql: one QUERY expected, got %q: quote it\n", fs.Args())
		return 2
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "make sql:", err)
		return 1
	}
	st, err := readState(absDir)
	if err != nil || !st.running() {
		fmt.Fprintf(os.Stderr, "make sql: no stack is running from %s: start one with `make run` (in another terminal)\n", absDir)
		return 1
	}
	if st.ClickHouseTCP == "" {
		fmt.Fprintf(os.Stderr, "make sql: the running stack has no ClickHouse (clickhouse-server is not installed); its events are NDJSON files under %s\n", filepath.Join(absDir, "aggregator"))
		return 1
	}
	client, ok := deps.ClickHouseClient.Path("")
	if !ok {
		fmt.Fprintln(os.Stderr, "make sql:", deps.Advice([]deps.Program{deps.ClickHouseClient}))
		return 1
	}
	host, port, err := net.SplitHostPort(st.ClickHouseTCP)
	if err != nil {
		fmt.Fprintln(os.Stderr, "make sql:", err)
		return 1
	}
	argv := []string{"clickhouse-client", "--host", host, "--port", port, "--database", st.ClickHouseDB}
	if q := fs.Arg(0); q != "" {
		argv = append(argv, "--query", q)
	}
	// Exec: clickhouse-client gets the terminal (and Ctrl-C) to itself.
	err = syscall.Exec(client, argv, os.Environ())
	fmt.Fprintln(os.Stderr, "make sql:", err)
	return 1
}

// popAdminAddr is the POP's admin address (/healthz, /metrics): the one
// EDGEPIXEL_POP_ADMIN_ADDR, which the POP inherits, names, none when it
// is set empty, and a free loopback port when it is not set, since a
// local stack's POP is there to be looked at (a tester's request refused
// by the POP was counted only on an admin listener make run had not
// opened). A port 0 is picked here, on the host given, and the variable
// set to it, so that the banner and run.json can name it as they name
// the other addresses (a tester found it only in the POP's log).
func popAdminAddr() (string, error) {
	addr, ok := os.LookupEnv("EDGEPIXEL_POP_ADMIN_ADDR")
	if !ok {
		addr = "127.0.0.1:0"
	}
	if addr == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr, nil // the POP checks it, and says what is wrong
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("EDGEPIXEL_POP_ADMIN_ADDR=%s: %w", addr, err)
	}
	// The host as given: the listener names 0.0.0.0 as [::].
	addr = net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	l.Close()
	return addr, os.Setenv("EDGEPIXEL_POP_ADMIN_ADDR", addr)
}

// popAdminLine is the banner's line for the POP's admin address, if any.
func popAdminLine(url string) string {
	if url == "" {
		return ""
	}
	return fmt.Sprintf("  pop admin   %s/healthz  %s/metrics\n", url, url)
}

// restartsPerMinute bounds supervise's restarts of one part: a part that
// ends again and again (a bad setting, a full disk) stops the stack.
const restartsPerMinute = 3

// supervise restarts a part of the stack that ends (killed, crashed) as
// a service manager would, saying how it ended, until ctx ends, a part
// ends more than restartsPerMinute times in a minute or a restart fails.
// Each part is watched and restarted on its own (watchParts), on its
// ports and data, so what was spooled, queued or stored goes on
// (a tester's kill -9 of the aggregator had stopped the whole stack, and
// one of redis-server left it running with nothing stored and nothing
// said). It returns nil when ctx ends, and why it gave up otherwise.
//
// popMu is held while the POP is restarted: others read s.Pop under it.
func supervise(ctx context.Context, log *slog.Logger, s *stack.Stack, logs string, popMu *sync.Mutex) error {
	restartPop := func(ctx context.Context) error {
		popMu.Lock()
		defer popMu.Unlock()
		return s.StartPop(ctx)
	}
	parts := []part{
		{name: "the POP", log: filepath.Join(logs, "pop.log"), done: func() <-chan struct{} { return s.Pop.Done() }, err: func() error { return s.Pop.Err() }, restart: restartPop},
		{name: "the aggregator", log: filepath.Join(logs, "aggregator.log"), done: func() <-chan struct{} { return s.Aggregator.Done() }, err: func() error { return s.Aggregator.Err() }, restart: s.StartAggregator},
	}
	if s.Redis != nil {
		parts = append(parts, part{name: "redis-server", log: localsrv.RedisLog(s.Redis.Dir), done: s.Redis.Done, err: s.Redis.Err, restart: s.Redis.Restart})
	}
	if s.ClickHouse != nil {
		parts = append(parts, part{name: "clickhouse-server", log: localsrv.ClickHouseErrLog(s.ClickHouse.Dir), done: s.ClickHouse.Done, err: s.ClickHouse.Err, restart: s.ClickHouse.Restart})
	}
	return watchParts(ctx, log, parts)
}

// part is one process of the stack as supervise watches it: when it
// ends, how it ended (valid once done is closed), and how to start it
// again on its ports and data.
type part struct {
	name, log string
	done      func() <-chan struct{}
	err       func() error
	restart   func(context.Context) error
}

// watchParts watches each part in a goroutine of its own: a part that
// ended while another restarted, which can take 30 s (the aggregator
// waits for ClickHouse), was noticed only once that restart was done
// (a tester's). The first part to give up ends the others' watching and
// restarting; watchParts returns only once every goroutine has returned,
// so that nothing is restarted while the stack stops.
func watchParts(ctx context.Context, log *slog.Logger, parts []part) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(parts))
	for _, p := range parts {
		go func() { errs <- p.watch(ctx, log) }()
	}
	var failed error
	for range parts {
		if err := <-errs; err != nil && failed == nil {
			failed = err
			cancel()
		}
	}
	return failed
}

// lastError returns the last line of the log at path that reports an
// error (the aggregator's and the POP's level=ERROR, ClickHouse's
// <Error>, any line saying error), cut to 300 bytes; "" if none is among
// its last 64 KiB or it cannot be read. A line of the aggregator's or the
// POP's logged more than staleError before now is not taken, nor any
// before it: a condition that had ended a minute before a kill -9 was
// given as its cause (a tester's).
func lastError(path string, now time.Time) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		f.Seek(fi.Size()-tail, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, tail))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if at := slogTime(lines[i]); !at.IsZero() && now.Sub(at) > staleError {
			return ""
		}
		if l := lines[i]; strings.Contains(strings.ToLower(l), "error") {
			if len(l) > 300 {
				l = l[:300] + "…"
			}
			return l
		}
	}
	return ""
}

// staleError is how old a log line lastError takes may be.
const staleError = time.Minute

// watch restarts p each time it ends. It returns nil when ctx ends, and
// why it gave up when p ends more than restartsPerMinute times in a
// minute or cannot be restarted.
func (p part) watch(ctx context.Context, log *slog.Logger) error {
	var ends []time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.done():
		}
		if ctx.Err() != nil {
			return nil // stopping: a part that ends now is not restarted
		}
		how := "exited"
		if err := p.err(); err != nil {
			how = "ended: " + err.Error() // "signal: killed" for a kill -9
		}
		now := time.Now()
		ends = append(slices.DeleteFunc(ends, func(t time.Time) bool { return now.Sub(t) > time.Minute }), now)
		// The reason is in the part's log, not in how it ended (a full
		// disk said only "exit status 1": tester89).
		attrs := []any{"log", p.log}
		if why := lastError(p.log, now); why != "" {
			attrs = append(attrs, "last_error", why)
		}
		if len(ends) > restartsPerMinute {
			log.Error(p.name+" "+how+"; it ended too often to restart it again: stopping the stack", attrs...)
			return errors.New(p.name + " ended too often")
		}
		log.Warn(p.name+" "+how+"; restarting it", attrs...)
		if err := p.restart(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error("could not restart "+p.name+": stopping the stack", "err", err, "log", p.log)
			return err
		}
		log.Info("restarted " + p.name)
	}
}
