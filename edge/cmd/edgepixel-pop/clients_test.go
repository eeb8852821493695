package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
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
