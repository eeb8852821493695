// Command edgepixel-aggregator receives signed event batches from the edge,
// spools them durably, deduplicates them through Redis, stores them in
// ClickHouse, and serves live counts and the dashboard.
//
// Every flag has an environment variable equivalent (EDGEPIXEL_AGG_ plus
// the flag name in upper case with - as _); a flag given on the command
// line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/edgepixel/edgepixel/aggregator/admin"
	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/dedupe"
	"github.com/edgepixel/edgepixel/aggregator/ingest"
	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/aggregator/loader"
	"github.com/edgepixel/edgepixel/aggregator/server"
	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/clientip"
	"github.com/edgepixel/edgepixel/shared/defaultaddr"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/logging"
	"github.com/edgepixel/edgepixel/shared/permhint"
	"github.com/edgepixel/edgepixel/shared/redact"
	"github.com/edgepixel/edgepixel/shared/tokenfile"
	goredis "github.com/redis/go-redis/v9"
)

func main() {
	// A closed stdout or stderr must not end the process by SIGPIPE
	// before its spool is synced and its loader stopped (see
	// edgepixel-pop's main).
	signal.Ignore(syscall.SIGPIPE)
	err := run(os.Args[1:])
	var ue flaghint.UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "edgepixel-aggregator: %v\n%s\n", err, flaghint.SeeHelp("edgepixel-aggregator"))
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "edgepixel-aggregator:", permhint.Wrap("edgepixel-aggregator", err))
		os.Exit(1)
	}
}

