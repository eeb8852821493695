// Command edgepixel-pop is a local Fastly Compute host: it serves HTTP with
// a compute-sdk-go module (GOOS=wasip1 GOARCH=wasm) on wazero, with the
// backends and stores of a fastly.toml [local_server] section.
//
// It accepts Viceroy's command line, so the official Fastly CLI can run it:
//
//	fastly compute serve --viceroy-path=$(which edgepixel-pop)
//
// which invokes
//
//	edgepixel-pop -v -C /abs/fastly.toml --addr 127.0.0.1:7676 ./bin/main.wasm
//
// Like Viceroy, "edgepixel-pop run [flags] MODULE.wasm [ARGS...]" runs a
// module once as a command and exits with its exit code (run.go): that is
// how Go test binaries for Fastly Compute run, with
// go test -exec "edgepixel-pop run -C fastly.toml".
//
// Flags may come before or after the wasm path. Each of the POP's own flags
// also has an EDGEPIXEL_POP_* environment variable; a flag wins over it.
//
// It listens only once the module is compiled and its warm instances wait
// for requests ("Listening on ..." says so); until then connections are
// refused, so no request waits unseen for a compile that can take a
// minute on first start.
//
// For production use without a CDN it serves HTTPS (HTTP/1.1 and HTTP/2)
// or cleartext HTTP/2 behind a proxy, writes an NDJSON access log, sends
// the guest's log endpoints to files or HTTP collectors, and shuts down
// gracefully on SIGTERM/SIGINT: it stops accepting, finishes the requests
// in flight, lets the guests end their serve loops (an edge module flushes
// its buffered events then) and delivers what they logged, all within
// --shutdown-timeout. A second signal ends it at once.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // geolocation's UTC offsets on a machine without a zone database

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/logging"
	"github.com/edgepixel/edgepixel/shared/permhint"
)

// version is printed by --version as "edgepixel-pop VERSION", the
// "name semver" shape the Fastly CLI expects from Viceroy.
var version = "0.1.0"

// fullVersion is version with the build's commit as semver build
// metadata ("0.1.0+0123456789ab", ".dirty" after it for a changed tree;
// semver.org item 10), so that the line stays "name semver". The other
// commands print the bare commit; the POP cannot: the Fastly CLI reads
// Viceroy's --version as "viceroy 0.1.0" and parses the second word as
// semver, which a bare commit fails.
func fullVersion() string {
	rev := buildinfo.Revision()
	if rev == "" {
		return version
	}
	return version + "+" + strings.ReplaceAll(rev, "+", ".")
}

func main() {
	// A write to a closed stdout or stderr (the Fastly CLI, or a pipe's
	// reader, gone first on Ctrl-C) is an error the logger drops, not
	// the process's end: Go's default killed it by SIGPIPE at its
	// "shutting down" line, before the module flushed the hits it had
	// answered (a tester's).
	signal.Ignore(syscall.SIGPIPE)
	code := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if sig, ok := stoppedBy.Load().(syscall.Signal); ok && code == 0 {
		exitBySignal(sig)
	}
	os.Exit(code)
}

// stoppedBy is the signal that ended serving, if one did.
var stoppedBy atomic.Value

// exitBySignal ends the process by sig with its default action, after a
// graceful stop, as Viceroy does. A supervisor reads the exit status: the
// Fastly CLI's `compute serve` restarts a local server that exits 0, so a
// POP that exited 0 on Ctrl-C would sometimes be started again instead of
// stopped. If the signal does not end the process, the shell's convention
// (128 + the signal number) stands in for it.
func exitBySignal(sig syscall.Signal) {
	signal.Reset(sig)
	_ = syscall.Kill(os.Getpid(), sig)
	time.Sleep(100 * time.Millisecond)
	os.Exit(128 + int(sig))
}

