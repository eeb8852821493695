package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/logging"
)

const runUsage = `usage: edgepixel-pop run [flags] MODULE.wasm [ARGS...]

Runs MODULE.wasm once as a WASI command, as Viceroy's run subcommand does,
and exits with its exit code. ARGS (everything after the module) go to the
module; stdin, stdout and stderr are passed through. There is no client: a
module asking for its request gets a placeholder GET http://example.com/.
This is how Go test binaries run under the POP:

  GOOS=wasip1 GOARCH=wasm go test -exec "edgepixel-pop run -C fastly.toml" ./...

Flags (environment variable in brackets):
  -C, --config PATH       fastly.toml with a [local_server] section
  -v, -vv                 POP logging (default: warnings and errors only)
  --log-format FORMAT     text (default) or json, as for serving [EDGEPIXEL_POP_LOG_FORMAT]
  --compile-cache DIR     compiled-code cache; "off" disables [EDGEPIXEL_POP_COMPILE_CACHE]
  --log-endpoint NAME=DEST
                          as for serving (see edgepixel-pop --help) [EDGEPIXEL_POP_LOG_ENDPOINTS]
  --memory-limit SIZE     linear memory limit, 64KiB to 4GiB, e.g. 256MiB
                          (default 128MiB, Fastly's)
  --wall-budget D         wall-clock limit (default 0: none)
  --resolve HOST:PORT:ADDR[:PORT]
                          as for serving                          [EDGEPIXEL_POP_RESOLVE]
  (Viceroy flags without meaning here, e.g. --log-stdout, are accepted and ignored)
`

// runCommand implements `edgepixel-pop run`; args follow "run".
func runCommand(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		config        string
		verbosity     int
		memoryLimit   byteSize
		wallBudget    time.Duration
		flagEndpoints []string
		resolve       = resolveFlag{}
		logFormat     = "text"
	)
	asked := map[string]bool{} // the variables run reads
	read := getenv
	getenv = func(name string) string {
		asked[name] = true
		return read(name)
	}
	cacheDir, cacheNote := defaultCompileCache()
	cacheChosen := false
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_COMPILE_CACHE"); ok {
		cacheDir, cacheNote, cacheChosen = v, "", true
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_FORMAT"); ok {
		logFormat = v
	}
	if err := resolve.fromEnv(getenv); err != nil {
		fmt.Fprintf(stderr, "edgepixel-pop run: %v\n", err)
		return 2
	}
	fs := flag.NewFlagSet("edgepixel-pop run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&config, "C", "", "")
	fs.StringVar(&config, "config", "", "")
	fs.Var(countFlag{&verbosity, 1}, "v", "")
	fs.Var(countFlag{&verbosity, 1}, "verbose", "")
	fs.Var(countFlag{&verbosity, 2}, "vv", "")
	fs.Var(countFlag{&verbosity, 3}, "vvv", "")
	fs.StringVar(&cacheDir, "compile-cache", cacheDir, "")
	fs.StringVar(&logFormat, "log-format", logFormat, "")
	fs.Var(endpointsFlag{&flagEndpoints}, "log-endpoint", "")
	fs.Var(&memoryLimit, "memory-limit", "")
	fs.DurationVar(&wallBudget, "wall-budget", 0, "")
	fs.Var(resolve, "resolve", "")
	declareIgnored(fs)
	// Parsing stops at the module: everything after it is the module's,
	// flags included (a Go test binary's -test.v, -test.run, ...).
	rest, err := parseFlags(fs, args, true)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, runUsage)
			return 0
		}
		fmt.Fprintf(stderr, "edgepixel-pop run: %v\n%s\n", flaghint.Explain(fs, err), flaghint.SeeHelp("edgepixel-pop run"))
		return 2
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "edgepixel-pop run: no wasm module given\n\n%s", runUsage)
		return 2
	}
	if flaghint.Set(fs, "compile-cache") {
		cacheNote = ""
	} else if !cacheChosen {
		cacheDir, cacheNote = usableDefaultCompileCache(cacheDir, cacheNote)
	}
	level := slog.LevelWarn
	switch {
	case verbosity >= 2:
		level = slog.LevelDebug
	case verbosity == 1:
		level = slog.LevelInfo
	}
	if err := checkRunLimits(flaghint.Set(fs, "memory-limit"), memoryLimit, wallBudget); err != nil {
		fmt.Fprintf(stderr, "edgepixel-pop run: %v\n%s\n", err, flaghint.SeeHelp("edgepixel-pop run"))
		return 2
	}
	h, err := logging.NewHandler(stderr, logFormat, level)
	if err != nil {
		if !flaghint.Set(fs, "log-format") {
			err = fmt.Errorf("EDGEPIXEL_POP_LOG_FORMAT=%s: want text or json", logFormat)
		}
		fmt.Fprintf(stderr, "edgepixel-pop run: %v\n%s\n", err, flaghint.SeeHelp("edgepixel-pop run"))
		return 2
	}
	if cacheDir == "off" || cacheDir == "none" {
		cacheDir = ""
	}
	var envEndpoints []string
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_LOG_ENDPOINTS"); ok {
		envEndpoints = strings.Split(v, ",")
	}
	endpoints, err := mergeEndpoints(envEndpoints, flagEndpoints)
	if err != nil {
		fmt.Fprintf(stderr, "edgepixel-pop run: %v\n", err)
		return 2
	}
	log := slog.New(h)
	logCompileCacheNote(log, cacheDir, cacheNote)
	warnEnvNotRead(log, asked, fs)
	if err := checkModule(rest[0]); err != nil {
		log.Error("edgepixel-pop run failed", "err", err)
		return 1
	}
	var m *fastlytoml.Manifest
	if config != "" {
		if m, err = fastlytoml.Load(config); err != nil {
			log.Error("edgepixel-pop run failed", "err", missingFileHint(err))
			return 1
		}
		for _, w := range append(m.Warnings, storeWarnings(m)...) {
			log.Warn(w, "config", config)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := pop.Run(ctx, pop.Config{
		WasmPath:        rest[0],
		Manifest:        m,
		CompileCacheDir: cacheDir,
		Stdout:          stdout,
		Stderr:          stderr,
		Logger:          log,
		LogEndpoints:    endpoints,
		MemoryLimit:     int64(memoryLimit), // 0, not given: pop's default, Fastly's 128 MiB
		WallBudget:      wallBudget,
		Resolve:         resolve,
	}, rest[1:], stdin)
	if err != nil {
		log.Error("edgepixel-pop run failed", "wasm", rest[0], "exit_code", code, "err", err)
	}
	return code
}

// The bounds of run's --memory-limit: a wasm32 memory holds whole 64 KiB
// pages, at most 65536 of them (4 GiB).
const (
	wasmPage       = 64 << 10
	maxMemoryLimit = 4 << 30
)

// checkRunLimits refuses run's --memory-limit (if set) and --wall-budget
// out of their domains, naming the flag and what it takes: a limit below
// one page leaves a guest no memory, one above 4 GiB cannot be reached by
// wasm32, and a negative budget was read as none.
func checkRunLimits(memorySet bool, memoryLimit byteSize, wallBudget time.Duration) error {
	if memorySet && (memoryLimit < wasmPage || memoryLimit > maxMemoryLimit) {
		return fmt.Errorf("--memory-limit %s: want a size from 64KiB (one wasm page) to 4GiB (wasm32's limit), e.g. 256MiB", memoryLimit.human())
	}
	if wallBudget < 0 {
		return fmt.Errorf("--wall-budget %v: want a duration of 0 (none, the default) or more, e.g. 30s", wallBudget)
	}
	return nil
}

// checkModule says so when path names a file that is not a WebAssembly
// module (a Go source file, the native binary, a directory's listing ...),
// instead of the runtime's "invalid magic number". A file that cannot be
// read is left to the runtime, whose error names it.
func checkModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if string(head) == "\x00asm" {
		return nil
	}
	what := "it does not begin with the WebAssembly magic number, bytes 00 61 73 6d"
	if n == 0 {
		what = "it is empty"
	}
	return fmt.Errorf("%s is not a WebAssembly module (%s): build it with make build, or give the path of the .wasm file", path, what)
}

