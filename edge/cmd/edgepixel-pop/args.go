package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/shared/defaultaddr"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/logging"
)

const usage = `usage: edgepixel-pop [flags] MODULE.wasm
       edgepixel-pop run [flags] MODULE.wasm [ARGS...]   run it once (edgepixel-pop run --help)

Viceroy-compatible flags:
  -C, --config PATH       fastly.toml with a [local_server] section
  --addr HOST:PORT        listen address (default 127.0.0.1:7676)
  -v, -vv                 -vv (or -v -v) logs at debug, whatever --log-level
                          says; -v alone changes nothing (info is the default,
                          and the Fastly CLI always passes -v)
  -V, --version           print the version and exit
  (Viceroy flags without meaning here, e.g. --log-stdout, are accepted and ignored)

edgepixel-pop flags (environment variable in brackets):
  --instances N           warm instances; 0 = 2*GOMAXPROCS        [EDGEPIXEL_POP_INSTANCES]
  --max-instances N       pool limit; 0 = max(instances, 4*GOMAXPROCS) [EDGEPIXEL_POP_MAX_INSTANCES]
  --compile-cache DIR     compiled-code cache; "off" disables [EDGEPIXEL_POP_COMPILE_CACHE]
                          (default: edgepixel-pop under the user cache directory;
                          without HOME, TMPDIR/edgepixel-pop-UID, mode 0700)
  --admin-addr HOST:PORT  serve /healthz, /metrics and /debug/pprof/ there; bind it to
                          localhost: profiles reveal internals [EDGEPIXEL_POP_ADMIN_ADDR]
  --shutdown-timeout D    how long guests may finish at shutdown (default 30s) [EDGEPIXEL_POP_SHUTDOWN_TIMEOUT]
  --compile-only          fill the compile cache for MODULE.wasm and exit
  --log-level LEVEL       debug, info (default), warn or error; -vv is debug
                                                                  [EDGEPIXEL_POP_LOG_LEVEL]
  --log-format FORMAT     text (default) or json; json writes durations as
                          text ("1m0s"), as text does             [EDGEPIXEL_POP_LOG_FORMAT]

Execution model and limits (limits.go; 0 turns a duration off):
  --watch                 reload MODULE.wasm or fastly.toml's config stores when
                          either file changes, and read secret store files
                          again when they change (default true; --watch=false
                          to disable); SIGHUP does all three  [EDGEPIXEL_POP_WATCH]
  --fresh-instance        a new instance for every request, as Fastly without
                          instance reuse                          [EDGEPIXEL_POP_FRESH_INSTANCE=1]
  --wall-budget D         wall-clock limit per request (default 2m) [EDGEPIXEL_POP_WALL_BUDGET]
  --cpu-budget D          guest run time per request, waits excluded; approximate
                          (Fastly: 50ms; default off)              [EDGEPIXEL_POP_CPU_BUDGET]
  --idle-timeout D        instances above --instances end after idling this
                          long (default 5s)                       [EDGEPIXEL_POP_IDLE_TIMEOUT]
                          Memory is limited to 128 MB per instance, as on Fastly.

Clients: connections, deadlines, request bodies (0 turns a duration off):
  --max-conns N           open client connections; when reached, the one waiting
                          longest without a request (idle keep-alive) is closed
                          for a new one, else the new one gets 503. Default 4096,
                          fewer if the open-file limit requires; -1: none
                                                                  [EDGEPIXEL_POP_MAX_CONNS]
  --max-conns-per-addr N  open connections per client IP (default 256; -1: none)
                                                                  [EDGEPIXEL_POP_MAX_CONNS_PER_ADDR]
  --header-timeout D      to receive a request head (default 10s) [EDGEPIXEL_POP_HEADER_TIMEOUT]
  --keepalive-timeout D   an idle keep-alive connection is closed after this long
                          (default 30s)                           [EDGEPIXEL_POP_KEEPALIVE_TIMEOUT]
  --body-timeout D        to receive a whole request body; else 408 (default 30s)
                                                                  [EDGEPIXEL_POP_BODY_TIMEOUT]
  --body-idle-timeout D   longest pause while a request body arrives; else 408
                          (default 10s)                           [EDGEPIXEL_POP_BODY_IDLE_TIMEOUT]
  --write-timeout D       for each write of a response to complete (default 30s)
                                                                  [EDGEPIXEL_POP_WRITE_TIMEOUT]
  --max-request-body SIZE larger request bodies get 413 (default 1MiB, at least
                          64KiB); bodies are read whole before a guest sees them
                                                                  [EDGEPIXEL_POP_MAX_REQUEST_BODY]
  --body-memory SIZE      request body bytes held at once, all clients; beyond
                          it 503 (default 64MiB)                  [EDGEPIXEL_POP_BODY_MEMORY]

What the guest learns of its client, as on Fastly:
  --geoip-db PATH         MaxMind-format database (.mmdb) answering geolocation
                          lookups: one City or Country and one ASN database
                          (GeoLite2 or DB-IP), told apart by their metadata;
                          repeatable. Reloaded when the file changes; fastly.toml's
                          [local_server.geolocation] wins for the addresses it lists
                                          [EDGEPIXEL_POP_GEOIP_DB, comma-separated]
  --trusted-proxies CIDR,...
                          load balancers or proxies whose word on the client's
                          address is taken (repeatable); from any other peer it
                          is ignored. Their own connections are exempt from
                          --max-conns-per-addr            [EDGEPIXEL_POP_TRUSTED_PROXIES]
  --forwarded-header NAME where they put it: X-Forwarded-For (default), Forwarded
                          (RFC 7239) or none; the client is the right-most address
                          that is not a trusted proxy's  [EDGEPIXEL_POP_FORWARDED_HEADER]
  --proxy-protocol        their connections start with a PROXY protocol header
                          (v1 or v2), which names the client; one without is
                          closed                          [EDGEPIXEL_POP_PROXY_PROTOCOL=1]
  --erl-max-entries N     Edge Rate Limiting capacity: rate counter entries, and
                          penalty box entries, each (default 100000); beyond it
                          the oldest are evicted          [EDGEPIXEL_POP_ERL_MAX_ENTRIES]

Production serving:
  --tls-cert FILE, --tls-key FILE
                          serve HTTPS (HTTP/1.1 and HTTP/2 via ALPN); renewed
                          files are picked up within 10s [EDGEPIXEL_POP_TLS_CERT, EDGEPIXEL_POP_TLS_KEY]
  --resolve HOST:PORT:ADDR[:PORT]
                          connect to ADDR (and PORT) for backend HOST:PORT, like curl
                          --resolve (repeatable)                  [EDGEPIXEL_POP_RESOLVE, comma-separated]
  --h2c                   also accept cleartext HTTP/2 (prior knowledge), e.g.
                          behind a proxy speaking h2c             [EDGEPIXEL_POP_H2C=1]
  --access-log PATH|-     NDJSON line per request, appended to PATH or written
                          to stdout ("-"); off by default        [EDGEPIXEL_POP_ACCESS_LOG]
  --log-endpoint NAME=DEST
                          where the guest's log endpoint NAME goes (repeatable;
                          default: stdout as "NAME :: line", like Viceroy).
                          NAME "*" applies to all names not configured. DEST:
                            stdout
                            file:/path             append one line per entry
                            http(s)://host/path    batched POST of the lines,
                              as Fastly's HTTPS log streaming; options in the
                              query: period=5s max_entries=10000
                              max_bytes=10485760 max_buffer=67108864 retries=5
                              content_type=application/x-ndjson
                              header=Name:Value (repeatable, URL-encoded)
                              bearer_file=PATH: send "Authorization: Bearer"
                                with the token in PATH (e.g. the aggregator's
                                --log-token-file), kept out of ps and the env
                              failover=URL (repeatable, URL-encoded): a batch
                                the URL does not take (no answer, 408, 429,
                                5xx) goes to each in turn, as a backend list
                              queue=DIR: keep the queue on disk in DIR, so it
                                survives a restart or crash and is retried until
                                delivered (max_buffer then bounds the bytes on
                                disk; default 2GiB); queue=memory: in memory
                              durability=write|fsync (with a queue): a guest's
                                write returns once the entry is handed to the
                                kernel (default: survives the POP's death) or
                                also fsynced (survives a machine crash)
                              Other parameters are the collector URL's own; one
                              that looks like a misspelt option (Period,
                              max-bytes, max_entires, qeue) is refused.
                          [EDGEPIXEL_POP_LOG_ENDPOINTS, comma-separated (a comma
                           inside one is %2C); a flag replaces the entry of the same NAME]
  --log-queue-dir DIR     HTTP log endpoints without queue= keep their queue on
                          disk in DIR/NAME                       [EDGEPIXEL_POP_LOG_QUEUE_DIR]
`