// environ is the environment run checks for misspelt variables; tests
// replace it.
var environ = os.Environ

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "run" {
		return runCommand(args[1:], getenv, os.Stdin, stdout, stderr) // run.go
	}
	asked := map[string]bool{} // the variables parseArgs reads
	o, err := parseArgs(args, func(name string) string {
		asked[name] = true
		return getenv(name)
	})
	if err != nil {
		if errors.Is(err, errHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if len(args) == 0 {
			fmt.Fprintf(stderr, "edgepixel-pop: %v\n\n%s", err, usage)
			return 2
		}
		fmt.Fprintf(stderr, "edgepixel-pop: %v\n%s\n", flaghint.ExplainParse(err), flaghint.SeeHelp("edgepixel-pop"))
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "edgepixel-pop %s\n", fullVersion())
		return 0
	}
	h, err := logging.NewHandler(stderr, o.logFormat, o.level) // parseArgs checked the format
	if err != nil {
		fmt.Fprintf(stderr, "edgepixel-pop: %v\n", err)
		return 2
	}
	log := slog.New(h)
	for _, w := range flaghint.UnknownEnv(environ(), "EDGEPIXEL_POP_", asked) {
		log.Warn(w)
	}
	logCompileCacheNote(log, o.compileCache, o.compileCacheNote)
	ctx, stop := notifyContext(os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, log, stdout, stderr); err != nil {
		log.Error("edgepixel-pop failed", "err", permhint.Wrap("edgepixel-pop", err))
		return 1
	}
	return 0
}

