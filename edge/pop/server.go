// Package pop is a local Fastly Compute host ("point of presence") written
// in pure Go on wazero. It runs any compute-sdk-go module built with
// GOOS=wasip1 GOARCH=wasm, serves HTTP with it, and reads backends and
// stores from a fastly.toml [local_server] section the way Fastly's Viceroy
// does.
//
// Performance comes from never instantiating a standard-Go module per
// request (that costs ~20 ms): the module is compiled once, a pool of warm
// instances each run _start on their own goroutine and block in the host
// until a request arrives, and guests using fsthttp.ServeMany serve many
// requests per instance. The HTTP response completes when the guest
// finishes the response body, not when its handler returns, so work a
// guest does after responding (batching, delivery) costs visitors nothing.
package pop

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Config configures a Server.
type Config struct {
	WasmPath        string               // the .wasm (a WASI command)
	Manifest        *fastlytoml.Manifest // may be nil: no backends or stores
	Instances       int                  // warm instances; 0 = 2*GOMAXPROCS
	MaxInstances    int                  // 0 = max(Instances, 4*GOMAXPROCS)
	CompileCacheDir string               // "" = no disk cache
	Stdout, Stderr  io.Writer            // guest output; nil = os.Stdout/os.Stderr
	Logger          *slog.Logger         // nil = slog.Default()
}

// Memory limit per instance: Fastly's 128 MB heap, in 64 KiB wasm pages.
const memoryLimitPages = 2048

// Server serves HTTP with a pool of warm guest instances.
type Server struct {
	log      *slog.Logger
	stdout   io.Writer
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig

	backends     map[string]*backend
	configStores map[string]map[string]string
	dicts        map[string]map[string]string
	secretStores map[string]map[string][]byte
	transport    *http.Transport

	minInstances, maxInstances int

	work        chan *downstream
	closing     chan struct{}
	closeOnce   sync.Once
	root        context.Context
	rootCancel  context.CancelFunc
	wg          sync.WaitGroup
	spawnMu     sync.Mutex
	failDelay   time.Duration
	startFailed chan error

	live, starting, idle atomic.Int32
	instID, reqID        atomic.Uint64

	warned sync.Map // hostcalls already reported as unsupported
	m      metrics
}

// New compiles the module, links the hostcalls it imports and starts the
// warm pool. It returns once the warm instances are waiting for requests
// (or ctx ends, or an instance fails to start).
func New(ctx context.Context, cfg Config) (*Server, error) {
	wasm, err := os.ReadFile(cfg.WasmPath)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:         cfg.Logger,
		work:        make(chan *downstream),
		closing:     make(chan struct{}),
		startFailed: make(chan error, 1),
		transport:   newTransport(),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	s.stdout = &lockedWriter{w: stdout}
	stderrW := io.Writer(&lockedWriter{w: stderr})
	if stderr == stdout {
		stderrW = s.stdout
	}

	s.minInstances = cfg.Instances
	if s.minInstances <= 0 {
		s.minInstances = 2 * runtime.GOMAXPROCS(0)
	}
	s.maxInstances = cfg.MaxInstances
	if s.maxInstances <= 0 {
		s.maxInstances = max(s.minInstances, 4*runtime.GOMAXPROCS(0))
	}
	s.maxInstances = max(s.maxInstances, s.minInstances)

	m := cfg.Manifest
	s.backends = newBackends(m)
	if m != nil {
		s.configStores = m.LocalServer.ConfigStores
		s.dicts = m.LocalServer.Dictionaries
		s.secretStores = m.LocalServer.SecretStores
	}

	rtCfg, err := runtimeConfig(cfg.CompileCacheDir)
	if err != nil {
		return nil, err
	}
	// The runtime outlives New's ctx; Shutdown closes it.
	s.rt = wazero.NewRuntimeWithConfig(context.Background(), rtCfg)
	s.root, s.rootCancel = context.WithCancel(context.Background())
	fail := func(err error) (*Server, error) {
		s.rootCancel()
		s.rt.Close(context.Background())
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, s.rt); err != nil {
		return fail(err)
	}
	began := time.Now()
	s.compiled, err = s.rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("compiling %s: %w", cfg.WasmPath, err))
	}
	s.log.Debug("module compiled", "wasm", cfg.WasmPath, "took", time.Since(began))
	if err := s.linkHostModules(ctx, s.compiled); err != nil {
		return fail(err)
	}
	s.modCfg = wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithArgs("main.wasm").
		WithStdout(s.stdout).
		WithStderr(stderrW).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	for k, v := range guestEnv {
		s.modCfg = s.modCfg.WithEnv(k, v)
	}

	for range s.minInstances {
		s.spawn()
	}
	// Wait for the warm pool, so the first visitors do not pay for startup
	// and a module that cannot start is reported here.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for int(s.idle.Load()) < s.minInstances {
		select {
		case err := <-s.startFailed:
			s.Shutdown(context.Background())
			return nil, fmt.Errorf("guest failed to start: %w", err)
		case <-ctx.Done():
			s.Shutdown(context.Background())
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	s.log.Info("pop ready", "wasm", cfg.WasmPath, "instances", s.minInstances, "max_instances", s.maxInstances,
		"backends", len(s.backends), "startup", time.Since(began))
	return s, nil
}

