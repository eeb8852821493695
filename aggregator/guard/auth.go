package guard

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
)

// Kinds of credentials, the label of edgepixel_aggregator_auth_failures_total.
const (
	CredSignature  = "signature"   // a batch's HMAC headers (bad or stale)
	CredLogToken   = "log_token"   // the NDJSON bearer token
	CredAdminToken = "admin_token" // the admin bearer token
	CredDashboard  = "dashboard"   // the dashboard's token (its login and bearer)
)

// ReasonRateLimited is the drop reason of a request refused (429) because
// its address has used up its credential failures.
const ReasonRateLimited = "rate_limited"

// AuthConfig configures an AuthLimiter.
type AuthConfig struct {
	// Rate is how many failed credential checks per second a client
	// address earns back; Burst how many it may fail in a row. Defaults 1
	// and 20.
	Rate  float64
	Burst float64
	// MaxClients bounds the addresses tracked (about 100 bytes each);
	// default 65536. Past it, addresses not tracked share one bucket.
	MaxClients int
	// Interval is how often failures are summed up in the log; default
	// 1 min.
	Interval time.Duration
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	Now      func() time.Time // for tests
}

// AuthLimiter brakes credential guessing: a token bucket per client
// address (ClientKey) that only failed checks draw from. While an
// address's bucket is empty, Allow refuses its requests before their
// credential is evaluated; correct credentials cost nothing, so senders
// that sign correctly are never slowed. Failures are logged in aggregate,
// one summary line per Interval, not one line per attempt.
type AuthLimiter struct {
	cfg AuthConfig
	log *slog.Logger
	m   *metrics.Metrics

	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  bucket // shared by addresses not tracked while buckets is full
	lastSweep time.Time
	// for the next summary
	fails   map[string]uint64 // by kind
	refused uint64
}

type bucket struct {
	tokens float64
	last   time.Time
	fails  uint64 // failures since the last summary
}

// NewAuthLimiter returns a limiter; call Run to get the summaries logged.
func NewAuthLimiter(cfg AuthConfig) *AuthLimiter {
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Burst < 1 {
		cfg.Burst = 20
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 65536
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	cfg.Metrics.DeclareDrops(ReasonRateLimited)
	cfg.Metrics.DeclareAuthFailures(CredSignature, CredLogToken, CredAdminToken, CredDashboard)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &AuthLimiter{cfg: cfg, log: cfg.Logger.With("component", "auth"), m: cfg.Metrics,
		buckets: map[string]*bucket{}, fails: map[string]uint64{}}
	l.overflow = bucket{tokens: l.overflowBurst(), last: cfg.Now()}
	return l
}

func (l *AuthLimiter) overflowBurst() float64 { return l.cfg.Burst * 16 }

// refill brings b's tokens up to date; burst is its capacity.
func (l *AuthLimiter) refill(b *bucket, now time.Time, rate, burst float64) {
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = math.Min(burst, b.tokens+d*rate)
	}
	b.last = now
}

// Allow reports whether the credential of a request from remoteAddr may be
// evaluated. When not, retryAfter is when the address may try again: the
// caller refuses the request with 429 and counts it (ReasonRateLimited).
func (l *AuthLimiter) Allow(remoteAddr string) (ok bool, retryAfter time.Duration) {
	key := ClientKey(remoteAddr)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, rate, burst := l.buckets[key], l.cfg.Rate, l.cfg.Burst
	if b == nil {
		if len(l.buckets) < l.cfg.MaxClients {
			return true, 0 // no failures on record
		}
		b, rate, burst = &l.overflow, l.cfg.Rate*16, l.overflowBurst()
	}
	l.refill(b, now, rate, burst)
	if b.tokens >= 1 {
		return true, 0
	}
	l.refused++
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// Fail records a failed check of a credential of kind from remoteAddr.
func (l *AuthLimiter) Fail(remoteAddr, kind string) {
	key := ClientKey(remoteAddr)
	now := l.cfg.Now()
	l.m.AuthFailure(kind)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[kind]++
	b, rate, burst := l.buckets[key], l.cfg.Rate, l.cfg.Burst
	if b == nil {
		if len(l.buckets) >= l.cfg.MaxClients && now.Sub(l.lastSweep) >= time.Second {
			l.sweep(now)
		}
		if len(l.buckets) < l.cfg.MaxClients {
			b = &bucket{tokens: burst, last: now}
			l.buckets[key] = b
		} else {
			b, rate, burst = &l.overflow, l.cfg.Rate*16, l.overflowBurst()
		}
	}
	l.refill(b, now, rate, burst)
	b.tokens = math.Max(b.tokens-1, -burst) // a flood cannot dig the hole deeper than one burst
	b.fails++
}

// sweep forgets the addresses whose buckets are full again: they are as
// good as new. At most once a second, so a full map costs little.
func (l *AuthLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		l.refill(b, now, l.cfg.Rate, l.cfg.Burst)
		if b.tokens >= l.cfg.Burst {
			delete(l.buckets, k)
		}
	}
}

// Run logs a summary of the failures every Interval until ctx ends.
func (l *AuthLimiter) Run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Summarize()
			return
		case <-t.C:
			l.Summarize()
		}
	}
}

// Summarize logs one line about the failures since the last summary (if
// any): how many of each kind, how many requests were refused, from how
// many addresses, and the addresses with the most.
func (l *AuthLimiter) Summarize() {
	l.mu.Lock()
	type top struct {
		key string
		n   uint64
	}
	var tops []top
	var total uint64
	for _, n := range l.fails {
		total += n
	}
	for k, b := range l.buckets {
		if b.fails > 0 {
			tops = append(tops, top{k, b.fails})
			b.fails = 0
		}
	}
	if l.overflow.fails > 0 {
		tops = append(tops, top{"(untracked)", l.overflow.fails})
		l.overflow.fails = 0
	}
	kinds := make([]string, 0, len(l.fails))
	for k, n := range l.fails {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	refused := l.refused
	clear(l.fails)
	l.refused = 0
	if now := l.cfg.Now(); now.Sub(l.lastSweep) >= time.Second {
		l.sweep(now)
	}
	l.mu.Unlock()
	if total == 0 && refused == 0 {
		return
	}
	slices.Sort(kinds)
	slices.SortFunc(tops, func(a, b top) int {
		if a.n != b.n {
			if a.n > b.n {
				return -1
			}
			return 1
		}
		return strings.Compare(a.key, b.key)
	})
	// ADDRESS=COUNT, like by_kind: a colon would read as a port, and an
	// IPv6 prefix is full of them.
	var most []string
	for _, t := range tops[:min(len(tops), 5)] {
		most = append(most, fmt.Sprintf("%s=%d", t.key, t.n))
	}
	l.log.Warn("credential failures", "interval", l.cfg.Interval, "failures", total, "by_kind", strings.Join(kinds, " "),
		"refused_rate_limited", refused, "addresses", len(tops), "most", strings.Join(most, " "))
}
