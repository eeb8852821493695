package pop

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/accesslog"
	"github.com/edgepixel/edgepixel/edge/pop/geoip"
	"github.com/edgepixel/edgepixel/edge/pop/interrupt"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/tetratelabs/wazero"
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
	AccessLog       io.Writer            // NDJSON line per request; nil = none (package accesslog)
	LogEndpoints    []logsink.Endpoint   // log endpoint destinations; others print to Stdout (package logsink)
	// Resolve sends backend connections for "host:port" to "addr:port"
	// instead of what DNS says (resolve.go; see ParseResolve).
	Resolve map[string]string

	// Execution limits (limits.go). A breach ends the instance and answers
	// the request 503 (wall, cpu) or 500 (memory).
	MemoryLimit int64         // bytes of linear memory per instance; 0 = 128 MiB (Fastly's heap limit)
	WallBudget  time.Duration // per execution segment (a request, startup, the code after the serve loop); 0 = 2 min, < 0 = none
	CPUBudget   time.Duration // guest run time per request, hostcalls and sleeps excluded; 0 = none (Fastly: 50 ms)

	// Pool behaviour (pool.go).
	FreshInstances bool          // every request gets a new instance that serves only it
	IdleTimeout    time.Duration // instances above Instances end after idling this long; 0 = 5s, < 0 = never

	// MeasureGuestTime records, for each client request, the CPU time
	// its instance used between taking it and asking for the next one
	// (GuestTimes). It costs two clock readings per request and ties each
	// instance to an OS thread, so it is off unless a benchmark asks.
	MeasureGuestTime bool

	// Hot reload (reload.go): poll WasmPath and switch to a changed module.
	// Reload (the method) does the same on demand.
	Reload         bool
	ReloadInterval time.Duration // 0 = 500ms
	// CheckManifest, if set, is the host command's own check of the
	// manifest each time Reload reads it again (the command checks the
	// first reading itself, before New): its warnings are logged beside
	// the manifest's own, and an error refuses the manifest as one that
	// does not read, its stores staying as read before (and /healthz
	// degraded), so that an edit refused at start is not taken live.
	CheckManifest func(*fastlytoml.Manifest) (warnings []string, err error)

	// GeoIPDatabases are MaxMind-format database files (.mmdb) that
	// fastly_geo.lookup answers from for addresses the manifest's
	// [local_server.geolocation] does not list: at most one City or
	// Country database and one ASN database (GeoLite2 or DB-IP's), told
	// apart by their metadata (package geoip). A file that cannot be read
	// fails New. Changed files are reloaded, checked every
	// GeoIPCheckInterval (0 = 10s).
	GeoIPDatabases     []string
	GeoIPCheckInterval time.Duration

	// Behind a load balancer (clientaddr.go): the client's address is
	// taken from ForwardedHeader (X-Forwarded-For, the default; Forwarded;
	// or "none") of requests whose peer is in TrustedProxies, and, with
	// ProxyProtocol, from the PROXY header every connection from them must
	// start with (proxyproto.go). From anyone else both are ignored.
	TrustedProxies  []netip.Prefix
	ForwardedHeader string
	ProxyProtocol   bool

	// ERLMaxEntries bounds the Edge Rate Limiting tables (erl.go): the
	// entries of all rate counters, and separately of all penalty boxes;
	// beyond it the least recently incremented counter entry, or the
	// penalty entry closest to expiry, is evicted. 0 = DefaultERLMaxEntries.
	ERLMaxEntries int

	// Clients bounds what clients can make the POP hold: connections,
	// time and memory (clients.go). Its connection limits need the
	// http.Server configured by ConfigureHTTPServer and serving on a
	// Listener.
	Clients ClientLimits

	// HitPath, if set, tells which request paths (URL.Path) the guest
	// counts as hits, for HitRejects: a refused request on another path
	// (a scanner's /wp-login.php) is no refused hit. nil: every path.
	HitPath func(path string) bool

	// startupWallBudget replaces WallBudget for instance startup (0: it
	// does not). Only tests set it: a test of the request budget needs a
	// short one, and startup on a loaded machine must not breach it.
	startupWallBudget time.Duration
	// startFailAfter replaces startFailTimeout (health.go); tests only.
	startFailAfter time.Duration
}

