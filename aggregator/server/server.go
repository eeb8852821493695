// Package server wires the aggregator together: spool, dedupe, store,
// loader, live hub and the HTTP endpoints. The command and the integration
// tests both build the aggregator through Open, so tests run exactly the
// wiring production runs.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/access"
	"github.com/edgepixel/edgepixel/aggregator/admin"
	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/ingest"
	"github.com/edgepixel/edgepixel/aggregator/lease"
	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/aggregator/loader"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/clientip"
	"github.com/edgepixel/edgepixel/shared/dirlock"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/privdir"
)

// Config is everything the aggregator is configured with. Zero values
// take the defaults of the packages they go to.
type Config struct {
	DataDir string // spool and (without ClickHouse) the on-disk store
	Secret  []byte // shared with the edge; required

	RedisURL string // "" = in-process dedupe
	// RedisCluster, if set, are host:port seeds of a Redis Cluster used
	// for dedupe instead of RedisURL.
	RedisCluster []string
	// RedisHint says where Redis is configured, for the warning that it
	// does not answer (the command's flag and variable).
	RedisHint     string
	ClickHouseURL string // "" = on-disk store
	ClickHouseDB  string // default "edgepixel"
	// ClickHouseCluster, with a Name, lays the schema out on that cluster
	// (clickhouse.Layout): inserts into the local shard of ClickHouseURL's
	// server, reads through Distributed tables. Zero: one server.
	ClickHouseCluster clickhouse.ClusterConfig

	MaxBody       int64
	ReplayWindow  time.Duration
	DedupeWindow  time.Duration
	SpoolMaxBytes int64

	LoaderMaxRows int
	LoaderMaxAge  time.Duration
	DrainTimeout  time.Duration // how long shutdown keeps loading what is spooled
	LiveInterval  time.Duration
	// FailAfter is how long running out of file descriptors may last
	// before the loader or the listener fails; default 1 min.
	FailAfter time.Duration

	// HTTP limits (see package guard and Serve); zero takes the default.
	ReadHeaderTimeout time.Duration // the request line and headers; default 10 s
	BodyTimeout       time.Duration // from the end of the headers to the end of the body; default 30 s
	IdleTimeout       time.Duration // a keep-alive connection without a request; default 60 s
	WriteTimeout      time.Duration // from the end of the headers to the end of the answer; default 60 s
	MaxHeaderBytes    int           // request line and headers; default 16 KiB; less than MinMaxHeaderBytes acts as it
	MaxConns          int           // open connections; default 4096; < 0: no cap
	MaxConnsPerClient int           // open connections per client address; default 256; < 0: no cap
	// TrustedProxies are the reverse proxies whose X-Forwarded-For (or
	// Forwarded) header names the client, for the credential limiters
	// and the per-client caps (guard.Config.Trust); nil: none.
	TrustedProxies *clientip.Trust
	// QueryTimeout bounds a dashboard API query of the store (history,
	// stats, top, quality, loss); past it the answer is 504. Default 30 s.
	QueryTimeout time.Duration
	// MaxBodyMemory bounds the memory request bodies hold at once (package
	// ingest, Budget); default 256 MiB; < 0: no bound. A client address's
	// unauthenticated bodies get at most MaxBodyMemoryPerClient of it;
	// default the larger of MaxBodyMemory/16 and twice MaxBody.
	MaxBodyMemory          int64
	MaxBodyMemoryPerClient int64
	// AuthRate and AuthBurst brake credential guessing per client address
	// (guard.AuthLimiter): failed checks per second earned back, and how
	// many may fail in a row. Defaults 1 and 20.
	AuthRate  float64
	AuthBurst int
	// Sites, if not empty, lists the sites accepted: events for others
	// become bad rows (unknown_site), and the live counts hold only these.
	Sites []string
	// MaxSites bounds the sites the live counts and /api/counts hold one
	// by one (the rest are summed up in their top-level "other", beside
	// "sites": a site named other is the key "other" of "sites");
	// default 1000.
	MaxSites int
	// LiveMaxVisitors bounds the visitor ids the live view keeps for its
	// visitors in the last 5 minutes; default live.DefaultMaxVisitors.
	LiveMaxVisitors int

	// LogToken lets /ingest/ndjson authenticate with a bearer token (CDN
	// log streaming); FastlyServiceIDs answer Fastly's logging challenge.
	LogToken         string
	FastlyServiceIDs []string
	// AdminToken guards /admin/ (erasure, retention); "" disables it.
	AdminToken string
	// RetentionDays > 0 drops day partitions older than that at start and
	// daily (ClickHouse only).
	RetentionDays int
	// RollupLateness is how long after the rollups' cut-off their
	// backfill first runs (ClickHouse only; see
	// clickhouse.BackfillRollups); it runs again hourly, on one of the
	// aggregators that share Redis (RollupLeaseTTL).
	RollupLateness time.Duration

	// DashboardToken is the dashboard's admin token (every site, share
	// links); "" reads DataDir/dashboard-token, creating a random one
	// there on first start. DashboardViewers maps viewer tokens to the
	// sites they may read. See package access.
	DashboardToken   string
	DashboardViewers map[string][]string
	// DashboardOrigins are the origins, besides the dashboard's own, whose
	// pages may open /live (e.g. https://stats.example when a proxy serves
	// the dashboard under another name).
	DashboardOrigins []string
	// SecureCookies marks session cookies Secure (the dashboard is served
	// over HTTPS).
	SecureCookies bool
	// PublicCounters lists the sites whose "views now" counter may be
	// embedded anywhere: GET /counter/SITE.json and .svg on the public
	// listener, without credentials (see counter.go).
	PublicCounters []string

	Logger *slog.Logger
}

