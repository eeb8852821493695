package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const usage = `usage: edgepixel-pop [flags] MODULE.wasm

Viceroy-compatible flags:
  -C, --config PATH       fastly.toml with a [local_server] section
  --addr HOST:PORT        listen address (default 127.0.0.1:7676)
  -v, -vv                 more logging (-vv: debug)
  -V, --version           print the version and exit
  (Viceroy flags without meaning here, e.g. --log-stdout, are accepted and ignored)

edgepixel-pop flags (environment variable in brackets):
  --instances N           warm instances; 0 = 2*GOMAXPROCS        [EDGEPIXEL_POP_INSTANCES]
  --max-instances N       pool limit; 0 = max(instances, 4*GOMAXPROCS) [EDGEPIXEL_POP_MAX_INSTANCES]
  --compile-cache DIR     compiled-code cache; "off" disables [EDGEPIXEL_POP_COMPILE_CACHE]
                          (default: edgepixel-pop under the user cache directory)
  --admin-addr HOST:PORT  serve /healthz and /metrics there [EDGEPIXEL_POP_ADMIN_ADDR]
  --shutdown-timeout D    how long guests may finish at shutdown (default 30s) [EDGEPIXEL_POP_SHUTDOWN_TIMEOUT]
  --compile-only          fill the compile cache for MODULE.wasm and exit
`

var errHelp = errors.New("help requested")

type options struct {
	config          string
	addr            string
	wasm            string
	verbosity       int
	version         bool
	instances       int
	maxInstances    int
	compileCache    string
	adminAddr       string
	shutdownTimeout time.Duration
	compileOnly     bool
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

// ignoredBool and ignoredString are Viceroy flags that do not apply here.
var (
	ignoredBool   = []string{"log-stdout", "log-stderr", "adapt", "debug"}
	ignoredString = []string{"profile", "profiling-strategy", "unknown-import-behavior", "experimental_modules", "run"}
)

// parseArgs parses Viceroy's command line plus the POP's own flags. The
// standard flag package stops at the first positional argument, but Viceroy
// (and the Fastly CLI) put flags on both sides of the wasm path, so parsing
// resumes after each positional argument.
func parseArgs(args []string, getenv func(string) string) (*options, error) {
	o := &options{addr: "127.0.0.1:7676", shutdownTimeout: 30 * time.Second}
	if dir, err := os.UserCacheDir(); err == nil {
		o.compileCache = filepath.Join(dir, "edgepixel-pop")
	}
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
			return nil, fmt.Errorf("EDGEPIXEL_POP_SHUTDOWN_TIMEOUT: %w", err)
		}
		o.shutdownTimeout = d
	}

	fs := flag.NewFlagSet("edgepixel-pop", flag.ContinueOnError)
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
	for _, name := range ignoredBool {
		fs.Bool(name, false, "")
	}
	for _, name := range ignoredString {
		fs.String(name, "", "")
	}

	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// fs.Parse consumed a "--" terminator if it saw one: then
		// everything left is positional.
		if consumedTerminator(args, rest) {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Newer Viceroy releases take a subcommand ("serve"); accept it.
	if len(positional) > 0 && positional[0] == "serve" {
		positional = positional[1:]
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
	if o.instances < 0 || o.maxInstances < 0 {
		return nil, errors.New("instance counts cannot be negative")
	}
	if o.maxInstances > 0 && o.instances > o.maxInstances {
		return nil, fmt.Errorf("--instances %d exceeds --max-instances %d", o.instances, o.maxInstances)
	}
	return o, nil
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
		return fmt.Errorf("%s: %w", key, err)
	}
	*dst = n
	return nil
}