var errHelp = errors.New("help requested")

type options struct {
	config          string
	addr            string
	wasm            string
	verbosity       int
	logLevel        string     // --log-level, as given
	logFormat       string     // --log-format
	level           slog.Level // logLevel read, lowered to debug by -vv
	version         bool
	instances       int
	maxInstances    int
	compileCache    string
	adminAddr       string
	shutdownTimeout time.Duration
	compileOnly     bool
	tlsCert         string
	tlsKey          string
	h2c             bool
	accessLog       string
	logEndpoints    []logsink.Endpoint
	logQueueDir     string
	resolve         resolveFlag       // run.go
	limits          limitOptions      // limits.go
	clients         clientOptions     // clients.go
	clientInfo      clientInfoOptions // clientinfo.go

	// compileCacheNote is what to log about the default compile cache
	// (defaultCompileCache), when it is used.
	compileCacheNote string

	// explainEnv is explainEnv for an error found later about a flag's
	// value (an address in use), set once the flags are parsed.
	explainEnv func(error) error

	// ready, if set, is told the bound addresses once serving (tests).
	ready func(addr, adminAddr string)
	// starting, if set, is called with the address to serve on before the
	// module is loaded (tests).
	starting func(addr string)
	// listen, if set, replaces net.Listen for the client listener (tests).
	listen func(network, addr string) (net.Listener, error)
}