// check refuses values out of a flag's domain, which the flag package
// parses but the aggregator would misread (a negative duration, a bound
// of 0), and combinations that contradict each other, naming the flag
// and what it wants.
func (o *options) check(fs *flag.FlagSet) error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // 0 allowed
	}{
		{"live-interval", o.liveInterval, false}, {"replay-window", o.replayWindow, false}, {"dedupe-window", o.dedupeWindow, false},
		{"clickhouse-quorum-timeout", o.clickhouseQuorumTimeout, false}, {"rollup-lateness", o.rollupLateness, true},
		{"read-header-timeout", o.readHeaderTimeout, false}, {"body-timeout", o.bodyTimeout, false}, {"idle-timeout", o.idleTimeout, false},
		{"write-timeout", o.writeTimeout, false}, {"query-timeout", o.queryTimeout, false}, {"fail-after", o.failAfter, false},
		{"exit-delay", o.exitDelay, true}, {"loader-max-age", o.loaderMaxAge, false},
	} {
		if d.v < 0 || d.v == 0 && !d.zero {
			errs = append(errs, fmt.Errorf("--%s must be a positive duration, not %v", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name     string
		v, least int64
		none     bool // -1 allowed: no bound
	}{
		{"max-body", o.maxBody, 1, false}, {"spool-max-bytes", o.spoolMaxBytes, 1, false}, {"loader-max-rows", int64(o.loaderMaxRows), 1, false},
		{"max-header-bytes", int64(o.maxHeaderBytes), server.MinMaxHeaderBytes, false}, {"auth-burst", int64(o.authBurst), 1, false}, {"max-sites", int64(o.maxSites), 1, false},
		{"live-max-visitors", int64(o.liveMaxVisitors), 1, false}, {"clickhouse-insert-quorum", int64(o.clickhouseQuorum), 0, false},
		{"memory-limit", o.memoryLimit, 0, false}, {"gc-percent", int64(o.gcPercent), 0, true},
		{"max-body-memory", o.maxBodyMemory, 1, true}, {"max-body-memory-per-client", o.maxBodyMemoryPerClient, 0, false},
		{"max-conns", int64(o.maxConns), 1, true}, {"max-conns-per-client", int64(o.maxConnsPerClient), 1, true},
		{"retention-days", int64(o.retentionDays), 0, false},
	} {
		if n.v < n.least && !(n.none && n.v == -1) {
			want := fmt.Sprintf("at least %d", n.least)
			if n.none {
				want += " (or -1: none)"
			}
			errs = append(errs, fmt.Errorf("--%s must be %s, not %d", n.name, want, n.v))
		}
	}
	// An empty address, or one without a port (a variable left unset,
	// or set empty in an env file), would listen on every interface at
	// a random port: the dashboard's data on the network, while the
	// start line said loopback.
	// The example in the error is the flag's own default (--pprof-addr
	// has none: its help's example).
	for _, a := range []struct {
		name, v, example string
		optional         bool // empty: off
	}{{"--addr", o.addr, defaultAddr, false}, {"--dashboard-addr", o.dashboardAddr, defaultDashboardAddr, false}, {"--pprof-addr", o.pprofAddr, "127.0.0.1:6060", true}} {
		if a.v == "" && a.optional {
			continue
		}
		if err := flaghint.ListenAddr(a.name, a.v, a.example); err != nil {
			errs = append(errs, err)
		}
	}
	// A body's buffer doubles as it is read, and a batch is decompressed
	// and decoded beside it: memory that cannot hold one --max-body batch
	// refuses it as overloaded (503) on every retry.
	if o.maxBody >= 1 {
		for _, m := range []struct {
			name, what string
			v, need    int64
		}{
			{"max-body-memory", "its buffers and decoding", o.maxBodyMemory, ingest.BodyNeed(o.maxBody)},
			{"max-body-memory-per-client", "its buffer while it is read", o.maxBodyMemoryPerClient, ingest.BodyPeak(o.maxBody)},
		} {
			switch {
			case m.v < 1 || m.v >= m.need:
			case m.need == math.MaxInt64:
				errs = append(errs, fmt.Errorf("--max-body %d is beyond any memory: give at most a few hundred MiB", o.maxBody))
			default:
				errs = append(errs, fmt.Errorf("--%s %d cannot hold one batch of --max-body %d (%d bytes for %s, which double as they fill): raise it to %d or more, or lower --max-body", m.name, m.v, o.maxBody, m.need, m.what, m.need))
			}
		}
	}
	if strings.TrimSpace(o.dataDir) == "" {
		errs = append(errs, errors.New("--data-dir is empty: give the directory for the spool, e.g. ./.edgepixel/aggregator"))
	}
	if o.retentionDays > admin.MaxRetentionDays {
		errs = append(errs, fmt.Errorf("--retention-days must be from 0 (keep everything) to %d", admin.MaxRetentionDays))
	}
	if !(o.authRate > 0) {
		errs = append(errs, fmt.Errorf("--auth-rate must be positive, not %v", o.authRate))
	}
	// A request's answer is cut at --write-timeout: its body must be
	// read, and its query answered, before then.
	if o.bodyTimeout >= o.writeTimeout {
		errs = append(errs, fmt.Errorf("--body-timeout (%v) must be below --write-timeout (%v)", o.bodyTimeout, o.writeTimeout))
	}
	if o.queryTimeout >= o.writeTimeout {
		errs = append(errs, fmt.Errorf("--query-timeout (%v) must be below --write-timeout (%v)", o.queryTimeout, o.writeTimeout))
	}
	// Only separators (a tester's ","): read as empty, every site, where
	// a list was meant.
	if o.sites != "" && len(splitList(o.sites)) == 0 {
		errs = append(errs, fmt.Errorf("--sites %q names no site: give sites separated by commas or spaces, or leave it out to accept every site", o.sites))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["forwarded-header"] && len(o.trustedProxies) == 0 {
		errs = append(errs, errors.New("--forwarded-header is read only from --trusted-proxies: give --trusted-proxies too"))
	}
	// The URLs are read here, not first where the clients are made (in
	// server.Open and migrateClickHouse): their errors there named no
	// flag, nor the variable that gave the value, and exited 1.
	if o.redis != "" {
		if _, err := goredis.ParseURL(o.redis); err != nil {
			errs = append(errs, fmt.Errorf("--redis %q: %v; want redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0", redact.URL(o.redis), redact.Error(err)))
		}
		if o.redisCluster != "" {
			errs = append(errs, errors.New("--redis and --redis-cluster: give either, not both"))
		}
	}
	if o.clickhouse != "" {
		// As clickhouse.New reads them; New itself is not called here:
		// on a native:// URL it connects.
		if err := clickhouse.CheckURL(o.clickhouse); err != nil {
			errs = append(errs, fmt.Errorf("--clickhouse %q: %w", redact.URL(o.clickhouse), err))
		}
		if err := clickhouse.CheckName(o.clickhouseDB); err != nil {
			errs = append(errs, fmt.Errorf("--clickhouse-db %q: %w", o.clickhouseDB, err))
		}
		if o.clickhouseCluster != "" {
			if err := clickhouse.CheckName(o.clickhouseCluster); err != nil {
				errs = append(errs, fmt.Errorf("--clickhouse-cluster %q: %w", o.clickhouseCluster, err))
			}
		}
	} else if o.clickhouseCluster != "" {
		errs = append(errs, errors.New("--clickhouse-cluster needs --clickhouse: the URL of this aggregator's server in the cluster"))
	}
	return errors.Join(errs...)
}

// The listen addresses' defaults, which their errors also give as the
// form to follow.
const (
	defaultAddr          = defaultaddr.Aggregator
	defaultDashboardAddr = defaultaddr.Dashboard
)

type options struct {
	addr, dataDir, secret, secretFile, redis, clickhouse, clickhouseDB string
	redisCluster                                                       string
	logFormat, logLevel                                                string
	pprofAddr                                                          string
	gcPercent, loaderMaxRows                                           int
	memoryLimit                                                        int64
	maxBody, spoolMaxBytes                                             int64
	replayWindow, dedupeWindow                                         time.Duration
	logToken, adminToken, fastlyServiceIDs                             string
	logTokenFile, adminTokenFile                                       string
	retentionDays                                                      int
	rollupLateness                                                     time.Duration
	failAfter, exitDelay, loaderMaxAge                                 time.Duration
	readHeaderTimeout, bodyTimeout, idleTimeout, writeTimeout          time.Duration
	queryTimeout                                                       time.Duration
	maxHeaderBytes, maxConns, maxConnsPerClient                        int
	maxBodyMemory, maxBodyMemoryPerClient                              int64
	authRate                                                           float64
	authBurst, maxSites, liveMaxVisitors                               int
	sites                                                              string
	dashboardAddr, dashboardTokenFile, dashboardViewersFile            string
	dashboardOrigins, publicCounters                                   string
	secureCookies                                                      bool
	liveInterval                                                       time.Duration
	clickhouseCluster                                                  string
	clickhouseQuorum                                                   int
	clickhouseQuorumTimeout                                            time.Duration
	trustedProxies                                                     []netip.Prefix
	forwardedHeader                                                    string
}

func run(args []string) error {
	fs := flag.NewFlagSet("edgepixel-aggregator", flag.ContinueOnError)
	// The flag package prints the whole usage after a parse error; the
	// usage goes out only when asked for (--help).
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.addr, "addr", defaultAddr, "public listen address: ingest, /admin/, /healthz, /readyz (never the dashboard's data)")
	fs.StringVar(&o.dashboardAddr, "dashboard-addr", defaultDashboardAddr, "private listen address for the dashboard, /api/, /live and /metrics, all behind a login; keep it on loopback or a private network")
	fs.StringVar(&o.dashboardTokenFile, "dashboard-token-file", "", "file holding the dashboard's admin token (empty: DATA-DIR/dashboard-token, created at random on first start)")
	fs.StringVar(&o.dashboardViewersFile, "dashboard-viewers-file", "", "file of read-only viewer tokens, one per line: TOKEN SITE[,SITE...]; edits apply within seconds")
	fs.StringVar(&o.dashboardOrigins, "dashboard-origins", "", "extra origins, separated by commas or spaces (e.g. https://stats.example) whose pages may open /live; the dashboard's own origin always may")
	fs.DurationVar(&o.liveInterval, "live-interval", 100*time.Millisecond, "shortest time between two live updates (/live deltas); longer means fewer messages to every dashboard")
	fs.BoolVar(&o.secureCookies, "secure-cookies", false, "mark session cookies Secure (set when the dashboard is served over HTTPS)")
	fs.StringVar(&o.publicCounters, "public-counters", "", "sites, separated by commas or spaces, whose embeddable counter (pageviews in the last 5 minutes: /counter/SITE.json and .svg) anyone may read on the public listener; empty: none")
	fs.StringVar(&o.dataDir, "data-dir", "./.edgepixel/aggregator", "directory for the spool (and the on-disk store without ClickHouse)")
	fs.StringVar(&o.secret, "secret", "", "shared HMAC secret with the edge (this or --secret-file is required; prefer --secret-file)")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the shared secret with the edge (this or --secret is required; surrounding whitespace is ignored)")
	fs.StringVar(&o.redis, "redis", "", "Redis URL for deduplication, e.g. redis://127.0.0.1:6379/0 (empty: in-process, lost on restart)")
	fs.StringVar(&o.redisCluster, "redis-cluster", "", "host:port, separated by commas or spaces, of Redis Cluster nodes (any few; the rest are discovered) for deduplication, instead of --redis; every aggregator of a fleet must use the same one")
	fs.StringVar(&o.clickhouse, "clickhouse", "", "ClickHouse URL: HTTP, e.g. http://127.0.0.1:8123, or native TCP (ClickHouse 19+), e.g. native://127.0.0.1:9000 (empty: NDJSON files under --data-dir)")
	fs.StringVar(&o.clickhouseDB, "clickhouse-db", "edgepixel", "ClickHouse database")
	fs.StringVar(&o.clickhouseCluster, "clickhouse-cluster", "", "ClickHouse cluster name (in the servers' remote_servers) to lay the schema out on: replicated tables per shard (ZooKeeper) with Distributed tables to read; --clickhouse is then this aggregator's server, whose shard it inserts into (empty: one server)")
	fs.IntVar(&o.clickhouseQuorum, "clickhouse-insert-quorum", 2, "with --clickhouse-cluster: replicas of the shard that must have written an insert before the spool lets it go (insert_quorum); 0 or 1: the server written to")
	fs.DurationVar(&o.clickhouseQuorumTimeout, "clickhouse-quorum-timeout", 30*time.Second, "with --clickhouse-cluster: how long an insert waits for its quorum before it fails and is retried (insert_quorum_timeout)")
	fs.Int64Var(&o.maxBody, "max-body", 4<<20, "largest accepted batch body in bytes")
	fs.DurationVar(&o.replayWindow, "replay-window", 5*time.Minute, "accepted skew of a batch's signed timestamp")
	fs.DurationVar(&o.dedupeWindow, "dedupe-window", 24*time.Hour, "how long event ids are remembered for deduplication")
	fs.Int64Var(&o.spoolMaxBytes, "spool-max-bytes", 1<<30, "spooled-but-unstored bytes beyond which ingest answers 503")
	fs.StringVar(&o.logToken, "log-token", "", "bearer token that POST /ingest/ndjson accepts instead of the HMAC headers (CDN log streaming); empty: HMAC only")
	fs.StringVar(&o.fastlyServiceIDs, "fastly-service-ids", "", "Fastly service ids, separated by commas or spaces, allowed by the logging challenge (empty: any; needs --log-token)")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token for POST /admin/erase and /admin/retention (empty: admin endpoints disabled)")
	fs.StringVar(&o.logTokenFile, "log-token-file", "", "file holding --log-token's value (surrounding whitespace ignored), to keep it out of the environment")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "file holding --admin-token's value (surrounding whitespace ignored), to keep it out of the environment")
	fs.IntVar(&o.retentionDays, "retention-days", 0, "drop ClickHouse day partitions older than this many days, at start and daily (0: keep everything)")
	fs.DurationVar(&o.rollupLateness, "rollup-lateness", 10*time.Minute, "after a schema step that adds a rollup, how long past its cut-off (the next whole hour) its backfill of older events first runs, so that events still in spools and edge retries are in it (it runs again hourly for later ones)")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "listen address for /debug/pprof/ (e.g. 127.0.0.1:6060; empty: off). Bind it to localhost: profiles reveal internals")
	fs.IntVar(&o.loaderMaxRows, "loader-max-rows", 50000, "most events per ClickHouse insert (one load); larger loads mean fewer, bigger parts for ClickHouse to write and merge, and more memory")
	fs.DurationVar(&o.loaderMaxAge, "loader-max-age", loader.DefaultMaxAge, "longest a spooled event waits for more to share its ClickHouse insert (one load); longer means fewer, bigger inserts, each of which costs ClickHouse CPU of its own for the rollups' views, and live counts that move later")
	fs.IntVar(&o.gcPercent, "gc-percent", 400, "Go GC target: heap growth in percent over the live heap before a collection (GOGC); -1: off. The default trades memory for CPU, see --memory-limit. GOGC in the environment applies unless this flag is given")
	fs.Int64Var(&o.memoryLimit, "memory-limit", 1<<30, "soft limit in bytes for the Go heap (GOMEMLIMIT): the GC collects more often rather than pass it; 0: none. GOMEMLIMIT in the environment applies unless this flag is given")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send a request's line and headers; slower ones are closed (counted as header_timeout)")
	fs.DurationVar(&o.bodyTimeout, "body-timeout", 30*time.Second, "time a client has, after the headers, to send the body; slower ones get 408 (body_timeout)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", time.Minute, "how long a keep-alive connection may wait for its next request")
	fs.DurationVar(&o.writeTimeout, "write-timeout", time.Minute, "time from the end of a request's headers to the end of its answer (the body, the handling, the write); keep it above --body-timeout")
	fs.DurationVar(&o.queryTimeout, "query-timeout", 30*time.Second, "how long a dashboard API query (/api/stats, /api/top, /api/quality, /api/history, /api/loss) waits for ClickHouse; past it the answer is 504 store_timeout. Keep it below --write-timeout")
	fs.IntVar(&o.maxHeaderBytes, "max-header-bytes", 16<<10, fmt.Sprintf("largest request line and header section, at least %d bytes; larger ones get 431", server.MinMaxHeaderBytes))
	fs.IntVar(&o.maxConns, "max-conns", 4096, "open connections at most (WebSockets included); more get 503 + Retry-After. It is lowered to fit the file descriptor limit; -1: as many as that allows")
	fs.IntVar(&o.maxConnsPerClient, "max-conns-per-client", 256, "open connections at most from one client address (IPv4 address, IPv6 /64); more get 429 + Retry-After; -1: no cap")
	fs.Func("trusted-proxies", "comma-separated addresses or CIDR prefixes of reverse proxies (e.g. 10.0.0.0/8, 192.0.2.7) whose --forwarded-header names the client, for the failed-credential limits and the per-client caps; their own connections are exempt from --max-conns-per-client. Empty: none, the connecting address is the client and the header is ignored", func(v string) (err error) {
		o.trustedProxies, err = clientip.ParsePrefixes(v)
		return err
	})
	fs.StringVar(&o.forwardedHeader, "forwarded-header", clientip.HeaderXForwardedFor, "with --trusted-proxies: the header they name the client in, X-Forwarded-For or Forwarded (RFC 7239); the right-most address not a trusted proxy's is the client")
	fs.Int64Var(&o.maxBodyMemory, "max-body-memory", 256<<20, "memory request bodies may hold at once, read or being decoded; past it ingest answers 503 + Retry-After (overloaded); -1: no bound")
	fs.Int64Var(&o.maxBodyMemoryPerClient, "max-body-memory-per-client", 0, "of --max-body-memory, what one client address's bodies may hold before their signature is checked (0: the larger of a 16th and what one --max-body body holds while it is read, about 1.5-3 times --max-body)")
	fs.Float64Var(&o.authRate, "auth-rate", 1, "failed credential checks (signature, log or admin token) per second a client address earns back")
	fs.IntVar(&o.authBurst, "auth-burst", 20, "failed credential checks a client address may make in a row before it gets 429 + Retry-After, without its credential being checked")
	fs.StringVar(&o.sites, "sites", "", "sites to accept, separated by commas or spaces; events for others are kept as bad rows (unknown_site), and live counts list only these (empty: any site)")
	fs.IntVar(&o.maxSites, "max-sites", 1000, "sites the live counts and /api/counts list one by one, without --sites (the rest are summed up in the top-level number other, beside sites)")
	fs.IntVar(&o.liveMaxVisitors, "live-max-visitors", live.DefaultMaxVisitors, "visitor ids the live view keeps at once over all sites for its 5-minute visitor count (past it, counts are lower bounds, flagged)")
	fs.DurationVar(&o.failAfter, "fail-after", time.Minute, "how long running out of file descriptors (EMFILE) may stall loading before the process exits non-zero to be restarted")
	fs.DurationVar(&o.exitDelay, "exit-delay", 2*time.Second, "after a component fails, how long /healthz answers 503 with the reason (and ingest 503) before the process exits non-zero")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	envKnown, envSet, err := envDefaults(fs)
	if err != nil {
		return flaghint.UsageError{Err: err}
	}
	version := fs.Bool("version", false, "print the build's commit and the ClickHouse schema version it migrates to, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stdout, "usage: edgepixel-aggregator --secret-file FILE [flags]")
			flaghint.PrintDefaults(os.Stdout, fs)
			return nil
		}
		return flaghint.UsageError{Err: flaghint.Explain(fs, err)}
	}
	// A stray argument is refused rather than ignored, as the other
	// commands do: most likely a flag without its dash or a value without
	// its flag. Checked before anything else: one placed first stops the
	// flag package, and what it left unparsed (--secret) was all the
	// error said.
	if fs.NArg() > 0 {
		return flaghint.UsageError{Err: fmt.Errorf("unexpected argument %q: edgepixel-aggregator takes flags only", fs.Arg(0))}
	}
	if *version {
		fmt.Printf("edgepixel-aggregator %s, ClickHouse schema version %d\n", buildinfo.Version(), clickhouse.SchemaVersion())
		return nil
	}
	if err := o.check(fs); err != nil {
		return flaghint.UsageError{Err: envSet.explain(fs, err)}
	}
	log, err := logging.New(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return flaghint.UsageError{Err: envSet.explain(fs, err)}
	}
	slog.SetDefault(log)
	for _, w := range flaghint.UnknownEnv(os.Environ(), envPrefix, envKnown) {
		log.Warn(w)
	}
	dedupe.LogRedisTo(log)
	setGC(fs, o.gcPercent, o.memoryLimit)
	secret, err := loadSecret(o.secret, o.secretFile)
	if err != nil {
		return envSet.explain(fs, err)
	}
	if o.logToken, err = loadToken("log-token", o.logToken, o.logTokenFile); err != nil {
		return envSet.explain(fs, err)
	}
	if o.adminToken, err = loadToken("admin-token", o.adminToken, o.adminTokenFile); err != nil {
		return envSet.explain(fs, err)
	}

	// "none" is the POP's choice for the PROXY protocol alone, which the
	// aggregator does not read: checked first, so that the error names
	// only the aggregator's choices.
	var trust *clientip.Trust
	if h := o.forwardedHeader; h != "" && !strings.EqualFold(h, clientip.HeaderXForwardedFor) && !strings.EqualFold(h, clientip.HeaderForwarded) {
		err = fmt.Errorf("%q: want %s or %s", h, clientip.HeaderXForwardedFor, clientip.HeaderForwarded)
	} else {
		trust, err = clientip.NewTrust(o.trustedProxies, o.forwardedHeader, false)
	}
	if err != nil {
		return flaghint.UsageError{Err: envSet.explain(fs, fmt.Errorf("--forwarded-header: %w", err))}
	}
	o.maxConns = fitConns(log, o.maxConns)
	var dashToken string
	if o.dashboardTokenFile != "" {
		// Or leave the flag out: the token is made at random, in the
		// data directory, on the first start.
		if dashToken, err = tokenfile.Read(o.dashboardTokenFile); err != nil {
			return envSet.explain(fs, fmt.Errorf("--dashboard-token-file: %w (or leave the flag out for one made at random in --data-dir)", err))
		}
		if len(dashToken) < 16 {
			return envSet.explain(fs, fmt.Errorf("--dashboard-token-file %s: the token must be at least 16 bytes", tokenfile.Abs(o.dashboardTokenFile)))
		}
	}
	var cluster clickhouse.ClusterConfig
	if o.clickhouseCluster != "" {
		cluster = clickhouse.ClusterConfig{Name: o.clickhouseCluster, InsertQuorum: o.clickhouseQuorum, QuorumTimeout: o.clickhouseQuorumTimeout}
	}
	if o.clickhouse != "" {
		if err := migrateClickHouse(log, o.clickhouse, o.clickhouseDB, cluster); err != nil {
			return err
		}
	}

	// The listeners are bound before server.Open, which makes the data
	// directory's contents (lock, spool, dashboard token, session key,
	// events): an address in use left a fresh data directory behind
	// (found by a new-user tester). After the migration, though: a
	// refused rollback does not listen, and connections do not wait
	// unanswered through a long one. Until Serve, those that come in
	// wait in the kernel's queue.
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return envSet.explain(fs, flaghint.ListenError("--addr", err))
	}
	dln, err := net.Listen("tcp", o.dashboardAddr)
	if err != nil {
		ln.Close()
		return envSet.explain(fs, flaghint.ListenError("--dashboard-addr", err))
	}
	if o.pprofAddr != "" {
		// A listener of its own, never the public mux: profiling is opt-in
		// and meant for localhost only.
		pln, err := net.Listen("tcp", o.pprofAddr)
		if err != nil {
			ln.Close()
			dln.Close()
			return envSet.explain(fs, flaghint.ListenError("--pprof-addr", err))
		}
		pmux := http.NewServeMux()
		pmux.HandleFunc("/debug/pprof/", pprof.Index)
		pmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		ps := &http.Server{Handler: pmux, ReadHeaderTimeout: 10 * time.Second}
		go ps.Serve(pln)
		defer ps.Close()
		log.Info("profiling", "url", "http://"+pln.Addr().String()+"/debug/pprof/")
		if !flaghint.Loopback(pln.Addr().String()) {
			log.Warn("the profiler listens beyond loopback: /debug/pprof/ has no login, and anyone who reaches it can read the process's internals and load its CPU; bind --pprof-addr to 127.0.0.1 (e.g. 127.0.0.1:6060), or firewall the port", "addr", pln.Addr().String())
		}
	}
	if !flaghint.Loopback(dln.Addr().String()) {
		log.Warn("the dashboard listens beyond loopback: it needs a login, but keep it off the public internet or behind HTTPS (--secure-cookies)", "addr", dln.Addr().String())
	}

	srv, err := server.Open(server.Config{
		DataDir: o.dataDir, Secret: secret,
		RedisURL: o.redis, RedisCluster: splitList(o.redisCluster), RedisHint: redisHint(&o), ClickHouseURL: o.clickhouse, ClickHouseDB: o.clickhouseDB, ClickHouseCluster: cluster,
		MaxBody: o.maxBody, ReplayWindow: o.replayWindow, DedupeWindow: o.dedupeWindow,
		SpoolMaxBytes: o.spoolMaxBytes, Logger: log,
		LogToken: o.logToken, FastlyServiceIDs: splitList(o.fastlyServiceIDs),
		AdminToken: o.adminToken, RetentionDays: o.retentionDays, RollupLateness: o.rollupLateness,
		LoaderMaxRows: o.loaderMaxRows, LoaderMaxAge: o.loaderMaxAge, FailAfter: o.failAfter,
		ReadHeaderTimeout: o.readHeaderTimeout, BodyTimeout: o.bodyTimeout, IdleTimeout: o.idleTimeout,
		WriteTimeout: o.writeTimeout, QueryTimeout: o.queryTimeout, MaxHeaderBytes: o.maxHeaderBytes,
		MaxConns: o.maxConns, MaxConnsPerClient: o.maxConnsPerClient, TrustedProxies: trust, MaxBodyMemory: o.maxBodyMemory,
		MaxBodyMemoryPerClient: o.maxBodyMemoryPerClient,
		AuthRate:               o.authRate, AuthBurst: o.authBurst, Sites: siteList(o.sites), MaxSites: o.maxSites, LiveMaxVisitors: o.liveMaxVisitors,
		DashboardToken: dashToken, DashboardOrigins: splitList(o.dashboardOrigins),
		SecureCookies: o.secureCookies, PublicCounters: siteList(o.publicCounters), LiveInterval: o.liveInterval,
	})
	if err != nil {
		ln.Close()
		dln.Close()
		return err
	}
	defer srv.Close()
	for name, tok := range map[string]string{"--log-token": o.logToken, "--admin-token": o.adminToken} {
		if tok != "" && len(tok) < 16 {
			log.Warn(name + " is shorter than 16 bytes; use a long random one")
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.dashboardViewersFile != "" {
		// Read before the dashboard serves; edits of the file apply
		// without a restart, and a removed token's sessions end with it.
		// Its lines name the flag, and the variable that set it.
		vlog := log.With("flag", "--dashboard-viewers-file")
		if ev, ok := envSet["dashboard-viewers-file"]; ok && ev[1] == o.dashboardViewersFile {
			vlog = vlog.With("from", ev[0])
		}
		srv.Access().WatchViewers(ctx, tokenfile.Abs(o.dashboardViewersFile), viewersPoll, vlog)
	}

	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	go func() { serveErr <- srv.ServeDashboard(dln) }()
	loadCtx, stopLoad := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(loadCtx) }()

	tokenFrom := o.dashboardTokenFile
	if tokenFrom == "" {
		tokenFrom = filepath.Join(o.dataDir, "dashboard-token")
	}
	log.Info("edgepixel aggregator started", "dashboard", "http://"+dashboardHost(dln.Addr().String())+"/",
		"dashboard_token_file", tokenFrom,
		"ingest", "http://"+ln.Addr().String()+"/ingest", "data_dir", o.dataDir)

	// Run's one value is taken by whichever receive comes first: track it,
	// so the shutdown below does not wait for a second one that never
	// comes (a stopped loader used to leave the process alive, port closed).
	runDone := false
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new batches; finishing the spooled load")
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
		srv.Fail(err)
	case err = <-ran:
		runDone = true
		if err == nil { // Run returns before loadCtx ends only on a failure
			err = errors.New("the aggregator's components stopped")
		}
	}
	if err != nil {
		// /healthz already answers 503 with the reason and ingest refuses
		// batches (the edge retries them): keep answering a moment so that
		// probes see why before the port closes.
		log.Error("exiting after a failure", "reason", err, "in", o.exitDelay)
		select {
		case <-time.After(o.exitDelay):
		case <-ctx.Done():
		}
	}
	// Stop taking batches first (waiting for in-flight appends), then let
	// the loader store what was spooled.
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	stopLoad()
	if !runDone {
		if rerr := <-ran; rerr != nil && err == nil {
			err = rerr
		}
	}
	if cerr := srv.Close(); cerr != nil && err == nil {
		err = cerr
	}
	log.Info("stopped", "spooled_bytes_left", srv.Metrics().SpoolBytes())
	return err
}

