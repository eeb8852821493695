package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseViceroyCommandLine(t *testing.T) {
	// Exactly what `fastly compute serve --viceroy-path=BIN` runs.
	o, err := parseArgs([]string{"-v", "-C", "/abs/fastly.toml", "--addr", "127.0.0.1:7676", "./bin/main.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.config != "/abs/fastly.toml" || o.addr != "127.0.0.1:7676" || o.wasm != "./bin/main.wasm" || o.verbosity != 1 {
		t.Errorf("%+v", o)
	}
	if !strings.HasSuffix(o.compileCache, "edgepixel-pop") {
		t.Errorf("default compile cache %q", o.compileCache)
	}
}

func TestParseFlagsAfterPositional(t *testing.T) {
	o, err := parseArgs([]string{"serve", "main.wasm", "-vv", "--config=f.toml", "--instances", "3",
		"--max-instances=9", "--admin-addr", ":9100", "--log-stdout", "--compile-cache", "off"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.wasm != "main.wasm" || o.config != "f.toml" || o.verbosity != 2 || o.instances != 3 ||
		o.maxInstances != 9 || o.adminAddr != ":9100" || o.compileCache != "" {
		t.Errorf("%+v", o)
	}
}

func TestParseEnvironment(t *testing.T) {
	e := env(map[string]string{
		"EDGEPIXEL_POP_INSTANCES":        "2",
		"EDGEPIXEL_POP_MAX_INSTANCES":    "5",
		"EDGEPIXEL_POP_COMPILE_CACHE":    "/tmp/cc",
		"EDGEPIXEL_POP_ADMIN_ADDR":       "127.0.0.1:9",
		"EDGEPIXEL_POP_SHUTDOWN_TIMEOUT": "3s",
	})
	o, err := parseArgs([]string{"m.wasm", "--instances", "4"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if o.instances != 4 || o.maxInstances != 5 || o.compileCache != "/tmp/cc" || o.adminAddr != "127.0.0.1:9" || o.shutdownTimeout != 3*time.Second {
		t.Errorf("%+v", o)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"a.wasm", "b.wasm"},
		{"--nope", "a.wasm"},
		{"--instances", "x", "a.wasm"},
		{"--instances", "5", "--max-instances", "2", "a.wasm"},
	} {
		if _, err := parseArgs(args, env(nil)); err == nil {
			t.Errorf("%q: expected an error", args)
		}
	}
	if _, err := parseArgs([]string{"a.wasm"}, env(map[string]string{"EDGEPIXEL_POP_INSTANCES": "many"})); err == nil {
		t.Error("bad environment value accepted")
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// The Fastly CLI reads "name semver".
	f := strings.Fields(out.String())
	if len(f) != 2 || f[0] != "edgepixel-pop" || !regexp.MustCompile(`^`+regexp.QuoteMeta(version)+`(\+[0-9a-f]{12}(\.dirty)?)?$`).MatchString(f[1]) {
		t.Errorf("--version printed %q", out.String())
	}
	if code := run([]string{"-V"}, env(nil), io.Discard, io.Discard); code != 0 {
		t.Errorf("-V exit %d", code)
	}
	if code := run([]string{}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("no args: exit %d, want 2", code)
	}
	// A bad value: the error is the last thing printed, not buried above
	// the whole usage.
	errb.Reset()
	if code := run([]string{"--max-request-body", "10", "a.wasm"}, env(nil), io.Discard, &errb); code != 2 {
		t.Errorf("bad value: exit %d, want 2", code)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) > 3 || !strings.Contains(errb.String(), "--max-request-body") {
		t.Errorf("bad value printed %d lines: %q", len(lines), errb.String())
	}
	errb.Reset()
	if code := run([]string{"run", "--wall-budget", "5", "a.wasm"}, env(nil), io.Discard, &errb); code != 2 {
		t.Errorf("run, bad value: exit %d, want 2", code)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "want a duration such as") {
		t.Errorf("run, bad value printed %d lines: %q", len(lines), errb.String())
	}
	// Each bad value says what the setting takes, on the command line and
	// in the environment, where strconv and time say only what failed.
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--instances", "x", "a.wasm"}, nil, "want a whole number"},
		{[]string{"--h2c=yes", "a.wasm"}, nil, "want true or false"},
		{[]string{"--wall-budget", "5", "a.wasm"}, nil, "want a duration such as"},
		{[]string{"a.wasm"}, map[string]string{"EDGEPIXEL_POP_INSTANCES": "x"}, "EDGEPIXEL_POP_INSTANCES=\"x\": want a whole number"},
		{[]string{"a.wasm"}, map[string]string{"EDGEPIXEL_POP_H2C": "yes"}, "EDGEPIXEL_POP_H2C=\"yes\": want true or false"},
		{[]string{"a.wasm"}, map[string]string{"EDGEPIXEL_POP_WATCH": "maybe"}, "want true or false"},
		{[]string{"a.wasm"}, map[string]string{"EDGEPIXEL_POP_WALL_BUDGET": "5"}, "EDGEPIXEL_POP_WALL_BUDGET=\"5\": want a duration such as"},
		{[]string{"a.wasm"}, map[string]string{"EDGEPIXEL_POP_HEADER_TIMEOUT": "soon"}, "want a duration such as"},
	} {
		errb.Reset()
		if code := run(c.args, env(c.env), io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q %v: exit %d, %q; want %q", c.args, c.env, code, errb.String(), c.want)
		}
	}
}

// TestStartErrorsNameTheFlag: a start that fails on the manifest or the
// listen address names the flag to change, not only the system call.
func TestStartErrorsNameTheFlag(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-C", filepath.Join(t.TempDir(), "missing.toml"), "a.wasm"}, nil, "-C: open "},
		{[]string{"--addr", busy.Addr().String(), "a.wasm"}, nil, "--addr: listen tcp " + busy.Addr().String()},
		{[]string{"--addr", busy.Addr().String(), "a.wasm"}, nil, "choose another address"},
		// Before the module compiles and the POP says it is ready.
		{[]string{"--addr", "127.0.0.1:0", "--admin-addr", busy.Addr().String(), "a.wasm"}, nil, "--admin-addr: listen tcp " + busy.Addr().String()},
		// Set by its variable, the address names it.
		{[]string{"--addr", "127.0.0.1:0", "a.wasm"}, map[string]string{"EDGEPIXEL_POP_ADMIN_ADDR": busy.Addr().String()}, "(--admin-addr is EDGEPIXEL_POP_ADMIN_ADDR's value"},
	} {
		var errb bytes.Buffer
		if code := run(c.args, env(c.env), io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, %q; want exit 1 and %q", c.args, code, errb.String(), c.want)
		}
	}
}

// TestServeEndToEnd runs the real binary the way the Fastly CLI does, with
// the pop package's conformance guest, and stops it with SIGTERM.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tmp := t.TempDir()
	toml := filepath.Join(tmp, "fastly.toml")
	os.WriteFile(toml, []byte(`
manifest_version = 3
name = "e2e"
[local_server.config_stores.cfg]
format = "inline-toml"
[local_server.config_stores.cfg.contents]
greeting = "hello from fastly.toml"
`), 0o644)

	cmd := exec.Command(popBin, "-v", "-C", toml, "--addr", "127.0.0.1:0", binGuestWasm, "--instances", "1", "--compile-cache", binCacheDir)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var url string
	timeout := time.After(60 * time.Second)
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("binary exited early: %s", stderr.String())
			}
			if u, found := strings.CutPrefix(l, "Listening on "); found {
				url = u
			}
		case <-timeout:
			t.Fatalf("no listening line; stderr: %s", stderr.String())
		}
	}
	resp, err := http.Get(url + "/config?store=cfg&key=greeting")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from fastly.toml" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		// A graceful stop, then death by the same signal, as Viceroy: the
		// Fastly CLI restarts a local server that exits 0.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("exit after SIGTERM: %v, want killed by SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	fmt.Fprint(io.Discard, stderr.String())
}

