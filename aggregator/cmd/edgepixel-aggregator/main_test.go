package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// A rollback: this aggregator on a database that a newer one migrated
// refuses to start, before it opens the spool or listens, saying which
// versions disagree and what to do.
func TestRefusesNewerSchema(t *testing.T) {
	if _, ok := localsrv.ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	if testing.Short() {
		t.Skip("-short: starts clickhouse-server")
	}
	ch, err := localsrv.StartClickHouse(context.Background(), t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	c, err := clickhouse.New(ch.HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	newer := len(clickhouse.Migrations) + 1
	if err := c.Exec(context.Background(), fmt.Sprintf(
		"INSERT INTO edgepixel.schema_migrations (version, name, applied_at, by) VALUES (%d, 'events.from_the_future', now(), 'test')", newer)); err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	err = run([]string{"--clickhouse", ch.HTTPURL, "--secret", "0123456789abcdef0123", "--data-dir", data, "--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0", "--log-level", "error"})
	if err == nil {
		t.Fatal("started on a newer schema")
	}
	for _, want := range []string{fmt.Sprintf("schema version %d", newer), fmt.Sprintf("versions up to %d", len(clickhouse.Migrations)),
		"events.from_the_future", "Run that newer edgepixel-aggregator"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	if _, serr := os.Stat(filepath.Join(data, "spool")); !os.IsNotExist(serr) {
		t.Errorf("the spool was opened before the refusal: %v", serr)
	}
	t.Logf("refused: %v", err)
}

// A mistyped setting stops the aggregator with an error that names the
// flag (or the form it wants), not just the system call that failed.
func TestStartErrorsNameTheSetting(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := []string{"--data-dir", t.TempDir(), "--dashboard-addr", "127.0.0.1:0", "--log-level", "error"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--secret-file", filepath.Join(t.TempDir(), "missing"), "--addr", "127.0.0.1:0"}, "--secret-file"},
		{[]string{"--secret", "0123456789abcdef0123", "--addr", busy.Addr().String()}, "--addr"},
		{[]string{"--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:99999"}, "--addr"},
		{[]string{"--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:0", "--redis", "127.0.0.1:6379"}, "redis://HOST:PORT/DB"},
		// A refused URL is named without its password (a tester's
		// was printed whole, to the terminal and the journal).
		{[]string{"--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:0", "--redis", "redis://:s3cretPW@127.0.0.1:1/0x"}, "redis://:xxxxx@127.0.0.1:1/0x"},
		{[]string{"--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:0", "--redis", "redis://:s3cretPW@127.0.0.1:port/0"}, "invalid port"},
		{[]string{"--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:0", "--clickhouse", "ftp://default:s3cretPW@127.0.0.1:1"}, "ftp://default:xxxxx@127.0.0.1:1"},
		{[]string{"--replay-window", "5"}, "a duration such as"},
		{[]string{"--max-body", "4MiB"}, "whole number of bytes"},
		{[]string{"--max-conns", "many"}, "whole number"},
		{[]string{"--secure-cookies=yes"}, "want true or false"},
		{[]string{"--trusted-proxies", "10.0.0.0/8,proxy"}, `"proxy" is not an address or CIDR prefix`},
		{[]string{"--secret", "0123456789abcdef0123", "--trusted-proxies", "10.0.0.1", "--forwarded-header", "X-Real-IP"}, "--forwarded-header"},
		{[]string{"--secret", "0123456789abcdef0123", "--trusted-proxies", "10.0.0.1", "--forwarded-header", "none"}, `--forwarded-header: "none": want X-Forwarded-For or Forwarded`},
		// Values that parse but are out of the flag's domain (a new
		// user's test: each was taken as if it were the default).
		{[]string{"--replay-window", "-5m"}, "--replay-window must be a positive duration"},
		{[]string{"--dedupe-window", "-1h"}, "--dedupe-window must be a positive duration"},
		{[]string{"--write-timeout", "0"}, "--write-timeout must be a positive duration"},
		{[]string{"--max-body", "-1"}, "--max-body must be at least 1"},
		{[]string{"--max-body", "9437184", "--max-body-memory-per-client", "18874368"}, "--max-body-memory-per-client 18874368 cannot hold one batch of --max-body 9437184 (25165824 bytes for its buffer while it is read"},
		{[]string{"--max-body", "9437184", "--max-body-memory", "25165824"}, "--max-body-memory 25165824 cannot hold one batch of --max-body 9437184 (52494336 bytes for its buffers and decoding"},
		{[]string{"--max-body-memory", "4194304"}, "--max-body-memory 4194304 cannot hold one batch of --max-body 4194304"},
		{[]string{"--max-body", "4611686018427387904"}, "--max-body 4611686018427387904 is beyond any memory"},
		{[]string{"--max-body", "9223372036854775807"}, "--max-body 9223372036854775807 is beyond any memory"},
		{[]string{"--spool-max-bytes", "0"}, "--spool-max-bytes must be at least 1"},
		{[]string{"--loader-max-rows", "0"}, "--loader-max-rows must be at least 1"},
		{[]string{"--live-interval", "0"}, "--live-interval must be a positive duration"},
		{[]string{"--auth-rate", "-1"}, "--auth-rate must be positive"},
		{[]string{"--max-sites", "-5"}, "--max-sites must be at least 1"},
		{[]string{"--sites", ", "}, `--sites ", " names no site`},
		{[]string{"--exit-delay", "-1s"}, "--exit-delay must be a positive duration"},
		{[]string{"--clickhouse-insert-quorum", "-2"}, "--clickhouse-insert-quorum must be at least 0"},
		{[]string{"--gc-percent", "-5"}, "--gc-percent must be at least 0 (or -1: none)"},
		{[]string{"--memory-limit", "-1"}, "--memory-limit must be at least 0"},
		{[]string{"--retention-days", "36501"}, "--retention-days must be from 0"},
		{[]string{"--write-timeout", "5s", "--body-timeout", "30s"}, "--body-timeout (30s) must be below --write-timeout (5s)"},
		{[]string{"--query-timeout", "2m"}, "--query-timeout (2m0s) must be below --write-timeout (1m0s)"},
		{[]string{"--forwarded-header", "X-Real-IP"}, "give --trusted-proxies too"},
		// Below it net/http keeps a limit other than the one given.
		{[]string{"--max-header-bytes", "100"}, "--max-header-bytes must be at least 4097, not 100"},
		{[]string{"--max-header-bytes", "4096"}, "--max-header-bytes must be at least 4097"},
	} {
		err := run(append(append([]string{}, base...), c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cretPW") {
			t.Errorf("%q: %v; want an error naming %q", c.args, err, c.want)
		}
	}
	// Files named by a relative path are named absolute, with how to
	// make them (a tester under systemd, whose working directory is /,
	// got "open dash-token: no such file or directory").
	wd := t.TempDir()
	t.Chdir(wd)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--secret-file", "secret"}, filepath.Join(wd, "secret") + ": no such file or directory: it holds the secret"},
		{[]string{"--secret", "0123456789abcdef0123", "--dashboard-token-file", "dash-token"}, filepath.Join(wd, "dash-token") + ": no such file or directory: write the token there"},
	} {
		err := run(append(append([]string{}, base...), append([]string{"--addr", "127.0.0.1:0"}, c.args...)...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error saying %q", c.args, err, c.want)
		}
	}
	// From the environment, the variable that gave the relative path is
	// named too.
	t.Setenv("EDGEPIXEL_AGG_DASHBOARD_TOKEN_FILE", "dash-token")
	if err := run(append(append([]string{}, base...), "--addr", "127.0.0.1:0", "--secret", "0123456789abcdef0123")); err == nil ||
		!strings.Contains(err.Error(), "EDGEPIXEL_AGG_DASHBOARD_TOKEN_FILE's value") || !strings.Contains(err.Error(), filepath.Join(wd, "dash-token")) {
		t.Errorf("a relative token file from the environment: %v", err)
	}
	os.Unsetenv("EDGEPIXEL_AGG_DASHBOARD_TOKEN_FILE")
	// Usage errors (exit status 2, the help line), as every other
	// flag's value out of its domain.
	for args, want := range map[[2]string]string{
		{"--log-level", "verbose"}: `--log-level "verbose": want debug, info, warn or error`,
		{"--log-format", "xml"}:    `--log-format "xml": want text or json`,
	} {
		err := run([]string{"--data-dir", t.TempDir(), args[0], args[1]})
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want a usage error saying %q", args, err, want)
		}
	}
	// An empty address, or one without a port, listened on every
	// interface at a random port (a tester's empty variable put the
	// dashboard on the network); an empty data directory failed late,
	// naming no flag. Usage errors, naming the variable that gave them.
	for args, want := range map[[2]string]string{
		{"--dashboard-addr", ""}:           "--dashboard-addr is empty: want HOST:PORT",
		{"--addr", "127.0.0.1:"}:           `--addr "127.0.0.1:": want HOST:PORT`,
		{"--addr", "bogus"}:                `--addr "bogus": want HOST:PORT`,
		{"--dashboard-addr", "127.0.0.1:"}: `--dashboard-addr "127.0.0.1:": want HOST:PORT`,
		{"--pprof-addr", ":"}:              `--pprof-addr ":": want HOST:PORT`,
	} {
		err := run([]string{"--data-dir", t.TempDir(), args[0], args[1]})
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want a usage error saying %q", args, err, want)
		}
	}
	t.Setenv("EDGEPIXEL_AGG_DASHBOARD_ADDR", "")
	if err := run([]string{"--data-dir", t.TempDir()}); !strings.Contains(err.Error(), "--dashboard-addr is empty") || !strings.Contains(err.Error(), "EDGEPIXEL_AGG_DASHBOARD_ADDR") {
		t.Errorf("EDGEPIXEL_AGG_DASHBOARD_ADDR empty: %v; want a usage error naming the variable", err)
	}
	t.Setenv("EDGEPIXEL_AGG_DASHBOARD_ADDR", "127.0.0.1:0")
	t.Setenv("EDGEPIXEL_AGG_DATA_DIR", " ")
	if err := run(nil); !strings.Contains(err.Error(), "--data-dir is empty") || !strings.Contains(err.Error(), "EDGEPIXEL_AGG_DATA_DIR") {
		t.Errorf("EDGEPIXEL_AGG_DATA_DIR blank: %v; want a usage error naming the variable", err)
	}
	// The same for the URLs, the secret and contradicting store flags
	// (a new user's test: each exited 1 naming no flag, and a URL's
	// error was found only when its client was made).
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--secret", "0123456789abcdef0123", "--redis", "notaurl"}, `--redis "notaurl": redis: invalid URL scheme`},
		{[]string{"--secret", "0123456789abcdef0123", "--clickhouse", "ftp://x"}, `--clickhouse "ftp://x": want http://HOST:8123 (or https://) or native://HOST:9000`},
		{[]string{"--secret", "0123456789abcdef0123", "--clickhouse", "http://"}, `--clickhouse "http://": want`},
		{[]string{"--secret", "0123456789abcdef0123", "--clickhouse-cluster", "c"}, "--clickhouse-cluster needs --clickhouse"},
		{[]string{"--secret", "0123456789abcdef0123", "--clickhouse", "http://127.0.0.1:1", "--clickhouse-db", "my-db"}, `--clickhouse-db "my-db": letters, digits and _ only`},
		{[]string{"--secret", "0123456789abcdef0123", "--clickhouse", "http://127.0.0.1:1", "--clickhouse-cluster", "c-1"}, `--clickhouse-cluster "c-1": letters, digits and _ only`},
		{[]string{"--secret", "0123456789abcdef0123", "--redis", "redis://127.0.0.1:1/0", "--redis-cluster", "127.0.0.1:2"}, "--redis and --redis-cluster: give either, not both"},
		{nil, "no shared secret: pass --secret-file FILE"},
		{[]string{"--secret", "0123456789abcdef0123", "--secret-file", "/dev/null"}, "--secret and --secret-file are both given"},
	} {
		err := run(append([]string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0", "--log-level", "error"}, c.args...))
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want a usage error saying %q", c.args, err, c.want)
		}
	}
	t.Setenv("EDGEPIXEL_AGG_REDIS", "notaurl")
	if err := run(append(append([]string{}, base...), "--secret", "0123456789abcdef0123")); !errors.As(err, new(flaghint.UsageError)) ||
		!strings.Contains(err.Error(), "--redis is EDGEPIXEL_AGG_REDIS's value") {
		t.Errorf("a bad Redis URL in the environment: %v; want a usage error naming the variable", err)
	}
	os.Unsetenv("EDGEPIXEL_AGG_REDIS")
	t.Setenv("EDGEPIXEL_AGG_SECURE_COOKIES", "yes")
	if err := run(base); err == nil || !strings.Contains(err.Error(), "EDGEPIXEL_AGG_SECURE_COOKIES") || !strings.Contains(err.Error(), "want true or false") {
		t.Errorf("a boolean in words in the environment: %v", err)
	}
	os.Unsetenv("EDGEPIXEL_AGG_SECURE_COOKIES")
	// A value out of its domain from the environment: the error says
	// which variable gave it (a new user's test looked for a flag it
	// had not given).
	t.Setenv("EDGEPIXEL_AGG_REPLAY_WINDOW", "-5m")
	if err := run(base); err == nil || !strings.Contains(err.Error(), "--replay-window is EDGEPIXEL_AGG_REPLAY_WINDOW's value") {
		t.Errorf("a negative duration in the environment: %v", err)
	}
	if err := run(append(append([]string{}, base...), "--replay-window", "-6m")); err == nil || strings.Contains(err.Error(), "EDGEPIXEL_AGG_REPLAY_WINDOW") {
		t.Errorf("the command line's value, over the environment's: %v", err)
	}
	os.Unsetenv("EDGEPIXEL_AGG_REPLAY_WINDOW")
	t.Setenv("EDGEPIXEL_AGG_SPOOL_MAX_BYTES", "1GiB")
	if err := run(base); err == nil || !strings.Contains(err.Error(), "EDGEPIXEL_AGG_SPOOL_MAX_BYTES") || !strings.Contains(err.Error(), "whole number of bytes") {
		t.Errorf("a size with a unit in the environment: %v", err)
	}
}

// A log level or format, or a forwarded header, from the environment:
// the error names the variable, as for the other flags' values (a
// tester's EDGEPIXEL_AGG_LOG_LEVEL=warning named only --log-level), and
// a near miss its level. From the command line, no variable is named.
func TestLogSettingsNameTheVariable(t *testing.T) {
	base := []string{"--data-dir", t.TempDir(), "--secret", "0123456789abcdef0123", "--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0"}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"EDGEPIXEL_AGG_LOG_LEVEL": "warning"}, "--log-level \"warning\": want debug, info, warn or error; did you mean warn?\n(--log-level is EDGEPIXEL_AGG_LOG_LEVEL's value)"},
		{map[string]string{"EDGEPIXEL_AGG_LOG_FORMAT": "logfmt"}, "--log-format \"logfmt\": want text or json\n(--log-format is EDGEPIXEL_AGG_LOG_FORMAT's value)"},
		{map[string]string{"EDGEPIXEL_AGG_TRUSTED_PROXIES": "10.0.0.0/8", "EDGEPIXEL_AGG_FORWARDED_HEADER": "X-Real-IP"}, "(--forwarded-header is EDGEPIXEL_AGG_FORWARDED_HEADER's value)"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		err := run(base)
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want a usage error saying %q", c.env, err, c.want)
		}
		for k := range c.env {
			os.Unsetenv(k)
		}
	}
	if err := run(append(append([]string{}, base...), "--log-level", "warning")); err == nil || strings.Contains(err.Error(), "EDGEPIXEL_AGG") {
		t.Errorf("--log-level warning: %v; want no variable named", err)
	}
}

