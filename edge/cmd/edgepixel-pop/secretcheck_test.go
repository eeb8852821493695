package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/ingest"
	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// noSpool is an ingest spool that no request may reach: the check's batch
// holds no event.
type noSpool struct{ t *testing.T }

func (s noSpool) Append(context.Context, []byte) error {
	s.t.Error("the secret check's batch reached the spool")
	return nil
}

// The POP checks at start that the aggregator takes its secret, against
// the aggregator's own ingest handler: a wrong secret is logged as an
// error and listed by /healthz (before, it showed only once the journal
// failed and a batch was signed); the right one leaves /healthz clean.
func TestSecretCheckAtStart(t *testing.T) {
	agg := httptest.NewServer(ingest.New(ingest.Config{Secret: []byte("the aggregator's secret"), Spool: noSpool{t}}))
	defer agg.Close()
	for _, c := range []struct {
		name, secret string
		refused      bool
	}{
		{"wrong", "another secret", true},
		{"right", "the aggregator's secret\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "secret")
			toml := filepath.Join(dir, "fastly.toml")
			os.WriteFile(secret, []byte(c.secret), 0o600)
			os.WriteFile(toml, []byte(fmt.Sprintf(`manifest_version = 3
[local_server.backends.aggregator]
url = %q
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secret", file = %q }]
`, agg.URL, secret)), 0o644)
			p := startPOP(t, "-C", toml, "--admin-addr", "127.0.0.1:0")
			want := "the aggregator takes aggregator_secret"
			if c.refused {
				want = "the aggregator refuses batches signed with aggregator_secret"
			}
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(p.stderr.String(), want) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q in the log", want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if c.refused && !strings.Contains(p.stderr.String(), "backend_url="+agg.URL) {
				t.Errorf("the refusal does not name where it went (backend_url=%s):\n%s", agg.URL, p.stderr.String())
			}
			_, health := get(t, http.DefaultClient, "http://"+p.admin+"/healthz")
			degraded := "degraded: backend aggregator: 1 request failing"
			if got := strings.Contains(health, degraded) && strings.Contains(health, "(last: status 401); check aggregator_secret"); got != c.refused {
				t.Errorf("/healthz:\n%s\nlists the refusal: %v, want %v", health, got, c.refused)
			}
		})
	}
}

