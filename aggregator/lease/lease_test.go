package lease

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
)

func startRedis(t *testing.T) string {
	t.Helper()
	if _, ok := localsrv.RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	r, err := localsrv.StartRedis(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r.Addr
}

// One holder at a time; another takes the lease when it is released, or
// when its holder stops renewing and the TTL runs out, never before.
func TestOneHolder(t *testing.T) {
	addr := startRedis(t)
	ctx := context.Background()
	ca, cb := redis.NewClient(&redis.Options{Addr: addr}), redis.NewClient(&redis.Options{Addr: addr})
	defer ca.Close()
	defer cb.Close()
	a, b := New(ca, "k", time.Second), New(cb, "k", time.Second)
	if ok, err := a.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	if ok, err := b.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("b took a held lease: %v %v", ok, err)
	}
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("a could not renew")
	}
	if h, _ := b.Holder(ctx); h != a.Token() {
		t.Fatalf("holder %q, want a's", h)
	}
	// b's release of a's lease changes nothing.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Holder(ctx); h != a.Token() {
		t.Fatalf("after b's release the holder is %q", h)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.TryAcquire(ctx); !ok {
		t.Fatal("b could not take a released lease")
	}
	// b stops renewing: a gets it once the TTL has run out.
	for {
		ok, err := a.TryAcquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pttl := ca.PTTL(ctx, "k").Val(); pttl <= 0 || pttl > time.Second {
		t.Fatalf("TTL %v", pttl)
	}
}

// Run: of two runners one works; when its Redis goes away its work is
// stopped, and the other's starts.
func TestRunHandsOver(t *testing.T) {
	addr := startRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logged proc.Buffer // both runners write to it
	log := slog.New(slog.NewTextHandler(&logged, nil))
	var working atomic.Int32
	var started [2]atomic.Int32
	clients := []*redis.Client{redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1}), redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})}
	defer func() {
		for _, c := range clients {
			c.Close() // one is closed already
		}
	}()
	done := make(chan struct{}, 2)
	for i, c := range clients {
		l := New(c, "work", time.Second)
		go func() {
			defer func() { done <- struct{}{} }()
			l.Run(ctx, log, func(ctx context.Context) {
				started[i].Add(1)
				if n := working.Add(1); n != 1 {
					t.Errorf("%d runners working at once", n)
				}
				<-ctx.Done()
				working.Add(-1)
			})
		}()
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}
	wait("a runner works", func() bool { return started[0].Load()+started[1].Load() == 1 })
	time.Sleep(2 * time.Second) // several renewals: the other still waits
	if started[0].Load()+started[1].Load() != 1 {
		t.Fatalf("started %d, %d", started[0].Load(), started[1].Load())
	}
	// The one waiting said so, once.
	if n := strings.Count(logged.String(), "another process holds it"); n != 1 {
		t.Errorf("the waiting runner said it waits %d times, want once:\n%s", n, logged.String())
	}
	h := 0
	if started[1].Load() == 1 {
		h = 1
	}
	clients[h].Close()
	wait("the other runner takes over", func() bool { return started[1-h].Load() == 1 })
	cancel()
	<-done
	<-done
}