// Server is an opened aggregator.
type Server struct {
	cfg     Config
	log     *slog.Logger
	spool   *spool.Spool
	dedupe  dedupe.Deduper
	store   store.Store
	query   *query.Engine // answers /api over store, if ClickHouse; nil without
	loader  *loader.Loader
	hub     *live.Hub
	metrics *metrics.Metrics
	handler http.Handler
	dash    *http.Server
	access  *access.Access
	guard   *guard.Guard
	auth    *guard.AuthLimiter // the public listener's credentials: ingest, /admin/
	// dashAuth is the dashboard listener's (tokens, logins), kept apart
	// from auth so that a stranger's failures on the public port do not
	// lock the owner out of the dashboard.
	dashAuth *guard.AuthLimiter
	budget   *ingest.Budget
	http     *http.Server
	closeMu  sync.Once
	lock     *os.File // the data directory's (lockDataDir), held until Close
	started  time.Time

	// failure is the first component failure (see Run); once set,
	// /healthz answers 503 and ingest refuses batches.
	failure atomic.Pointer[error]
	failed  chan struct{}
}

// Open opens the spool and creates the dedupe and store clients. It does
// not wait for Redis or ClickHouse: ingest works (into the spool) while
// they are down, and the loader retries until they answer.
func Open(cfg Config) (*Server, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("no shared secret configured")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory configured")
	}
	if cfg.ClickHouseDB == "" {
		cfg.ClickHouseDB = "edgepixel"
	}
	if cfg.MaxBody > spool.MaxRecord {
		return nil, fmt.Errorf("the largest body (%d bytes) is over the largest spool record (%d bytes)", cfg.MaxBody, spool.MaxRecord)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	lock, err := lockDataDir(cfg.DataDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			lock.Close()
		}
	}()
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: metrics.New(), failed: make(chan struct{}), started: time.Now(), lock: lock}
	if s.spool, err = spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{MaxBytes: cfg.SpoolMaxBytes, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	if len(cfg.RedisCluster) > 0 && cfg.RedisURL != "" {
		s.spool.Close()
		return nil, errors.New("give either --redis or --redis-cluster, not both")
	}
	if len(cfg.RedisCluster) > 0 {
		if s.dedupe, err = dedupe.NewRedisCluster(cfg.RedisCluster, "", "", cfg.DedupeWindow); err != nil {
			s.spool.Close()
			return nil, err
		}
	} else if cfg.RedisURL != "" {
		if s.dedupe, err = dedupe.NewRedis(cfg.RedisURL, cfg.DedupeWindow); err != nil {
			s.spool.Close()
			return nil, err
		}
	} else {
		s.log.Warn("no --redis or --redis-cluster configured: deduplication runs in process and does not survive restarts (batches the edge retries across a restart may be stored twice)")
		s.dedupe = dedupe.NewMemory(cfg.DedupeWindow)
	}
	if cfg.ClickHouseURL != "" {
		c, err := clickhouse.New(cfg.ClickHouseURL, cfg.ClickHouseDB)
		if err == nil && cfg.ClickHouseCluster.Name != "" {
			err = c.SetCluster(cfg.ClickHouseCluster)
		}
		if err != nil {
			s.spool.Close()
			s.dedupe.Close()
			return nil, err
		}
		s.store = c
		s.query = &query.Engine{Src: c}
	} else {
		dir := filepath.Join(cfg.DataDir, "events")
		s.log.Warn("no --clickhouse configured: events are stored as NDJSON files on local disk (fine for trying edgepixel, not for production)", "dir", dir)
		if s.store, err = store.OpenDisk(dir); err != nil {
			s.spool.Close()
			s.dedupe.Close()
			return nil, err
		}
	}
	if rd, ok := s.dedupe.(*dedupe.Redis); ok {
		rd.SetLogger(cfg.Logger)
		// After Redis lost its memory, ids up to the store's newest event
		// are checked against the store (see dedupe.Redis).
		if n, ok := s.store.(interface {
			NewestEventTime(context.Context, time.Time) (int64, error)
		}); ok {
			rd.UseStore(n.NewestEventTime)
		}
	}
	if cfg.MaxSites <= 0 {
		cfg.MaxSites = 1000
	}
	s.cfg.MaxSites = cfg.MaxSites
	if s.access, err = openAccess(cfg); err != nil {
		s.spool.Close()
		s.dedupe.Close()
		s.store.Close()
		return nil, err
	}
	s.hub = live.NewHub(live.Options{Interval: cfg.LiveInterval, Logger: cfg.Logger,
		Sites: cfg.Sites, MaxSites: cfg.MaxSites, MaxVisitors: cfg.LiveMaxVisitors, Metrics: s.metrics, CheckOrigin: checkOrigin(cfg.DashboardOrigins)})
	// An open /live socket is checked again whenever a credential may have
	// ended (see liveReader).
	s.access.OnChange(s.hub.Recheck)
	s.loader = loader.New(loader.Config{
		Spool: s.spool, Dedupe: s.dedupe, Store: s.store, Metrics: s.metrics, Logger: cfg.Logger,
		OnCounts: s.hub.Set, OnStored: s.hub.Add, OnInserted: s.hub.Observe, CountSites: cfg.Sites, CountMax: cfg.MaxSites,
		OnRecent: s.hub.Restore, RecentWindow: live.RestoreWindow, RecentMax: live.RestoreMax,
		MaxRows: cfg.LoaderMaxRows, MaxAge: cfg.LoaderMaxAge, DrainTimeout: cfg.DrainTimeout,
		FailAfter: cfg.FailAfter,
	})
	s.metrics.SpoolBytes = s.spool.Pending
	s.metrics.LoaderLag = s.loader.Lag
	s.metrics.LoaderPaused = s.loader.Paused
	s.metrics.SpoolNoRoom = func() int {
		if s.spool.Refusing() {
			return 1
		}
		return 0
	}
	s.metrics.LiveClients = s.hub.Clients
	s.metrics.LiveSites = s.hub.Sites
	s.openHTTP()
	opened = true
	return s, nil
}

