package dedupe

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

var redisURL string

func TestMain(m *testing.M) {
	code := func() int {
		if _, ok := localsrv.RedisAvailable(); ok {
			dir, _ := os.MkdirTemp("", "dedupe-redis")
			defer os.RemoveAll(dir)
			r, err := localsrv.StartRedis(context.Background(), dir, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer r.Stop()
			redisURL = r.URL
		}
		return m.Run()
	}()
	os.Exit(code)
}

func ids(t testing.TB, n int) []event.ID {
	out := make([]event.ID, n)
	for i := range out {
		id, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id
	}
	return out
}

func want(t *testing.T, got []Status, want ...Status) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// protocol runs the claim / mark-done protocol against d.
func protocol(t *testing.T, d Deduper) {
	ctx := context.Background()
	a := ids(t, 3)
	st, err := d.Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	want(t, st, New, New, New)
	// The first attempt "crashes" before MarkDone: a retry is uncertain.
	st, _ = d.Claim(ctx, a)
	want(t, st, Uncertain, Uncertain, Uncertain)
	if err := d.MarkDone(ctx, a[:2]); err != nil {
		t.Fatal(err)
	}
	b := ids(t, 1)
	st, _ = d.Claim(ctx, append(append([]event.ID{}, a...), b...))
	want(t, st, Duplicate, Duplicate, Uncertain, New)
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMemory(t *testing.T) {
	protocol(t, NewMemory(time.Hour))
}

func TestMemoryExpiry(t *testing.T) {
	m := NewMemory(time.Minute)
	now := time.Now()
	m.now = func() time.Time { return now }
	a := ids(t, 2)
	m.Claim(context.Background(), a)
	m.MarkDone(context.Background(), a)
	now = now.Add(2 * time.Minute)
	st, _ := m.Claim(context.Background(), a)
	want(t, st, New, New)
	now = now.Add(2 * time.Minute)
	m.Claim(context.Background(), ids(t, 1)) // sweeps
	if m.Len() != 1 {
		t.Errorf("%d ids remembered after expiry, want 1", m.Len())
	}
}

func newRedis(t *testing.T, window time.Duration) *Redis {
	if redisURL == "" {
		t.Skip("redis-server not installed")
	}
	r, err := NewRedis(redisURL, window)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedis(t *testing.T) {
	protocol(t, newRedis(t, time.Hour))
}

func TestRedisCompactKeysAndTTL(t *testing.T) {
	r := newRedis(t, time.Hour)
	a := ids(t, 1)
	r.Claim(context.Background(), a)
	key := r.key(a[0])
	if len(key) != 3+16 {
		t.Errorf("key is %d bytes, want 19", len(key))
	}
	ttl, err := r.c.TTL(context.Background(), key).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("ttl %v %v", ttl, err)
	}
}

func TestRedisLargeBatch(t *testing.T) {
	r := newRedis(t, time.Hour)
	a := ids(t, 25000) // more than one pipeline chunk
	st, err := r.Claim(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != New {
			t.Fatalf("id %d: %v", i, s)
		}
	}
	if err := r.MarkDone(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	st, _ = r.Claim(context.Background(), a)
	for i, s := range st {
		if s != Duplicate {
			t.Fatalf("id %d: %v after MarkDone", i, s)
		}
	}
}

func TestRedisDown(t *testing.T) {
	if _, ok := localsrv.RedisAvailable(); !ok {
		t.Skip()
	}
	srv, err := localsrv.StartRedis(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRedis(srv.URL, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.Claim(ctx, ids(t, 2)); err == nil {
		t.Fatal("Claim succeeded with Redis down")
	}
}
