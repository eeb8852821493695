package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

func TestClientFlags(t *testing.T) {
	o, err := parseArgs([]string{"m.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := o.clients.apply(pop.Config{}).Clients
	want := pop.ClientLimits{
		HeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, BodyTimeout: 30 * time.Second,
		BodyIdleTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		MaxRequestBody: 1 << 20, BodyMemory: 64 << 20,
	}
	if c != want {
		t.Errorf("defaults:\n%+v\nwant\n%+v", c, want)
	}

	e := env(map[string]string{
		"EDGEPIXEL_POP_MAX_CONNS":          "500",
		"EDGEPIXEL_POP_MAX_CONNS_PER_ADDR": "-1",
		"EDGEPIXEL_POP_HEADER_TIMEOUT":     "3s",
		"EDGEPIXEL_POP_BODY_IDLE_TIMEOUT":  "0",
		"EDGEPIXEL_POP_MAX_REQUEST_BODY":   "256KiB",
		"EDGEPIXEL_POP_BODY_MEMORY":        "16MiB",
	})
	o, err = parseArgs([]string{"m.wasm", "--max-conns", "700", "--write-timeout=1m", "--keepalive-timeout", "0"}, e)
	if err != nil {
		t.Fatal(err)
	}
	c = o.clients.apply(pop.Config{}).Clients
	// 0 on the command line turns a duration off: negative in pop.Config.
	if c.MaxConns != 700 || c.MaxConnsPerAddr != -1 || c.HeaderTimeout != 3*time.Second || c.BodyIdleTimeout >= 0 ||
		c.IdleTimeout >= 0 || c.WriteTimeout != time.Minute || c.MaxRequestBody != 256<<10 || c.BodyMemory != 16<<20 {
		t.Errorf("environment and flags: %+v", c)
	}

	for _, args := range [][]string{
		{"--max-request-body", "1KiB", "m.wasm"},                          // below 64 KiB
		{"--max-request-body", "2MiB", "--body-memory", "1MiB", "m.wasm"}, // less memory than one body
		{"--max-request-body", "lots", "m.wasm"},
		{"--body-memory", "1PiB", "m.wasm"},
		{"--header-timeout", "-1s", "m.wasm"},
		{"--max-conns", "-2", "m.wasm"},
	} {
		if _, err := parseArgs(args, env(nil)); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	for in, want := range map[string]int64{"65536": 65536, "64KiB": 64 << 10, "64k": 64 << 10, "1MB": 1e6, "2 MiB": 2 << 20, "1GiB": 1 << 30} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("size %q: %d, %v; want %d", in, b, err, want)
		}
	}
}

// A count out of a flag's domain stops the start with exit status 2,
// naming the flag and what it takes. --max-conns 0 (and
// --max-conns-per-addr 0) used to start the POP with the default, which
// the help does not offer for 0; --instances 0 and --max-instances 0 stay
// accepted: the help says what they mean.
func TestCountDomains(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-conns", "0", "m.wasm"}, nil, "--max-conns 0: want a count of at least 1, or -1 for no limit"},
		{[]string{"--max-conns", "-2", "m.wasm"}, nil, "--max-conns -2: want a count of at least 1, or -1 for no limit"},
		{[]string{"--max-conns-per-addr", "0", "m.wasm"}, nil, "--max-conns-per-addr 0: want a count of at least 1, or -1 for no limit"},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_MAX_CONNS": "0"}, "--max-conns 0:"},
		// Listen addresses, before anything starts: an empty --addr (an
		// unset variable's) listened on every interface.
		{[]string{"--addr=", "m.wasm"}, nil, "--addr is empty: want HOST:PORT"},
		{[]string{"--addr", "nope", "m.wasm"}, nil, `--addr "nope": want HOST:PORT`},
		{[]string{"--addr", "127.0.0.1:99999", "m.wasm"}, nil, `--addr "127.0.0.1:99999": want HOST:PORT`},
		{[]string{"--addr", "[::1", "m.wasm"}, nil, `--addr "[::1": want HOST:PORT`},
		{[]string{"--admin-addr", "nope", "m.wasm"}, nil, `--admin-addr "nope": want HOST:PORT`},
		// No port (":$PORT" with PORT unset) listened on a random one.
		{[]string{"--addr", "127.0.0.1:", "m.wasm"}, nil, `--addr "127.0.0.1:": want HOST:PORT`},
		{[]string{"--addr", ":", "m.wasm"}, nil, `--addr ":": want HOST:PORT`},
		{[]string{"--admin-addr", "127.0.0.1:", "m.wasm"}, nil, `--admin-addr "127.0.0.1:": want HOST:PORT`},
		// Each negative budget names itself.
		{[]string{"--wall-budget", "-1s", "m.wasm"}, nil, "--wall-budget -1s cannot be negative"},
		{[]string{"--idle-timeout", "-2s", "m.wasm"}, nil, "--idle-timeout -2s cannot be negative"},
		{[]string{"--instances", "-1", "m.wasm"}, nil, "--instances -1: want a count, or 0 for 2*GOMAXPROCS"},
		{[]string{"--max-instances", "-1", "m.wasm"}, nil, "--max-instances -1: want a count, or 0 for max(instances, 4*GOMAXPROCS)"},
	} {
		var errb strings.Builder
		if code := run(c.args, env(c.env), io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q %v: exit %d, %q; want 2 and %q", c.args, c.env, code, errb.String(), c.want)
		}
	}
	o, err := parseArgs([]string{"--instances", "0", "--max-instances", "0", "--max-conns", "-1", "--max-conns-per-addr", "1", "m.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := o.clients.apply(pop.Config{}).Clients; o.instances != 0 || o.maxInstances != 0 || c.MaxConns != -1 || c.MaxConnsPerAddr != 1 {
		t.Errorf("instances %d, max %d, conns %d, per addr %d", o.instances, o.maxInstances, c.MaxConns, c.MaxConnsPerAddr)
	}
	// A --max-instances below the default warm count is kept: the warm
	// count comes down to it (a tester's 1 ran 4 instances).
	if o, err = parseArgs([]string{"--max-instances", "1", "m.wasm"}, env(nil)); err != nil || o.instances != 1 || o.maxInstances != 1 {
		t.Errorf("--max-instances 1: instances %d, max %d, %v", o.instances, o.maxInstances, err)
	}
}

// brokenListener accepts nothing and fails for good once broken.
type brokenListener struct {
	net.Listener
	broken chan struct{}
}

func (l *brokenListener) Accept() (net.Conn, error) {
	<-l.broken
	return nil, errors.New("accept: the listening socket is gone")
}

// TestListenerStopEndsServe: a listener that fails for good ends serve
// with the error, so the process exits non-zero.
func TestListenerStopEndsServe(t *testing.T) {
	args := []string{"--addr", "127.0.0.1:0", "--instances", "1", "--max-instances", "1",
		"--compile-cache", cacheDir, logGuest(t)}
	o, err := parseArgs(args, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	bl := &brokenListener{broken: make(chan struct{})}
	o.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		bl.Listener = ln
		return bl, err
	}
	ready := make(chan struct{}, 1)
	o.ready = func(_, _ string) { ready <- struct{}{} }
	stderr := &lockedBuf{}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	done := make(chan error, 1)
	go func() { done <- serve(context.Background(), o, log, &lockedBuf{}, stderr) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve ended at start-up: %v\n%s", err, stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not start\n%s", stderr)
	}
	close(bl.broken)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listening socket is gone") {
			t.Errorf("serve returned %v, want the listener's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve kept running without its listener\n%s", stderr)
	}
	if !strings.Contains(stderr.String(), "a listener stopped") {
		t.Errorf("the reason was not logged:\n%s", stderr)
	}
}