// An address in use that the environment gave: the error names the
// variable, as a malformed one's does.
func TestBusyAddrNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := []string{"--data-dir", t.TempDir(), "--secret", "0123456789abcdef0123", "--log-level", "error"}
	t.Setenv("EDGEPIXEL_AGG_DASHBOARD_ADDR", busy.Addr().String())
	err = run(append(append([]string{}, base...), "--addr", "127.0.0.1:0"))
	if err == nil || !strings.Contains(err.Error(), "stop what listens there") || !strings.Contains(err.Error(), "(--dashboard-addr is EDGEPIXEL_AGG_DASHBOARD_ADDR's value)") {
		t.Errorf("a busy EDGEPIXEL_AGG_DASHBOARD_ADDR: %v; want the variable named", err)
	}
}

// A listen address's error gives the aggregator's own port as the form
// to follow, not the POP's 7676.
func TestAddrHintIsOwnPort(t *testing.T) {
	for args, want := range map[[2]string]string{
		{"--addr", "bogus"}:           "e.g. 127.0.0.1:8080 (",
		{"--dashboard-addr", "bogus"}: "e.g. 127.0.0.1:8081 (",
		{"--pprof-addr", "bogus"}:     "e.g. 127.0.0.1:6060 (",
	} {
		err := run([]string{"--data-dir", t.TempDir(), args[0], args[1]})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "7676") {
			t.Errorf("%q: %v; want %q", args, err, want)
		}
	}
}