// noteEnv is err, about a flag's value, noting each flag it names whose
// value came from a variable (explainEnv).
func (o *options) noteEnv(err error) error {
	if err == nil || o.explainEnv == nil {
		return err
	}
	return o.explainEnv(err)
}

// endpointsFlag collects repeated --log-endpoint values; mergeEndpoints
// checks them. Set refuses nothing: the flag package's error quotes the
// whole value, and an endpoint's URL may hold a collector's credentials.
type endpointsFlag struct{ specs *[]string }

func (e endpointsFlag) String() string { return "" }
func (e endpointsFlag) Set(s string) error {
	*e.specs = append(*e.specs, s)
	return nil
}

// logOptions are the options an HTTP log endpoint takes in its URL's
// query; logsink.ParseEndpoint takes them out, and the rest of the query
// is the collector's own.
var logOptions = []string{"period", "max_entries", "max_bytes", "max_buffer", "retries",
	"content_type", "header", "bearer_file", "failover", "queue", "durability"}

// parseEndpoint is logsink.ParseEndpoint, refusing a query parameter of
// an HTTP destination that looks like a misspelt option (max_entires,
// Period): it would go to the collector as part of its URL, the option
// left at its default without a word. Any other parameter is the
// collector's own.
func parseEndpoint(spec string) (logsink.Endpoint, error) {
	ep, err := logsink.ParseEndpoint(spec)
	if err != nil || ep.Kind != logsink.HTTP {
		return ep, err
	}
	u, err := url.Parse(ep.URL)
	if err != nil {
		return ep, nil // logsink parsed it; it made the URL
	}
	for _, key := range slices.Sorted(maps.Keys(u.Query())) {
		// An option written otherwise (Period, max-bytes), a name of two
		// words near one of the options of two words (max_entires), or
		// a one-word option with a letter dropped or two swapped (qeue,
		// retires), or in the plural (headers): a collector's own word near a one-word option
		// (query, entries, reader, header2) is its own, as the README
		// promises.
		norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
		near := ""
		switch {
		case slices.Contains(logOptions, norm):
			near = norm
		case strings.Contains(norm, "_"):
			near = flaghint.Nearest(norm, logOptions)
		default:
			for _, opt := range logOptions {
				// Or its plural (headers=: a tester's endpoint sent no
				// header, and every batch got 401).
				if slipOf(norm, opt) || norm == opt+"s" {
					near = opt
				}
			}
		}
		if near != "" {
			return logsink.Endpoint{}, fmt.Errorf("log endpoint %s: query parameter %q is no option: did you mean %s? The options are %s; other parameters are the collector URL's own",
				ep.Name, key, near, strings.Join(logOptions, ", "))
		}
	}
	return ep, nil
}