// A variable's value that does not parse, or is out of its flag's
// domain, is named as the variable with the value as given, as a flag's
// is: not strconv's words, nor only a flag never given with the value
// converted.
func TestEnvErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		args    []string
		env     map[string]string
		want    []string
		notWant []string
	}{
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_INSTANCES": "abc"},
			[]string{`EDGEPIXEL_POP_INSTANCES="abc": want a whole number`}, []string{"strconv", "invalid syntax"}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_INSTANCES": "99999999999999999999"},
			[]string{`EDGEPIXEL_POP_INSTANCES="99999999999999999999": out of range`}, []string{"strconv"}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_SHUTDOWN_TIMEOUT": "5"},
			[]string{`EDGEPIXEL_POP_SHUTDOWN_TIMEOUT="5": want a duration such as`}, []string{"time: "}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_PROXY_PROTOCOL": "yes"},
			[]string{`EDGEPIXEL_POP_PROXY_PROTOCOL="yes": want true or false`}, []string{"strconv"}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_MAX_REQUEST_BODY": "1KiB"},
			[]string{"--max-request-body 1KiB: want a size of at least 64KiB", `(--max-request-body is EDGEPIXEL_POP_MAX_REQUEST_BODY's value, "1KiB")`}, []string{"1024"}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_MAX_CONNS": "0"},
			[]string{"--max-conns 0:", `(--max-conns is EDGEPIXEL_POP_MAX_CONNS's value, "0")`}, []string{"max-conns-per-addr is"}},
		{[]string{"m.wasm"}, map[string]string{"EDGEPIXEL_POP_INSTANCES": "5", "EDGEPIXEL_POP_MAX_INSTANCES": "2"},
			[]string{"--instances 5 exceeds --max-instances 2", `(--instances is EDGEPIXEL_POP_INSTANCES's value, "5"; --max-instances is EDGEPIXEL_POP_MAX_INSTANCES's value, "2")`}, nil},
		// The command line's value wins, and is the one the error names.
		{[]string{"--max-request-body", "2KiB", "m.wasm"}, map[string]string{"EDGEPIXEL_POP_MAX_REQUEST_BODY": "1KiB"},
			[]string{"--max-request-body 2KiB:"}, []string{"EDGEPIXEL_POP_MAX_REQUEST_BODY"}},
	} {
		var errb strings.Builder
		code := run(c.args, env(c.env), io.Discard, &errb)
		bad := code != 2
		for _, w := range c.want {
			bad = bad || !strings.Contains(errb.String(), w)
		}
		for _, w := range c.notWant {
			bad = bad || strings.Contains(errb.String(), w)
		}
		if bad {
			t.Errorf("%q %v: exit %d, %q; want 2, %q and not %q", c.args, c.env, code, errb.String(), c.want, c.notWant)
		}
	}
}

