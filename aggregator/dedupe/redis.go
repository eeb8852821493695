package dedupe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Redis is the Deduper for production: its state survives aggregator
// restarts and is shared by every aggregator using the same Redis.
//
// Keys are a short prefix and the 16 raw id bytes (not the 36-character
// text form), values one byte: about 70 bytes of Redis memory per id.
type Redis struct {
	c      *redis.Client
	prefix string
	window time.Duration
}

// chunk bounds the commands in one pipeline, so that a 50,000-event batch
// does not build one enormous request buffer.
const chunk = 10000

// NewRedis returns a deduper for the Redis at url (redis://host:port/db).
// It connects lazily: call Ping to check the server answers. Not failing
// here lets the aggregator start, and spool, while Redis is down.
func NewRedis(url string, window time.Duration) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if window <= 0 {
		window = DefaultWindow
	}
	opt.ReadTimeout = 10 * time.Second // a 10k-command pipeline under load
	opt.WriteTimeout = 10 * time.Second
	return &Redis{c: redis.NewClient(opt), prefix: "ep:", window: window}, nil
}

func (r *Redis) key(id event.ID) string { return r.prefix + string(id[:]) }

func (r *Redis) Claim(ctx context.Context, ids []event.ID) ([]Status, error) {
	out := make([]Status, len(ids))
	for lo := 0; lo < len(ids); lo += chunk {
		hi := min(lo+chunk, len(ids))
		if err := r.claim(ctx, ids[lo:hi], out[lo:hi]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *Redis) claim(ctx context.Context, ids []event.ID, out []Status) error {
	pipe := r.c.Pipeline()
	sets := make([]*redis.BoolCmd, len(ids))
	for i, id := range ids {
		sets[i] = pipe.SetNX(ctx, r.key(id), "p", r.window)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis claim: %w", err)
	}
	var taken []int
	for i, c := range sets {
		ok, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("redis claim: %w", err)
		}
		if ok {
			out[i] = New
		} else {
			taken = append(taken, i)
		}
	}
	if len(taken) == 0 {
		return nil
	}
	pipe = r.c.Pipeline()
	gets := make([]*redis.StringCmd, len(taken))
	for j, i := range taken {
		gets[j] = pipe.Get(ctx, r.key(ids[i]))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis claim lookup: %w", err)
	}
	for j, i := range taken {
		v, err := gets[j].Result()
		switch {
		case err == nil && v == "d":
			out[i] = Duplicate
		case err == nil || errors.Is(err, redis.Nil):
			// "p", or expired between the two round trips: the store decides.
			out[i] = Uncertain
		default:
			return fmt.Errorf("redis claim lookup: %w", err)
		}
	}
	return nil
}

// MarkDone sets the ids to done. It is a plain SET rather than SET XX: if a
// pending key expired while ClickHouse was down for longer than the window,
// the id must still end up marked.
func (r *Redis) MarkDone(ctx context.Context, ids []event.ID) error {
	for lo := 0; lo < len(ids); lo += chunk {
		pipe := r.c.Pipeline()
		for _, id := range ids[lo:min(lo+chunk, len(ids))] {
			pipe.Set(ctx, r.key(id), "d", r.window)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis mark done: %w", err)
		}
	}
	return nil
}

func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

func (r *Redis) Name() string { return "redis" }
func (r *Redis) Close() error { return r.c.Close() }
