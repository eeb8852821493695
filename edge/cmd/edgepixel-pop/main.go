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
// Flags may come before or after the wasm path. Each of the POP's own flags
// also has an EDGEPIXEL_POP_* environment variable; a flag wins over it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop"
)

// version is printed by --version as "edgepixel-pop VERSION", the
// "name semver" shape the Fastly CLI expects from Viceroy.
var version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, getenv)
	if err != nil {
		if errors.Is(err, errHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "edgepixel-pop: %v\n\n%s", err, usage)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "edgepixel-pop %s\n", version)
		return 0
	}
	level := slog.LevelInfo
	if o.verbosity >= 2 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(o, log, stdout, stderr); err != nil {
		log.Error("edgepixel-pop failed", "err", err)
		return 1
	}
	return 0
}

func serve(o *options, log *slog.Logger, stdout, stderr io.Writer) error {
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
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	s, err := pop.New(ctx, pop.Config{
		WasmPath:        o.wasm,
		Manifest:        m,
		Instances:       o.instances,
		MaxInstances:    o.maxInstances,
		CompileCacheDir: o.compileCache,
		Stdout:          stdout,
		Stderr:          stderr,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	var admin *http.Server
	if o.adminAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			s.WritePrometheus(w)
		})
		// Profiling on the admin listener only, which is opt-in and meant
		// to be bound to localhost.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		admin = &http.Server{Addr: o.adminAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		aln, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			s.Shutdown(context.Background())
			return fmt.Errorf("admin listener: %w", err)
		}
		go func() { errc <- admin.Serve(aln) }()
		log.Info("admin endpoints", "url", "http://"+aln.Addr().String(), "paths", "/healthz /metrics /debug/pprof/")
	}
	fmt.Fprintf(stdout, "Listening on http://%s\n", ln.Addr())

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTimeout)
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// Stop taking requests first, then let the guests finish their work
	// (ServeMany guests flush after their serve loop ends).
	srv.Shutdown(sctx)
	if admin != nil {
		admin.Shutdown(sctx)
	}
	if err := s.Shutdown(sctx); err != nil {
		log.Warn("guests did not all finish before the shutdown timeout", "err", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