// lockDataDir takes the data directory's lock (package dirlock) for as
// long as the aggregator runs: two aggregators on one --data-dir would
// both append to, and load from, the same spool. The lock dies with the
// process, so a kill -9 leaves none behind. The directory is made
// private (package privdir): its spool holds every event.
func lockDataDir(dir string, log *slog.Logger) (*os.File, error) {
	warning, err := privdir.Make(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if warning != "" {
		log.Warn("data directory: " + warning)
	}
	lock, err := dirlock.Lock(filepath.Join(dir, dirlock.Name))
	if errors.Is(err, dirlock.ErrHeld) {
		return nil, fmt.Errorf("data directory %s is in use: another aggregator holds it (its lock file %s); give each aggregator its own --data-dir", dir, dirlock.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, err)
	}
	return lock, nil
}

// openHTTP builds the guarded handler and the HTTP server.
func (s *Server) openHTTP() {
	c := &s.cfg
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.BodyTimeout, 30*time.Second)
	def(&c.IdleTimeout, time.Minute)
	def(&c.WriteTimeout, time.Minute)
	def(&c.QueryTimeout, 30*time.Second)
	if c.MaxBodyMemory == 0 {
		c.MaxBodyMemory = 256 << 20
	}
	if c.MaxBodyMemoryPerClient == 0 {
		c.MaxBodyMemoryPerClient = max(c.MaxBodyMemory/16, ingest.BodyPeak(max(c.MaxBody, 4<<20)))
	}
	s.budget = ingest.NewBudget(max(c.MaxBodyMemory, 0), max(c.MaxBodyMemoryPerClient, 0))
	s.metrics.BodyMemory = s.budget.Used
	// One limiter per listener: failures on the public one (anyone's) must
	// not lock the owner out of the private dashboard, nor dashboard
	// typos the POPs out of ingest.
	newAuth := func(listener string) *guard.AuthLimiter {
		return guard.NewAuthLimiter(guard.AuthConfig{Rate: c.AuthRate, Burst: float64(c.AuthBurst), Metrics: s.metrics, Logger: s.log.With("listener", listener)})
	}
	s.auth, s.dashAuth = newAuth("public"), newAuth("dashboard")
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = 4096
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = 256
	}
	s.guard = guard.New(guard.Config{
		MaxConns: max(c.MaxConns, 0), MaxConnsPerClient: max(c.MaxConnsPerClient, 0), Trust: c.TrustedProxies,
		BodyTimeout: c.BodyTimeout, FailAfter: c.FailAfter, OnFail: s.Fail,
		Metrics: s.metrics, Logger: s.log,
	})
	s.handler = s.guard.Handler(s.routes())
	s.http = &http.Server{
		Handler: s.handler, ConnState: s.guard.ConnState, ConnContext: s.guard.ConnContext,
		ReadHeaderTimeout: c.ReadHeaderTimeout, IdleTimeout: c.IdleTimeout,
		WriteTimeout: c.WriteTimeout, MaxHeaderBytes: netHTTPMaxHeaderBytes(c.MaxHeaderBytes),
		// net/http's own messages (a handler's panic, TLS noise): warnings.
		ErrorLog: slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	s.dash = &http.Server{
		Handler: s.guard.Handler(s.dashboardRoutes()), ConnState: s.guard.ConnState, ConnContext: s.guard.ConnContext,
		ReadHeaderTimeout: c.ReadHeaderTimeout, IdleTimeout: c.IdleTimeout,
		WriteTimeout: c.WriteTimeout, MaxHeaderBytes: netHTTPMaxHeaderBytes(c.MaxHeaderBytes),
		ErrorLog: slog.NewLogLogger(s.log.With("component", "dashboard").Handler(), slog.LevelWarn),
	}
}

