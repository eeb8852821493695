// Package fastlytoml reads a Fastly Compute package manifest (fastly.toml),
// including the [local_server] section that Fastly's local runtime, Viceroy,
// uses to describe backends, config stores, dictionaries and secret stores.
//
// The parser is deliberately lenient the way Viceroy is: unknown keys are
// ignored, so a manifest written for a newer CLI still loads. Everything a
// host needs at request time (store contents, secret values) is resolved at
// load time, so a missing secret file is reported when the POP starts rather
// than when the first visitor arrives.
package fastlytoml

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Manifest is a parsed fastly.toml.
type Manifest struct {
	Name            string
	Description     string
	Language        string
	ManifestVersion int
	Scripts         Scripts
	LocalServer     LocalServer

	// Dir is the directory the manifest was read from; relative paths in
	// the manifest were resolved against it.
	Dir string
}

// Scripts is the [scripts] table.
type Scripts struct {
	Build     string
	PostBuild string
}

// LocalServer is the [local_server] table, fully resolved.
type LocalServer struct {
	Backends     map[string]Backend
	ConfigStores map[string]map[string]string
	Dictionaries map[string]map[string]string
	SecretStores map[string]map[string][]byte
	// Geolocation is kept as parsed but not interpreted yet.
	Geolocation map[string]any
}

// Backend is one entry of [local_server.backends].
type Backend struct {
	Name string
	// URL is the parsed backend url: scheme, host[:port] and an optional
	// path prefix that is joined in front of every request path.
	URL *url.URL
	// OverrideHost, when set, replaces the Host header of requests sent to
	// this backend.
	OverrideHost string
	CertHost     string
	UseSNI       bool
	// Timeouts; zero means "use the host's default".
	ConnectTimeout      time.Duration
	FirstByteTimeout    time.Duration
	BetweenBytesTimeout time.Duration
}

// Port returns the backend's effective TCP port.
func (b Backend) Port() int {
	if p := b.URL.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if b.URL.Scheme == "https" {
		return 443
	}
	return 80
}

// BackendNames returns the names of the configured backends, sorted.
func (m *Manifest) BackendNames() []string {
	names := make([]string, 0, len(m.LocalServer.Backends))
	for n := range m.LocalServer.Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Load reads and resolves the manifest at path.
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Parse parses manifest text; dir is the directory relative paths in the
// manifest are resolved against.
func Parse(data []byte, dir string) (*Manifest, error) {
	var raw rawManifest
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, err
	}
	m := &Manifest{
		Name:        raw.Name,
		Description: raw.Description,
		Language:    raw.Language,
		Scripts:     Scripts{Build: raw.Scripts.Build, PostBuild: raw.Scripts.PostBuild},
		Dir:         dir,
	}
	switch v := raw.ManifestVersion.(type) {
	case nil:
	case int64:
		m.ManifestVersion = int(v)
	case string:
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("manifest_version: %q is not a number", v)
		}
		m.ManifestVersion = n
	default:
		return nil, fmt.Errorf("manifest_version: unexpected type %T", v)
	}

	ls := &m.LocalServer
	ls.Backends = map[string]Backend{}
	ls.ConfigStores = map[string]map[string]string{}
	ls.Dictionaries = map[string]map[string]string{}
	ls.SecretStores = map[string]map[string][]byte{}
	ls.Geolocation = raw.LocalServer.Geolocation

	for name, rb := range raw.LocalServer.Backends {
		b, err := rb.resolve(name)
		if err != nil {
			return nil, fmt.Errorf("local_server.backends.%s: %w", name, err)
		}
		ls.Backends[name] = b
	}
	for name, rs := range raw.LocalServer.ConfigStores {
		kv, err := rs.resolve(dir)
		if err != nil {
			return nil, fmt.Errorf("local_server.config_stores.%s: %w", name, err)
		}
		ls.ConfigStores[name] = kv
	}
	for name, rs := range raw.LocalServer.Dictionaries {
		kv, err := rs.resolve(dir)
		if err != nil {
			return nil, fmt.Errorf("local_server.dictionaries.%s: %w", name, err)
		}
		ls.Dictionaries[name] = kv
	}
	for name, entries := range raw.LocalServer.SecretStores {
		st := map[string][]byte{}
		for i, e := range entries {
			v, err := e.resolve(dir)
			if err != nil {
				return nil, fmt.Errorf("local_server.secret_stores.%s[%d]: %w", name, i, err)
			}
			st[e.Key] = v
		}
		ls.SecretStores[name] = st
	}
	return m, nil
}

type rawManifest struct {
	Name            string `toml:"name"`
	Description     string `toml:"description"`
	Language        string `toml:"language"`
	ManifestVersion any    `toml:"manifest_version"`
	Scripts         struct {
		Build     string `toml:"build"`
		PostBuild string `toml:"post_build"`
	} `toml:"scripts"`
	LocalServer struct {
		Backends     map[string]rawBackend  `toml:"backends"`
		ConfigStores map[string]rawStore    `toml:"config_stores"`
		Dictionaries map[string]rawStore    `toml:"dictionaries"`
		SecretStores map[string][]rawSecret `toml:"secret_stores"`
		Geolocation  map[string]any         `toml:"geolocation"`
	} `toml:"local_server"`
}