// applyLimits fills in the limit and pool defaults.
func (s *Server) applyLimits(cfg Config) {
	s.memoryLimit = cmp.Or(cfg.MemoryLimit, defaultMemoryLimit)
	s.wallBudget = cmp.Or(cfg.WallBudget, defaultWallBudget)
	s.startupBudget = cmp.Or(cfg.startupWallBudget, s.wallBudget)
	s.cpuBudget = max(cfg.CPUBudget, 0)
	s.idleTimeout = cmp.Or(cfg.IdleTimeout, defaultIdleTimeout)
	s.fresh = cfg.FreshInstances
	s.measureGuest = cfg.MeasureGuestTime
	s.applyClientLimits(cfg.Clients)
	s.health.failAfter = cmp.Or(cfg.startFailAfter, startFailTimeout)
}

// Server serves HTTP with a pool of warm guest instances.
type Server struct {
	log    *slog.Logger
	stdout io.Writer
	modCfg wazero.ModuleConfig

	backends map[string]*backend
	// config is the config stores and dictionaries as last read
	// (reloadConfig).
	config atomic.Pointer[configSnapshot]
	// secrets are the secret stores as last read (reloadSecrets).
	secrets   atomic.Pointer[secretSnapshot]
	secretsMu sync.Mutex // serialises reloadSecrets; guards secretDefs
	// secretDefs defines the secret stores reloadSecrets reads: the
	// manifest's, as last read (reloadConfig).
	secretDefs *fastlytoml.LocalServer
	// checkManifest is Config.CheckManifest.
	checkManifest func(*fastlytoml.Manifest) ([]string, error)
	// manifest is the manifest the server started with, whose tables
	// other than the stores it holds until it ends.
	manifest  *fastlytoml.Manifest
	kv        *kvStores                           // shared by all instances (kv.go)
	geo       *geoDB                              // (geo.go)
	acls      map[string]*fastlytoml.ACL          // (fastly_acl.go)
	devices   map[string][]byte                   // user agent -> JSON record (geo.go)
	shields   map[string]fastlytoml.ShieldingSite // (fastly_shielding.go)
	erl       *erlStore                           // rate counters, penalty boxes (erl.go)
	trust     *proxyTrust                         // trusted proxies; nil: none (clientaddr.go)
	transport *http.Transport
	// backendFails is which backends' requests have been failing (backendfails.go).
	backendFails backendFailures

	minInstances, maxInstances int

	closing    chan struct{}
	closeOnce  sync.Once
	root       context.Context
	rootCancel context.CancelFunc
	wg         sync.WaitGroup
	spawnMu    sync.Mutex
	failDelay  time.Duration

	// Module versions (reload.go): cur takes new requests; progs are all
	// not yet released.
	wasmPath, cacheDir string
	cur                atomic.Pointer[program]
	progMu             sync.Mutex
	progs              map[*program]struct{}
	reloadMu           sync.Mutex
	stamp              fileStamp // of the file last loaded (reloadMu)
	manifestStamp      fileStamp // of fastly.toml and configFiles when last read (reloadMu)
	configFiles        []string  // the config store files fastly.toml names, as last read (reloadMu)
	// configPending: the config or secret stores changed since the instances
	// last switched; cleared by a switch only, so a reload that failed
	// (a broken module put in place with the edit) leaves the change for
	// the next one (reloadMu).
	configPending bool
	// reloadFailure is why the last reload failed, for Degraded; nil
	// once one succeeds (or finds the file unchanged).
	reloadFailure atomic.Pointer[string]
	// configFailure is why fastly.toml could not be read again, for
	// Degraded; nil once it reads.
	configFailure atomic.Pointer[string]
	// secretFailure is why the secret stores could not be read again,
	// for Degraded; nil once they read (reloadSecrets).
	secretFailure atomic.Pointer[string]

	// Limits and pool behaviour (limits.go, pool.go).
	memoryLimit           int64
	wallBudget, cpuBudget time.Duration
	startupBudget         time.Duration
	idleTimeout           time.Duration
	fresh                 bool
	hitPath               func(string) bool // Config.HitPath
	measureGuest          bool
	ps                    poolStats

	// Client limits (clients.go, reqbody.go).
	conns                        connTable
	headerTimeout, keepAlive     time.Duration
	bodyTimeout, bodyIdleTimeout time.Duration
	writeTimeout                 time.Duration
	maxBody, bodyMemory          int64
	bodyBytes                    atomic.Int64 // request body bytes held (charged in chunks)

	live, idle            atomic.Int32
	instID, reqID, progID atomic.Uint64

	health health // health.go

	warned sync.Map // hostcalls already reported as unsupported
	m      metrics
	guest  guestTimes     // Config.MeasureGuestTime (metrics.go)
	sinks  *logsink.Set   // log endpoint destinations
	access *accesslog.Log // nil: no access log
}