// Serve serves the public endpoints (ingest, /admin/, /healthz, /readyz)
// on ln, with the connection caps and the deadlines of Config, until
// Shutdown. It returns like http.Server.Serve. Nothing that shows traffic
// is served there: see ServeDashboard.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(s.guard.Listener(ln)) }

// ServeDashboard serves the dashboard, /api/, /live and /metrics on ln
// (meant to be a loopback or private address), each behind credentials
// (package access), until Shutdown.
func (s *Server) ServeDashboard(ln net.Listener) error { return s.dash.Serve(s.guard.Listener(ln)) }

// Shutdown stops Serve and ServeDashboard: it closes the listeners and
// waits for requests in progress (see http.Server.Shutdown). WebSocket
// clients are told to go away first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.hub.Close()
	return errors.Join(s.http.Shutdown(ctx), s.dash.Shutdown(ctx))
}

// Handler returns the public HTTP handler (with the body deadline and the
// framing rule of package guard; the connection caps and the other
// deadlines need Serve).
func (s *Server) Handler() http.Handler { return s.handler }

// DashboardHandler returns the private handler that ServeDashboard serves.
func (s *Server) DashboardHandler() http.Handler { return s.dash.Handler }

// Access returns the dashboard's credentials checker.
func (s *Server) Access() *access.Access { return s.access }

// Metrics returns the aggregator's counters.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Hub returns the live-count hub.
func (s *Server) Hub() *live.Hub { return s.hub }