type rawBackend struct {
	URL                 string `toml:"url"`
	OverrideHost        string `toml:"override_host"`
	CertHost            string `toml:"cert_host"`
	UseSNI              *bool  `toml:"use_sni"`
	ConnectTimeout      any    `toml:"connect_timeout"`
	FirstByteTimeout    any    `toml:"first_byte_timeout"`
	BetweenBytesTimeout any    `toml:"between_bytes_timeout"`
}

func (rb rawBackend) resolve(name string) (Backend, error) {
	if rb.URL == "" {
		return Backend{}, fmt.Errorf("url is required")
	}
	u, err := url.Parse(rb.URL)
	if err != nil {
		return Backend{}, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Backend{}, fmt.Errorf("url %q: scheme must be http or https", rb.URL)
	}
	if u.Host == "" {
		return Backend{}, fmt.Errorf("url %q has no host", rb.URL)
	}
	b := Backend{Name: name, URL: u, OverrideHost: rb.OverrideHost, CertHost: rb.CertHost, UseSNI: true}
	if rb.UseSNI != nil {
		b.UseSNI = *rb.UseSNI
	}
	for _, t := range []struct {
		key string
		raw any
		dst *time.Duration
	}{
		{"connect_timeout", rb.ConnectTimeout, &b.ConnectTimeout},
		{"first_byte_timeout", rb.FirstByteTimeout, &b.FirstByteTimeout},
		{"between_bytes_timeout", rb.BetweenBytesTimeout, &b.BetweenBytesTimeout},
	} {
		d, err := parseTimeout(t.raw)
		if err != nil {
			return Backend{}, fmt.Errorf("%s: %w", t.key, err)
		}
		*t.dst = d
	}
	return b, nil
}

// parseTimeout accepts an integer number of milliseconds (Fastly's unit for
// backend timeouts) or a Go duration string such as "1.5s".
func parseTimeout(v any) (time.Duration, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("negative timeout %d", v)
		}
		return time.Duration(v) * time.Millisecond, nil
	case float64:
		if v < 0 {
			return 0, fmt.Errorf("negative timeout %v", v)
		}
		return time.Duration(v * float64(time.Millisecond)), nil
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return time.Duration(n) * time.Millisecond, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("invalid timeout %q (milliseconds or a duration like \"2s\")", v)
		}
		return d, nil
	default:
		return 0, fmt.Errorf("unexpected type %T", v)
	}
}

type rawStore struct {
	Format   string         `toml:"format"`
	File     string         `toml:"file"`
	Contents map[string]any `toml:"contents"`
}

func (rs rawStore) resolve(dir string) (map[string]string, error) {
	format := rs.Format
	if format == "" {
		// Viceroy requires a format; accept the obvious cases anyway.
		switch {
		case rs.Contents != nil:
			format = "inline-toml"
		case rs.File != "":
			format = "json"
		}
	}
	switch format {
	case "inline-toml":
		kv := make(map[string]string, len(rs.Contents))
		for k, v := range rs.Contents {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("contents.%s: value must be a string, not %T", k, v)
			}
			kv[k] = s
		}
		return kv, nil
	case "json":
		if rs.File == "" {
			return nil, fmt.Errorf(`format "json" needs a file`)
		}
		data, err := os.ReadFile(resolvePath(dir, rs.File))
		if err != nil {
			return nil, err
		}
		var kv map[string]string
		if err := json.Unmarshal(data, &kv); err != nil {
			return nil, fmt.Errorf("%s: must be a JSON object of string values: %w", rs.File, err)
		}
		if kv == nil {
			kv = map[string]string{}
		}
		return kv, nil
	default:
		return nil, fmt.Errorf("unsupported format %q (want inline-toml or json)", rs.Format)
	}
}

type rawSecret struct {
	Key  string  `toml:"key"`
	Data *string `toml:"data"`
	File *string `toml:"file"`
	Env  *string `toml:"env"`
}

func (e rawSecret) resolve(dir string) ([]byte, error) {
	if e.Key == "" {
		return nil, fmt.Errorf("key is required")
	}
	n := 0
	for _, p := range []*string{e.Data, e.File, e.Env} {
		if p != nil {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("secret %q needs exactly one of data, file or env", e.Key)
	}
	switch {
	case e.Data != nil:
		return []byte(*e.Data), nil
	case e.File != nil:
		data, err := os.ReadFile(resolvePath(dir, *e.File))
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", e.Key, err)
		}
		return data, nil
	default:
		v, ok := os.LookupEnv(*e.Env)
		if !ok {
			return nil, fmt.Errorf("secret %q: environment variable %s is not set", e.Key, *e.Env)
		}
		return []byte(v), nil
	}
}

func resolvePath(dir, p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}