// slipOf reports whether key is opt with one letter dropped or two
// neighbouring letters swapped: the typing slips a word of the
// collector's own rarely is.
func slipOf(key, opt string) bool {
	switch len(opt) - len(key) {
	case 1:
		for i := range opt {
			if opt[:i]+opt[i+1:] == key {
				return true
			}
		}
	case 0:
		for i := 0; i+1 < len(opt); i++ {
			if key != opt && opt[:i]+string(opt[i+1])+string(opt[i])+opt[i+2:] == key {
				return true
			}
		}
	}
	return false
}

// mergeEndpoints parses the environment's and the flags' endpoint specs;
// a flag replaces an environment entry with the same name.
func mergeEndpoints(envSpecs, flagSpecs []string) ([]logsink.Endpoint, error) {
	var out []logsink.Endpoint
	index := map[string]int{}
	for i, list := range [][]string{envSpecs, flagSpecs} {
		seen := map[string]bool{}
		for _, spec := range list {
			if strings.TrimSpace(spec) == "" {
				continue
			}
			ep, err := parseEndpoint(spec)
			if err != nil {
				if i == 0 {
					if len(list) > 1 {
						// A comma inside a URL (header=X-A:1,2) split it.
						err = fmt.Errorf("%w (the variable's endpoints are split at commas: write a comma inside a URL as %%2C)", err)
					}
					return nil, fmt.Errorf("EDGEPIXEL_POP_LOG_ENDPOINTS: %w", err)
				}
				return nil, fmt.Errorf("--log-endpoint: %w", err)
			}
			if seen[ep.Name] {
				return nil, fmt.Errorf("log endpoint %s given twice", ep.Name)
			}
			seen[ep.Name] = true
			if j, ok := index[ep.Name]; ok {
				out[j] = ep
				continue
			}
			index[ep.Name] = len(out)
			out = append(out, ep)
		}
	}
	return out, nil
}

// countFlag counts repetitions of a boolean flag (-v -v, or -vv).
type countFlag struct {
	n    *int
	step int
}

func (c countFlag) String() string   { return "" }
func (c countFlag) IsBoolFlag() bool { return true }
func (c countFlag) Set(s string) error {
	if b, err := strconv.ParseBool(s); err == nil && !b {
		return nil
	}
	*c.n += c.step
	return nil
}

// ignoredBool and ignoredString are Viceroy flags that do not apply here;
// ignoredProfile are its profiling flags (declareIgnored).
var (
	ignoredBool    = []string{"log-stdout", "log-stderr", "adapt", "debug", "wasm-exceptions", "wasm-gc", "wasm-cm-gc"}
	ignoredString  = []string{"profiling-strategy", "unknown-import-behavior", "experimental_modules", "run", "local-pushpin-proxy-port"}
	ignoredProfile = []string{"profile", "profiler"}
)

// declareIgnored declares the ignored Viceroy flags on fs. A profiling
// flag is taken bare (--profile) or with its strategy (--profile=guest),
// so that a bare one before the module does not take the module's path
// for its value; a strategy as the next argument (--profile guest, as
// Viceroy takes it) is skipped by the parse loops (profileValue).
func declareIgnored(fs *flag.FlagSet) {
	for _, name := range ignoredBool {
		fs.Bool(name, false, "")
	}
	for _, name := range ignoredString {
		fs.String(name, "", "")
	}
	for _, name := range ignoredProfile {
		fs.Var(optionalValue{}, name, "")
	}
}

// optionalValue is a flag whose value is optional: bare, or NAME=VALUE.
type optionalValue struct{}

func (optionalValue) String() string   { return "" }
func (optionalValue) Set(string) error { return nil }
func (optionalValue) IsBoolFlag() bool { return true } // bare: it takes no next argument
func (optionalValue) Get() any         { return nil }

// profileValue reports whether rest[0], where fs.Parse stopped in args,
// is the strategy of a bare profiling flag just before it ("--profile
// guest", as Viceroy takes it): then it is that flag's value, not a
// positional argument. Any other argument after a bare one (the module,
// a flag) stays what it is.
func profileValue(args, rest []string) bool {
	i := len(args) - len(rest) - 1
	if i < 0 || len(rest) == 0 || !isProfileStrategy(rest[0]) {
		return false
	}
	name := strings.TrimLeft(args[i], "-")
	return len(args[i])-len(name) <= 2 && args[i] != name && slices.Contains(ignoredProfile, name)
}