// RollupLeaseTTL is how long the aggregator that does the rollups' work
// (backfill, visit summaries) holds it without renewing: when it dies,
// another of those sharing Redis takes over after at most this long.
var RollupLeaseTTL = 30 * time.Second

// Run runs the loader, the live hub and (with ClickHouse and
// RetentionDays) the retention schedule until ctx ends; then the loader
// finishes what is spooled (bounded by its drain timeout) and Run returns
// nil. Stop the HTTP server before cancelling ctx so no batch is accepted
// after the loader's last look.
//
// Run returns early, with the reason, when a component fails: the spool's
// write path fails, the loader stops on a failure (see package loader),
// the hub or the retention schedule stops on its own, or any of them
// panics. Faults outside the process (Redis, ClickHouse down) are not
// failures: loading pauses. A failure shows on /healthz (503) at once,
// before Run returns; the caller should exit non-zero so that a supervisor
// restarts the process.
func (s *Server) Run(ctx context.Context) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	s.component(&wg, runCtx, "live hub", s.hub.Run)
	s.component(&wg, runCtx, "credential log", s.auth.Run)
	s.component(&wg, runCtx, "dashboard credential log", s.dashAuth.Run)
	s.component(&wg, runCtx, "refusal log", s.logRefusals)
	if as := s.adminStore(); as != nil && s.cfg.RetentionDays > 0 {
		s.component(&wg, runCtx, "retention", func(ctx context.Context) {
			admin.RunRetention(ctx, as, s.cfg.RetentionDays, s.log, 5*time.Minute, s.loader.Recount)
		})
	} else if s.cfg.RetentionDays > 0 {
		s.log.Warn("--retention-days needs ClickHouse; the on-disk store keeps everything")
	}
	if c, ok := s.store.(*clickhouse.Client); ok {
		work := func(ctx context.Context) { clickhouse.RunBackfill(ctx, c, s.cfg.RollupLateness, time.Hour, s.log) }
		if rd, ok := s.dedupe.(*dedupe.Redis); ok {
			// Aggregators that share Redis share ClickHouse: one of
			// them, the lease's holder, does the rollups' work.
			l := lease.New(rd.Client(), "ep:lease:rollups:"+c.DB(), RollupLeaseTTL)
			s.component(&wg, runCtx, "rollup backfill", func(ctx context.Context) { l.Run(ctx, s.log, work) })
		} else {
			s.component(&wg, runCtx, "rollup backfill", work)
		}
	}
	if rd, ok := s.dedupe.(*dedupe.Redis); ok {
		// Said at start: a mistyped --redis otherwise shows nothing until
		// the first batch, and then only as the loader's retries.
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(runCtx, 5*time.Second)
			defer cancel()
			if err := rd.Ping(ctx); err != nil && runCtx.Err() == nil {
				// Where it is looked for, as the ClickHouse warning says
				// (a tester's mistyped address came without it).
				s.log.Warn("Redis does not answer: batches are accepted and spooled, and loading waits until it does (/readyz shows it)", "err", err, "check", s.cfg.RedisHint)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-s.spool.Failed():
			s.Fail(s.spool.Err())
		case <-s.loader.Failed():
			s.Fail(fmt.Errorf("loader: %w", s.loader.Err()))
		case <-s.failed:
		case <-runCtx.Done():
			return
		}
		stop() // a failure ends the loader too
	}()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic", "component", "loader", "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return s.loader.Run(runCtx)
	}()
	if err == nil && ctx.Err() == nil && s.Err() == nil {
		err = errors.New("stopped on its own")
	}
	if err != nil {
		s.Fail(fmt.Errorf("loader: %w", err))
	}
	stop()
	s.hub.Close()
	wg.Wait()
	return s.Err()
}

// component runs f until ctx ends; f returning earlier, or panicking, is
// a failure of the component called name.
func (s *Server) component(wg *sync.WaitGroup, ctx context.Context, name string, f func(context.Context)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic", "component", name, "panic", p, "stack", string(debug.Stack()))
				s.Fail(fmt.Errorf("%s: panic: %v", name, p))
			}
		}()
		f(ctx)
		if ctx.Err() == nil {
			s.Fail(fmt.Errorf("%s: stopped on its own", name))
		}
	}()
}