// serve runs the POP until ctx ends (a signal), then shuts it down.
func serve(ctx context.Context, o *options, log *slog.Logger, stdout, stderr io.Writer) error {
	if err := checkModule(o.wasm); err != nil { // run.go
		return err
	}
	if o.compileOnly {
		if o.compileCache == "" {
			return errors.New("--compile-only needs a compile cache directory")
		}
		return pop.Precompile(context.Background(), o.wasm, o.compileCache)
	}
	var m *fastlytoml.Manifest
	if o.config != "" {
		var err error
		if m, err = fastlytoml.Load(o.config); err != nil {
			return fmt.Errorf("-C: %w", missingFileHint(err))
		}
		for _, w := range m.Warnings {
			log.Warn(w, "config", o.config)
		}
	}
	warnings, err := checkManifest(m, o.logEndpoints)
	for _, w := range warnings {
		log.Warn(w, "config", o.config)
	}
	if err != nil {
		return err
	}
	// The manifest in force's lost journal, for /healthz: set at start
	// and by each reload whose manifest is taken.
	var journalOff atomic.Pointer[string]
	noJournal := func(m *fastlytoml.Manifest) {
		why := unjournaled(m, o.logEndpoints)
		journalOff.Store(&why)
	}
	noJournal(m)
	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		// Loaded here, not by ServeTLS, so a bad certificate stops start-up
		// with a clear error instead of failing later in the background.
		certs, err := newCertReloader(o.tlsCert, o.tlsKey, log)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{GetCertificate: certs.GetCertificate}
	}
	stdout = pop.NewLockedWriter(stdout) // shared by the guests, default log endpoints and an access log on "-"
	var accessLog io.Writer
	switch o.accessLog {
	case "":
	case "-":
		accessLog = stdout
	default:
		f, err := os.OpenFile(o.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		defer f.Close() // after s.Shutdown, which flushes into it
		accessLog = f
	}

	// The POP listens only once it can serve: a connection accepted while
	// the module compiles would wait in the backlog and be served, its hit
	// counted, long after the client gave up (and perhaps retried). Until
	// then a client gets "connection refused". A port already in use is
	// reported now, though, not after a compile that can take a minute
	// and a "pop ready" (the admin listener's too).
	if err := checkAddr("--addr", o.addr); err != nil {
		return err
	}
	if o.adminAddr != "" {
		if err := checkAddr("--admin-addr", o.adminAddr); err != nil {
			return o.noteEnv(err)
		}
	}
	if o.starting != nil {
		o.starting(o.addr)
	}
	s, err := pop.New(ctx, o.clientInfo.apply(o.clients.apply(o.limits.apply(pop.Config{ // limits.go: limits, pool, reload; clients.go; clientinfo.go
		WasmPath:        o.wasm,
		Manifest:        m,
		Instances:       o.instances,
		MaxInstances:    o.maxInstances,
		CompileCacheDir: o.compileCache,
		Stdout:          stdout,
		Stderr:          stderr,
		Logger:          log,
		AccessLog:       accessLog,
		LogEndpoints:    o.logEndpoints,
		Resolve:         o.resolve,
		CheckManifest: func(m *fastlytoml.Manifest) ([]string, error) {
			w, err := checkManifest(m, o.logEndpoints)
			if err == nil {
				noJournal(m)
			}
			return w, err
		},
		HitPath: pixel.HitPath, // the refusals rejects.go reports
	}))))
	if err != nil {
		return err
	}
	listen := net.Listen
	if o.listen != nil {
		listen = o.listen
	}
	ln, err := listen("tcp", o.addr)
	if err != nil {
		s.Shutdown(context.Background())
		return fmt.Errorf("--addr: %w", err)
	}
	ln = s.Listener(ln, tlsConfig != nil) // connection limits
	defer ln.Close()
	ctx, hungUp := context.WithCancel(ctx)
	defer hungUp()
	defer reloadOnHangup(s, log, hungUp)() // limits.go

	// HTTP/1.1 always; HTTP/2 over TLS by ALPN; cleartext HTTP/2 (prior
	// knowledge, as proxies speak it) only when asked, since a client that
	// did not ask for it never sends the h2 preface anyway but an operator
	// should know what the port accepts.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(tlsConfig != nil)
	protos.SetUnencryptedHTTP2(o.h2c)
	srv := &http.Server{
		TLSConfig: tlsConfig,
		Protocols: &protos,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.ConfigureHTTPServer(srv) // head size, deadlines, connection tracking
	errc := make(chan error, 2)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}

	var shuttingDown atomic.Bool
	var admin *http.Server
	adminAddr := ""
	if o.adminAddr != "" {
		mux := http.NewServeMux()
		// 200 while the pool has a live instance, no component stopped and
		// no shutdown has begun, else 503 with the reason: a load balancer
		// stops sending traffic as soon as the drain starts. Conditions
		// that do not stop the POP (a log collector refusing deliveries)
		// keep the 200 but make the first line "degraded", then follow one
		// a line: the first line alone says whether anything needs a look.
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			err := s.Ready()
			if err == nil && shuttingDown.Load() {
				err = errors.New("shutting down")
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			ds := s.Degraded()
			if why := *journalOff.Load(); why != "" {
				ds = append(ds, why)
			}
			if len(ds) == 0 {
				io.WriteString(w, "ok\n")
				return
			}
			io.WriteString(w, "degraded (serving)\n")
			for _, d := range ds {
				io.WriteString(w, "degraded: "+d+"\n")
			}
		})
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			s.WritePrometheus(w)
			buildinfo.WriteMetric(w, "edgepixel_pop_build_info")
		})
		// Profiling on the admin listener only, which is opt-in and meant
		// to be bound to localhost.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		admin = &http.Server{Addr: o.adminAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		aln, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			srv.Close()
			s.Shutdown(context.Background())
			return o.noteEnv(flaghint.ListenError("--admin-addr", err))
		}
		adminAddr = aln.Addr().String()
		go func() { errc <- admin.Serve(aln) }()
		log.Info("admin endpoints", "url", "http://"+adminAddr, "paths", "/healthz /metrics /debug/pprof/")
		if !flaghint.Loopback(adminAddr) {
			// pprof has no login, and its profiles show the module's work.
			log.Warn("the admin listener reaches beyond this machine: it serves /debug/pprof/ without a login; bind --admin-addr to 127.0.0.1 or a private network, never a public address", "addr", adminAddr)
		}
	}
	// Viceroy's own line, on stdout and plain whatever --log-format says:
	// it tells whoever started the POP (the Fastly CLI's compute serve,
	// scripts, the tests) that it serves now, and at which address (port
	// 0 picks one).
	fmt.Fprintf(stdout, "Listening on %s://%s\n", scheme, ln.Addr())
	var backends map[string]fastlytoml.Backend
	if m != nil {
		backends = m.LocalServer.Backends
	}
	checkCtx, stopCheck := context.WithCancel(ctx)
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		watchSecret(checkCtx, s.Probe, s.Stores, backends, log) // secretcheck.go
	}()
	defer func() { stopCheck(); <-checked }()
	rejects := newRejectReporter(s, log) // rejects.go
	reportCtx, stopReports := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		rejects.run(reportCtx)
	}()
	if o.ready != nil {
		o.ready(ln.Addr().String(), adminAddr)
	}

	// A listener that stops, or a component of the POP (health.go), ends
	// the process with an error, for a supervisor to restart it; /healthz
	// is unhealthy from that moment.
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTimeout)
	case serveErr = <-errc:
		log.Error("a listener stopped; shutting down", "err", serveErr)
	case <-s.Failed():
		// /healthz says 503 from now; give a load balancer that checks it
		// often a moment to stop sending traffic before connections are
		// refused.
		serveErr = s.Err()
		shuttingDown.Store(true)
		d := min(unhealthyBeforeExit, o.shutdownTimeout/2)
		log.Error("shutting down: a component of the POP stopped", "err", serveErr, "draining_in", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	shuttingDown.Store(true)
	began := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// Stop taking requests and wait for those in flight; then let the
	// guests finish their work (ServeMany guests flush after their serve
	// loop ends) and deliver what they logged. The admin listener stays
	// up until the end, so /healthz reports 503 and /metrics can be
	// scraped during the drain.
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the shutdown timeout", "err", err)
	}
	// The last refusals, while the log endpoints still take lines.
	stopReports()
	<-reported
	rejects.report()
	if err := s.Shutdown(sctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	if admin != nil {
		admin.Close()
	}
	log.Info("stopped", "took", time.Since(began).Round(time.Millisecond))
	if serveErr != nil {
		// Even ErrServerClosed: nothing closes a server before this point.
		return serveErr
	}
	return nil
}

