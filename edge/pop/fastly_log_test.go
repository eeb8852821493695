package pop

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/logsink"
)

// TestLogEndpointsEndToEnd runs the logguest with a file endpoint, an
// HTTP endpoint for what it logs after its serve loop, the default stdout
// destination and an access log, and checks all of it after Shutdown.
func TestLogEndpointsEndToEnd(t *testing.T) {
	batches := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		batches <- string(b)
	}))
	defer collector.Close()
	path := filepath.Join(t.TempDir(), "events.log")
	stdout, access := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(ctx, Config{
		WasmPath: guestPath("logguest"), Instances: 1, MaxInstances: 1, CompileCacheDir: cacheDir,
		Stdout: stdout, Stderr: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AccessLog: access,
		LogEndpoints: []logsink.Endpoint{
			{Name: "events", Kind: logsink.File, Path: path},
			// A period of an hour: only Shutdown can deliver this.
			{Name: "shutdown", Kind: logsink.HTTP, URL: collector.URL, Period: time.Hour},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	for _, path := range []string{"/log?ep=events&msg=e&n=3", "/log?ep=other&msg=to%20stdout", "/nowhere"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ts.Close()
	var metrics strings.Builder
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s.WritePrometheus(&metrics)

	if data, _ := os.ReadFile(path); string(data) != "e-0\ne-1\ne-2\n" {
		t.Errorf("events file %q", data)
	}
	select {
	case got := <-batches:
		if got != "{\"event\":\"bye\",\"served\":3}\n" {
			t.Errorf("post-loop entry %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no batch delivered")
	}
	if !strings.Contains(stdout.String(), "other :: to stdout\n") {
		t.Errorf("stdout %q", stdout)
	}
	lines := strings.Split(strings.TrimSpace(access.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log:\n%s", access)
	}
	for i, l := range lines {
		var e struct {
			Time, Remote, Method, URI, Proto string
			RequestID                        string `json:"request_id"`
			Status                           int
			Bytes                            int64
			DurationMs                       float64 `json:"duration_ms"`
			Instance                         uint64
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		wantStatus := []int{200, 200, 404}[i]
		if e.Status != wantStatus || e.Method != "GET" || e.Proto != "HTTP/1.1" || e.Instance == 0 ||
			len(e.RequestID) != 32 || e.Bytes == 0 || e.Remote == "" || !strings.HasPrefix(e.URI, "/") {
			t.Errorf("access line %d: %+v", i, e)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("time %q: %v", e.Time, err)
		}
	}
	for _, want := range []string{
		`edgepixel_pop_log_lines_delivered_total{endpoint="events",kind="file"} 3`,
		`edgepixel_pop_log_lines_delivered_total{endpoint="shutdown",kind="http"} 1`,
		`edgepixel_pop_log_lines_delivered_total{endpoint="*",kind="stdout"} 1`,
		`edgepixel_pop_log_batches_total{endpoint="shutdown",kind="http"} 1`,
		`edgepixel_pop_responses_total{code="2xx"} 2`,
		`edgepixel_pop_responses_total{code="4xx"} 1`,
		`edgepixel_pop_request_duration_seconds_bucket{le="+Inf"} 3`,
		`edgepixel_pop_request_duration_seconds_count 3`,
	} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %s\n%s", want, metrics.String())
		}
	}
}