// Fail marks the aggregator as failing with err (the first reason wins):
// /healthz answers 503 with the reason, ingest answers 503, and Run
// returns. The command also calls it when the HTTP server stops.
func (s *Server) Fail(err error) {
	if err == nil {
		return
	}
	if s.failure.CompareAndSwap(nil, &err) {
		s.metrics.Failing.Store(1)
		s.log.Error("failing: the process will exit so that it is restarted", "reason", err)
		close(s.failed)
	}
}

// Err returns why the aggregator is failing, or nil.
func (s *Server) Err() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Close releases the spool and the clients. Call it after Run returned.
func (s *Server) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.hub.Close()
		err = errors.Join(s.spool.Close(), s.dedupe.Close(), s.store.Close(), s.lock.Close())
	})
	return err
}

// adminStore returns the store's admin operations, or nil when it has
// none (the on-disk store).
func (s *Server) adminStore() admin.Store {
	if as, ok := s.store.(admin.Store); ok {
		return as
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	icfg := ingest.Config{
		Secret: s.cfg.Secret, Spool: s.spool, MaxBody: s.cfg.MaxBody, ReplayWindow: s.cfg.ReplayWindow,
		Metrics: s.metrics, Logger: s.cfg.Logger, LogToken: s.cfg.LogToken,
		Failing: s.Err, Budget: s.budget, Limiter: s.auth, Sites: s.cfg.Sites,
	}
	mux.Handle("/ingest", ingest.New(icfg))
	mux.Handle("/ingest/ndjson", ingest.NewNDJSON(icfg))
	if s.cfg.LogToken != "" {
		mux.Handle("GET "+ingest.FastlyChallengePath, ingest.FastlyChallenge(s.cfg.FastlyServiceIDs))
	}
	mux.Handle("/admin/", admin.New(admin.Config{Token: s.cfg.AdminToken, Store: s.adminStore(),
		RetentionDays: s.cfg.RetentionDays, Logger: s.cfg.Logger, Limiter: s.auth, Removed: s.loader.Recount}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/counter/{file}", s.counter) // 404 for sites not opted in, whatever the method
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.Err(); err != nil {
		reply.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "failing", "reason": err.Error()})
		return
	}
	reply.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the aggregator can take batches: the spool has
// room, and its disk had room for the last batch (spool.Spool.NoRoom).
// Ingest does not need Redis or the store, so their outage does not
// make it unready (a load balancer would otherwise stop sending batches
// the spool could keep); "loading" says whether stored rows keep up, with
// the reason it is paused, and ?loading=1 makes the status code require
// loading too (for monitoring).
//
// This is the public listener's: a failing check says "failing" and a
// pause names its step without the error, whose text holds internal
// addresses (a Redis or ClickHouse URL); readyzDetail, on the dashboard
// listener for the admin, and the log give the errors.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) { s.readiness(w, r, false) }

// readyzDetail is readyz with each failing check's error and the pause's.
func (s *Server) readyzDetail(w http.ResponseWriter, r *http.Request) { s.readiness(w, r, true) }

func (s *Server) readiness(w http.ResponseWriter, r *http.Request, detail bool) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ingestOK, loadOK := true, true
	check := func(name string, err error, ok *bool) {
		switch {
		case err == nil:
			checks[name] = "ok"
		case detail:
			checks[name] = err.Error()
		default:
			checks[name] = "failing"
		}
		if err != nil {
			*ok = false
		}
	}
	var spoolErr error
	if s.spool.Full(0) {
		spoolErr = errors.New("spool full: the loader is behind")
	} else if since, err := s.spool.NoRoom(); err != nil {
		spoolErr = fmt.Errorf("the disk has had no room for batches for %v: %w", time.Since(since).Round(time.Second), err)
	}
	check("spool", spoolErr, &ingestOK)
	dedupeErr, storeErr := s.dedupe.Ping(ctx), s.store.Ping(ctx)
	check(s.dedupe.Name(), dedupeErr, &loadOK)
	check(s.store.Name(), storeErr, &loadOK)
	var loaderErr error
	if !s.loader.Ready() {
		loaderErr = errors.New("store not initialized yet")
	}
	check("loader", loaderErr, &loadOK)
	pause := s.loader.Status()
	// The loader records a pause once an attempt failed; a backend that
	// stops answering leaves its attempt waiting without an error (or
	// finds it idle), and loading cannot go on all the same: the failed
	// check is then the reason.
	for _, c := range []struct {
		name string
		err  error
	}{{s.store.Name(), storeErr}, {s.dedupe.Name(), dedupeErr}} {
		if pause == nil && c.err != nil {
			pause = &loader.Pause{What: "reach " + c.name, Error: c.err.Error()}
		}
	}
	if pause != nil {
		loadOK = false
		if !detail {
			p := *pause
			p.Error = "see the aggregator's log, or /readyz on the dashboard listener"
			pause = &p
		}
	}
	status := http.StatusOK
	if !ingestOK || (!loadOK && r.URL.Query().Get("loading") != "") {
		status = http.StatusServiceUnavailable
	}
	reply.JSON(w, status, map[string]any{
		"ready": ingestOK, "checks": checks,
		"loading": map[string]any{
			"ready": loadOK, "paused": pause,
			"lag_seconds": s.loader.Lag(), "spooled_bytes": s.spool.Pending(),
		},
	})
}

// counts answers /api/counts: {"total": N, "sites": {SITE: N, ...},
// "other": N, "ready": B}. other is the events of the sites not listed one
// by one (beyond MaxSites, or not on Sites): a number beside sites, never
// one of its keys, so a site named "other" is sites' "other" and the two
// stay apart. A grant that reads only some sites gets theirs, their sum as
// total, and other 0 (the sum is of sites it may not read).
func (s *Server) counts(w http.ResponseWriter, r *http.Request) {
	sites, other, total, ready := s.hub.Snapshot()
	if g := grantOf(r); !g.All() {
		other, total = 0, 0
		for k, n := range sites {
			if g.CanRead(k) {
				total += n
			} else {
				delete(sites, k)
			}
		}
	}
	reply.JSON(w, http.StatusOK, map[string]any{"total": total, "sites": sites, "other": other, "ready": ready})
}

// history answers the per-minute counts of one site for the last
// `minutes` minutes (default 60, at most 1440), one point per minute
// including empty ones, oldest first.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	site := event.CleanSite(r.Form.Get("site"))
	if site == "" {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "site is required", "reason": "bad_request"})
		return
	}
	if !canRead(w, r, site) {
		return
	}
	minutes := 60
	if v := r.Form.Get("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1440 {
			reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "minutes must be 1..1440", "reason": "bad_request"})
			return
		}
		minutes = n
	}
	now := time.Now().Unix() / 60 * 60
	from := now - int64(minutes-1)*60
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	pts, err := s.store.History(ctx, site, time.Unix(from, 0), time.Unix(now, 0))
	if err != nil {
		s.storeFailed(w, ctx, err)
		return
	}
	dense := make([]store.Point, minutes)
	for i := range dense {
		dense[i].T = from + int64(i)*60
	}
	for _, p := range pts {
		if i := (p.T - from) / 60; i >= 0 && i < int64(minutes) {
			dense[i].N += p.N
		}
	}
	reply.JSON(w, http.StatusOK, map[string]any{"site": site, "points": dense})
}

