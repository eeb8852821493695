package dedupe

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// LogRedisTo routes go-redis's own messages (its connection pool's "failed
// to dial" while Redis is down, among others) to l as warnings. go-redis
// otherwise prints them with the standard log package to stderr, plain
// text in the middle of --log-format json. Its logger is one for the whole
// process (redis.SetLogger, go-redis v9 redis.go), hence a function of
// the package and not of a client.
func LogRedisTo(l *slog.Logger) {
	redis.SetLogger(redisLog{l.With("component", "redis")})
}

// redisLog is go-redis's internal.Logging over slog.
type redisLog struct{ log *slog.Logger }

// Printf logs one go-redis message; its own "redis: " prefix is dropped,
// the component says it.
func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.Log(ctx, slog.LevelWarn, strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
