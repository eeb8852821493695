package dedupe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	r.UseStore(emptyStore)
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// emptyStore is the store of a fresh install: nothing stored yet.
func emptyStore(context.Context, time.Time) (int64, error) { return 0, nil }

func TestRedis(t *testing.T) {
	protocol(t, newRedis(t, time.Hour))
}

// TestRedisLayout: ids land in small hashes, bucketed by their minute,
// with an expiry of the window past the minute's end.
func TestRedisLayout(t *testing.T) {
	r := newRedis(t, time.Hour)
	ctx := context.Background()
	a := ids(t, 100)
	if _, err := r.Claim(ctx, a); err != nil {
		t.Fatal(err)
	}
	m := idMS(a[0]) / slotMS
	b := r.groups[0].layouts[m]
	key := r.groups[0].bucketKey(m, b, shardOf(a[0], idMS(a[0]), b))
	if typ, _ := r.c.Type(ctx, key).Result(); typ != "hash" {
		t.Fatalf("bucket %q is %q", key, typ)
	}
	if enc, _ := r.c.ObjectEncoding(ctx, key).Result(); enc != "listpack" {
		t.Errorf("bucket encoding %q, want listpack", enc)
	}
	if v, err := r.c.HGet(ctx, key, field(a[0], idMS(a[0]))).Result(); err != nil || v != r.token {
		t.Errorf("pending value %q %v, want the claimer's token %q", v, err, r.token)
	}
	ttl, err := r.c.TTL(ctx, key).Result()
	if err != nil || ttl <= time.Hour || ttl > 2*time.Hour+time.Minute {
		t.Errorf("ttl %v %v, want window + slack past the minute", ttl, err)
	}
	if ttl, _ := r.c.TTL(ctx, r.groups[0].layoutKey(m)).Result(); ttl <= time.Hour {
		t.Errorf("layout ttl %v", ttl)
	}
}