// TestVersion: --version answers and exits before the configuration is
// checked (no secret given here, which a start refuses).
func TestVersion(t *testing.T) {
	t.Setenv("EDGEPIXEL_AGG_VERSION", "false") // not a setting: ignored
	if err := run([]string{"--version"}); err != nil {
		t.Fatalf("--version: %v", err)
	}
	if err := run(nil); err == nil || !strings.Contains(err.Error(), "no shared secret") {
		t.Fatalf("a start without a secret: %v, want the no-secret error", err)
	}
}

// A flag that does not parse costs two lines, the error with the form
// the flag wants and the pointer to --help, not the whole usage after it
// (which scrolled the error off the screen); the exit status is 2, a
// usage error's.
func TestFlagErrorIsShort(t *testing.T) {
	for _, args := range [][]string{{"--max-body", "8MiB"}, {"--replay-window", "5"}, {"--no-such-flag"},
		{"--redis", "notaurl"}, {"--clickhouse", "ftp://x"}, {"--max-header-bytes", "100"}} {
		cmd := exec.Command(aggBinary(t), args...)
		cmd.Env = append(os.Environ(), "EDGEPIXEL_AGG_SECRET=0123456789abcdef0123")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit status 2\n%s", args, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], strings.TrimPrefix(args[0], "-")) || !strings.Contains(lines[1], "--help") {
			t.Errorf("%q printed:\n%s\nwant the error naming the flag, then a line pointing to --help", args, out)
		}
	}
	out, err := exec.Command(aggBinary(t), "--help").Output()
	if err != nil || !strings.Contains(string(out), "-max-body") {
		t.Errorf("--help: %v; stdout lacks the flags:\n%s", err, out)
	}
}

