package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// runAgg starts an aggregator (fallback stores) and returns it with a
// channel closed when Run returned, and Run's result.
func runAgg(t *testing.T, dir string) (*Server, *httptest.Server, *runResult) {
	t.Helper()
	s, err := Open(Config{DataDir: dir, Secret: secret, LoaderMaxAge: 10 * time.Millisecond, DrainTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := &runResult{done: make(chan struct{})}
	go func() { res.err = s.Run(ctx); close(res.done) }()
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Hub().Close()
		hs.Close()
		cancel()
		<-res.done
		s.Close()
	})
	return s, hs, res
}

type runResult struct {
	done chan struct{}
	err  error
}

func healthz(t *testing.T, base string) (int, string) {
	t.Helper()
	var v map[string]string
	code := getJSON(t, base+"/healthz", &v)
	return code, v["reason"]
}

func wantRunFailure(t *testing.T, res *runResult, want string) {
	t.Helper()
	select {
	case <-res.done:
		if err := res.err; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run returned %v, want a failure mentioning %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run still running; want a failure mentioning %q", want)
	}
}

// A component that panics (or stops on its own) fails the aggregator:
// /healthz answers 503 with the reason, ingest refuses with 503, and Run
// returns the reason.
func TestComponentPanicFails(t *testing.T) {
	s, hs, done := runAgg(t, t.TempDir())
	if code, _ := healthz(t, hs.URL); code != 200 {
		t.Fatalf("healthz %d before the fault", code)
	}
	var wg sync.WaitGroup
	s.component(&wg, context.Background(), "live hub", func(context.Context) { panic("injected") })
	wg.Wait()
	code, reason := healthz(t, hs.URL)
	if code != 503 || reason != "live hub: panic: injected" {
		t.Errorf("healthz %d %q after the panic", code, reason)
	}
	evs := mkEvents(t, "demo", 1)
	a := &agg{t: t, srv: s, http: hs}
	body := wire.Append(nil, evs)
	if code, b := a.post(body, signed(secret, time.Now().Unix(), body)); code != 503 || !strings.Contains(b, "shutting_down") {
		t.Errorf("ingest while failing: %d %s", code, b)
	}
	wantRunFailure(t, done, "live hub: panic: injected")
	if s.Metrics().Failing.Load() != 1 {
		t.Error("failing gauge not set")
	}
}

// The spool's disk going away fails the aggregator (the loader cannot
// read it back), unhealthy before Run returns.
func TestSpoolLossFails(t *testing.T) {
	dir := t.TempDir()
	s, hs, done := runAgg(t, dir)
	a := &agg{t: t, srv: s, http: hs}
	a.send(mkEvents(t, "demo", 5))
	if err := os.RemoveAll(dir + "/spool"); err != nil {
		t.Fatal(err)
	}
	// The open segment file may still take this batch, or the loader's
	// checkpoint may already have found the directory gone and failed the
	// aggregator, which then refuses it: either is right, and both end in
	// the failure below.
	body := wire.Append(nil, mkEvents(t, "demo", 5))
	if code, b := a.post(body, signed(secret, time.Now().Unix(), body)); code != 200 && code != 503 {
		t.Fatalf("ingest after the spool was removed: %d %s", code, b)
	}
	eventually(t, "healthz 503", func() bool { code, _ := healthz(t, hs.URL); return code == 503 })
	_, reason := healthz(t, hs.URL)
	if !strings.Contains(reason, "spool") {
		t.Errorf("healthz reason %q", reason)
	}
	wantRunFailure(t, done, "spool")
}

// A --redis nobody answers on is said at start, not only once a batch
// arrives and the loader retries.
func TestWarnsRedisDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()           // a port nothing listens on
	var logs proc.Buffer // read while the server writes
	s, err := Open(Config{DataDir: t.TempDir(), Secret: secret, RedisURL: "redis://" + closed + "/0", RedisHint: "--redis here", DrainTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { s.Hub().Close(); cancel(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "Redis does not answer"); {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about Redis; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `check="--redis here"`) {
		t.Errorf("the warning does not say where Redis is configured:\n%s", logs.String())
	}
}