// A misspelt EDGEPIXEL_POP_ variable is warned about, naming the one
// meant; the ones the POP reads are not.
func TestWarnsUnknownEnv(t *testing.T) {
	vars := map[string]string{"EDGEPIXEL_POP_INSTANCE": "3", "EDGEPIXEL_POP_MAX_INSTANCES": "4"}
	defer func(e func() []string) { environ = e }(environ)
	environ = func() []string { return []string{"EDGEPIXEL_POP_INSTANCE=3", "EDGEPIXEL_POP_MAX_INSTANCES=4"} }
	var errb bytes.Buffer
	if code := run([]string{"-C", filepath.Join(t.TempDir(), "missing.toml"), "a.wasm"}, env(vars), io.Discard, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "EDGEPIXEL_POP_INSTANCE is set but names no setting: ignored; did you mean EDGEPIXEL_POP_INSTANCES?") ||
		strings.Contains(errb.String(), "EDGEPIXEL_POP_MAX_INSTANCES is set") {
		t.Errorf("stderr %q: want a warning for EDGEPIXEL_POP_INSTANCE alone", errb.String())
	}
}

// parseFlags, which serving and run share: serving resumes after each
// positional argument, run stops at the first; both leave a bare
// profiling flag's strategy to the flag and take all after "--".
func TestParseFlagsModes(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		stopAtFirst bool
		want        []string
	}{
		{[]string{"-v", "m.wasm", "-v", "x"}, false, []string{"m.wasm", "x"}},
		{[]string{"-v", "m.wasm", "-v", "x"}, true, []string{"m.wasm", "-v", "x"}},
		{[]string{"--profile", "guest", "m.wasm", "a"}, false, []string{"m.wasm", "a"}},
		{[]string{"--profile", "guest", "m.wasm", "a"}, true, []string{"m.wasm", "a"}},
		{[]string{"--profile", "m.wasm", "-test.v"}, true, []string{"m.wasm", "-test.v"}},
		{[]string{"m.wasm", "--", "-v", "x"}, false, []string{"m.wasm", "-v", "x"}},
		{[]string{"-v", "--", "m.wasm", "-v"}, true, []string{"m.wasm", "-v"}},
		{[]string{"-v"}, true, nil},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var n int
		fs.Var(countFlag{&n, 1}, "v", "")
		declareIgnored(fs)
		got, err := parseFlags(fs, tc.args, tc.stopAtFirst)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseFlags(%q, %v) = %q, %v; want %q", tc.args, tc.stopAtFirst, got, err, tc.want)
		}
	}
}