// migrateClickHouse brings the ClickHouse schema up to date before anything
// is accepted (see clickhouse.Migrate), and refuses to start on a schema
// that a newer aggregator migrated (a rollback) or that was changed by
// hand. A server that does not answer does not stop the start: events are
// spooled meanwhile, and the loader migrates once it answers.
func migrateClickHouse(log *slog.Logger, url, db string, cluster clickhouse.ClusterConfig) error {
	c, err := clickhouse.New(url, db)
	if err != nil {
		return err
	}
	if cluster.Name != "" {
		if err := c.SetCluster(cluster); err != nil {
			return err
		}
	}
	defer c.Close()
	// Distributed DDL runs each statement on every server of a cluster, in
	// turn: a first migration takes much longer there.
	timeout := 30 * time.Second
	if cluster.Name != "" {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Ingest waits for this: say so when ClickHouse is slow to answer (a
	// tester's stopped server gave 30 s of silence, then the warning).
	slow := time.AfterFunc(5*time.Second, func() {
		log.Info("waiting for ClickHouse to answer the schema check; ingest starts once it does, or when it times out", "timeout", timeout, "clickhouse", redact.URL(url))
	})
	res, err := c.Migrate(ctx)
	slow.Stop()
	for _, p := range res.Problems {
		log.Warn("the clickhouse cluster's schema differs between servers and running the migrations again did not mend it; fix it by hand", "problem", p)
	}
	switch {
	case errors.Is(err, clickhouse.ErrSchemaTooNew), errors.Is(err, clickhouse.ErrSchemaConflict), errors.Is(err, clickhouse.ErrClusterConfig):
		return err
	case err != nil:
		// Where it is looked for, and the usual slip (the native port
		// under http://), so a wrong address is seen as one.
		log.Warn("could not migrate the ClickHouse schema at start; the loader retries once ClickHouse answers, spooling events meanwhile (/readyz shows it)", "err", err,
			"clickhouse", redact.URL(url), "check", "--clickhouse (EDGEPIXEL_AGG_CLICKHOUSE): http://HOST:8123 for ClickHouse's HTTP interface, or native://HOST:9000 for its native one")
	case len(res.Applied) > 0:
		var steps []string
		for _, m := range res.Applied {
			steps = append(steps, fmt.Sprintf("%d %s", m.Version, m.Name))
		}
		log.Info("clickhouse schema migrated", "db", db, "from", res.From, "to", res.To, "steps", strings.Join(steps, "; "))
	default:
		log.Info("clickhouse schema up to date", "db", db, "version", res.To)
	}
	if err == nil {
		// Debian's package lacks a setting the stored events rely on,
		// which README says to set and nothing checked (a tester's own
		// server ran without it).
		ps, err := c.SettingsProblems(ctx)
		if err != nil {
			log.Warn("could not read the ClickHouse server's settings", "err", err)
		}
		for _, p := range ps {
			log.Warn("a ClickHouse server setting to change", "problem", p)
		}
	}
	return nil
}

// setGC applies --gc-percent and --memory-limit. The loader allocates
// tens of MB per load (decoded events, Native blocks) while its live heap
// stays near a few hundred MB; at Go's default GOGC=100 the collector ran
// several times per load and took about a fifth of the process's CPU.
// A higher GOGC collects less often; the memory limit keeps that from
// growing the heap without bound (near the limit the GC simply runs more
// often). GOGC / GOMEMLIMIT set in the environment win over the defaults,
// not over flags given explicitly (or through EDGEPIXEL_AGG_*).
func setGC(fs *flag.FlagSet, percent int, limit int64) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["gc-percent"] || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if given["memory-limit"] || os.Getenv("GOMEMLIMIT") == "" {
		if limit <= 0 {
			limit = math.MaxInt64
		}
		debug.SetMemoryLimit(limit)
	}
}

// splitList splits a list flag's value at commas and white space: none of
// its items (sites, addresses, origins, service ids) has either, and the
// edge's own list of sites is separated by spaces (pixel.ConfigSites), so
// "a b" taken as one site named "a b" would match nothing without a word
// (found by a new-user tester).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// siteList is splitList of sites, each as the edge stores it
// (event.CleanSite), so that a name past the stored length still matches.
func siteList(s string) []string {
	l := splitList(s)
	for i, v := range l {
		l[i] = event.CleanSite(v)
	}
	return l
}

// envPrefix begins the name of each environment variable that sets a flag.
const envPrefix = "EDGEPIXEL_AGG_"

// envDefaults sets each flag from EDGEPIXEL_AGG_<NAME> when present, before
// the command line is parsed, so the command line still wins. It returns
// the names it reads, and the flags it set (see fromEnv).
func envDefaults(fs *flag.FlagSet) (map[string]bool, fromEnv, error) {
	var err error
	known := map[string]bool{}
	set := fromEnv{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" { // a question to the binary, not a setting
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		known[name] = true
		f.Usage += " (env " + name + ")"
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
				if hint := flaghint.Flag(f); hint != "" {
					err = fmt.Errorf("%w: %s", err, hint)
				}
			} else {
				set[f.Name] = [2]string{name, f.Value.String()}
			}
		}
	})
	return known, set, err
}

