package localsrv

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestStartBoth(t *testing.T) {
	if _, ok := RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	if _, ok := ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	r, err := StartRedis(ctx, dir+"/redis", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := r.ping(r.Pid()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.URL, "redis://127.0.0.1:") {
		t.Errorf("URL %q", r.URL)
	}
	c, err := StartClickHouse(ctx, dir+"/ch", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	resp, err := http.Post(c.HTTPURL+"/", "text/plain", strings.NewReader("SELECT 1 + 1, timezone()"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, "2\t") || !strings.HasSuffix(got, "UTC") {
		t.Fatalf("query answered %s %q", resp.Status, got)
	}
	if err := c.Stop(); err != nil {
		t.Error(err)
	}
	if err := r.Stop(); err != nil {
		t.Error(err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("clickhouse still running after Stop")
	}
	// A second start on the same dir reuses the data.
	c2, err := StartClickHouse(ctx, dir+"/ch", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Kill(); err != nil {
		t.Error(err)
	}
}

// A server that cannot start is reported with its own words for why.
func TestStartFailureIncludesLog(t *testing.T) {
	if _, ok := RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	r, err := StartRedis(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	_, err = StartRedis(context.Background(), t.TempDir(), r.Port()) // port taken
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("want a startup error with the log tail, got %v", err)
	}
	t.Log(err)
	if _, ok := ClickHouseAvailable(); !ok {
		return
	}
	c, err := StartClickHouse(context.Background(), t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	// The cause is in ClickHouse's own error log, which it writes just
	// before it exits.
	_, err = StartClickHouse(context.Background(), t.TempDir(), portOf(strings.TrimPrefix(c.HTTPURL, "http://")), 0)
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("want a startup error with the log tail, got %v", err)
	}
	t.Log(err)
}

// TestClickHouseCompression checks the method byte of a part's column file
// (after each block's 16-byte checksum: 0x90 zstd, 0x82 lz4): the servers
// started here compress with Compression, and StartClickHouseCompressed
// with the method it is given.
func TestClickHouseCompression(t *testing.T) {
	if _, ok := ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	ctx := context.Background()
	for _, tc := range []struct {
		method string
		want   byte
	}{{"", 0x90}, {"lz4", 0x82}} {
		dir := t.TempDir()
		var c *ClickHouse
		var err error
		if tc.method == "" {
			c, err = StartClickHouse(ctx, dir, 0, 0)
		} else {
			c, err = StartClickHouseCompressed(ctx, dir, 0, 0, tc.method)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"CREATE TABLE default.z (k UInt64) ENGINE = MergeTree ORDER BY k",
			"INSERT INTO default.z SELECT number FROM system.numbers LIMIT 100000",
		} {
			if _, err := c.query(q); err != nil {
				c.Kill()
				t.Fatal(q, err)
			}
		}
		// Every CPU for a query, whatever 18.16 counts as cores.
		if got, err := c.query("SELECT value FROM system.settings WHERE name = 'max_threads'"); err != nil || strings.TrimSpace(got) != strconv.Itoa(runtime.NumCPU()) {
			c.Kill()
			t.Fatalf("max_threads %q %v, want %d", got, err, runtime.NumCPU())
		}
		files, _ := filepath.Glob(filepath.Join(dir, "data", "data", "default", "z", "*", "k.bin"))
		if len(files) == 0 {
			c.Kill()
			t.Fatal("no part of default.z on disk")
		}
		b, err := os.ReadFile(files[0])
		c.Kill()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 17 || b[16] != tc.want {
			t.Errorf("compression %q: method byte % x, want %#x", tc.method, b[16:min(17, len(b))], tc.want)
		}
	}
}
