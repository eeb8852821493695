package dedupe

import (
	"context"
	"testing"
	"time"
)

func allAre(t *testing.T, what string, got []Status, err error, s Status) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for i, g := range got {
		if g != s {
			t.Fatalf("%s: id %d is %v, want %v (all %v)", what, i, g, s, got)
		}
	}
}

// owners checks that a pending claim names its owner: another deduper
// (another aggregator) finds it Busy while the owner lives, Duplicate once
// the owner marked it done, and takes it over (Uncertain) once the owner
// closed or stopped renewing its lease; a new one must wait for the heir.
// mk makes a deduper sharing the same Redis.
func owners(t *testing.T, mk func() *Redis) {
	ctx := context.Background()
	a, b := mk(), mk()

	x := ids(t, 200)
	st, err := a.Claim(ctx, x)
	allAre(t, "a claims", st, err, New)
	st, err = b.Claim(ctx, x)
	allAre(t, "b claims what a holds", st, err, Busy)
	st, err = a.Claim(ctx, x)
	allAre(t, "a claims its own again", st, err, Uncertain)
	if err := a.MarkDone(ctx, x); err != nil {
		t.Fatal(err)
	}
	st, err = b.Claim(ctx, x)
	allAre(t, "b claims what a stored", st, err, Duplicate)

	// A clean stop hands the claims on at once.
	y := ids(t, 200)
	st, err = a.Claim(ctx, y)
	allAre(t, "a claims", st, err, New)
	a.Close()
	st, err = b.Claim(ctx, y)
	allAre(t, "b claims what closed a held", st, err, Uncertain)
	c := mk()
	st, err = c.Claim(ctx, y)
	allAre(t, "c claims what b took over", st, err, Busy)

	// A dead owner's claims pass on when its lease runs out.
	d := mk()
	d.lease = 2 * time.Second
	z := ids(t, 200)
	st, err = d.Claim(ctx, z)
	allAre(t, "d claims", st, err, New)
	st, err = c.Claim(ctx, z)
	allAre(t, "c claims what live d holds", st, err, Busy)
	d.leaseEndOnce.Do(func() { close(d.leaseEnd) }) // d dies: no renewal, no goodbye
	d.leaseWG.Wait()
	time.Sleep(d.lease + 100*time.Millisecond) // its last renewal was before Wait returned
	st, err = c.Claim(ctx, z)
	allAre(t, "c claims what dead d held", st, err, Uncertain)
}

func TestRedisOwners(t *testing.T) {
	owners(t, func() *Redis { return newRedis(t, time.Hour) })
}

func TestRedisClusterOwners(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a Redis Cluster")
	}
	cl := startCluster(t)
	owners(t, func() *Redis { return newClusterDeduper(t, cl) })
}