// fromEnv is, per flag envDefaults set, the variable and the value it
// gave the flag.
type fromEnv map[string][2]string

// explain adds to err, a check of the flags' values or of what a flag
// names (a file), a note for each flag it names that holds a value from
// the environment, the command line not having changed it
// (flaghint.NoteEnv): "(--name is EDGEPIXEL_AGG_NAME's value)".
func (e fromEnv) explain(fs *flag.FlagSet, err error) error {
	var vals []flaghint.EnvValue
	for name, ev := range e {
		if f := fs.Lookup(name); f != nil && f.Value.String() == ev[1] {
			vals = append(vals, flaghint.EnvValue{Flag: name, Var: ev[0]})
		}
	}
	return flaghint.NoteEnv(err, vals)
}

// loadSecret reads the shared secret, from --secret (or its variable) or
// --secret-file, whitespace around it ignored either way. None, or two,
// given is a usage error (exit status 2), as a flag's value out of its
// domain is, and so is a --secret of whitespace alone or a --secret-file
// that holds nothing else: either way there is no shared secret, which
// the README lists among the usage errors. A file that cannot be read
// is not (exit status 1): the path may be right, and the file only not
// there yet or not readable by this user.
func loadSecret(secret, file string) ([]byte, error) {
	if secret != "" && file != "" {
		return nil, flaghint.UsageError{Err: errors.New("--secret and --secret-file are both given: give either, not both")}
	}
	if file != "" {
		file = tokenfile.Abs(file)
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			// Most likely not made yet: say how (a tester got the bare
			// "no such file"). Still exit 1: the path may be right and the
			// file on its way (a secrets manager writing it).
			return nil, fmt.Errorf("--secret-file: %w: it holds the secret the edge signs batches with, the same as the edge's aggregator_secret (a new one: head -c 32 /dev/urandom | base64 > %s)", err, flaghint.ShellQuote(file))
		}
		if err != nil {
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
		secret = string(b)
	}
	given := secret != ""
	secret = strings.TrimSpace(secret)
	switch {
	case secret != "":
	case file != "":
		return nil, flaghint.UsageError{Err: fmt.Errorf("--secret-file %s is empty: put the secret the edge signs batches with in it, the same as the edge's aggregator_secret (a new one: head -c 32 /dev/urandom | base64 > %s)", file, flaghint.ShellQuote(file))}
	case given:
		return nil, flaghint.UsageError{Err: errors.New("no shared secret: --secret is only whitespace; pass --secret-file FILE (or --secret, or EDGEPIXEL_AGG_SECRET_FILE) holding the secret the edge signs batches with")}
	default:
		return nil, flaghint.UsageError{Err: errors.New("no shared secret: pass --secret-file FILE (or --secret, or EDGEPIXEL_AGG_SECRET_FILE) holding the secret the edge signs batches with")}
	}
	if len(secret) < 16 {
		slog.Warn("the shared secret is shorter than 16 bytes; use a long random one")
	}
	return []byte(secret), nil
}

