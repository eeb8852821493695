package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/shared/clientip"
)

// What the POP knows of a guest's client, as Fastly would: geolocation
// databases (edge/pop/geoip), who the client is behind trusted proxies
// (edge/pop/clientaddr.go), and the size of the Edge Rate Limiting tables
// (edge/pop/erl.go). The flags and their environment variables (usage).

type clientInfoOptions struct {
	geoIPDBs        []string
	trustedProxies  []netip.Prefix
	forwardedHeader string
	proxyProtocol   bool
	erlMaxEntries   int
}

// listFlag is a repeatable flag taking comma-separated items. The
// environment gives a list first; the first use of the flag replaces it,
// later uses add to it.
type listFlag[T any] struct {
	dst       *[]T
	parse     func(string) ([]T, error)
	fromFlags bool
}

func (l *listFlag[T]) String() string { return "" }
func (l *listFlag[T]) Set(s string) error {
	items, err := l.parse(s)
	if err != nil {
		return err
	}
	if !l.fromFlags {
		*l.dst, l.fromFlags = nil, true
	}
	*l.dst = append(*l.dst, items...)
	return nil
}

// parsePaths splits a comma-separated list of file paths.
func parsePaths(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// fromEnv reads the EDGEPIXEL_POP_* variables (before the flags, which
// win).
func (c *clientInfoOptions) fromEnv(getenv func(string) string) error {
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_GEOIP_DB"); ok {
		c.geoIPDBs, _ = parsePaths(v)
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_TRUSTED_PROXIES"); ok {
		ps, err := clientip.ParsePrefixes(v)
		if err != nil {
			return fmt.Errorf("EDGEPIXEL_POP_TRUSTED_PROXIES: %w", err)
		}
		c.trustedProxies = ps
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_FORWARDED_HEADER"); ok {
		c.forwardedHeader = v
	}
	if v, ok := lookup(getenv, "EDGEPIXEL_POP_PROXY_PROTOCOL"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return envError("EDGEPIXEL_POP_PROXY_PROTOCOL", v, err)
		}
		c.proxyProtocol = b
	}
	return envInt(getenv, "EDGEPIXEL_POP_ERL_MAX_ENTRIES", &c.erlMaxEntries)
}

func (c *clientInfoOptions) flags(fs *flag.FlagSet) {
	fs.Var(&listFlag[string]{dst: &c.geoIPDBs, parse: parsePaths}, "geoip-db", "")
	fs.Var(&listFlag[netip.Prefix]{dst: &c.trustedProxies, parse: clientip.ParsePrefixes}, "trusted-proxies", "")
	fs.StringVar(&c.forwardedHeader, "forwarded-header", c.forwardedHeader, "")
	fs.BoolVar(&c.proxyProtocol, "proxy-protocol", c.proxyProtocol, "")
	fs.IntVar(&c.erlMaxEntries, "erl-max-entries", c.erlMaxEntries, "")
}

func (c *clientInfoOptions) check() error {
	if c.erlMaxEntries < 0 {
		return errors.New("--erl-max-entries: a count, or 0 for the default")
	}
	if len(c.trustedProxies) == 0 && c.forwardedHeader != "" {
		return errors.New("--forwarded-header says what trusted proxies send: give --trusted-proxies too")
	}
	if _, err := clientip.NewTrust(c.trustedProxies, c.forwardedHeader, c.proxyProtocol); err != nil {
		return fmt.Errorf("%w (--trusted-proxies, --forwarded-header, --proxy-protocol)", err)
	}
	// Named here, where the flag (or its variable) can be said: the
	// database's own error named neither (a new-user tester's).
	for _, p := range c.geoIPDBs {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--geoip-db %s does not exist: give a MaxMind-format database file (.mmdb: GeoLite2 or DB-IP City, Country or ASN)", p)
		}
	}
	return nil
}

// apply sets the pop.Config fields.
func (c *clientInfoOptions) apply(cfg pop.Config) pop.Config {
	cfg.GeoIPDatabases = c.geoIPDBs
	cfg.TrustedProxies = c.trustedProxies
	cfg.ForwardedHeader = c.forwardedHeader
	cfg.ProxyProtocol = c.proxyProtocol
	cfg.ERLMaxEntries = c.erlMaxEntries
	return cfg
}
