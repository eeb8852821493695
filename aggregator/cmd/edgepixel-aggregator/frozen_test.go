package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// A ClickHouse that stops answering (SIGSTOP: its connections stay open,
// nothing comes back) shows in /readyz as the reason loading waits, and
// the dashboard's history queries answer an error once --query-timeout
// has passed instead of hanging.
func TestFrozenClickHouse(t *testing.T) {
	needDeps(t)
	own, err := localsrv.StartClickHouse(context.Background(), filepath.Join(t.TempDir(), "ch"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		own.Signal(syscall.SIGCONT)
		own.Kill()
	})
	p := startAgg(t, "", "--clickhouse", own.HTTPURL, "--query-timeout", "2s")
	if code, err := send(http.DefaultClient, "http://"+p.addr, mkEvents(t, "frozen", 10)); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	resp, err := p.dashGet("/api/stats?site=frozen&range=today")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/stats before: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := own.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stop reaches the server's threads a moment after kill(2)
	// returns: until the check fails, ClickHouse may still answer.
	type readyz struct {
		Checks  map[string]string
		Loading struct {
			Ready  bool
			Paused *struct{ What, Error string }
		}
	}
	var ready readyz
	for deadline := time.Now().Add(30 * time.Second); ; {
		ready = readyz{}
		resp, err = p.dashGet("/readyz") // the admin's, with the errors
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		if ready.Checks["clickhouse"] != "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still finds ClickHouse answering 30 s after SIGSTOP: %+v", ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ready.Loading.Ready || ready.Loading.Paused == nil || !strings.Contains(ready.Loading.Paused.Error, "clickhouse") {
		t.Errorf("/readyz with ClickHouse frozen: %+v; want loading paused with the reason", ready)
	}
	// The public listener's says as much without the errors, whose text
	// names internal addresses (ClickHouse's URL).
	resp, err = http.Get(p.url("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ready = readyz{}
	if err := json.Unmarshal(b, &ready); err != nil || ready.Loading.Ready || ready.Loading.Paused == nil || ready.Checks["clickhouse"] != "failing" ||
		strings.Contains(string(b), "127.0.0.1") || strings.Contains(string(b), "http://") {
		t.Errorf("public /readyz with ClickHouse frozen: %s; want loading paused, clickhouse failing, and no internal address", b)
	}

	// The client's own limit is far above --query-timeout: a hang shows
	// as its error.
	client := &http.Client{Timeout: time.Minute}
	b, err = os.ReadFile(filepath.Join(p.dataDir, "dashboard-token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(b))
	for _, path := range []string{"/api/stats?site=frozen&range=today", "/api/top?site=frozen&range=today&dim=page", "/api/history?site=frozen"} {
		req, _ := http.NewRequest("GET", p.dash+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s with ClickHouse frozen: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(b), "--query-timeout") {
			t.Errorf("%s with ClickHouse frozen: %d %s; want 504 naming --query-timeout", path, resp.StatusCode, b)
		}
	}
}
