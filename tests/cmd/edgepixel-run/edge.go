package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// edgeConfigFile is where a user of `make run` puts the edge module's
// settings: the keys of Fastly's "edgepixel" config store (README,
// configuration), e.g.
//
//	"site.shop" = "sign=reject tier=aggregate"
//	rate_limit_client = "50"
//
// The launcher rewrites DIR/fastly.toml at every start, so this file, read
// at start, is what lasts.
const edgeConfigFile = "edge-config.toml"

// readEdgeConfig reads dir/edge-config.toml: a flat table of string
// values. A missing file is no settings; any other value type is an error
// naming the key, since the config store holds only strings.
func readEdgeConfig(dir string) (map[string]string, error) {
	path := filepath.Join(dir, edgeConfigFile)
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	cfg := make(map[string]string, len(raw))
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		switch v := raw[k].(type) {
		case string:
			cfg[k] = v
		case map[string]any:
			// A dotted key without quotes (site.shop = "sign=reject") is
			// a table in TOML, keys within keys (TOML v1.0.0, "Keys":
			// dotted keys), not one key with a dot in it, as is a
			// [site] table. The fix is to quote the key, not the value
			// (found by a new-user tester, told to quote the table).
			key, leaf := firstLeaf(k, v)
			return nil, fmt.Errorf("%s: %s is a TOML table, not a config store key: a key with a dot in it must be quoted, or TOML reads its parts as tables; write %q = %s", path, k, key, tomlString(leaf))
		default:
			return nil, fmt.Errorf("%s: %s = %v: config store values are strings: quote it (%s = \"%v\")", path, k, v, k, v)
		}
	}
	return cfg, nil
}

// firstLeaf follows table t, named key, to its first value in key order
// that is not a table: its dotted key and the value.
func firstLeaf(key string, t map[string]any) (string, any) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if sub, ok := t[k].(map[string]any); ok {
			return firstLeaf(key+"."+k, sub)
		}
		return key + "." + k, t[k]
	}
	return key, ""
}

// tomlString is v as a TOML string, a config store value: a string
// quoted, anything else quoted as it prints.
func tomlString(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return strconv.Quote(fmt.Sprint(v))
}

// salts keeps the visitor-id salts in dir/secrets (the stack lists each
// file there in the POP's "edgepixel" secret store) by running the
// edgepixel-salt command, as a self-hosted POP's cron would: today's
// salt at once, tomorrow's once the visit window after midnight has
// passed. Without them events carry no visitor id.
type salts struct {
	bin string // edgepixel-salt
	dir string // DIR/secrets
	log *slog.Logger
}

// rotate runs edgepixel-salt once and reports whether it wrote a salt.
func (s salts) rotate(ctx context.Context) (bool, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return false, err
	}
	out, err := exec.CommandContext(ctx, s.bin, "--dir", s.dir, "--today").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("%s: %v: %s", s.bin, err, strings.TrimSpace(string(out)))
	}
	return strings.Contains(string(out), "wrote "), nil
}

// every rotates each interval until ctx ends, and calls hup (which
// SIGHUPs the POP running then) after each run that wrote a salt, so
// that it re-reads its secret stores.
func (s salts) every(ctx context.Context, interval time.Duration, hup func() error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wrote, err := s.rotate(ctx)
		if err != nil {
			s.log.Warn("rotating the visitor salts", "err", err)
			continue
		}
		if wrote {
			if err := hup(); err != nil {
				s.log.Warn("telling the POP to re-read its secrets", "err", err)
			} else {
				s.log.Info("rotated the visitor salts", "dir", s.dir)
			}
		}
	}
}