// TestRedisOutsideWindow: ids older than the window (or far in the
// future) are not remembered; the store decides, every time.
func TestRedisOutsideWindow(t *testing.T) {
	r := newRedis(t, time.Hour)
	ctx := context.Background()
	old, _ := event.NewID(time.Now().Add(-2*time.Hour).UnixMilli(), rand.Reader)
	future, _ := event.NewID(time.Now().Add(3*time.Hour).UnixMilli(), rand.Reader)
	now := ids(t, 1)
	in := []event.ID{old, future, now[0]}
	st, err := r.Claim(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want(t, st, Uncertain, Uncertain, New)
	if err := r.MarkDone(ctx, in); err != nil {
		t.Fatal(err)
	}
	st, _ = r.Claim(ctx, in)
	want(t, st, Uncertain, Uncertain, Duplicate)
}

// TestRedisLostMemory: when Redis forgets (FLUSHDB, a restart without
// persistence, a rollback to an older snapshot), ids up to the store's
// newest event come back Uncertain, not New, so the loader asks the store.
func TestRedisLostMemory(t *testing.T) {
	r := newRedis(t, time.Hour)
	r.grace = 300 * time.Millisecond
	ctx := context.Background()
	var newest int64 // the "store"
	r.UseStore(func(context.Context, time.Time) (int64, error) { return newest, nil })
	a := ids(t, 5)
	st, err := r.Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	want(t, st, New, New, New, New, New) // a fresh memory over an empty store
	r.MarkDone(ctx, a)
	newest = idMS(a[4])
	time.Sleep(2 * time.Millisecond)
	b := ids(t, 1) // created after the store's newest event

	if err := r.c.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Claim(ctx, a); !errors.Is(err, ErrMemoryLost) {
		t.Fatalf("claim after FLUSHDB: %v, want ErrMemoryLost", err)
	}
	st, err = r.Claim(ctx, append(a[:2:2], b...)) // the loader's retry
	if err != nil {
		t.Fatal(err)
	}
	// The grace period: claims of ids with no claim in the new memory
	// wait (another aggregator may be inserting them).
	want(t, st, Busy, Busy, Busy)
	graceEnds(t, r)
	st, err = r.Claim(ctx, append(a[:2:2], b...))
	if err != nil {
		t.Fatal(err)
	}
	want(t, st, Uncertain, Uncertain, New)
	if err := r.MarkDone(ctx, append(a[:2:2], b...)); err != nil {
		t.Fatal(err)
	}
	st, _ = r.Claim(ctx, append(a[:3:3], b...))
	want(t, st, Duplicate, Duplicate, Uncertain, Duplicate)

	// A rollback keeps the epoch key but loses writes: the sequence
	// number going back gives it away.
	newest = idMS(b[0])
	if err := r.c.Set(ctx, r.groups[0].seqKey(), 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	c := ids(t, 1)
	if _, err := r.Claim(ctx, c); !errors.Is(err, ErrMemoryLost) {
		t.Fatalf("claim after rollback: %v, want ErrMemoryLost", err)
	}
	if st, err := r.Claim(ctx, append(c, b...)); err != nil || st[0] != Busy || st[1] != Duplicate {
		// c: the claim above wrote nothing into the rolled-back memory,
		// and a grace period runs; b: its "done" survived (this simulated
		// rollback lost only the counter), and Redis still vouches.
		t.Fatalf("after rollback: %v %v", st, err)
	}
	graceEnds(t, r)
	if st, err := r.Claim(ctx, append(c, b...)); err != nil || st[0] != New || st[1] != Duplicate {
		t.Fatalf("after rollback and grace: %v %v", st, err) // c is newer than the epoch
	}
	if r.groups[0].epoch != newest {
		t.Fatalf("epoch %d, want the store's newest %d", r.groups[0].epoch, newest)
	}
	// Another aggregator sees the epoch change and drops its caches too.
	other := newRedis(t, time.Hour)
	other.UseStore(func(context.Context, time.Time) (int64, error) { return newest, nil })
	if st, err := other.Claim(ctx, c); err != nil || st[0] != Busy {
		t.Fatalf("other: %v %v", st, err) // claimed (pending) by r's attempt above, and r lives
	}
}

// TestRedisMemoryPerID measures Redis memory per remembered id (claimed
// and marked done) with INFO used_memory on a server of its own, at a few
// rates of ids. The goal is at most 40 bytes; make bench reports the
// figure. used_memory also counts what the server holds for clients and
// moves by a few bytes per id between runs on a loaded machine, so this
// test fails only past twice the goal, where the packed layout itself is
// broken (a key of its own per id costs more than that).
func TestRedisMemoryPerID(t *testing.T) {
	if _, ok := localsrv.RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	srv, err := localsrv.StartRedis(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	for _, c := range []struct {
		perSec float64
		n      int
	}{{2, 6000}, {50, 30000}, {5000, 100000}, {100000, 300000}} {
		per := MemoryPerID(t, srv.URL, c.perSec, c.n)
		t.Logf("%8.0f ids/s, %7d ids: %.1f bytes of Redis memory per id", c.perSec, c.n, per)
		fmt.Printf("dedupe: redis memory per remembered id at %.0f ids/s: %.1f bytes (goal <= 40)\n", c.perSec, per)
		if per > 2*40 && c.perSec >= 1 {
			t.Errorf("%.1f bytes per id at %.0f ids/s: more than twice the goal of 40, so ids are no longer packed", per, c.perSec)
		}
	}
}

// MemoryPerID claims and marks done n ids created at perSec, in batches of
// at most 5,000 or 200 ms as the loader would, and returns the used_memory
// delta per id. The server is flushed first, after a warm-up that takes
// one-time allocations (dict tables, allocator arenas) out of the figure.
func MemoryPerID(t testing.TB, url string, perSec float64, n int) float64 {
	fill(t, url, 1000, 2000)
	return fill(t, url, perSec, n)
}

func fill(t testing.TB, url string, perSec float64, n int) float64 {
	r, err := NewRedis(url, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.UseStore(emptyStore)
	defer r.Close()
	ctx := context.Background()
	if err := r.c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Duration(float64(n)/perSec*float64(time.Second)) - time.Minute)
	all := make([]event.ID, n)
	for i := range all {
		ms := start.Add(time.Duration(float64(i) / perSec * float64(time.Second))).UnixMilli()
		all[i], _ = event.NewID(ms, rand.Reader)
	}
	before := usedMemory(t, r)
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && hi-lo < 5000 && idMS(all[hi])-idMS(all[lo]) < 200 {
			hi++
		}
		batch := all[lo:hi]
		st, err := r.Claim(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range st {
			if s != New {
				t.Fatalf("id %d: %v", lo+i, s)
			}
		}
		if err := r.MarkDone(ctx, batch); err != nil {
			t.Fatal(err)
		}
		lo = hi
	}
	return float64(usedMemory(t, r)-before) / float64(n)
}

func usedMemory(t testing.TB, r *Redis) int64 {
	info, err := r.c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
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

// TestRedisCrowdedBucket claims far more ids in one bucket than one
// script call takes (the slot's layout was decided from a single id):
// the bucket is cut into runs and every id still gets its answer.
func TestRedisCrowdedBucket(t *testing.T) {
	r := newRedis(t, time.Hour)
	ctx := context.Background()
	ms := time.Now().UnixMilli()
	mk := func(n int) []event.ID {
		out := make([]event.ID, n)
		for i := range out {
			out[i], _ = event.NewID(ms, rand.Reader)
		}
		return out
	}
	if _, err := r.Claim(ctx, mk(1)); err != nil {
		t.Fatal(err)
	}
	a := mk(20000)
	st, err := r.Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != New {
			t.Fatalf("id %d: %v", i, s)
		}
	}
	if err := r.MarkDone(ctx, a[:10000]); err != nil {
		t.Fatal(err)
	}
	st, err = r.Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if w := map[bool]Status{true: Duplicate, false: Uncertain}[i < 10000]; s != w {
			t.Fatalf("id %d: %v, want %v", i, s, w)
		}
	}
}

// graceEnds waits until no group of r has a grace period running (its
// key expired on Redis's clock).
func graceEnds(t *testing.T, r *Redis) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for _, g := range r.groups {
		for {
			n, err := r.c.Exists(ctx, g.graceKey()).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("grace key %s still there after a minute", g.graceKey())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
