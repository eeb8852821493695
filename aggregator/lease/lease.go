// Package lease elects one holder among the aggregators that share a
// Redis (one server or a Redis Cluster) for work that only one of them may
// do at a time, such as the rollups' backfill.
//
// A lease is one key holding its holder's random token, with a time to
// live: the holder renews it well within that time, and another process
// can take it only once it has expired, so a holder that dies or is cut
// off from Redis hands over after at most the TTL. A holder that cannot
// renew stops its work at once (its context ends), before the TTL runs
// out, so in the common case two never work at once. A lease is not a
// fence: a process paused past the TTL (or a Redis Cluster failover that
// loses the last write, since replication is asynchronous) can still let
// two run for a while, so the work itself must stay correct when that
// happens (see clickhouse.BackfillRollups).
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is one named lease in Redis, held or not by this process.
type Lease struct {
	c     redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
}

// New returns the lease called key in Redis c, with time to live ttl
// (at least a second). Each Lease has its own token: two Leases of one
// key in one process compete like two processes.
func New(c redis.UniversalClient, key string, ttl time.Duration) *Lease {
	var b [12]byte
	rand.Read(b[:])
	return &Lease{c: c, key: key, token: hex.EncodeToString(b[:]), ttl: max(ttl, time.Second)}
}

// acquireScript takes the lease if it is free, or renews it if this
// token holds it; it answers 1 if the token holds it afterwards.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return 1
elseif not v then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return 1
end
return 0`)

// releaseScript deletes the lease only if this token holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

// TryAcquire takes the lease if it is free, or renews it if l holds it,
// and reports whether l holds it now. An error (Redis unreachable) means
// l must not assume it holds it.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	n, err := acquireScript.Run(ctx, l.c, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

// Release gives the lease up if l holds it, so that another process need
// not wait for the TTL.
func (l *Lease) Release(ctx context.Context) error {
	return releaseScript.Run(ctx, l.c, []string{l.key}, l.token).Err()
}

// Holder returns the token of the lease's holder, "" if none.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	v, err := l.c.Get(ctx, l.key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// Token is l's own token (what Holder returns while l holds the lease).
func (l *Lease) Token() string { return l.token }

// Run runs work while l holds the lease, until ctx ends. It tries to take
// the lease every TTL/3; once it holds it, it calls work with a context
// that ends as soon as a renewal (every TTL/3) fails or finds another
// holder, and keeps renewing until work returns. work should run until
// its context ends; should it return earlier, Run releases the lease and
// waits a TTL, so that another process may take it, before trying again.
//
// While another process holds the lease, Run says so once (and again
// after it has held it itself): an operator who sees the work not done
// here (a tester's upgraded aggregator beside an older one that kept the
// rollups' lease) learns who does it.
func (l *Lease) Run(ctx context.Context, log *slog.Logger, work func(ctx context.Context)) {
	every := l.ttl / 3
	told := false
	for ctx.Err() == nil {
		ok, err := l.TryAcquire(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("lease: could not reach Redis; retrying", "lease", l.key, "err", err, "in", every)
		}
		if !ok {
			if err == nil && !told {
				told = true
				// Or held by one that was killed: after a kill -9 of the
				// only aggregator a tester read this as a second one running.
				log.Info("lease: another process holds it and does its work, or held it and ended without giving it up (the hold then lapses within the ttl); this one takes over once it is free", "lease", l.key, "ttl", l.ttl)
			}
			sleep(ctx, every)
			continue
		}
		told = false
		log.Info("lease: taken; this process does its work", "lease", l.key)
		wctx, cancel := context.WithCancel(ctx)
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			work(wctx)
		}()
		returned := false
	hold:
		for {
			select {
			case <-finished:
				returned = true
				break hold
			case <-time.After(every):
				if ok, err := l.TryAcquire(ctx); !ok {
					if ctx.Err() == nil {
						log.Warn("lease: lost; stopping its work", "lease", l.key, "err", err)
					}
					cancel()
					<-finished
					break hold
				}
			}
		}
		cancel()
		if returned {
			if err := l.Release(ctx); err != nil && ctx.Err() == nil {
				log.Warn("lease: could not release; it expires on its own", "lease", l.key, "err", err)
			}
			sleep(ctx, l.ttl)
		}
	}
	// Let another process take over at once.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	l.Release(rctx)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
