package dedupe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// claimAll claims ids through d, retrying once after ErrMemoryLost (as
// the loader does).
func claimAll(t *testing.T, d *Redis, ids []event.ID) ([]Status, error) {
	t.Helper()
	st, err := d.Claim(context.Background(), ids)
	if errors.Is(err, ErrMemoryLost) {
		st, err = d.Claim(context.Background(), ids)
	}
	return st, err
}

// idsInEveryGroup returns n random ids, and more until every group of r
// has one: a claim of them then reaches every group, and every group that
// lost its memory starts its new epoch (of 300 ids, none falls in a given
// one of 48 groups about once in 550).
func idsInEveryGroup(t *testing.T, r *Redis, n int) []event.ID {
	out := ids(t, n)
	for {
		seen := map[int]bool{}
		for _, id := range out {
			seen[r.groupOf(id)] = true
		}
		if len(seen) == len(r.groups) {
			return out
		}
		out = append(out, ids(t, n)...)
	}
}

// graceRules checks the grace period after a memory loss: a holder's
// claims in flight (x) are re-asserted and stay Busy to others past the
// grace period until the holder marks them done; claims no one
// re-asserted (y) are Busy during the grace period only, then checked
// against the store; a holder that dies after re-asserting (z) passes its
// claims on when its lease ends. lose makes Redis lose the memory of
// the groups in lost (all of them on one Redis); mk makes a deduper on
// the same Redis.
func graceRules(t *testing.T, mk func() *Redis, lose func(t *testing.T, a *Redis) (lost []int)) {
	ctx := context.Background()
	var newest int64 // a new install: the store is empty, no grace period
	store := func(context.Context, time.Time) (int64, error) { return newest, nil }
	a, b, d := mk(), mk(), mk()
	for _, r := range []*Redis{a, b, d} {
		r.UseStore(store)
		r.grace = 2 * time.Second
	}
	d.lease = 2 * time.Second
	var aNoticed atomic.Int32
	a.OnNewEpoch(func() { aNoticed.Add(1) })

	x, y, z := idsInEveryGroup(t, a, 300), ids(t, 300), ids(t, 300)
	st, err := a.Claim(ctx, append(append([]event.ID{}, x...), y...))
	allAre(t, "a claims x and y", st, err, New)
	st, err = d.Claim(ctx, z)
	allAre(t, "d claims z", st, err, New)
	st, err = b.Claim(ctx, x)
	allAre(t, "b claims what a holds", st, err, Busy)

	newest = time.Now().UnixMilli() // stored since: x, y and z are older
	lost := lose(t, a)

	// b, which never claimed in the lost groups, starts the new epoch:
	// the grace period starts with it.
	st, err = claimAll(t, b, x)
	allAre(t, "b claims x in the grace period, before a re-asserted", st, err, Busy)
	graces := 0
	for g, gr := range b.groups {
		n, err := b.c.Exists(ctx, gr.graceKey()).Result()
		if err != nil {
			t.Fatal(err)
		}
		graces += int(n)
		if n == 1 && !contains(lost, g) {
			t.Fatalf("group %d has a grace period but kept its memory", g)
		}
	}
	if graces != len(lost) {
		t.Fatalf("%d groups in a grace period, %d lost their memory", graces, len(lost))
	}

	// a notices through its lease renewal, without a claim of its own.
	deadline := time.Now().Add(time.Minute)
	for aNoticed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a's lease renewal did not notice the new epoch in a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.Reassert(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := d.Reassert(ctx, z); err != nil {
		t.Fatal(err)
	}
	d.leaseEndOnce.Do(func() { close(d.leaseEnd) }) // d dies: no renewal, no goodbye
	d.leaseWG.Wait()
	st, err = claimAll(t, b, x)
	allAre(t, "b claims what a re-asserted", st, err, Busy)
	st, err = claimAll(t, a, x)
	allAre(t, "a claims what it re-asserted", st, err, Uncertain)

	graceEnds(t, b)
	time.Sleep(d.lease + 100*time.Millisecond) // d's last renewal was before Wait returned
	st, err = claimAll(t, b, x)
	allAre(t, "b claims what a re-asserted, after the grace period", st, err, Busy)
	st, err = claimAll(t, b, y)
	for i, id := range y {
		// y was claimed by a but not re-asserted (a stored it, say): past
		// the grace period it is checked against the store where its
		// group lost its memory, and still a's where it did not.
		w := Busy
		if contains(lost, b.groupOf(id)) {
			w = Uncertain
		}
		if err != nil || st[i] != w {
			t.Fatalf("b claims y[%d] after the grace period: %v %v, want %v", i, st[i], err, w)
		}
	}
	st, err = claimAll(t, b, z)
	allAre(t, "b claims what dead d re-asserted", st, err, Uncertain)

	if err := a.MarkDone(ctx, x); err != nil && !errors.Is(err, ErrMemoryLost) {
		t.Fatal(err)
	}
	if err := a.MarkDone(ctx, x); err != nil {
		t.Fatal(err)
	}
	st, err = claimAll(t, b, x)
	allAre(t, "b claims what a stored", st, err, Duplicate)
	if aNoticed.Load() == 0 {
		t.Fatal("a was never told")
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestRedisGracePeriod(t *testing.T) {
	if redisURL == "" {
		t.Skip("redis-server not installed")
	}
	// A server of its own: the flush would disturb other tests' memory.
	rd, err := localsrv.StartRedis(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Stop()
	graceRules(t, func() *Redis {
		r, err := NewRedis(rd.URL, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		r.lease = 2 * time.Second
		t.Cleanup(func() { r.Close() })
		return r
	}, func(t *testing.T, a *Redis) []int {
		// A restart without persistence: the process is gone with its data.
		if err := rd.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := rd.RestartEmpty(context.Background()); err != nil {
			t.Fatal(err)
		}
		return []int{0}
	})
}

// On a cluster one master loses its memory (FLUSHALL, which its replica
// copies): only its groups start a new epoch and a grace period.
func TestRedisClusterGracePeriod(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a Redis Cluster")
	}
	cl := startCluster(t)
	graceRules(t, func() *Redis {
		r := newClusterDeduper(t, cl)
		r.lease = 2 * time.Second
		return r
	}, func(t *testing.T, a *Redis) []int {
		ctx := context.Background()
		m, err := cl.MasterForKey(ctx, a.groups[0].epochKey())
		if err != nil {
			t.Fatal(err)
		}
		var lost []int
		for g, gr := range a.groups {
			if mg, err := cl.MasterForKey(ctx, gr.epochKey()); err != nil {
				t.Fatal(err)
			} else if mg == m {
				lost = append(lost, g)
			}
		}
		if _, err := localsrv.Command(ctx, m.Addr, "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		return lost
	})
}