// A misspelt table of fastly.toml's [local_server] is warned about when
// serving and under run, naming the table meant: it was ignored without a
// word (found by a new-user tester).
func TestWarnsUnknownLocalServerTable(t *testing.T) {
	toml := filepath.Join(t.TempDir(), "fastly.toml")
	if err := os.WriteFile(toml, []byte("[local_server.backendz.aggregator]\nurl = \"http://127.0.0.1:8080\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "a.wasm")
	for _, args := range [][]string{{"-C", toml, "--addr", "127.0.0.1:0", missing}, {"run", "-C", toml, missing}} {
		var errb bytes.Buffer
		code := run(args, env(nil), io.Discard, &errb)
		if code == 0 || !strings.Contains(errb.String(), "local_server.backendz is not a key of [local_server]: ignored; did you mean local_server.backends?") {
			t.Errorf("%q: exit %d, stderr %q: want a warning naming local_server.backends", args, code, errb.String())
		}
	}
}

// edge/fastly.toml before a first make run: its secret file does not
// exist yet. The error names the store, the file, what it holds and, for
// a file under .edgepixel/data (make run's), to run make run once; it said
// only "no such file or directory" (found by a new-user tester).
func TestMissingStoreFileHint(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "a.wasm")
	for _, tc := range []struct {
		key, file   string
		makes, salt bool // the hints to run make run, edgepixel-salt
	}{
		{"aggregator_secret", "../.edgepixel/data/secret", true, false},
		{"aggregator_secret", "secrets/agg", false, false},
		{"visitor_salt_0", "salts/visitor_salt_0", false, true},
	} {
		dir := filepath.Join(root, "edge")
		os.MkdirAll(dir, 0o755)
		toml := filepath.Join(dir, "fastly.toml")
		if err := os.WriteFile(toml, []byte(`[local_server.secret_stores]
edgepixel = [{ key = "`+tc.key+`", file = "`+tc.file+`" }]
`), 0o644); err != nil {
			t.Fatal(err)
		}
		want := `local_server.secret_stores.edgepixel[0]: secret \"` + tc.key + `\": file ` + filepath.Join(dir, tc.file) + ` does not exist: create it holding the secret's value`
		for _, args := range [][]string{{"-C", toml, "--addr", "127.0.0.1:0", missing}, {"run", "-C", toml, missing}} {
			var errb bytes.Buffer
			code := run(args, env(nil), io.Discard, &errb)
			hint := strings.Contains(errb.String(), "make run writes the files under .edgepixel/data")
			salt := strings.Contains(errb.String(), "edgepixel-salt --dir "+filepath.Dir(filepath.Join(dir, tc.file))+" --today")
			if code != 1 || !strings.Contains(errb.String(), want) || hint != tc.makes || salt != tc.salt {
				t.Errorf("%q: exit %d, stderr %s\nwant exit 1 saying %s, the make run hint: %v, edgepixel-salt's: %v", args, code, errb.String(), want, tc.makes, tc.salt)
			}
		}
	}
}

// A module path that names no file says which argument it is and where
// make build writes the module (a tester's misspelt path gave only
// open's error), serving and under run alike.
func TestMissingModuleHint(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "edgepixe.wasm")
	for _, args := range [][]string{{"--addr", "127.0.0.1:0", missing}, {"run", missing}} {
		var errb bytes.Buffer
		code := run(args, env(nil), io.Discard, &errb)
		if code != 1 || !strings.Contains(errb.String(), "MODULE.wasm") || !strings.Contains(errb.String(), missing) || !strings.Contains(errb.String(), ".edgepixel/bin/edgepixel.wasm") {
			t.Errorf("%q: exit %d, stderr %s\nwant exit 1 naming MODULE.wasm, the path and make build's output", args, code, errb.String())
		}
	}
}

