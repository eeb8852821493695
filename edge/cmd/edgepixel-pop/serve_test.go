package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// These tests run serve in-process with the pop package's logguest
// (edge/pop/testdata/logguest), and TestServeEndToEnd runs the real binary
// with its conformance guest. TestMain builds all of it and compiles both
// guests once per test binary, before any test runs, so no test's deadline
// includes building or compiling.
var (
	testTmp string
	// The in-process tests' guest and compile cache.
	guestWasm, cacheDir string
	// The binary, its guest and its compile cache, which the binary
	// fills itself (see poptest.Precompile for why that matters).
	popBin, binGuestWasm, binCacheDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if testTmp, err = os.MkdirTemp("", "edgepixel-pop-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		err = buildTestArtifacts()
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the tests:", err)
	} else {
		code = m.Run()
	}
	printFigures() // attack_test.go
	os.RemoveAll(testTmp)
	os.Exit(code)
}

func buildTestArtifacts() error {
	began := time.Now()
	if err := poptest.BuildWasm(testTmp, "logguest", "guest"); err != nil {
		return err
	}
	guestWasm = filepath.Join(testTmp, "logguest")
	binGuestWasm = filepath.Join(testTmp, "guest")
	cacheDir = filepath.Join(testTmp, "cache")
	if err := poptest.Precompile(cacheDir, guestWasm); err != nil {
		return err
	}
	popBin = filepath.Join(testTmp, "edgepixel-pop")
	if out, err := exec.Command("go", "build", "-o", popBin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	binCacheDir = filepath.Join(testTmp, "bincache")
	cmd := exec.Command(popBin, "--compile-only", "--compile-cache", binCacheDir, binGuestWasm)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("edgepixel-pop --compile-only: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "built the binary and the guests in %s\n", time.Since(began).Round(time.Millisecond))
	return nil
}

// logGuest is the in-process tests' guest; it skips the test with -short.
func logGuest(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a wasm guest")
	}
	return guestWasm
}

type lockedBuf = proc.Buffer

// popRun is serve running in the background.
type popRun struct {
	addr, admin    string
	stdout, stderr *lockedBuf
	cancel         context.CancelFunc
	done           chan error
	stopped        bool
}

// startPOP runs serve with the logguest, one instance, and extra flags.
// Cancelling its context is what SIGTERM does in run.
func startPOP(t *testing.T, extra ...string) *popRun {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--instances", "1", "--max-instances", "1",
		"--compile-cache", cacheDir, logGuest(t)}, extra...)
	o, err := parseArgs(args, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	o.ready = func(addr, admin string) { ready <- [2]string{addr, admin} }
	p := &popRun{stdout: &lockedBuf{}, stderr: &lockedBuf{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	log := slog.New(slog.NewTextHandler(p.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { p.done <- serve(ctx, o, log, p.stdout, p.stderr) }()
	select {
	case a := <-ready:
		p.addr, p.admin = a[0], a[1]
	case err := <-p.done:
		t.Fatalf("serve ended at start-up: %v\n%s", err, p.stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not start\n%s", p.stderr)
	}
	t.Cleanup(func() {
		if !p.stopped {
			p.stop(t)
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		}
	})
	return p
}

// stop shuts serve down as a signal would and waits for it to return.
func (p *popRun) stop(t *testing.T) {
	t.Helper()
	p.stopped = true
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not return after shutdown began")
	}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// selfSigned writes a certificate for localhost and 127.0.0.1 and returns
// the file paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

type tlsInfo struct {
	Proto, Scheme, Protocol, Cipher, SNI string
}

func TestTLSServesHTTP1AndHTTP2(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	p := startPOP(t, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.Contains(p.stdout.String(), "Listening on https://") {
		t.Errorf("stdout %q", p.stdout)
	}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	for _, tc := range []struct {
		name  string
		h2    bool
		major int
		proto string
	}{{"HTTP/2 by ALPN", true, 2, "HTTP/2.0"}, {"HTTP/1.1", false, 1, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: tlsConf.Clone()}
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetHTTP1(!tc.h2)
			tr.Protocols.SetHTTP2(tc.h2)
			defer tr.CloseIdleConnections()
			resp, body := get(t, &http.Client{Transport: tr}, "https://"+p.addr+"/tls")
			if resp.ProtoMajor != tc.major {
				t.Errorf("client got %s", resp.Proto)
			}
			var ti tlsInfo
			if err := json.Unmarshal([]byte(body), &ti); err != nil {
				t.Fatalf("%d %q: %v", resp.StatusCode, body, err)
			}
			// What the guest saw: version_get (the SDK spells HTTP/2 "HTTP/2.0")
			// and the downstream_tls_* calls.
			if ti.Proto != tc.proto || ti.Scheme != "https" || ti.Protocol != "TLSv1.3" ||
				ti.Cipher == "" || strings.Contains(ti.Cipher, "WITH") || ti.SNI != "localhost" {
				t.Errorf("guest saw %+v", ti)
			}
		})
	}
}

func TestH2C(t *testing.T) {
	p := startPOP(t, "--h2c")
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, as a proxy speaks it
	defer tr.CloseIdleConnections()
	resp, body := get(t, &http.Client{Transport: tr}, "http://"+p.addr+"/tls")
	if resp.ProtoMajor != 2 {
		t.Errorf("client got %s", resp.Proto)
	}
	var ti tlsInfo
	json.Unmarshal([]byte(body), &ti)
	if ti.Proto != "HTTP/2.0" || ti.Scheme != "http" || ti.Protocol != "" {
		t.Errorf("guest saw %+v (%s)", ti, body)
	}
	// HTTP/1.1 clients still work on the same port.
	resp, _ = get(t, http.DefaultClient, "http://"+p.addr+"/tls")
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Errorf("HTTP/1.1 on the h2c port: %s %d", resp.Proto, resp.StatusCode)
	}
}

func TestAccessLogMetricsHealthz(t *testing.T) {
	accessPath := filepath.Join(t.TempDir(), "access.ndjson")
	p := startPOP(t, "--access-log", accessPath, "--admin-addr", "127.0.0.1:0")
	admin := "http://" + p.admin
	if resp, body := get(t, http.DefaultClient, admin+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/sleep?ms=0", "/log?ep=x&msg=hi", "/missing"} {
		get(t, http.DefaultClient, "http://"+p.addr+path)
	}
	_, metrics := get(t, http.DefaultClient, admin+"/metrics")
	for _, want := range []string{
		"# TYPE edgepixel_pop_request_duration_seconds histogram",
		`edgepixel_pop_request_duration_seconds_bucket{le="0.0001"} `,
		`edgepixel_pop_request_duration_seconds_bucket{le="10"} 3`,
		`edgepixel_pop_request_duration_seconds_bucket{le="+Inf"} 3`,
		"edgepixel_pop_request_duration_seconds_count 3",
		`edgepixel_pop_responses_total{code="2xx"} 2`,
		`edgepixel_pop_responses_total{code="4xx"} 1`,
		"edgepixel_pop_instances_live 1",
		"edgepixel_pop_backend_sends_total 0",
		`edgepixel_pop_log_lines_delivered_total{endpoint="*",kind="stdout"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(metrics)
	}
	p.stop(t) // flushes the access log
	data, err := os.ReadFile(accessPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log:\n%s", data)
	}
	for i, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		for _, k := range []string{"time", "remote", "method", "uri", "proto", "status", "bytes", "duration_ms", "instance"} {
			if _, ok := e[k]; !ok {
				t.Errorf("line %d lacks %s: %s", i, k, l)
			}
		}
		if want := []float64{200, 200, 404}[i]; e["status"] != want || e["proto"] != "HTTP/1.1" {
			t.Errorf("line %d: %s", i, l)
		}
	}
}

// TestGracefulShutdown starts a slow request, begins the shutdown while it
// runs, and checks that /healthz turns 503 at once, the request completes,
// and what the guest logs after its serve loop reaches both a file and an
// HTTP collector whose period would not have sent it for an hour.
func TestGracefulShutdown(t *testing.T) {
	batches := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		batches <- string(b)
	}))
	defer collector.Close()
	file := filepath.Join(t.TempDir(), "events.log")
	p := startPOP(t, "--admin-addr", "127.0.0.1:0",
		"--log-endpoint", "shutdown="+collector.URL+"/ingest?period=1h",
		"--log-endpoint", "events=file:"+file)
	get(t, http.DefaultClient, "http://"+p.addr+"/log?ep=events&msg=ev&n=2")

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + p.addr + "/sleep?ms=3000")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(b), err}
	}()
	// The only instance is busy once it is no longer idle.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, m := get(t, http.DefaultClient, "http://"+p.admin+"/metrics")
		if strings.Contains(m, "\nedgepixel_pop_instances_idle 0\n") && strings.Contains(m, "\nedgepixel_pop_requests_total 2\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow request never started:\n%s", m)
		}
		time.Sleep(10 * time.Millisecond)
	}

	p.cancel() // what SIGTERM does
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + p.admin + "/healthz")
		if err != nil {
			t.Fatalf("admin listener gone during the drain: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("healthz still 200 after shutdown began")
		}
	}
	r := <-slow
	if r.err != nil || r.status != 200 || r.body != "slept" {
		t.Errorf("in-flight request: %+v", r)
	}
	p.stop(t)
	select {
	case b := <-batches:
		if b != "{\"event\":\"bye\",\"served\":2}\n" {
			t.Errorf("collector got %q", b)
		}
	default:
		t.Error("the post-loop entry was not delivered before serve returned")
	}
	if data, _ := os.ReadFile(file); string(data) != "ev-0\nev-1\n" {
		t.Errorf("events file %q", data)
	}
}

func TestParseProductionFlags(t *testing.T) {
	e := env(map[string]string{
		"EDGEPIXEL_POP_TLS_CERT":      "c.pem",
		"EDGEPIXEL_POP_TLS_KEY":       "k.pem",
		"EDGEPIXEL_POP_ACCESS_LOG":    "-",
		"EDGEPIXEL_POP_LOG_ENDPOINTS": "a=stdout, b=file:/tmp/b.log,c=http://h/x?max_entries=5",
	})
	o, err := parseArgs([]string{"m.wasm", "--log-endpoint", "b=http://collector/in", "--log-endpoint", "d=stdout"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if o.tlsCert != "c.pem" || o.tlsKey != "k.pem" || o.accessLog != "-" || o.h2c {
		t.Errorf("%+v", o)
	}
	var got []string
	for _, ep := range o.logEndpoints {
		got = append(got, ep.Name+"="+ep.Kind)
	}
	// The flag replaced b from the environment, in its place.
	if strings.Join(got, " ") != "a=stdout b=http c=http d=stdout" || o.logEndpoints[2].MaxEntries != 5 {
		t.Errorf("endpoints %v", got)
	}

	o, err = parseArgs([]string{"m.wasm", "--h2c", "--access-log", "off"}, env(map[string]string{"EDGEPIXEL_POP_ACCESS_LOG": "/x"}))
	if err != nil || !o.h2c || o.accessLog != "" {
		t.Errorf("%+v %v", o, err)
	}
	if o, err := parseArgs([]string{"m.wasm"}, env(map[string]string{"EDGEPIXEL_POP_H2C": "true"})); err != nil || !o.h2c {
		t.Errorf("EDGEPIXEL_POP_H2C: %+v %v", o, err)
	}
	for _, args := range [][]string{
		{"m.wasm", "--tls-cert", "c.pem"},
		{"m.wasm", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--h2c"},
		{"m.wasm", "--log-endpoint", "nodest"},
		{"m.wasm", "--log-endpoint", "a=gopher://x"},
		{"m.wasm", "--log-endpoint", "a=stdout", "--log-endpoint", "a=file:/x"},
	} {
		if _, err := parseArgs(args, env(nil)); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	// A refused endpoint is named without the token typed into it (a
	// tester's --log-endpoint printed it whole, via the flag package).
	bad := "https://edgepixel:s3cret@collector/ingest/ndjson"
	if _, err := parseArgs([]string{"m.wasm", "--log-endpoint", bad}, env(nil)); err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "--log-endpoint") {
		t.Errorf("--log-endpoint %s: %v, want an error naming the flag, not the token", bad, err)
	}
	var errb strings.Builder
	if code := run([]string{"run", "--log-endpoint", bad, "m.wasm"}, env(nil), io.Discard, &errb); code != 2 || strings.Contains(errb.String(), "s3cret") {
		t.Errorf("run --log-endpoint %s: exit %d, %q", bad, code, errb.String())
	}
	for k, v := range map[string]string{"EDGEPIXEL_POP_H2C": "maybe", "EDGEPIXEL_POP_LOG_ENDPOINTS": "x=ftp://h"} {
		if _, err := parseArgs([]string{"m.wasm"}, env(map[string]string{k: v})); err == nil {
			t.Errorf("%s=%s accepted", k, v)
		}
	}
}

func TestBadCertificateFailsStartup(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o644)
	var stderr bytes.Buffer
	code := run([]string{"--addr", "127.0.0.1:0", "--tls-cert", bad, "--tls-key", bad, filepath.Join(dir, "m.wasm")}, env(nil), io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "TLS certificate") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

func TestCertReload(t *testing.T) {
	certA, keyA, _ := selfSigned(t)
	certB, keyB, _ := selfSigned(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(c, k []byte, mod time.Time) {
		os.WriteFile(cert, c, 0o644)
		os.WriteFile(key, k, 0o600)
		// Explicit times: a file system's mtime granularity must not hide
		// the change.
		os.Chtimes(cert, mod, mod)
		os.Chtimes(key, mod, mod)
	}
	read := func(f string) []byte { b, _ := os.ReadFile(f); return b }
	base := time.Now().Add(-time.Hour)
	install(read(certA), read(keyA), base)
	r, err := newCertReloader(cert, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.checkEvery = 0
	leaf := func() []byte {
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	first := leaf()
	install(read(certB), read(keyB), base.Add(time.Minute))
	second := leaf()
	if bytes.Equal(first, second) {
		t.Error("renewed certificate not picked up")
	}
	install([]byte("garbage"), []byte("garbage"), base.Add(2*time.Minute))
	if !bytes.Equal(leaf(), second) {
		t.Error("a broken renewal replaced the working certificate")
	}
}

// TestNoConnectionsBeforeReady checks that nothing listens on the address
// while the module is being loaded: a client gets "connection refused" at
// once instead of waiting in the listen backlog to be served, and
// counted, once the module is ready. The request it tried is never
// served later; the only one the POP counts is the one sent after ready.
func TestNoConnectionsBeforeReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	o, err := parseArgs([]string{"--addr", addr, "--admin-addr", "127.0.0.1:0", "--instances", "1",
		"--compile-cache", cacheDir, logGuest(t)}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	early := make(chan error, 1)
	o.starting = func(a string) {
		// serve is about to load the module. A request now must fail to
		// connect, not hang until the module is ready.
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get("http://" + a + "/log?ep=early&msg=too-early")
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %s before the module was ready", resp.Status)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			err = fmt.Errorf("want connection refused, got %w", err)
		} else {
			err = nil
		}
		early <- err
	}
	ready := make(chan [2]string, 1)
	o.ready = func(addr, admin string) { ready <- [2]string{addr, admin} }
	stdout, stderr := &lockedBuf{}, &lockedBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	go func() { done <- serve(ctx, o, log, stdout, stderr) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	}()
	var a [2]string
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("serve ended at start-up: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("serve did not start")
	}
	if err := <-early; err != nil {
		t.Error(err)
	}
	if a[0] != addr {
		t.Errorf("serving on %s, want %s", a[0], addr)
	}
	if resp, body := get(t, http.DefaultClient, "http://"+addr+"/log?ep=late&msg=ready"); resp.StatusCode != 200 {
		t.Errorf("after ready: %d %q", resp.StatusCode, body)
	}
	_, metrics := get(t, http.DefaultClient, "http://"+a[1]+"/metrics")
	if !strings.Contains(metrics, "\nedgepixel_pop_requests_total 1\n") {
		t.Errorf("want exactly the request sent after ready counted:\n%s", metrics)
	}
	if strings.Contains(stdout.String(), "too-early") || !strings.Contains(stdout.String(), "late :: ready") {
		t.Errorf("guest output %q", stdout)
	}
}

// TestHangupWithParentStops stops `sh` and the POP it started with one
// kill -HUP on their process group, as compute-sdk-go's serve.sh stops
// `fastly compute serve` and its Viceroy: the POP must exit, not reload.
func TestHangupWithParentStops(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	if hangupIgnored() {
		// Ignored signals stay ignored across exec (nohup): the shell
		// would survive the hangup, and the POP rightly reload instead.
		t.Skip("SIGHUP is ignored in this process (started under nohup?): a shell started from it cannot be hung up")
	}
	addr := freeAddr(t)
	var out lockedBuf
	// The shell waits for the POP; SIGHUP ends the shell (its default
	// action), which re-parents the POP.
	sh := exec.Command("sh", "-c", `"$0" --addr "$1" --instances 1 --compile-cache "$2" "$3" & wait`,
		popBin, addr, binCacheDir, binGuestWasm)
	sh.Stdout, sh.Stderr = &out, &out
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := sh.Process.Pid
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	waitListening(t, addr, &out)
	syscall.Kill(-pgid, syscall.SIGHUP)
	sh.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // the POP let go of its port
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the POP still listens 30s after the hangup:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "SIGHUP ended the parent process too") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestHangupAfterParentLeftReloads: a start script that runs the POP in
// the background and exits, then a kill -HUP to the POP alone (after a
// salt rotation, say), seconds later. The POP's parent changed long
// before the hangup, which is not the hangup's doing: it must reload and
// keep serving.
func TestHangupAfterParentLeftReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	addr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "pop.log")
	// The POP's output goes to a file: a pipe it holds would keep the
	// shell's output open after the shell exits.
	// The shell outlives the POP's start, so the POP sees it as its
	// parent first, then exits.
	sh := exec.Command("sh", "-c", `"$0" --addr "$1" --instances 1 --compile-cache "$2" "$3" </dev/null >"$4" 2>&1 & echo $!
		while ! grep -q "Listening on" "$4"; do sleep 0.1; done; sleep 0.5`,
		popBin, addr, binCacheDir, binGuestWasm, logPath)
	pidOut, err := sh.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidOut)))
	if err != nil {
		t.Fatalf("pid %q", pidOut)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	waitListening(t, addr, fileText(logPath))
	time.Sleep(3 * parentPoll) // the new parent seen on two polls
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "SIGHUP ended the parent process too") {
			t.Fatalf("the POP shut down on a hangup its parent's earlier end had nothing to do with:\n%s", b)
		}
		if strings.Contains(string(b), "SIGHUP: reloading the module") {
			// An operator who edited fastly.toml learns what applies.
			if !strings.Contains(string(b), "a change to its other tables (backends, geolocation, ACLs) needs a restart") {
				t.Errorf("the reload does not say what of fastly.toml it applies:\n%s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload 30s after the hangup:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // past parentEnded's wait
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("the POP stopped listening after the reload: %v\n%s", err, b)
	}
	c.Close()
}

// fileText is a file's text as a fmt.Stringer (waitListening's output).
type fileText string

func (f fileText) String() string { b, _ := os.ReadFile(string(f)); return string(b) }

// hangupIgnored reports whether this process ignores SIGHUP (bit 0 of
// SigIgn in /proc/self/status, proc(5)); children inherit it.
func hangupIgnored() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&1 != 0
		}
	}
	return false
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitListening waits until the POP says it serves on addr (it listens
// once its module is ready).
func waitListening(t *testing.T, addr string, out fmt.Stringer) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if strings.Contains(out.String(), "Listening on http://"+addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the POP did not start serving on %s:\n%s", addr, out)
		}
	}
}