// isProfileStrategy reports whether s is a value of Viceroy's --profile.
func isProfileStrategy(s string) bool {
	switch kind, _, _ := strings.Cut(s, ","); kind {
	case "jitdump", "perfmap", "vtune":
		return kind == s
	case "guest":
		return true
	}
	return false
}

// parseFlags parses args with fs and returns the positional arguments.
// The flag package stops at the first one: with stopAtFirst, parsing
// ends there and everything from it on is returned (run's module and the
// module's own arguments, flags included); without, parsing resumes after
// each one, as Viceroy (and the Fastly CLI) put flags on both sides of the
// wasm path. Either way a bare profiling flag's strategy ("--profile
// guest") is the flag's, not a positional argument (profileValue), and
// after a "--" everything is positional.
func parseFlags(fs *flag.FlagSet, args []string, stopAtFirst bool) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		switch {
		case len(rest) == 0:
			return positional, nil
		case profileValue(args, rest):
			args = rest[1:]
			continue
		case stopAtFirst || consumedTerminator(args, rest):
			// fs.Parse consumed a "--" terminator if it saw one: then
			// everything left is positional.
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseArgs parses Viceroy's command line plus the POP's own flags. The
// flags may stand on both sides of the wasm path (parseFlags).
func parseArgs(args []string, getenv func(string) string) (_ *options, err error) {
	// The variables read and their values as given: an error about a
	// flag's value that came from one names the variable (explainEnv).
	fromEnv := map[string]string{}
	getenv = recordEnv(getenv, fromEnv)
	var fs *flag.FlagSet
	parsed := false
	defer func() {
		if err != nil && parsed {
			err = explainEnv(fs, fromEnv, err)
		}
	}()
	o := &options{addr: defaultAddr, logLevel: "info", logFormat: "text", shutdownTimeout: 30 * time.Second, limits: defaultLimitOptions(),
		clients: defaultClientOptions()}
	o.compileCache, o.compileCacheNote = defaultCompileCache()
	// Environment first, so flags override it.
	if err := envInt(getenv, "EDGEPIXEL_POP_INSTANCES", &o.instances); err != nil {
		return nil, err
	}
	if err := envInt(getenv, "EDGEPIXEL_POP_MAX_INSTANCES", &o.maxInstances); err != nil {
		return nil, err
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_COMPILE_CACHE"); ok {
		o.compileCache = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_ADMIN_ADDR"); ok {
		o.adminAddr = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_SHUTDOWN_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, envError("EDGEPIXEL_POP_SHUTDOWN_TIMEOUT", v, err)
		}
		o.shutdownTimeout = d
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_TLS_CERT"); ok {
		o.tlsCert = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_TLS_KEY"); ok {
		o.tlsKey = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_H2C"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, envError("EDGEPIXEL_POP_H2C", v, err)
		}
		o.h2c = b
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_ACCESS_LOG"); ok {
		o.accessLog = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_QUEUE_DIR"); ok {
		o.logQueueDir = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_LEVEL"); ok {
		o.logLevel = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_FORMAT"); ok {
		o.logFormat = v
	}
	if err := o.limits.fromEnv(getenv); err != nil {
		return nil, err
	}
	o.resolve = resolveFlag{}
	if err := o.resolve.fromEnv(getenv); err != nil {
		return nil, err
	}
	if err := o.clients.fromEnv(getenv); err != nil {
		return nil, err
	}
	if err := o.clientInfo.fromEnv(getenv); err != nil {
		return nil, err
	}
	var envEndpoints, flagEndpoints []string
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_ENDPOINTS"); ok {
		envEndpoints = strings.Split(v, ",")
	}

	fs = flag.NewFlagSet("edgepixel-pop", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.config, "C", o.config, "")
	fs.StringVar(&o.config, "config", o.config, "")
	fs.StringVar(&o.addr, "addr", o.addr, "")
	fs.Var(countFlag{&o.verbosity, 1}, "v", "")
	fs.Var(countFlag{&o.verbosity, 1}, "verbose", "")
	fs.Var(countFlag{&o.verbosity, 2}, "vv", "")
	fs.Var(countFlag{&o.verbosity, 3}, "vvv", "")
	fs.BoolVar(&o.version, "V", false, "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.IntVar(&o.instances, "instances", o.instances, "")
	fs.IntVar(&o.maxInstances, "max-instances", o.maxInstances, "")
	fs.StringVar(&o.compileCache, "compile-cache", o.compileCache, "")
	fs.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", o.shutdownTimeout, "")
	fs.BoolVar(&o.compileOnly, "compile-only", false, "")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "")
	fs.StringVar(&o.logFormat, "log-format", o.logFormat, "")
	fs.StringVar(&o.tlsCert, "tls-cert", o.tlsCert, "")
	fs.StringVar(&o.tlsKey, "tls-key", o.tlsKey, "")
	fs.BoolVar(&o.h2c, "h2c", o.h2c, "")
	fs.StringVar(&o.accessLog, "access-log", o.accessLog, "")
	fs.Var(endpointsFlag{&flagEndpoints}, "log-endpoint", "")
	fs.StringVar(&o.logQueueDir, "log-queue-dir", o.logQueueDir, "")
	fs.Var(o.resolve, "resolve", "")
	o.limits.flags(fs)
	o.clients.flags(fs)
	o.clientInfo.flags(fs)
	declareIgnored(fs)

	positional, err := parseFlags(fs, args, false)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, flaghint.Explain(fs, err)
	}
	parsed = true
	o.explainEnv = func(err error) error { return explainEnv(fs, fromEnv, err) }
	// Newer Viceroy releases take a subcommand ("serve"); accept it.
	if len(positional) > 0 && positional[0] == "serve" {
		positional = positional[1:]
	}
	if _, ok := fromEnv["EDGEPIXEL_POP_COMPILE_CACHE"]; ok || flaghint.Set(fs, "compile-cache") {
		o.compileCacheNote = "" // the default is not used
	} else if !o.version {
		o.compileCache, o.compileCacheNote = usableDefaultCompileCache(o.compileCache, o.compileCacheNote)
	}
	if o.compileCache == "off" || o.compileCache == "none" {
		o.compileCache = ""
	}
	if o.version {
		return o, nil
	}
	switch len(positional) {
	case 0:
		return nil, errors.New("no wasm module given")
	case 1:
		o.wasm = positional[0]
	default:
		return nil, fmt.Errorf("one wasm module expected, got %q", positional)
	}
	// An address that cannot be listened on is a usage error, found
	// before the module compiles: an empty --addr (an unset variable's)
	// would listen on every interface, at a random port.
	if err := checkListenAddr("--addr", o.addr, false); err != nil {
		return nil, err
	}
	if err := checkListenAddr("--admin-addr", o.adminAddr, true); err != nil {
		return nil, err
	}
	// The aggregator's values and errors (package logging). -vv, which
	// Viceroy's command line has for debug, lowers any level to debug;
	// -v alone, which the Fastly CLI always passes, leaves it.
	if o.level, err = logging.ParseLevel(o.logLevel); err != nil {
		return nil, err
	}
	if o.verbosity >= 2 {
		o.level = min(o.level, slog.LevelDebug)
	}
	if err := logging.CheckFormat(o.logFormat); err != nil {
		return nil, err
	}
	// Named with what each takes, as the other flags' domain errors are;
	// 0 is in the domain: the help gives it a meaning.
	if o.instances < 0 {
		return nil, fmt.Errorf("--instances %d: want a count, or 0 for 2*GOMAXPROCS", o.instances)
	}
	if o.maxInstances < 0 {
		return nil, fmt.Errorf("--max-instances %d: want a count, or 0 for max(instances, 4*GOMAXPROCS)", o.maxInstances)
	}
	if o.shutdownTimeout < 0 { // already over: guests would get no time to flush
		return nil, fmt.Errorf("--shutdown-timeout must not be negative, not %v", o.shutdownTimeout)
	}
	if o.maxInstances > 0 && o.instances > o.maxInstances {
		return nil, fmt.Errorf("--instances %d exceeds --max-instances %d", o.instances, o.maxInstances)
	}
	// A bound asked for is kept: the default warm count (2*GOMAXPROCS)
	// would raise a smaller --max-instances to itself without a word.
	if o.maxInstances > 0 && o.instances == 0 {
		o.instances = min(2*runtime.GOMAXPROCS(0), o.maxInstances)
	}
	if err := o.limits.check(); err != nil {
		return nil, err
	}
	if err := o.clients.check(); err != nil {
		return nil, err
	}
	if err := o.clientInfo.check(); err != nil {
		return nil, err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.h2c && o.tlsCert != "" {
		return nil, errors.New("--h2c is for cleartext; with TLS, HTTP/2 is negotiated anyway")
	}
	if o.accessLog == "off" {
		o.accessLog = ""
	}
	if o.logEndpoints, err = mergeEndpoints(envEndpoints, flagEndpoints); err != nil {
		return nil, err
	}
	queueIn(o.logEndpoints, o.logQueueDir)
	return o, nil
}