// loadToken returns a bearer token given as --NAME's value or in
// --NAME-file (whitespace around it ignored, as a file written by echo
// ends in a newline); neither is "" (the feature off). Both, or a file
// with nothing else, is a usage error; a file that cannot be read is not
// (exit status 1), as for --secret-file.
func loadToken(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", flaghint.UsageError{Err: fmt.Errorf("--%s and --%s-file are both given: give either, not both", name, name)}
	}
	tok, err := tokenfile.Read(file)
	switch {
	case errors.Is(err, tokenfile.ErrEmpty):
		return "", flaghint.UsageError{Err: fmt.Errorf("--%s-file %w", name, err)}
	case err != nil:
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	return tok, nil
}

// dashboardHost turns a wildcard listen address into one a browser can
// open.
func dashboardHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// viewersPoll is how often the aggregator looks whether the
// --dashboard-viewers-file changed: a removed viewer token stops working
// within it.
const viewersPoll = 2 * time.Second

// redisHint names the setting that gave Redis's address, and the value,
// for the warning that it does not answer.
func redisHint(o *options) string {
	if o.redisCluster != "" {
		return "--redis-cluster (EDGEPIXEL_AGG_REDIS_CLUSTER) " + o.redisCluster + ": host:port of the cluster's nodes, separated by commas"
	}
	return "--redis (EDGEPIXEL_AGG_REDIS) " + redact.URL(o.redis) + ": redis://HOST:6379/DB"
}