// Every flag but --version has its variable, and only those are known: a
// misspelt one is warned about at the start (flaghint.UnknownEnv).
func TestEnvKnown(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("retention-days", 0, "")
	fs.Bool("version", false, "")
	known, _, err := envDefaults(fs)
	if err != nil {
		t.Fatal(err)
	}
	if len(known) != 1 || !known["EDGEPIXEL_AGG_RETENTION_DAYS"] {
		t.Errorf("known = %v, want EDGEPIXEL_AGG_RETENTION_DAYS alone", known)
	}
	w := flaghint.UnknownEnv([]string{"EDGEPIXEL_AGG_RETENTON_DAYS=3"}, envPrefix, known)
	if len(w) != 1 || !strings.Contains(w[0], "did you mean EDGEPIXEL_AGG_RETENTION_DAYS?") {
		t.Errorf("warnings %q", w)
	}
}

// A stray argument is a usage error (exit status 2, the help line), as
// on the other commands, not ignored; one placed first (which stops the
// flag package) is what the error names, not the flags left unparsed.
func TestStrayArgumentRefused(t *testing.T) {
	const want = `unexpected argument "stray": edgepixel-aggregator takes flags only`
	// Without a secret, so that none of these can start.
	for _, args := range [][]string{
		{"stray"},
		{"stray", "--secret", "0123456789abcdef0123"},
		{"--data-dir", t.TempDir(), "stray"},
		{"--log-level", "error", "stray", "--addr", "127.0.0.1:0"},
	} {
		err := run(args)
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "no shared secret") {
			t.Errorf("%q: %v; want a usage error saying %q alone", args, err, want)
		}
	}
	// Everything a start needs, then a stray argument: the process exits
	// 2 at once with the error and the pointer to --help (it used to
	// start).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, aggBinary(t), "--secret", "0123456789abcdef0123", "--data-dir", t.TempDir(),
		"--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0", "stray")
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("%v, want exit status 2\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "edgepixel-aggregator: "+want || !strings.Contains(lines[1], "--help") {
		t.Errorf("printed:\n%s\nwant the error, then a line pointing to --help", out)
	}
}