// checkListenAddr checks the listen address addr that flag names, as
// flaghint.ListenAddr does (HOST:PORT with a port; port 0 picks a free
// one); empty is an error unless optional (then it listens nowhere).
func checkListenAddr(flag, addr string, optional bool) error {
	if addr == "" && optional {
		return nil
	}
	return flaghint.ListenAddr(flag, addr, defaultAddr)
}

// defaultAddr is --addr's default, Viceroy's, and the example a listen
// address's error gives.
const defaultAddr = defaultaddr.POP

// queueIn gives the HTTP endpoints without a queue= of their own a disk
// queue in dir/NAME (NAME with anything but letters, digits, '.', '-'
// and '_' replaced by '_'; "*" becomes "_all").
func queueIn(eps []logsink.Endpoint, dir string) {
	if dir == "" {
		return
	}
	for i := range eps {
		ep := &eps[i]
		if ep.Kind != logsink.HTTP || ep.Queue != "" {
			continue
		}
		name := ep.Name
		if name == "*" {
			name = "_all"
		}
		name = strings.Map(func(r rune) rune {
			if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return r
			}
			return '_'
		}, name)
		if name == "." || name == ".." {
			name = "_" + name
		}
		ep.Queue = filepath.Join(dir, name)
	}
}

// consumedTerminator reports whether the flag set stopped at "--": then
// rest follows a "--" in args.
func consumedTerminator(args, rest []string) bool {
	i := len(args) - len(rest) - 1
	return i >= 0 && args[i] == "--"
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := strings.TrimSpace(getenv(key))
	return v, v != ""
}