// watchSecret checks again when the secret or the store's backend,
// ingest_url or log_endpoint changes, and only then; ends a check under
// way that a change made stale; and signs as the aggregator verifies.
func TestWatchSecretRechecks(t *testing.T) {
	defer func(every, retry, max time.Duration) {
		secretCheckEvery, secretCheckRetry, secretCheckRetryMax = every, retry, max
	}(secretCheckEvery, secretCheckRetry, secretCheckRetryMax)
	secretCheckEvery, secretCheckRetry, secretCheckRetryMax = 10*time.Millisecond, 10*time.Millisecond, 20*time.Millisecond

	var mu sync.Mutex
	config := map[string]string{}
	secrets := map[string][]byte{"aggregator_secret": []byte("one\n")}
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	stores := func(name string) (map[string]string, map[string][]byte) {
		mu.Lock()
		defer mu.Unlock()
		return map[string]string{"backend": config["backend"], "ingest_url": config["ingest_url"], "log_endpoint": config["log_endpoint"]},
			map[string][]byte{"aggregator_secret": secrets["aggregator_secret"]}
	}
	type call struct{ backend, url, verdict string }
	calls := make(chan call, 100)
	down := map[string]bool{"b2": true} // answers 503 until the test ends
	probe := func(ctx context.Context, backend, method, rawURL string, h http.Header, body []byte) (int, []byte, error) {
		mu.Lock()
		secret := strings.TrimSpace(string(secrets["aggregator_secret"]))
		mu.Unlock()
		verdict := "ok"
		if err := wire.Verify([]byte(secret), h.Get(wire.HeaderTimestamp), h.Get(wire.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			verdict = err.Error()
		}
		if n, err := wire.Count(body); n != 0 || err != nil || method != http.MethodPost || h.Get("Content-Type") != wire.ContentType {
			verdict = fmt.Sprintf("%s %s: %d events, %v", method, h.Get("Content-Type"), n, err)
		}
		calls <- call{backend, rawURL, verdict}
		if down[backend] {
			return http.StatusServiceUnavailable, nil, nil
		}
		return http.StatusOK, nil, nil
	}
	backends := map[string]fastlytoml.Backend{"aggregator": {}, "b2": {}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchSecret(ctx, probe, stores, backends, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()

	next := func(what string) call {
		t.Helper()
		select {
		case c := <-calls:
			if c.verdict != "ok" {
				t.Errorf("%s: %+v", what, c)
			}
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no check", what)
		}
		return call{}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case c := <-calls:
			t.Errorf("%s: checked %+v", what, c)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if c := next("at start"); c.backend != "aggregator" || c.url != "http://aggregator/ingest" {
		t.Errorf("at start: %+v, want the module's default backend and ingest_url", c)
	}
	quiet("nothing changed")
	set(func() { secrets["aggregator_secret"] = []byte("two") })
	next("secret rotated")
	quiet("after the rotated secret's check")
	set(func() { config["ingest_url"] = "https://agg.example/in" })
	if c := next("ingest_url changed"); c.url != "https://agg.example/in" {
		t.Errorf("ingest_url changed: %+v", c)
	}
	set(func() { config["backend"] = "b2, nosuch" })
	// b2 answers 503: tried again, until the store changes.
	next("b2")
	next("b2 again")
	set(func() { config["log_endpoint"] = "stdout" })
	time.Sleep(10 * secretCheckEvery) // the change seen, b2's check ended
	for len(calls) > 0 {              // a retry of b2 that raced the change
		<-calls
	}
	quiet("log_endpoint set: no batches to sign")
	set(func() { config["log_endpoint"], config["backend"] = "", "" })
	if c := next("log_endpoint removed"); c.backend != "aggregator" {
		t.Errorf("log_endpoint removed: %+v", c)
	}
}

// A secret the aggregator changes on its side is found without any
// change on the POP's: a backend that took the secret is asked again
// every secretConfirmEvery, and its refusal logged.
func TestWatchSecretConfirms(t *testing.T) {
	defer func(every, confirm time.Duration) {
		secretCheckEvery, secretConfirmEvery = every, confirm
	}(secretCheckEvery, secretConfirmEvery)
	secretCheckEvery, secretConfirmEvery = time.Hour, 20*time.Millisecond
	stores := func(string) (map[string]string, map[string][]byte) {
		return map[string]string{}, map[string][]byte{"aggregator_secret": []byte("one")}
	}
	var asked atomic.Int32
	probe := func(ctx context.Context, backend, method, rawURL string, h http.Header, body []byte) (int, []byte, error) {
		if asked.Add(1) <= 2 {
			return http.StatusOK, nil, nil
		}
		return http.StatusUnauthorized, []byte(`{"reason":"bad_signature"}`), nil // the aggregator restarted with another
	}
	var logs lockedBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchSecret(ctx, probe, stores, map[string]fastlytoml.Backend{"aggregator": {}}, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "compare secret store") {
		if time.Now().After(deadline) {
			t.Fatalf("asked %d times; no refusal logged:\n%s", asked.Load(), logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := asked.Load(); n < 3 {
		t.Errorf("asked %d times", n)
	}
}

// What checkSecret says and does for each answer: a refusal names the
// secrets, or the clocks for a stale batch, and what becomes of the
// events; it is asked again, and a later yes is said at info level; a
// backend that does not answer is warned of once, and asked again.
func TestCheckSecretAnswers(t *testing.T) {
	defer func(retry, max, warn, recheck time.Duration) {
		secretCheckRetry, secretCheckRetryMax, secretWarnAfter, secretRecheck = retry, max, warn, recheck
	}(secretCheckRetry, secretCheckRetryMax, secretWarnAfter, secretRecheck)
	secretCheckRetry, secretCheckRetryMax, secretWarnAfter, secretRecheck = time.Millisecond, 2*time.Millisecond, 20*time.Millisecond, 5*time.Millisecond
	type answer struct {
		code int
		body string
		err  error
	}
	for _, c := range []struct {
		name    string
		answers []answer // the last repeats
		config  map[string]string
		want    []string // in the log, in order
		not     string
	}{
		{"wrong secret, journal", []answer{{401, `{"reason":"bad_signature"}`, nil}, {401, `{"reason":"bad_signature"}`, nil}, {200, "", nil}},
			map[string]string{"journal": "edgepixel_journal"},
			[]string{"level=ERROR", "compare secret store", "through the journal log endpoint edgepixel_journal", "level=INFO", "takes aggregator_secret now"}, "clock"},
		{"wrong secret, no journal", []answer{{401, `{"reason":"bad_signature"}`, nil}, {200, "", nil}},
			map[string]string{},
			[]string{"compare secret store", "go to the fallback log endpoint edgepixel_fallback instead", "takes aggregator_secret now"}, "journal"},
		{"wrong secret, no fallback", []answer{{401, "", nil}, {200, "", nil}},
			map[string]string{"fallback_log_endpoint": "none"},
			[]string{"compare secret store", "its events are lost"}, "journal"},
		{"wrong secret, journal, no fallback", []answer{{401, "", nil}, {200, "", nil}},
			map[string]string{"journal": "edgepixel_journal", "fallback_log_endpoint": "none"},
			[]string{"compare secret store", "through the journal log endpoint edgepixel_journal", "its events are lost"}, "fallback log endpoint"},
		{"clock", []answer{{401, `{"error":"batch timestamp outside the accepted window","reason":"stale"}`, nil}, {200, "", nil}},
			map[string]string{},
			[]string{"clock", "NTP", "takes aggregator_secret now"}, "compare secret store"},
		{"down, then up", []answer{{503, "", nil}, {0, "", errors.New("connection refused")}},
			map[string]string{},
			[]string{"level=WARN", "has not answered", "connection refused", "level=INFO", "takes aggregator_secret now"}, "level=ERROR"},
		{"wrong path", []answer{{404, "", nil}, {404, "", nil}, {200, "", nil}},
			map[string]string{},
			[]string{"level=WARN", "neither yes nor no", "status=404", "level=INFO", "takes aggregator_secret now"}, "level=ERROR"},
		// Said at once, not after secretWarnAfter: a setting to fix.
		{"certificate", []answer{{0, "", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, {200, "", nil}},
			map[string]string{},
			[]string{"level=WARN", "TLS certificate is refused", "level=INFO", "takes aggregator_secret now"}, "level=ERROR"},
		// A refusal an earlier check logged, ended by this one (the
		// secret file rotated on the POP): said at info level too.
		{"open before", []answer{{200, "", nil}},
			map[string]string{"open": "yes"},
			[]string{"level=INFO", "takes aggregator_secret now"}, "level=ERROR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs lockedBuf
			log := slog.New(slog.NewTextHandler(&logs, nil))
			calls := 0
			began := time.Now()
			probe := func(ctx context.Context, backend, method, rawURL string, h http.Header, body []byte) (int, []byte, error) {
				a := c.answers[min(calls, len(c.answers)-1)]
				if c.name == "down, then up" && time.Since(began) > 50*time.Millisecond {
					a = answer{200, "", nil}
				}
				calls++
				return a.code, []byte(a.body), a.err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var noted []bool
			checkSecret(ctx, probe, secretCheck{backend: "aggregator", ingestURL: storekeys.DefaultIngestURL, secret: []byte("s"), fate: secretFate(c.config),
				open: c.config["open"] != "", noted: func(o bool) { noted = append(noted, o) }}, log)
			if len(noted) == 0 || noted[len(noted)-1] {
				t.Errorf("noted %v, want the last false (the check ended well)", noted)
			}
			if ctx.Err() != nil {
				t.Fatalf("still checking after %d asks:\n%s", calls, logs.String())
			}
			got := logs.String()
			rest := got
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("no %q (in order) in the log:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(got, c.not) {
				t.Errorf("the log says %q:\n%s", c.not, got)
			}
			if n := strings.Count(got, "level=ERROR") + strings.Count(got, "level=WARN"); n > 1 {
				t.Errorf("a refusal or warning said %d times, want once:\n%s", n, got)
			}
		})
	}
}