// The shared secret is trimmed wherever it comes from (--secret, its
// variable, --secret-file), and a --secret of whitespace alone is no
// secret: a usage error, where it was taken as the HMAC key.
func TestSecretTrimmed(t *testing.T) {
	const secret = "0123456789abcdef0123"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("  "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ flag, file string }{{" " + secret + "\t\n", ""}, {"", file}} {
		if got, err := loadSecret(c.flag, c.file); err != nil || string(got) != secret {
			t.Errorf("loadSecret(%q, %q) = %q, %v; want %q", c.flag, c.file, got, err, secret)
		}
	}
	for _, blank := range []string{"   ", "\t\n", " \r\n "} {
		got, err := loadSecret(blank, "")
		if ue := (flaghint.UsageError{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "no shared secret") {
			t.Errorf("loadSecret(%q) = %q, %v; want a usage error saying no shared secret", blank, got, err)
		}
	}
	// An empty or blank file is no shared secret either: a usage error
	// too (it exited 1 while a missing secret exited 2, found by a
	// new-user tester), with the same help to write one.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	blankFile := filepath.Join(t.TempDir(), "blank")
	if err := os.WriteFile(blankFile, []byte(" \n\t"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{empty, blankFile} {
		if _, err := loadSecret("", f); !errors.As(err, new(flaghint.UsageError)) || !strings.Contains(err.Error(), "--secret-file "+f+" is empty") || !strings.Contains(err.Error(), "head -c 32") {
			t.Errorf("a blank --secret-file: %v; want a usage error saying how to write one", err)
		}
	}
	// A file that cannot be read stays a failure at run time (exit
	// status 1): the path may be right and the file not there yet.
	if _, err := loadSecret("", file+".missing"); err == nil || errors.As(err, new(flaghint.UsageError)) {
		t.Errorf("a missing --secret-file: %v; want an error that is not a usage error", err)
	}
	// Through the command: exit status 2, naming the variable when the
	// environment gave the blank secret or the blank file.
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--secret", "   "}, "", "no shared secret"},
		{nil, "EDGEPIXEL_AGG_SECRET=   ", "--secret is EDGEPIXEL_AGG_SECRET's value"},
		{[]string{"--secret-file", empty}, "", "--secret-file " + empty + " is empty"},
		{[]string{"--secret-file", blankFile}, "", "head -c 32 /dev/urandom"},
		{nil, "EDGEPIXEL_AGG_SECRET_FILE=" + blankFile, "--secret-file is EDGEPIXEL_AGG_SECRET_FILE's value"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		data := filepath.Join(t.TempDir(), "data")
		cmd := exec.CommandContext(ctx, aggBinary(t), append([]string{"--data-dir", data, "--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0"}, c.args...)...)
		cmd.Env = os.Environ()
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%q (%s): %v\n%s\nwant exit status 2 saying %q", c.args, c.env, err, out, c.want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("%q (%s): the data directory was made before the refusal (%v)", c.args, c.env, err)
		}
	}
}

// TestSplitList: a list flag takes commas, spaces or both, as the edge's
// sites setting takes spaces; "a b" is two sites, not one named "a b".
func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                  nil,
		"mysite news":       {"mysite", "news"},
		"a,b":               {"a", "b"},
		" a , b,,c\td\n":    {"a", "b", "c", "d"},
		"https://x.example": {"https://x.example"},
	} {
		if got := splitList(in); !slices.Equal(got, want) {
			t.Errorf("splitList(%q) = %q, want %q", in, got, want)
		}
	}
}