func envInt(getenv func(string) string, key string, dst *int) error {
	v, ok := lookup(getenv, key)
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return envError(key, v, err)
	}
	*dst = n
	return nil
}

// envError is the error for variable key's value v, which did not parse:
// the variable and the value as given, and what it takes in the words a
// flag's error uses ("want a whole number"), not the parser's
// ("strconv.Atoi: parsing ...: invalid syntax"). An error with no such
// words (a list's, a size's) follows the value as it is.
func envError(key, v string, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s=%q: out of range", key, v)
	}
	if hinted := flaghint.ExplainParse(err); hinted != err {
		_, hint, _ := strings.Cut(hinted.Error(), err.Error()+": ")
		return fmt.Errorf("%s=%q: %s", key, v, hint)
	}
	return fmt.Errorf("%s=%q: %w", key, v, err)
}

// recordEnv returns getenv, recording in seen each variable it reads that
// is set, with its value as given (trimmed, as lookup reads it).
func recordEnv(getenv func(string) string, seen map[string]string) func(string) string {
	return func(key string) string {
		v := getenv(key)
		if t := strings.TrimSpace(v); t != "" {
			seen[key] = t
		}
		return v
	}
}

// explainEnv adds to err, a check of the flags' values after parsing, a
// note for each flag it names that holds a variable's value, the command
// line not having set it (flaghint.NoteEnv): the user set
// EDGEPIXEL_POP_NAME, not --name, and the error would otherwise name a
// flag never given, with the value converted. The note gives the value as
// given: "(--name is EDGEPIXEL_POP_NAME's value, "V")".
func explainEnv(fs *flag.FlagSet, fromEnv map[string]string, err error) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var vals []flaghint.EnvValue
	for key, v := range fromEnv {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, "EDGEPIXEL_POP_"), "_", "-"))
		if fs.Lookup(name) == nil || onCommandLine[name] {
			continue
		}
		vals = append(vals, flaghint.EnvValue{Flag: name, Var: key, Value: v})
	}
	return flaghint.NoteEnv(err, vals)
}