// runtimeConfig is the one wazero configuration the POP uses. Compiled
// code in the cache is only reused under the same configuration, so
// Precompile shares it.
func runtimeConfig(cacheDir string) (wazero.RuntimeConfig, error) {
	rtCfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(memoryLimitPages)
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
		rtCfg = rtCfg.WithCompilationCache(cache)
	}
	return rtCfg, nil
}

// Precompile compiles the module at wasmPath into the compilation cache in
// cacheDir, so a later New with the same CompileCacheDir starts without
// compiling (which takes seconds for a standard-Go module).
func Precompile(ctx context.Context, wasmPath, cacheDir string) error {
	if cacheDir == "" {
		return errors.New("precompile: no cache directory")
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	rtCfg, err := runtimeConfig(cacheDir)
	if err != nil {
		return err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rtCfg)
	defer rt.Close(context.Background())
	if _, err := rt.CompileModule(ctx, wasm); err != nil {
		return fmt.Errorf("compiling %s: %w", wasmPath, err)
	}
	return nil
}

// guestEnv is what Fastly (and Viceroy) put in a guest's environment.
var guestEnv = map[string]string{
	"FASTLY_CACHE_GENERATION": "0",
	"FASTLY_CUSTOMER_ID":      "0000000000000000000000",
	"FASTLY_HOSTNAME":         "localhost",
	"FASTLY_POP":              "XXX",
	"FASTLY_REGION":           "Somewhere",
	"FASTLY_SERVICE_ID":       "0000000000000000000000",
	"FASTLY_SERVICE_VERSION":  "0",
	"FASTLY_TRACE_ID":         "00000000000000000000000000000000",
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// ServeHTTP hands the request to a warm instance and relays its response.
// It returns when the guest has finished the response body, even if the
// guest keeps running afterwards.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.m.requests.Add(1)
	if s.isClosing() {
		s.m.errors.Add(1)
		http.Error(w, "edgepixel-pop: shutting down", http.StatusServiceUnavailable)
		return
	}
	ds := newDownstream(r, s.reqID.Add(1))
	if !s.acquire(ds) {
		if r.Context().Err() == nil {
			s.m.errors.Add(1)
			http.Error(w, "edgepixel-pop: shutting down", http.StatusServiceUnavailable)
		}
		return
	}
	for {
		var o outcome
		select {
		case o = <-ds.ready:
		case <-r.Context().Done():
			ds.abandon()
			return
		}
		if o.failed {
			s.m.errors.Add(1)
			http.Error(w, "edgepixel-pop: the guest did not produce a response", http.StatusInternalServerError)
			return
		}
		if o.status < 200 {
			// Informational response: send it and wait for the real one.
			h := w.Header()
			o.header.toHTTP(h, nil)
			w.WriteHeader(o.status)
			clear(h)
			continue
		}
		writeResponse(w, r, &o)
		return
	}
}

// abandon is called by ServeHTTP when the client went away before the
// guest answered: an answer sent later is discarded.
func (d *downstream) abandon() {
	d.mu.Lock()
	d.gone = true
	d.mu.Unlock()
	for {
		select {
		case o := <-d.ready:
			if o.body != nil {
				o.body.stop()
			}
		default:
			return
		}
	}
}

// Shutdown stops accepting requests and lets the guests finish: idle
// ServeMany guests get $none from next_request, so their code after the
// serve loop (flushing buffered work to a backend) runs to completion.
// When ctx ends first, remaining guests are terminated. The runtime is
// closed either way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.spawnMu.Lock()
	s.closeOnce.Do(func() { close(s.closing) })
	s.spawnMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.log.Warn("shutdown deadline reached; terminating guests", "live", s.live.Load())
		s.rootCancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, errors.New("guests did not terminate"))
		}
	}
	s.rootCancel()
	s.transport.CloseIdleConnections()
	if cerr := s.rt.Close(context.Background()); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}
