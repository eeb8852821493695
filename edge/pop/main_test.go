package pop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/poptest"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// Every guest in testdata is built and compiled once per test binary,
// before any test runs (poptest), so each test's New only pays for
// instantiation and no test's deadline includes compile time.
var (
	guestWasm    string
	rawGuestWasm string
	cacheDir     string
	guestDir     string
)

// guestPath is the built module of the guest in testdata/NAME.
func guestPath(name string) string { return filepath.Join(guestDir, name) }

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "pop-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guestDir = tmp
	guestWasm = guestPath("guest")
	rawGuestWasm = guestPath("rawguest")
	names, err := poptest.Guests()
	if err == nil {
		cacheDir, err = poptest.Build(tmp, names...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the test guests:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of guests.
type syncBuffer = proc.Buffer

type testPOP struct {
	*Server
	URL    string
	Stdout *syncBuffer
	Stderr *syncBuffer
	ts     *httptest.Server
}

// backendRecorder is a backend that records what it receives.
type backendRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
	got  chan recorded
}

type recorded struct {
	Method, Path, Host string
	Header             http.Header
	Body               string
}

func newBackend(t *testing.T) *backendRecorder {
	b := &backendRecorder{got: make(chan recorded, 100)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header.Clone(), Body: string(data)}
		b.mu.Lock()
		b.reqs = append(b.reqs, rec)
		b.mu.Unlock()
		select {
		case b.got <- rec:
		default:
		}
		w.Header().Set("X-Backend", "seen "+r.URL.Path)
		w.WriteHeader(207)
		fmt.Fprintf(w, "backend got %s %s body=%q", r.Method, r.URL.RequestURI(), data)
	}))
	t.Cleanup(b.Close)
	return b
}

func manifest(t *testing.T, text string) *fastlytoml.Manifest {
	t.Helper()
	m, err := fastlytoml.Parse([]byte(text), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func startPOP(t *testing.T, m *fastlytoml.Manifest, tweak func(*Config)) *testPOP {
	t.Helper()
	p := &testPOP{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}
	cfg := Config{
		WasmPath:        guestWasm,
		Manifest:        m,
		Instances:       2,
		MaxInstances:    4,
		CompileCacheDir: cacheDir,
		Stdout:          p.Stdout,
		Stderr:          p.Stderr,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Server = s
	// Served as the command serves it: through the client limits
	// (clients.go).
	p.ts = httptest.NewUnstartedServer(s)
	s.ConfigureHTTPServer(p.ts.Config)
	p.ts.Listener = s.Listener(p.ts.Listener, false)
	p.ts.Start()
	p.URL = p.ts.URL
	t.Cleanup(func() {
		p.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("guest stdout:\n%s\nguest stderr:\n%s", p.Stdout, p.Stderr)
		}
	})
	return p
}

func (p *testPOP) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	return p.do(t, "GET", path, nil, nil)
}

func (p *testPOP) do(t *testing.T, method, path string, body io.Reader, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