// notWasm writes a file that is not a WebAssembly module (a Go source
// file given in place of the build's output).
func notWasm(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(path, []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run's --memory-limit takes a size with a unit, as the serving size
// flags do, within what wasm32 can hold; its --wall-budget takes no
// negative duration, which became "none". Out of their domains they are
// usage errors naming the flag and what it takes.
func TestRunLimitDomains(t *testing.T) {
	mod := notWasm(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--memory-limit", "1", mod}, "--memory-limit 1: want a size from 64KiB (one wasm page) to 4GiB (wasm32's limit)"},
		{[]string{"run", "--memory-limit", "0", mod}, "--memory-limit 0: want a size from 64KiB"},
		{[]string{"run", "--memory-limit", "999999999999", mod}, "--memory-limit 999999999999: want a size from 64KiB"},
		{[]string{"run", "--memory-limit", "8GiB", mod}, "--memory-limit 8GiB: want a size from 64KiB"},
		{[]string{"run", "--memory-limit", "lots", mod}, `size "lots": want bytes, optionally with a unit`},
		{[]string{"run", "--wall-budget", "-1s", mod}, "--wall-budget -1s: want a duration of 0 (none, the default) or more"},
	} {
		var errb strings.Builder
		if code := run(c.args, env(nil), io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
	// In the domain, the values pass the checks: the module is the
	// next thing refused (exit 1).
	for _, args := range [][]string{
		{"run", "--memory-limit", "64MiB", mod},
		{"run", "--memory-limit", "64KiB", "--wall-budget", "0", mod},
		{"run", "--memory-limit=4GiB", "--wall-budget", "30s", mod},
		{"run", "--memory-limit", "134217728", mod},
	} {
		var errb strings.Builder
		if code := run(args, env(nil), io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "is not a WebAssembly module") {
			t.Errorf("%q: exit %d, %q; want the values taken", args, code, errb.String())
		}
	}
}

// run warns of a serving variable it does not read (a tester's
// EDGEPIXEL_POP_MEMORY_LIMIT was ignored without a word) and of one
// nothing reads, and not of those it reads.
func TestRunWarnsEnvNotRead(t *testing.T) {
	mod := notWasm(t)
	defer func(e func() []string) { environ = e }(environ)
	environ = func() []string {
		return []string{"EDGEPIXEL_POP_INSTANCES=1", "EDGEPIXEL_POP_COMPILE_CACHE=off", "EDGEPIXEL_POP_WAL_BUDGET=1s", "EDGEPIXEL_POP_MEMORY_LIMIT=1MiB", "PATH=/bin"}
	}
	var errb strings.Builder
	run([]string{"run", mod}, env(map[string]string{"EDGEPIXEL_POP_INSTANCES": "1", "EDGEPIXEL_POP_COMPILE_CACHE": "off"}), io.Discard, &errb)
	out := errb.String()
	if !strings.Contains(out, "EDGEPIXEL_POP_INSTANCES is read when serving, not by run") || !strings.Contains(out, "EDGEPIXEL_POP_WAL_BUDGET is set but names no setting") ||
		!strings.Contains(out, "EDGEPIXEL_POP_MEMORY_LIMIT is not read by run: ignored; give --memory-limit instead") ||
		strings.Contains(out, "EDGEPIXEL_POP_COMPILE_CACHE is") {
		t.Errorf("run's warnings: %s", out)
	}
}

// run logs as serving does in the format --log-format (or
// EDGEPIXEL_POP_LOG_FORMAT) names, and refuses one it does not know as a
// usage error.
func TestRunLogFormat(t *testing.T) {
	mod := notWasm(t)
	for _, c := range []struct {
		args []string
		env  map[string]string
		json bool
	}{
		{[]string{"run", mod}, nil, false},
		{[]string{"run", "--log-format", "json", mod}, nil, true},
		{[]string{"run", mod}, map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "json"}, true},
		{[]string{"run", "--log-format", "text", mod}, map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "json"}, false},
	} {
		var errb strings.Builder
		code := run(c.args, env(c.env), io.Discard, &errb)
		line := strings.TrimSpace(errb.String())
		var m map[string]any
		isJSON := json.Unmarshal([]byte(line), &m) == nil && strings.Contains(fmt.Sprint(m["err"]), "is not a WebAssembly module")
		if code != 1 || isJSON != c.json || !c.json && !strings.HasPrefix(line, "time=") {
			t.Errorf("%q %v: exit %d, %q; want 1 and json %v", c.args, c.env, code, line, c.json)
		}
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"run", "--log-format", "xml", mod}, nil, `--log-format "xml": want text or json`},
		{[]string{"run", mod}, map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "logfmt"}, "EDGEPIXEL_POP_LOG_FORMAT=logfmt: want text or json"},
	} {
		var errb strings.Builder
		if code := run(c.args, env(c.env), io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q %v: exit %d, %q; want 2 and %q", c.args, c.env, code, errb.String(), c.want)
		}
	}
}

