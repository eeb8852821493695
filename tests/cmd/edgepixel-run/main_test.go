package main

import (
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// A second checkout's make run with only the aggregator and POP moved
// used to start Redis and ClickHouse and then fail in the aggregator on
// the dashboard's port, naming the aggregator's flag; it must be refused
// first, naming the launcher's variable.
func TestCheckFree(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free := "127.0.0.1:0"
	err = checkFree([]listenAddr{{"aggregator-addr", free, "EDGEPIXEL_RUN_AGGREGATOR_ADDR"}, {"dashboard-addr", held.Addr().String(), "EDGEPIXEL_RUN_DASHBOARD_ADDR"}, {"pop-addr", free, "EDGEPIXEL_RUN_POP_ADDR"}})
	if err == nil || !strings.Contains(err.Error(), held.Addr().String()) || !strings.Contains(err.Error(), "EDGEPIXEL_RUN_DASHBOARD_ADDR=127.0.0.1:0") {
		t.Errorf("a held dashboard address: %v", err)
	}
	if err := checkFree([]listenAddr{{"a", free, "A"}, {"b", free, "B"}}); err != nil {
		t.Errorf("free addresses: %v", err)
	}
	// An address not of this machine is not "in use": nothing there to
	// stop (a tester was told to stop what listens on it).
	if err := checkFree([]listenAddr{{"pop-addr", "192.0.2.1:7676", "EDGEPIXEL_RUN_POP_ADDR"}}); err == nil || strings.Contains(err.Error(), "in use") {
		t.Errorf("an address not of this machine: %v", err)
	}
}

// A malformed or empty address, or one without a port, is a usage error
// naming the variable that gave it, before anything is checked or
// started: "bogus" was reported as in use, and "127.0.0.1:" (a port
// variable left unset) listens on a random port.
func TestCheckUsageAddrs(t *testing.T) {
	for _, addr := range []string{"bogus", "127.0.0.1:", ":", "127.0.0.1:http-nonsense"} {
		t.Setenv("EDGEPIXEL_RUN_POP_ADDR", addr)
		fs := flag.NewFlagSet("edgepixel-run", flag.ContinueOnError)
		fs.String("pop-addr", addr, "")
		err := checkUsage(fs, "write", []listenAddr{{"pop-addr", addr, "EDGEPIXEL_RUN_POP_ADDR"}})
		if flaghint.ExitCode(err) != 2 || !strings.Contains(err.Error(), "EDGEPIXEL_RUN_POP_ADDR") || !strings.Contains(err.Error(), "HOST:PORT") {
			t.Errorf("EDGEPIXEL_RUN_POP_ADDR=%q: %v (exit %d)", addr, err, flaghint.ExitCode(err))
		}
		if err := fs.Parse([]string{"--pop-addr", addr}); err != nil {
			t.Fatal(err)
		}
		if err := checkUsage(fs, "write", []listenAddr{{"pop-addr", addr, "EDGEPIXEL_RUN_POP_ADDR"}}); err == nil || !strings.Contains(err.Error(), "--pop-addr") {
			t.Errorf("--pop-addr %q: %v", addr, err)
		}
	}
	fs := flag.NewFlagSet("edgepixel-run", flag.ContinueOnError)
	if err := checkUsage(fs, "write", []listenAddr{{"pop-addr", "127.0.0.1:0", "EDGEPIXEL_RUN_POP_ADDR"}}); err != nil {
		t.Errorf("127.0.0.1:0: %v", err)
	}
}

// The banner's commands are pasted into a shell: with the stack in a
// directory other than the default (EDGEPIXEL_RUN_DIR), and with a space
// and a quote in its path, `make sql` must still reach this stack and
// $(cat TOKEN) must still read the token. The lines are run by sh with
// make replaced by a command that shows what make would get.
func TestBannerCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "it's my data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dashboard-token"), []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "my bin")
	st := state{Dir: dir, Bin: bin, AggregatorURL: "http://127.0.0.1:41001", DashboardURL: "http://127.0.0.1:41002", PopURL: "http://127.0.0.1:41003",
		ClickHouseTCP: "127.0.0.1:41004", ClickHouseDB: "edgepixel", Logs: filepath.Join(dir, "logs")}
	b := banner(st, time.Second, "")
	if !strings.Contains(b, st.AggregatorURL) {
		t.Errorf("the banner does not give the aggregator's ingest address %s:\n%s", st.AggregatorURL, b)
	}
	var sqlLines, curlLines int
	for _, line := range strings.Split(b, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "make sql ") && strings.Contains(line, " Q="):
			sqlLines++
			// Its edgepixel-run is BIN's, not the checkout's.
			if !strings.Contains(line, " make sql BIN="+flaghint.ShellQuote(bin)+" Q=") {
				t.Errorf("%s\ndoes not give make sql BIN=%s", line, bin)
			}
			// make sql is a make target: what matters is the variable it sees.
			cmd := strings.Replace(line, "make sql", `sh -c 'printf %s "$EDGEPIXEL_RUN_DIR"' sh`, 1)
			out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
			if err != nil || string(out) != dir {
				t.Errorf("%s\nmake sql gets EDGEPIXEL_RUN_DIR=%q (%v), want %q", line, out, err, dir)
			}
		case strings.HasPrefix(line, "loss"):
			curlLines++
			// The header is the word between "curl -H " and the URL.
			_, hdr, ok := strings.Cut(line, "curl -H ")
			hdr, _, ok2 := strings.Cut(hdr, " '"+st.DashboardURL)
			if !ok || !ok2 {
				t.Fatalf("unexpected loss line %q", line)
			}
			out, err := exec.Command("sh", "-c", "printf %s "+hdr).CombinedOutput()
			if err != nil || string(out) != "Authorization: Bearer tok-123" {
				t.Errorf("%s\nsends %q (%v), want the token", line, out, err)
			}
		}
	}
	if sqlLines != 2 || curlLines != 1 {
		t.Fatalf("%d make sql and %d loss lines in:\n%s", sqlLines, curlLines, b)
	}
	// In the default directory make sql needs nothing more.
	def, err := filepath.Abs(defaultDir)
	if err != nil {
		t.Fatal(err)
	}
	st.Dir = def
	if st.Bin, err = filepath.Abs(defaultBin); err != nil {
		t.Fatal(err)
	}
	if b := banner(st, time.Second, ""); strings.Contains(b, "EDGEPIXEL_RUN_DIR") || strings.Contains(b, "BIN=") || !strings.Contains(b, "\n  make sql Q=") || strings.Contains(b, "pop admin") {
		t.Errorf("banner for the default directory:\n%s", b)
	}
	st.PopAdminURL = "http://127.0.0.1:41005"
	if b := banner(st, time.Second, ""); !strings.Contains(b, "\n  pop admin   http://127.0.0.1:41005/healthz  http://127.0.0.1:41005/metrics\n") {
		t.Errorf("banner with the POP's admin address:\n%s", b)
	}
}