// The log and admin tokens can come from files, to keep them out of a
// unit's environment (found by a new-user tester running it as an SRE).
func TestTokenFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("tok-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := loadToken("log-token", "", file); err != nil || got != "tok-0123456789abcdef" {
		t.Errorf("from a file: %q, %v", got, err)
	}
	if got, err := loadToken("admin-token", "value", ""); err != nil || got != "value" {
		t.Errorf("as a value: %q, %v", got, err)
	}
	if got, err := loadToken("admin-token", "", ""); err != nil || got != "" {
		t.Errorf("neither: %q, %v", got, err)
	}
	if _, err := loadToken("log-token", "value", file); !errors.As(err, new(flaghint.UsageError)) || !strings.Contains(err.Error(), "--log-token and --log-token-file are both given") {
		t.Errorf("both: %v; want a usage error", err)
	}
	blank := filepath.Join(dir, "blank")
	os.WriteFile(blank, []byte(" \n"), 0o600)
	if _, err := loadToken("admin-token", "", blank); !errors.As(err, new(flaghint.UsageError)) || !strings.Contains(err.Error(), "--admin-token-file "+blank+" is empty") {
		t.Errorf("a blank file: %v; want a usage error", err)
	}
	if _, err := loadToken("admin-token", "", file+".missing"); err == nil || errors.As(err, new(flaghint.UsageError)) {
		t.Errorf("a missing file: %v; want an error that is not a usage error", err)
	}
}

func TestRedisHint(t *testing.T) {
	if h := redisHint(&options{redis: "redis://:pw@10.0.0.5:6380/0"}); !strings.Contains(h, "--redis (EDGEPIXEL_AGG_REDIS)") || !strings.Contains(h, "10.0.0.5:6380") || strings.Contains(h, "pw") {
		t.Errorf("redisHint: %q", h)
	}
	if h := redisHint(&options{redisCluster: "a:7000,b:7001"}); !strings.Contains(h, "--redis-cluster (EDGEPIXEL_AGG_REDIS_CLUSTER) a:7000,b:7001") {
		t.Errorf("redisHint, cluster: %q", h)
	}
}