// resolveFlag collects --resolve HOST:PORT:ADDR values (pop.ParseResolve),
// for serving and for run; a later one for the same HOST:PORT wins.
type resolveFlag map[string]string

func (r resolveFlag) String() string { return "" }
func (r resolveFlag) Set(spec string) error {
	k, v, err := pop.ParseResolve(spec)
	if err != nil {
		return err
	}
	r[k] = v
	return nil
}

// fromEnv reads EDGEPIXEL_POP_RESOLVE, comma-separated; flags parsed
// afterwards override it.
func (r resolveFlag) fromEnv(getenv func(string) string) error {
	v, ok := lookup(getenv, "EDGEPIXEL_POP_RESOLVE")
	if !ok {
		return nil
	}
	for _, spec := range strings.Split(v, ",") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		if err := r.Set(spec); err != nil {
			return fmt.Errorf("EDGEPIXEL_POP_RESOLVE: %w", err)
		}
	}
	return nil
}

// warnEnvNotRead warns, under run, of each EDGEPIXEL_POP_ variable set
// that run does not read (asked holds those it does): one named after a
// flag of run's (fs: EDGEPIXEL_POP_MEMORY_LIMIT, where run has
// --memory-limit and no variable) or one that serving reads is ignored
// here, and one nothing reads is likely misspelt.
func warnEnvNotRead(log *slog.Logger, asked map[string]bool, fs *flag.FlagSet) {
	serving := map[string]bool{}
	parseArgs([]string{"m.wasm"}, func(name string) string { serving[name] = true; return "" })
	known := maps.Clone(asked)
	for _, kv := range environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "EDGEPIXEL_POP_") || asked[name] {
			continue
		}
		flagName := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "EDGEPIXEL_POP_")), "_", "-")
		switch {
		case fs.Lookup(flagName) != nil:
			log.Warn(name + " is not read by run: ignored; give --" + flagName + " instead")
		case serving[name]:
			log.Warn(name + " is read when serving, not by run: ignored (run takes its own flags, see edgepixel-pop run --help)")
		default:
			continue
		}
		known[name] = true
	}
	for _, w := range flaghint.UnknownEnv(environ(), "EDGEPIXEL_POP_", known) {
		log.Warn(w)
	}
}