// unhealthyBeforeExit is how long /healthz answers 503 after a component
// stopped before the POP drains and exits.
const unhealthyBeforeExit = 2 * time.Second

// checkAddr reports whether addr can be listened on, by listening and
// closing at once. Nothing is accepted meanwhile.
func checkAddr(flag, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return flaghint.ListenError(flag, err)
	}
	return ln.Close()
}

// notifyContext is signal.NotifyContext that also records the signal in
// stoppedBy. After the first signal the default handling comes back, so a
// second Ctrl-C ends a shutdown that takes too long.
func notifyContext(sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case sig := <-ch:
			stoppedBy.Store(sig)
			signal.Stop(ch)
			cancel()
		case <-ctx.Done():
			signal.Stop(ch)
		}
	}()
	return ctx, cancel
}

// missingFileHint adds to a fastly.toml error about a file that does not
// exist (fastlytoml.MissingFileError says what it must hold) how
// edgepixel's own manifest, edge/fastly.toml, gets its files: make run
// writes them under .edgepixel/data, and before a first make run the POP
// started by hand with that manifest found no secret.
//
// A missing visitor salt file says how to make one: edgepixel-salt
// writes it (a new user was told only to create it "holding the secret's
// value").
func missingFileHint(err error) error {
	var mf *fastlytoml.MissingFileError
	if !errors.As(err, &mf) {
		return err
	}
	if strings.Contains(filepath.ToSlash(mf.Path), "/.edgepixel/data/") {
		return fmt.Errorf("%w; edgepixel's make run writes the files under .edgepixel/data (the secret the aggregator checks batches with): run it once from the repository's root (it starts the whole stack; Ctrl-C stops it)", err)
	}
	for _, k := range privacy.SaltKeys {
		if mf.Secret == k {
			return fmt.Errorf("%w; a visitor salt: edgepixel-salt --dir %s --today writes today's (and tomorrow's), rotated by the cron line in the README", err, flaghint.ShellQuote(filepath.Dir(mf.Path)))
		}
	}
	return err
}