// A module file that is not WebAssembly is said to be so, with what to do,
// not as the runtime's "invalid magic number"; serving, --compile-only and
// run alike.
func TestNotWasmModule(t *testing.T) {
	mod := notWasm(t)
	empty := filepath.Join(t.TempDir(), "empty.wasm")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "127.0.0.1:0", "--compile-cache", "off", mod}, mod + " is not a WebAssembly module (it does not begin with the WebAssembly magic number"},
		{[]string{"--compile-only", "--compile-cache", t.TempDir(), mod}, mod + " is not a WebAssembly module"},
		{[]string{"run", "--compile-cache", "off", mod}, mod + " is not a WebAssembly module"},
		{[]string{"run", "--compile-cache", "off", empty}, empty + " is not a WebAssembly module (it is empty)"},
	} {
		var errb strings.Builder
		code := run(c.args, env(nil), io.Discard, &errb)
		if code != 1 || !strings.Contains(errb.String(), c.want) || !strings.Contains(errb.String(), "build it with make build, or give the path of the .wasm file") ||
			strings.Contains(errb.String(), "invalid magic number") {
			t.Errorf("%q: exit %d, %q; want 1 and %q", c.args, code, errb.String(), c.want)
		}
	}
}

// Viceroy's profiling flags are taken bare or with a strategy, and a bare
// one before the module does not take the module for its value.
func TestViceroyProfileFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--profile", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"--profile", "guest", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"--profile=guest,/tmp/profiles", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"--profile", "guest,/tmp/profiles,1ms", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"--profile", "jitdump", "-C", "f.toml", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"m.wasm", "--profile", "--addr", "127.0.0.1:7676"},
		{"m.wasm", "--addr", "127.0.0.1:7676", "--profile"},
		{"m.wasm", "--addr", "127.0.0.1:7676", "--profile", "perfmap"},
		{"--profiler", "m.wasm", "--addr", "127.0.0.1:7676"},
		{"serve", "--profile", "vtune", "m.wasm", "--addr", "127.0.0.1:7676"},
	} {
		o, err := parseArgs(args, env(nil))
		if err != nil || o.wasm != "m.wasm" || o.addr != "127.0.0.1:7676" {
			t.Errorf("%q: %+v, %v", args, o, err)
		}
	}
	// A word that is no strategy after a bare --profile is an argument.
	if _, err := parseArgs([]string{"--profile", "x.wasm", "m.wasm"}, env(nil)); err == nil || !strings.Contains(err.Error(), "one wasm module expected") {
		t.Errorf("--profile x.wasm m.wasm: %v", err)
	}
	// run: the module is found after a bare --profile, or after one with
	// a strategy as the next argument.
	mod := notWasm(t)
	for _, args := range [][]string{
		{"run", "--profile", mod},
		{"run", "--profile", "guest", mod, "-test.v"},
		{"run", "--profile=guest", "--compile-cache", "off", mod},
	} {
		var errb strings.Builder
		if code := run(args, env(nil), io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), mod+" is not a WebAssembly module") {
			t.Errorf("%q: exit %d, %q; want the module found", args, code, errb.String())
		}
	}
}