// An EDGEPIXEL_POP_ADMIN_ADDR of port 0, or none, is given a free port,
// which the POP inherits and the banner names; another is left as it
// is, and an empty one opens none.
func TestPopAdminAddr(t *testing.T) {
	t.Setenv("EDGEPIXEL_POP_ADMIN_ADDR", "127.0.0.1:0")
	addr, err := popAdminAddr()
	if err != nil || addr == "127.0.0.1:0" || !strings.HasPrefix(addr, "127.0.0.1:") || os.Getenv("EDGEPIXEL_POP_ADMIN_ADDR") != addr {
		t.Errorf("port 0: %q %v, env %q", addr, err, os.Getenv("EDGEPIXEL_POP_ADMIN_ADDR"))
	}
	t.Setenv("EDGEPIXEL_POP_ADMIN_ADDR", "0.0.0.0:0")
	if addr, err := popAdminAddr(); err != nil || !strings.HasPrefix(addr, "0.0.0.0:") || addr == "0.0.0.0:0" {
		t.Errorf("0.0.0.0:0: %q %v", addr, err)
	}
	t.Setenv("EDGEPIXEL_POP_ADMIN_ADDR", "127.0.0.1:7680")
	if addr, err := popAdminAddr(); addr != "127.0.0.1:7680" || err != nil {
		t.Errorf("a port: %q %v", addr, err)
	}
	t.Setenv("EDGEPIXEL_POP_ADMIN_ADDR", "")
	if addr, err := popAdminAddr(); addr != "" || err != nil {
		t.Errorf("empty: %q %v", addr, err)
	}
	os.Unsetenv("EDGEPIXEL_POP_ADMIN_ADDR")
	if addr, err := popAdminAddr(); err != nil || !strings.HasPrefix(addr, "127.0.0.1:") || addr == "127.0.0.1:0" {
		t.Errorf("unset: %q %v", addr, err)
	}
}