// New compiles the module, links the hostcalls it imports and starts the
// warm pool. It returns once the warm instances are waiting for requests
// (or ctx ends, or an instance fails to start).
func New(ctx context.Context, cfg Config) (*Server, error) {
	began := time.Now()
	s, prog, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Current from the start, so its instances are replaced (with back-off)
	// like any other's. Wait for the warm pool, so the first visitors do
	// not pay for startup and a module that cannot start is reported here.
	s.cur.Store(prog)
	if err := s.startWarm(ctx, prog); err != nil {
		s.Shutdown(context.Background())
		return nil, err
	}
	if cfg.Reload {
		go s.watch(cmp.Or(cfg.ReloadInterval, 500*time.Millisecond))
	}
	if s.geo.db != nil {
		go s.geo.db.Watch(cmp.Or(cfg.GeoIPCheckInterval, 10*time.Second), s.closing)
	}
	s.log.Info("pop ready", "wasm", cfg.WasmPath, "instances", s.minInstances, "max_instances", s.maxInstances,
		"backends", len(s.backends), "startup", time.Since(began), "wall_budget", s.wallBudget,
		"cpu_budget", s.cpuBudget, "fresh_instances", s.fresh, "watch", cfg.Reload,
		"max_conns", s.conns.max, "max_conns_per_addr", s.conns.maxPerAddr, "max_request_body", s.maxBody, "body_memory", s.bodyMemory)
	return s, nil
}

