package dedupe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestLogRedisTo: with Redis down, go-redis's pool reports the failed
// dial through the slog logger, as a JSON warning, not plain text on
// stderr.
func TestLogRedisTo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var buf bytes.Buffer
	LogRedisTo(slog.New(slog.NewJSONHandler(&buf, nil)))
	// go-redis's logger is process-wide: back to slog's default after.
	t.Cleanup(func() { LogRedisTo(slog.Default()) })
	c := redis.NewClient(&redis.Options{Addr: closed, MaxRetries: -1})
	defer c.Close()
	if c.Ping(context.Background()).Err() == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg, Component string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec.Level == "WARN" && rec.Component == "redis" && strings.Contains(rec.Msg, "failed to dial") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning of the failed dial in %q", buf.String())
	}
}