// --log-level and --log-format take the aggregator's values, from the
// command line or EDGEPIXEL_POP_LOG_LEVEL and _FORMAT (a tester's
// EDGEPIXEL_POP_LOG_FORMAT=json was warned of as no setting); -vv
// lowers any level to debug, -v alone (the Fastly CLI's) leaves it.
func TestLogSettings(t *testing.T) {
	for _, c := range []struct {
		args   []string
		env    map[string]string
		level  slog.Level
		format string
	}{
		{nil, nil, slog.LevelInfo, "text"},
		{[]string{"-v"}, nil, slog.LevelInfo, "text"},
		{[]string{"-vv"}, nil, slog.LevelDebug, "text"},
		{[]string{"-v", "-v"}, nil, slog.LevelDebug, "text"},
		{[]string{"--log-level", "error"}, nil, slog.LevelError, "text"},
		{[]string{"-v", "--log-level", "warn"}, nil, slog.LevelWarn, "text"},
		{[]string{"-vv", "--log-level", "warn"}, nil, slog.LevelDebug, "text"},
		{nil, map[string]string{"EDGEPIXEL_POP_LOG_LEVEL": "warn", "EDGEPIXEL_POP_LOG_FORMAT": "json"}, slog.LevelWarn, "json"},
		{[]string{"--log-level=debug", "--log-format=text"}, map[string]string{"EDGEPIXEL_POP_LOG_LEVEL": "warn", "EDGEPIXEL_POP_LOG_FORMAT": "json"}, slog.LevelDebug, "text"},
	} {
		o, err := parseArgs(append(c.args, "a.wasm"), env(c.env))
		if err != nil || o.level != c.level || o.logFormat != c.format {
			t.Errorf("%q %v: %v; want level %v, format %s", c.args, c.env, err, c.level, c.format)
		}
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"EDGEPIXEL_POP_LOG_LEVEL": "warning"}, "--log-level \"warning\": want debug, info, warn or error; did you mean warn?\n(--log-level is EDGEPIXEL_POP_LOG_LEVEL's value, \"warning\")"},
		{nil, map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "logfmt"}, "--log-format \"logfmt\": want text or json\n(--log-format is EDGEPIXEL_POP_LOG_FORMAT's value, \"logfmt\")"},
		{[]string{"--log-level", "loud"}, nil, "--log-level \"loud\": want debug, info, warn or error\n"},
		{[]string{"--log-format", "xml"}, map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "json"}, "--log-format \"xml\": want text or json\n"},
	} {
		var errb bytes.Buffer
		code := run(append(c.args, "a.wasm"), env(c.env), io.Discard, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) || c.env == nil && strings.Contains(errb.String(), "EDGEPIXEL_POP") ||
			c.args != nil && strings.Contains(errb.String(), "EDGEPIXEL_POP_LOG_FORMAT's value") {
			t.Errorf("%q %v: exit %d, %q; want 2 and %q", c.args, c.env, code, errb.String(), c.want)
		}
	}
	// JSON from the environment: every line of the log is a JSON object,
	// and neither variable is warned of as no setting.
	vars := map[string]string{"EDGEPIXEL_POP_LOG_FORMAT": "json", "EDGEPIXEL_POP_LOG_LEVEL": "debug"}
	defer func(e func() []string) { environ = e }(environ)
	environ = func() []string { return []string{"EDGEPIXEL_POP_LOG_FORMAT=json", "EDGEPIXEL_POP_LOG_LEVEL=debug"} }
	var errb bytes.Buffer
	if code := run([]string{"--compile-cache", "off", filepath.Join(t.TempDir(), "missing.wasm")}, env(vars), io.Discard, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || strings.Contains(l, "names no setting") {
			t.Errorf("log line %q: %v; want JSON, no warning of the variables", l, err)
		}
	}
}
