package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

// Client limits: connections, deadlines and request body memory (see
// edge/pop/clients.go), their flags and environment variables (usage).

type clientOptions struct {
	maxConns, maxConnsPerAddr int
	headerTimeout             time.Duration
	keepAliveTimeout          time.Duration
	bodyTimeout               time.Duration
	bodyIdleTimeout           time.Duration
	writeTimeout              time.Duration
	maxRequestBody            byteSize
	bodyMemory                byteSize
}

// unsetCount marks --max-conns and --max-conns-per-addr as not given:
// pop.ClientLimits spells their defaults 0 (--max-conns's lowered to fit
// the open-file limit), but a 0 given on the command line or in the
// environment is refused, not read as the default (check).
const unsetCount = math.MinInt

func defaultClientOptions() clientOptions {
	return clientOptions{
		maxConns:         unsetCount,
		maxConnsPerAddr:  unsetCount,
		headerTimeout:    pop.DefaultHeaderTimeout,
		keepAliveTimeout: pop.DefaultIdleTimeout,
		bodyTimeout:      pop.DefaultBodyTimeout,
		bodyIdleTimeout:  pop.DefaultBodyIdleTimeout,
		writeTimeout:     pop.DefaultWriteTimeout,
		maxRequestBody:   pop.DefaultMaxRequestBody,
		bodyMemory:       pop.DefaultBodyMemory,
	}
}

// durations and sizes pair each flag with its variable.
func (c *clientOptions) durations() []struct {
	flag, env string
	dst       *time.Duration
} {
	return []struct {
		flag, env string
		dst       *time.Duration
	}{
		{"header-timeout", "EDGEPIXEL_POP_HEADER_TIMEOUT", &c.headerTimeout},
		{"keepalive-timeout", "EDGEPIXEL_POP_KEEPALIVE_TIMEOUT", &c.keepAliveTimeout},
		{"body-timeout", "EDGEPIXEL_POP_BODY_TIMEOUT", &c.bodyTimeout},
		{"body-idle-timeout", "EDGEPIXEL_POP_BODY_IDLE_TIMEOUT", &c.bodyIdleTimeout},
		{"write-timeout", "EDGEPIXEL_POP_WRITE_TIMEOUT", &c.writeTimeout},
	}
}

func (c *clientOptions) fromEnv(getenv func(string) string) error {
	for _, n := range []struct {
		key string
		dst *int
	}{{"EDGEPIXEL_POP_MAX_CONNS", &c.maxConns}, {"EDGEPIXEL_POP_MAX_CONNS_PER_ADDR", &c.maxConnsPerAddr}} {
		if err := envInt(getenv, n.key, n.dst); err != nil {
			return err
		}
	}
	for _, d := range c.durations() {
		if v, ok := lookup(getenv, d.env); ok {
			x, err := time.ParseDuration(v)
			if err != nil {
				return envError(d.env, v, err)
			}
			*d.dst = x
		}
	}
	for _, sz := range []struct {
		key string
		dst *byteSize
	}{{"EDGEPIXEL_POP_MAX_REQUEST_BODY", &c.maxRequestBody}, {"EDGEPIXEL_POP_BODY_MEMORY", &c.bodyMemory}} {
		if v, ok := lookup(getenv, sz.key); ok {
			if err := sz.dst.Set(v); err != nil {
				return fmt.Errorf("%s: %w", sz.key, err)
			}
		}
	}
	return nil
}

func (c *clientOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.maxConns, "max-conns", c.maxConns, "")
	fs.IntVar(&c.maxConnsPerAddr, "max-conns-per-addr", c.maxConnsPerAddr, "")
	for _, d := range c.durations() {
		fs.DurationVar(d.dst, d.flag, *d.dst, "")
	}
	fs.Var(&c.maxRequestBody, "max-request-body", "")
	fs.Var(&c.bodyMemory, "body-memory", "")
}

func (c *clientOptions) check() error {
	// The help offers a count or -1 (no limit), and no 0: a 0 started the
	// POP with the default, which a user who meant no connections, or no
	// limit, did not get and was not told.
	for _, n := range []struct {
		flag string
		v    int
	}{{"max-conns", c.maxConns}, {"max-conns-per-addr", c.maxConnsPerAddr}} {
		if n.v != unsetCount && n.v < 1 && n.v != -1 {
			return fmt.Errorf("--%s %d: want a count of at least 1, or -1 for no limit", n.flag, n.v)
		}
	}
	for _, d := range c.durations() {
		if *d.dst < 0 {
			return fmt.Errorf("--%s cannot be negative (0 turns it off)", d.flag)
		}
	}
	if c.maxRequestBody < pop.MinMaxRequestBody {
		return fmt.Errorf("--max-request-body %s: want a size of at least 64KiB (%d bytes)", c.maxRequestBody.human(), pop.MinMaxRequestBody)
	}
	if c.bodyMemory < c.maxRequestBody {
		return fmt.Errorf("--body-memory %s is less than --max-request-body %s", c.bodyMemory.human(), c.maxRequestBody.human())
	}
	return nil
}

// apply sets cfg.Clients. On the command line 0 turns a duration off,
// which pop.Config spells negative; counts pass as they are (-1: none),
// except a count not given, which pop.Config spells 0 (the default).
func (c *clientOptions) apply(cfg pop.Config) pop.Config {
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	count := func(n int) int {
		if n == unsetCount {
			return 0
		}
		return n
	}
	cfg.Clients = pop.ClientLimits{
		MaxConns:        count(c.maxConns),
		MaxConnsPerAddr: count(c.maxConnsPerAddr),
		HeaderTimeout:   off(c.headerTimeout),
		IdleTimeout:     off(c.keepAliveTimeout),
		BodyTimeout:     off(c.bodyTimeout),
		BodyIdleTimeout: off(c.bodyIdleTimeout),
		WriteTimeout:    off(c.writeTimeout),
		MaxRequestBody:  int64(c.maxRequestBody),
		BodyMemory:      int64(c.bodyMemory),
	}
	return cfg
}

// byteSize is a flag holding a number of bytes, written plainly or with a
// binary or decimal unit: 65536, 64KiB, 64k, 1MiB, 1M, 1MB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

// human writes b in the largest binary unit that divides it (64KiB,
// 1MiB), else in bytes: as a user writes a size, for error messages.
func (b byteSize) human() string {
	for _, u := range []struct {
		name string
		n    byteSize
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && b%u.n == 0 {
			return strconv.FormatInt(int64(b/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want bytes, optionally with a unit (64KiB, 1MiB, 1GiB)", s)
	}
	mult := map[string]int64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000}[unit]
	if mult == 0 {
		return fmt.Errorf("size %q: unknown unit %q (want KiB, MiB or GiB)", s, unit)
	}
	if n > (1<<62)/mult {
		return fmt.Errorf("size %q is too large", s)
	}
	*b = byteSize(n * mult)
	return nil
}