// A usage error (a stray argument, a --durability other than write or
// fsync, from the flag or its variable) ends the launcher with status 2,
// naming what is wrong, before anything is written under -dir: the salt
// rotation used to write DIR/secrets first and then fail with status 1.
// main runs in a child process, with an edgepixel-salt that would write a
// salt file and binaries that are there but never run.
func TestUsageErrorWritesNothing(t *testing.T) {
	if os.Getenv("EDGEPIXEL_RUN_TEST_MAIN") != "" {
		os.Args = append([]string{"edgepixel-run"}, strings.Fields(os.Getenv("EDGEPIXEL_RUN_TEST_MAIN"))...)
		main()
		return
	}
	bin := t.TempDir()
	for _, f := range []string{"edgepixel-pop", "edgepixel-aggregator", "edgepixel.wasm"} {
		if err := os.WriteFile(filepath.Join(bin, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	salt := "#!/bin/sh\nmkdir -p \"$2\" && echo 1:00 > \"$2/visitor_salt_0\" && echo wrote\n"
	if err := os.WriteFile(filepath.Join(bin, "edgepixel-salt"), []byte(salt), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args, env, want string
	}{
		{"--durability x", "", `--durability "x": want write or fsync`},
		{"", "x", "(--durability is EDGEPIXEL_RUN_DURABILITY's value)"},
		{"extra", "", `unexpected argument "extra"`},
		{"sql", "", `unexpected argument "sql"`}, // a subcommand after a flag
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := "--dir " + dir + " --bin " + bin + " --aggregator-addr 127.0.0.1:0 --dashboard-addr 127.0.0.1:0 --pop-addr 127.0.0.1:0 " + c.args
		cmd := exec.Command(os.Args[0], "-test.run=^TestUsageErrorWritesNothing$")
		cmd.Env = append(os.Environ(), "EDGEPIXEL_RUN_TEST_MAIN="+args, "EDGEPIXEL_RUN_DURABILITY="+c.env)
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s (EDGEPIXEL_RUN_DURABILITY=%s): exit %d (%v), want 2 and %q in:\n%s", c.args, c.env, code, err, c.want, out)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s was created (%v)", c.args, dir, err)
		}
	}
}

// --version prints the command and its commit, starts nothing and
// writes nothing, as the other commands' do.
func TestVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^TestUsageErrorWritesNothing$")
	cmd.Env = append(os.Environ(), "EDGEPIXEL_RUN_TEST_MAIN=--version --dir "+dir)
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "edgepixel-run ") {
		t.Errorf("--version: %v, %q", err, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--version created %s (%v)", dir, err)
	}
}

// The subcommands refuse stray arguments too: sql runs one QUERY, so an
// unquoted query's later words would be dropped.
func TestSubcommandStrayArguments(t *testing.T) {
	if code := idle([]string{"--dir", t.TempDir(), "extra"}); code != 2 {
		t.Errorf("idle with a stray argument: exit %d, want 2", code)
	}
	if code := sql([]string{"--dir", t.TempDir(), "SELECT", "1"}); code != 2 {
		t.Errorf("sql with an unquoted query: exit %d, want 2", code)
	}
}