// prepare builds a Server with its first program compiled and linked and
// its outputs open, but no instance started: New starts the warm pool on
// it, Run (run.go) one command instance.
func prepare(ctx context.Context, cfg Config) (*Server, *program, error) {
	wasm, stamp, err := readModule(cfg.WasmPath)
	if err != nil {
		// Which file this is, and where the module is built: a tester's
		// misspelt path gave only open's error.
		return nil, nil, fmt.Errorf("the module to serve (the MODULE.wasm argument): %w; make build writes the edge module to .edgepixel/bin/edgepixel.wasm", err)
	}
	s := &Server{
		log:       cfg.Logger,
		closing:   make(chan struct{}),
		health:    health{failed: make(chan struct{})},
		transport: newTransport(),
		wasmPath:  cfg.WasmPath,
		cacheDir:  cfg.CompileCacheDir,
		hitPath:   cfg.HitPath,
		progs:     map[*program]struct{}{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if len(cfg.Resolve) > 0 {
		s.transport.DialContext = resolving(cfg.Resolve, s.transport.DialContext)
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
	s.backends = newBackends(m, s.transport)
	if m != nil {
		s.config.Store(&configSnapshot{stores: m.LocalServer.ConfigStores, dicts: m.LocalServer.Dictionaries})
		s.secrets.Store(&secretSnapshot{stores: m.LocalServer.SecretStores})
		s.manifest = m
		s.checkManifest = cfg.CheckManifest
		s.secretDefs = &m.LocalServer
		s.acls = m.LocalServer.ACLs
		s.shields = m.LocalServer.ShieldingSites
	}
	s.kv = newKVStores(m)
	s.erl = newERLStore(cfg.ERLMaxEntries)
	var geoDBs *geoip.DB
	if len(cfg.GeoIPDatabases) > 0 {
		if geoDBs, err = geoip.Open(cfg.GeoIPDatabases, s.log); err != nil {
			return nil, nil, err
		}
	}
	if s.geo, err = newGeoDB(m, geoDBs); err != nil {
		return nil, nil, err
	}
	if s.devices, err = newDeviceDB(m); err != nil {
		return nil, nil, err
	}

	s.applyLimits(cfg)
	if s.trust, err = newProxyTrust(cfg.TrustedProxies, cfg.ForwardedHeader, cfg.ProxyProtocol); err != nil {
		return nil, nil, err
	}
	s.conns.trust, s.conns.headerTimeout = s.trust, s.headerTimeout
	s.root, s.rootCancel = context.WithCancel(context.Background())
	// The first module version; Reload may replace it (reload.go).
	prog, err := s.loadProgram(ctx, wasm)
	if err != nil {
		s.rootCancel()
		return nil, nil, err
	}
	s.stamp = stamp
	if path := s.manifestPath(); path != "" {
		s.configFiles = s.manifest.LocalServer.ConfigFiles
		s.manifestStamp, _ = statManifest(path, s.configFiles)
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
	if err := s.openOutputs(cfg); err != nil {
		s.rootCancel()
		s.release(prog)
		return nil, nil, err
	}
	return s, prog, nil
}

// runtimeConfig is the one wazero configuration the POP uses, for a
// module instrumented by the interrupt package (interruptible) or not.
// Compiled code in the cache is only reused under the same configuration,
// so Precompile shares it. The memory limit is not wazero's (see
// linearMemory in limits.go). The cache, if any, is the caller's to close.
//
// An instrumented module stops at its next loop iteration when its flag
// is set (instance.run sets it when the instance's context ends). Any
// other module relies on wazero's WithCloseOnContextDone, which stops it
// as promptly but leaves the compiled code for Go at every loop iteration.
func runtimeConfig(cacheDir string, interruptible bool) (wazero.RuntimeConfig, wazero.CompilationCache, error) {
	rtCfg := wazero.NewRuntimeConfig().WithCloseOnContextDone(!interruptible)
	if cacheDir == "" {
		return rtCfg, nil, nil
	}
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, nil, fmt.Errorf("compilation cache: %w", err)
	}
	return rtCfg.WithCompilationCache(cache), cache, nil
}

// prepareModule is the module as the POP compiles it: instrumented so the
// host can stop it cheaply (package interrupt), or, for a module using
// instructions the instrumenter does not know, as it is (interruptible
// false; err says why).
func prepareModule(wasm []byte) (code []byte, interruptible bool, err error) {
	code, err = interrupt.Module(wasm)
	if err != nil {
		return wasm, false, err
	}
	return code, true, nil
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
	code, interruptible, _ := prepareModule(wasm)
	rtCfg, cache, err := runtimeConfig(cacheDir, interruptible)
	if err != nil {
		return err
	}
	defer cache.Close(context.Background())
	rt := wazero.NewRuntimeWithConfig(ctx, rtCfg)
	defer rt.Close(context.Background())
	if _, err := rt.CompileModule(ctx, code); err != nil {
		return fmt.Errorf("compiling %s: %w", wasmPath, err)
	}
	return nil
}

// PopName is the POP's name in a guest's FASTLY_POP, as Viceroy's.
const PopName = "XXX"

// guestEnv is what Fastly (and Viceroy) put in a guest's environment;
// FASTLY_TRACE_ID, the sandbox id, is per instance (instance.run).
var guestEnv = map[string]string{
	"FASTLY_CACHE_GENERATION": "0",
	"FASTLY_CUSTOMER_ID":      "0000000000000000000000",
	"FASTLY_HOSTNAME":         "localhost",
	"FASTLY_IS_STAGING":       "0",
	"FASTLY_POP":              PopName,
	"FASTLY_REGION":           "Somewhere",
	"FASTLY_SERVICE_ID":       "0000000000000000000000",
	"FASTLY_SERVICE_VERSION":  "0",
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
// The request body is read whole first (reqbody.go), so no instance waits
// for a client. It returns when the guest has finished the response body,
// even if the guest keeps running afterwards, so work a guest does after
// responding costs the client nothing. Every request is then recorded:
// the latency histogram, the responses by status class and the optional
// access log, timed until the response body is complete.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, writeTimeout: s.writeTimeout}
	start := time.Now()
	cc := clientConnOf(r)
	if cc != nil {
		cc.beginRequest()
		defer cc.endRequest()
		rec.peer = cc.peer() // the proxy that sent a PROXY header
	}
	if s.trust != nil {
		// A trusted proxy's header names the client (clientaddr.go).
		if was := s.trust.apply(r); was != "" && rec.peer == "" {
			rec.peer = was
		}
	}
	// Deferred so a request aborted mid-body (serve panics with
	// http.ErrAbortHandler) is counted too.
	defer s.observe(rec, r, start)
	if ambiguousFraming(r, cc) {
		rec.closeConn = true // framing.go
		s.conns.rejects[rejectFraming].Add(1)
	}
	s.serve(rec, r)
}

// reject counts a request the POP refuses before any guest sees it and
// answers it with status, msg and the reason's metric label in
// X-Edgepixel-Drop, the header the edge module names its own drops in, so
// a client learns which counter took it.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, reason, status int, msg string) {
	s.countReject(r, reason)
	w.Header().Set("X-Edgepixel-Drop", rejectNames[reason])
	http.Error(w, "edgepixel-pop: "+msg, status)
}

// serve is ServeHTTP without the recording.
func (s *Server) serve(w *recorder, r *http.Request) {
	s.m.requests.Add(1)
	if s.isClosing() {
		s.m.errors.Add(1)
		dropBody(w, r)
		http.Error(w, "edgepixel-pop: shutting down", http.StatusServiceUnavailable)
		return
	}
	if code := overLimits(r); code != 0 { // Fastly's URL and header limits (limits.go)
		dropBody(w, r)
		reason := rejectHeaderTooLarge
		if code == http.StatusRequestURITooLong {
			reason = rejectURLTooLong
		}
		s.reject(w, r, reason, code, http.StatusText(code))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		status, reason := bodyAnswer(err)
		switch {
		case reason < 0: // the body's deadline
			// A timeout, and a hit whose body did not arrive whole: the
			// client learns which counter took it, and the aggregator's
			// loss figures count it, as a malformed body's (a tester's
			// slow POST /e was counted nowhere but here).
			s.conns.timeouts[phaseBody].Add(1)
			s.reject(w, r, rejectBodyIncomplete, status, err.Error())
		case status == 0: // the client went away: no one to answer
			s.countReject(r, reason)
			clientGone()
		default:
			s.reject(w, r, reason, status, err.Error())
		}
		return
	}
	ds := newDownstream(r)
	ds.body = body
	w.ds = ds // for the access log
	if !s.acquire(ds) {
		if body != nil {
			body.Close()
		}
		if r.Context().Err() != nil {
			clientGone()
		}
		s.m.errors.Add(1)
		http.Error(w, "edgepixel-pop: shutting down", http.StatusServiceUnavailable)
		return
	}
	for {
		var o outcome
		select {
		case o = <-ds.ready:
		case <-r.Context().Done():
			// An answer already there is still sent: select picks at
			// random when both are ready (review).
			select {
			case o = <-ds.ready:
			default:
				ds.abandon()
				clientGone()
			}
		}
		if o.failed {
			s.m.errors.Add(1)
			if o.limit != "" {
				// The instance is being terminated (limits.go).
				http.Error(w, "edgepixel-pop: the guest exceeded its "+o.limit+" limit", o.status)
				return
			}
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

// recorder is the ResponseWriter serve writes to. It records what the
// access log and metrics need, gives each write to the client its
// deadline (Config.Clients.WriteTimeout: a client that stops reading
// cannot hold the response, or a guest streaming it, for longer), and
// closes the connection after the answer when asked.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	ds     *downstream // set by serve once the request has one
	peer   string      // the proxy that said who the client is; "": none

	closeConn    bool // answer with Connection: close
	writeTimeout time.Duration
	rc           *http.ResponseController
	deadlineSet  time.Time
}

func (w *recorder) WriteHeader(code int) {
	// 1xx responses are interim; the status that counts is the final one.
	if code >= 200 {
		if w.status == 0 {
			w.status = code
		}
		if w.closeConn {
			w.Header().Set("Connection", "close")
		}
	}
	w.extendDeadline()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.extendDeadline()
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's ReadFrom available to io.Copy;
// the deadline is extended as the source delivers.
func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.writeTimeout > 0 {
		r = deadlineReader{r, w}
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// extendDeadline moves the write deadline to WriteTimeout from now, at
// most every sixteenth of it (a write must complete within between 15/16
// of WriteTimeout and all of it).
func (w *recorder) extendDeadline() {
	if w.writeTimeout <= 0 {
		return
	}
	now := time.Now()
	if now.Sub(w.deadlineSet) < w.writeTimeout/16 {
		return
	}
	if d, ok := w.ResponseWriter.(writeDeadliner); ok {
		// net/http's own writer: no ResponseController to allocate.
		d.SetWriteDeadline(now.Add(w.writeTimeout))
	} else {
		if w.rc == nil {
			w.rc = http.NewResponseController(w.ResponseWriter)
		}
		w.rc.SetWriteDeadline(now.Add(w.writeTimeout))
	}
	w.deadlineSet = now
}

// writeDeadliner is what http.ResponseController looks for to set a
// write deadline.
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// deadlineReader extends a recorder's write deadline before each read of
// a body being copied to the client: each read is followed by a write.
type deadlineReader struct {
	r io.Reader
	w *recorder
}

func (d deadlineReader) Read(p []byte) (int, error) {
	d.w.extendDeadline()
	return d.r.Read(p)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }

// clientGone ends a request whose client went away, without an answer.
// net/http ends a request's context when a read finds the connection
// closed, and a client's half-close (shutdown(SHUT_WR), which nc -N and
// some proxies do after a request) reads the same: a handler that
// returned then had net/http send an empty 200 for it, which told a
// client whose request was refused that it was taken (a tester's bad
// POST /e). Aborting closes the connection unanswered, as nginx (its
// 499) and Viceroy's hyper, by default, treat a half-close; ServeHTTP's
// deferred observe records 499.
func clientGone() { panic(http.ErrAbortHandler) }

// statusClientGone is what a request that ended without a response
// because the client went away is recorded as (nginx's convention).
const statusClientGone = 499

func (s *Server) observe(rec *recorder, r *http.Request, start time.Time) {
	d := time.Since(start)
	status := rec.status
	if status == 0 {
		if r.Context().Err() != nil {
			status = statusClientGone
		} else {
			status = http.StatusOK // net/http sends an empty 200
		}
	}
	s.m.duration.observe(d)
	s.m.observeStatus(status)
	if s.access != nil {
		e := accesslog.Entry{Start: start, Request: r, Peer: rec.peer, Status: status, Bytes: rec.bytes, Duration: d}
		if rec.ds != nil {
			e.Instance = rec.ds.servedBy.id.Load()
			if id := rec.ds.servedBy.req.Load(); id != 0 {
				e.RequestID = requestID(id)
			}
		}
		s.access.Add(e)
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
	// A reload in progress gives up now; wait for it, so it starts nothing
	// after this point.
	s.reloadMu.Lock()
	s.reloadMu.Unlock()
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
	// The guests have ended: flush what they logged.
	err = errors.Join(err, s.closeOutputs(ctx))
	s.rootCancel()
	s.transport.CloseIdleConnections()
	s.progMu.Lock()
	progs := slices.Collect(maps.Keys(s.progs))
	s.progMu.Unlock()
	for _, p := range progs {
		s.release(p)
	}
	return err
}

// openOutputs sets up the log endpoint destinations and the access log
// before any instance starts (a guest may log during its start-up).
func (s *Server) openOutputs(cfg Config) error {
	sinks, err := logsink.Open(cfg.LogEndpoints, s.stdout, s.log, s.fail)
	if err != nil {
		return err
	}
	s.sinks = sinks
	if cfg.AccessLog != nil {
		s.access = accesslog.New(cfg.AccessLog, s.fail)
	}
	return nil
}

// closeOutputs flushes them at Shutdown, after the guests have ended, so
// entries logged after a ServeMany loop are delivered. HTTP log endpoints
// may take until ctx ends.
func (s *Server) closeOutputs(ctx context.Context) error {
	var err error
	if s.sinks != nil {
		err = s.sinks.Close(ctx)
	}
	if s.access != nil {
		err = errors.Join(err, s.access.Close())
	}
	return err
}

// lockedWriter serialises writes from all instances (guest stdout/stderr
// and log endpoints) so lines from concurrent guests do not interleave and
// a non-thread-safe writer (a test's bytes.Buffer) stays safe.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLockedWriter returns w with its writes serialised, for a writer a
// caller shares with the Server (the CLI's stdout, which the guests and an
// access log on "-" both write).
func NewLockedWriter(w io.Writer) io.Writer { return &lockedWriter{w: w} }

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