// netHTTPMaxHeaderBytes is the http.Server.MaxHeaderBytes that refuses
// (431) a request line and headers over n bytes: net/http reads up to
// MaxHeaderBytes plus 4096 bytes ("bufio slop", initialReadLimitSize in
// net/http/server.go) before it gives up, so n itself would let 4 KiB
// more through. Under MinMaxHeaderBytes it is 1 (0 is net/http's 1 MB
// default): the limit is then MinMaxHeaderBytes.
func netHTTPMaxHeaderBytes(n int) int { return max(n-netHTTPHeaderSlop, 1) }

const netHTTPHeaderSlop = 4096

// MinMaxHeaderBytes is the smallest Config.MaxHeaderBytes that is the
// limit it says: net/http's own slop (4 KiB) lets any smaller one act as
// this, so --max-header-bytes refuses one below it rather than keep a
// limit other than the one given, without a word.
const MinMaxHeaderBytes = netHTTPHeaderSlop + 1

// loss answers what the edges counted against what was stored (see
// store.Loss): GET /api/loss?site=S&from=T&to=T. site is optional
// (without it: all sites); from and to are RFC 3339 times, unix
// milliseconds or dates (see parseTime: to=DATE includes its day), to
// defaulting to now and from to a day before to, at most 366 days apart.
func (s *Server) loss(w http.ResponseWriter, r *http.Request) {
	cst, ok := s.store.(store.CounterStore)
	if !ok {
		reply.JSON(w, http.StatusNotImplemented, map[string]string{"error": "the " + s.store.Name() + " store does not keep edge counters", "reason": "unsupported"})
		return
	}
	q := r.Form
	bad := func(msg string) {
		reply.JSON(w, http.StatusBadRequest, map[string]string{"error": msg, "reason": "bad_request"})
	}
	to, err := parseTime(q.Get("to"), time.Now(), true)
	if err != nil {
		bad("to: " + err.Error())
		return
	}
	from, err := parseTime(q.Get("from"), to.Add(-24*time.Hour), false)
	if err != nil {
		bad("from: " + err.Error())
		return
	}
	if !from.Before(to) || to.Sub(from) > 366*24*time.Hour {
		bad("from must be before to, at most 366 days")
		return
	}
	if from.Before(clickhouse.DateTimeMin) || to.After(clickhouse.DateTimeMax) {
		bad("from and to must be from " + clickhouse.DateTimeMin.Format(time.RFC3339) + " to " + clickhouse.DateTimeMax.Format(time.RFC3339) + " (ClickHouse's DateTime)")
		return
	}
	site, all := event.CleanSite(q.Get("site")), !q.Has("site")
	if !all && site == "" {
		// Hits that named no site are counted under "": an empty
		// variable in a script (site=$SITE) would read those as if
		// they were a site's, or all sites'.
		bad("site is empty: give a site, or leave site out for all sites")
		return
	}
	if all && !grantOf(r).All() || !all && !canRead(w, r, site) {
		if all {
			reply.JSON(w, http.StatusForbidden, map[string]string{"error": "all sites need the admin token; give site", "reason": "forbidden"})
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	l, err := cst.Loss(ctx, site, all, from, to)
	if err != nil {
		s.storeFailed(w, ctx, err)
		return
	}
	reply.JSON(w, http.StatusOK, l)
}

// parseTime reads an RFC 3339 time, unix milliseconds or a date
// (YYYY-MM-DD, UTC, as /api/stats' custom range takes them): the day's
// start, or with dayEnd the next day's, so that to=DATE, the end of a
// range, includes that day as it does there; "" is def.
//
// A whole number from 1e9 to 1e11 is refused: as milliseconds it is in
// January 1970 to March 1973, long before any event, but as Unix seconds
// (what NDJSON's ts and edgepixel-sign --expires take) it is 2001 to
// 5138, so it is almost surely seconds, and read as milliseconds it
// would answer for the wrong time without a word.
func parseTime(v string, def time.Time, dayEnd bool) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if len(v) == len(time.DateOnly) && v[4] == '-' && v[7] == '-' {
		d, err := query.ParseDate(v)
		if dayEnd {
			d = d.AddDate(0, 0, 1)
		}
		return d, err
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms <= 0 || ms > 1<<42 {
			return time.Time{}, errors.New("not unix milliseconds")
		}
		if ms >= 1e9 && ms < 1e11 {
			return time.Time{}, fmt.Errorf("%s looks like Unix seconds (%s); give Unix milliseconds (add 000) or an RFC 3339 time",
				v, time.Unix(ms, 0).UTC().Format(time.RFC3339))
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		// A query string decodes '+' as a space, so an offset such as
		// +05:00 written unescaped arrives as " 05:00". Read back as '+'
		// it would be what the user meant most likely, but not surely (the
		// space could be a typo for '-'): the answer says how to write it
		// rather than guessing.
		if _, perr := time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+")); perr == nil && strings.Contains(v, " ") {
			return time.Time{}, fmt.Errorf("%q has a space where RFC 3339 has '+': a '+' in a URL query reads as a space: write it as %%2B", v)
		}
		return time.Time{}, errors.New("want RFC 3339, unix milliseconds or a date (YYYY-MM-DD)")
	}
	return t, nil
}
