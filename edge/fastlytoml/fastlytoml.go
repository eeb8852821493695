// Package fastlytoml reads a Fastly Compute package manifest (fastly.toml),
// including the [local_server] section that Fastly's local runtime, Viceroy,
// uses to describe backends, config stores, dictionaries, secret stores, KV
// stores and geolocation data, in each of the forms Viceroy reads.
//
// The parser is deliberately lenient where Viceroy's format allows it:
// unknown keys are ignored, so a manifest written for a newer CLI still
// loads (an unknown key of [local_server] itself, most likely a misspelt
// table, is listed in Manifest.Warnings). Values it does read are checked, and an error names the table and
// key at fault (and the file, for data the manifest points to). Everything
// a host needs at request time (store contents, secret values, geolocation
// records) is resolved at load time, so a missing file is reported when the
// POP starts rather than when the first visitor arrives. Relative paths are
// relative to the manifest's directory (Viceroy uses its working
// directory, normally the project directory that holds fastly.toml).
package fastlytoml

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/redact"
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
	// Path is the file Load read ("" for Parse), for reading it again.
	Path string
	// Warnings are what a host should tell its user about the manifest
	// without refusing it: keys of [local_server] that neither this
	// package nor Viceroy reads (a misspelt table), which are ignored.
	Warnings []string
}

// Scripts is the [scripts] table.
type Scripts struct {
	Build     string
	PostBuild string
}

// LocalServer is the [local_server] table, fully resolved.
type LocalServer struct {
	Backends map[string]Backend
	// ConfigStores and Dictionaries are one namespace in Viceroy (the
	// tables are aliases); they are kept apart here so a POP can tell
	// where a name came from, and it looks names up in both.
	ConfigStores map[string]map[string]string
	Dictionaries map[string]map[string]string
	// ConfigFiles are the JSON files ConfigStores and Dictionaries were
	// read from (format "json"), sorted, relative paths resolved: a host
	// that reloads on a change of the manifest watches them too.
	ConfigFiles  []string
	SecretStores map[string]map[string][]byte
	// KVStores holds the initial contents of each KV store, from
	// [local_server.kv_stores] (or its older names object_stores and
	// object_store).
	KVStores    map[string]map[string]KVEntry
	Geolocation Geolocation
	// ACLs, DeviceDetection (user agent -> record) and ShieldingSites
	// fake those Fastly products locally (products.go).
	ACLs            map[string]*ACL
	DeviceDetection map[string]map[string]any
	ShieldingSites  map[string]ShieldingSite

	// rawSecretStores and dir are the secret stores as written, kept so
	// ReadSecretStores can read their files and variables again.
	rawSecretStores map[string]any
	dir             string
}

// ReadSecretStores reads the secret stores' values again from where the
// manifest says they are (files, environment variables, inline data), as
// Load read them into SecretStores: a rotated secret file (edgepixel-salt
// --dir) is seen without restarting. Errors are Load's.
func (ls *LocalServer) ReadSecretStores() (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	for _, name := range sortedKeys(ls.rawSecretStores) {
		st, err := resolveSecretStore(name, ls.rawSecretStores[name], ls.dir)
		if err != nil {
			return nil, within("local_server.secret_stores."+name, err)
		}
		out[name] = st
	}
	return out, nil
}

// KVEntry is one initial item of a KV store.
type KVEntry struct {
	Value    []byte
	Metadata []byte // nil when the entry has none
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
	// CACertPEM holds the PEM certificates of ca_certificate, if any: the
	// roots to trust for this backend instead of the system's.
	CACertPEM []byte
	GRPC      bool
	// Health is what backend health checks report locally: "unknown"
	// (the default), "healthy" or "unhealthy", as in Viceroy.
	Health string
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
	m.Path = abs
	return m, nil
}

// Parse parses manifest text; dir is the directory relative paths in the
// manifest are resolved against. Errors name the table and key at fault
// (and the file, for data read from a file the manifest refers to).
func Parse(data []byte, dir string) (*Manifest, error) {
	var raw rawManifest
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
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
	if err := m.LocalServer.resolve(&raw.LocalServer, dir); err != nil {
		return nil, err
	}
	m.Warnings = unknownLocalServerKeys(md)
	return m, nil
}

// localServerKeys are the keys of [local_server] this package reads, and
// viceroyOnly those Viceroy reads that it does not.
var (
	localServerKeys = []string{"acls", "backends", "config_stores", "device_detection", "dictionaries",
		"geolocation", "kv_stores", "object_store", "object_stores", "secret_stores", "shielding_sites"}
	viceroyOnly = []string{"fake_valid_fastly_keys"}
)

// unknownLocalServerKeys warns of each key of [local_server] that is none
// of localServerKeys: Viceroy ignores such a key too (its [local_server]
// takes unknown keys, so a manifest for a newer Viceroy loads in an older
// one), but a misspelt [local_server.backendz] would leave a guest without
// its backends and its user without a word.
func unknownLocalServerKeys(md toml.MetaData) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range md.Undecoded() {
		// A known table's own undecoded keys (a backend's misspelt
		// field) are not this warning's.
		if len(k) < 2 || k[0] != "local_server" || seen[k[1]] || slices.Contains(localServerKeys, k[1]) {
			continue
		}
		seen[k[1]] = true
		name := "local_server." + k[1]
		if slices.Contains(viceroyOnly, k[1]) {
			out = append(out, name+" is read by Viceroy, not by this host: ignored")
			continue
		}
		w := name + " is not a key of [local_server]: ignored"
		if near := flaghint.Nearest(k[1], localServerKeys); near != "" {
			w += "; did you mean local_server." + near + "?"
		}
		out = append(out, w+" (the keys are "+strings.Join(localServerKeys, ", ")+")")
	}
	return out
}

func (ls *LocalServer) resolve(raw *rawLocalServer, dir string) error {
	ls.Backends = map[string]Backend{}
	ls.ConfigStores = map[string]map[string]string{}
	ls.Dictionaries = map[string]map[string]string{}
	ls.SecretStores = map[string]map[string][]byte{}
	ls.KVStores = map[string]map[string]KVEntry{}

	for _, name := range sortedKeys(raw.Backends) {
		b, err := raw.Backends[name].resolve(name, dir)
		if err != nil {
			return fmt.Errorf("local_server.backends.%s: %w", name, err)
		}
		ls.Backends[name] = b
	}
	for _, t := range []struct {
		table string
		raw   map[string]rawStore
		dst   map[string]map[string]string
	}{
		{"config_stores", raw.ConfigStores, ls.ConfigStores},
		{"dictionaries", raw.Dictionaries, ls.Dictionaries},
	} {
		for _, name := range sortedKeys(t.raw) {
			kv, err := t.raw[name].resolve(dir)
			if err != nil {
				return fmt.Errorf("local_server.%s.%s: %w", t.table, name, err)
			}
			t.dst[name] = kv
			if f := t.raw[name].File; f != "" && t.raw[name].Contents == nil {
				ls.ConfigFiles = append(ls.ConfigFiles, resolvePath(dir, f))
			}
		}
	}
	slices.Sort(ls.ConfigFiles)
	ls.rawSecretStores, ls.dir = raw.SecretStores, dir
	for _, name := range sortedKeys(raw.SecretStores) {
		st, err := resolveSecretStore(name, raw.SecretStores[name], dir)
		if err != nil {
			return within("local_server.secret_stores."+name, err)
		}
		ls.SecretStores[name] = st
	}
	// kv_stores had two earlier names; Viceroy still reads all three.
	for _, t := range []struct {
		table string
		raw   map[string]any
	}{
		{"kv_stores", raw.KVStores},
		{"object_stores", raw.ObjectStores},
		{"object_store", raw.ObjectStore},
	} {
		for _, name := range sortedKeys(t.raw) {
			if _, dup := ls.KVStores[name]; dup {
				return fmt.Errorf("local_server.%s.%s: KV store %q is defined twice", t.table, name, name)
			}
			st, err := resolveKVStore(t.raw[name], dir)
			if err != nil {
				return within("local_server."+t.table+"."+name, err)
			}
			ls.KVStores[name] = st
		}
	}
	geo, err := resolveGeolocation(raw.Geolocation, dir)
	if err != nil {
		return fmt.Errorf("local_server.geolocation: %w", err)
	}
	ls.Geolocation = geo
	if ls.ACLs, err = resolveACLs(raw.ACLs, dir); err != nil {
		return err
	}
	if ls.DeviceDetection, err = resolveDeviceDetection(raw.DeviceDetection, dir); err != nil {
		return fmt.Errorf("local_server.device_detection: %w", err)
	}
	if ls.ShieldingSites, err = resolveShieldingSites(raw.ShieldingSites); err != nil {
		return err
	}
	return nil
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
	LocalServer rawLocalServer `toml:"local_server"`
}

// rawLocalServer is [local_server] as decoded. Tables whose shape varies
// (an array or a table, strings or numbers) are decoded loosely and
// checked by hand, so a mistake is reported with its table and key.
type rawLocalServer struct {
	Backends     map[string]rawBackend `toml:"backends"`
	ConfigStores map[string]rawStore   `toml:"config_stores"`
	Dictionaries map[string]rawStore   `toml:"dictionaries"`
	SecretStores map[string]any        `toml:"secret_stores"`
	KVStores     map[string]any        `toml:"kv_stores"`
	ObjectStores map[string]any        `toml:"object_stores"`
	ObjectStore  map[string]any        `toml:"object_store"`
	Geolocation  map[string]any        `toml:"geolocation"`

	ACLs            map[string]any `toml:"acls"`
	DeviceDetection map[string]any `toml:"device_detection"`
	ShieldingSites  map[string]any `toml:"shielding_sites"`
}

type rawBackend struct {
	URL          string  `toml:"url"`
	OverrideHost *string `toml:"override_host"`
	CertHost     string  `toml:"cert_host"`
	UseSNI       *bool   `toml:"use_sni"`
	CACert       any     `toml:"ca_certificate"`
	GRPC         bool    `toml:"grpc"`
	Health       string  `toml:"health"`
	// Viceroy's timeout keys: integer milliseconds.
	FirstByteTimeoutMS    any `toml:"first_byte_timeout_ms"`
	BetweenBytesTimeoutMS any `toml:"between_bytes_timeout_ms"`
	// This POP's own, more forgiving keys (milliseconds or a duration
	// string); Viceroy has no connect timeout setting.
	ConnectTimeout      any `toml:"connect_timeout"`
	FirstByteTimeout    any `toml:"first_byte_timeout"`
	BetweenBytesTimeout any `toml:"between_bytes_timeout"`
}

func (rb rawBackend) resolve(name, dir string) (Backend, error) {
	if rb.URL == "" {
		return Backend{}, fmt.Errorf("url is required")
	}
	// The url may hold a password or a token: errors name it redacted.
	u, err := url.Parse(rb.URL)
	if err != nil {
		return Backend{}, fmt.Errorf("url: %w", redact.Error(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Backend{}, fmt.Errorf("url %q: scheme must be http or https", redact.URL(rb.URL))
	}
	if u.Host == "" {
		return Backend{}, fmt.Errorf("url %q has no host", redact.URL(rb.URL))
	}
	b := Backend{Name: name, URL: u, CertHost: rb.CertHost, UseSNI: true, GRPC: rb.GRPC, Health: "unknown"}
	if rb.OverrideHost != nil {
		if strings.TrimSpace(*rb.OverrideHost) == "" {
			return Backend{}, fmt.Errorf("override_host is empty (leave it out to keep the request's Host)")
		}
		b.OverrideHost = *rb.OverrideHost
	}
	if rb.UseSNI != nil {
		b.UseSNI = *rb.UseSNI
	}
	switch h := strings.ToLower(rb.Health); h {
	case "":
	case "unknown", "healthy", "unhealthy":
		b.Health = h
	default:
		return Backend{}, fmt.Errorf("health %q: want unknown, healthy or unhealthy", rb.Health)
	}
	if rb.CACert != nil {
		if b.CACertPEM, err = caCertPEM(rb.CACert, dir); err != nil {
			return Backend{}, fmt.Errorf("ca_certificate: %w", err)
		}
	}
	for _, t := range []struct {
		key    string
		raw    any
		dst    *time.Duration
		strict bool // Viceroy's *_ms keys take only integer milliseconds
	}{
		{"connect_timeout", rb.ConnectTimeout, &b.ConnectTimeout, false},
		{"first_byte_timeout", rb.FirstByteTimeout, &b.FirstByteTimeout, false},
		{"between_bytes_timeout", rb.BetweenBytesTimeout, &b.BetweenBytesTimeout, false},
		{"first_byte_timeout_ms", rb.FirstByteTimeoutMS, &b.FirstByteTimeout, true},
		{"between_bytes_timeout_ms", rb.BetweenBytesTimeoutMS, &b.BetweenBytesTimeout, true},
	} {
		if t.raw == nil {
			continue
		}
		if *t.dst != 0 {
			return Backend{}, fmt.Errorf("%s: the same timeout is already set under another name", t.key)
		}
		if _, isInt := t.raw.(int64); t.strict && !isInt {
			return Backend{}, fmt.Errorf("%s: must be an integer number of milliseconds", t.key)
		}
		d, err := parseTimeout(t.raw)
		if err != nil {
			return Backend{}, fmt.Errorf("%s: %w", t.key, err)
		}
		*t.dst = d
	}
	return b, nil
}

// caCertPEM reads ca_certificate in Viceroy's forms: a PEM string, a table
// with file or value, or an array of those.
func caCertPEM(v any, dir string) ([]byte, error) {
	switch v := v.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("empty certificate")
		}
		if !strings.Contains(v, "-----BEGIN CERTIFICATE-----") || !x509.NewCertPool().AppendCertsFromPEM([]byte(v)) {
			return nil, fmt.Errorf("not a PEM certificate")
		}
		return []byte(v), nil
	case map[string]any:
		if f, ok := v["file"]; ok {
			path, ok := f.(string)
			if !ok {
				return nil, fmt.Errorf("file must be a string")
			}
			data, err := os.ReadFile(resolvePath(dir, path))
			if err != nil {
				return nil, err
			}
			return caCertPEM(string(data), dir)
		}
		if val, ok := v["value"]; ok {
			return caCertPEM(val, dir)
		}
		return nil, fmt.Errorf("a table needs a file or a value")
	case []map[string]any:
		return caCertPEM(anySlice(v), dir)
	case []any:
		var all []byte
		for i, item := range v {
			pem, err := caCertPEM(item, dir)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			all = append(append(all, pem...), '\n')
		}
		return all, nil
	default:
		return nil, fmt.Errorf("want a PEM string, a table with file or value, or an array of those (got %s)", tomlType(v))
	}
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

// within prefixes err with the path of the table it occurred in; an
// array index continues the path ("table[2]: ...").
func within(path string, err error) error {
	if strings.HasPrefix(err.Error(), "[") {
		return fmt.Errorf("%s%w", path, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// anySlice turns the []map[string]any BurntSushi/toml produces for an
// array of tables into the []any it produces for other arrays.
func anySlice(v []map[string]any) []any {
	out := make([]any, len(v))
	for i, t := range v {
		out[i] = t
	}
	return out
}

// asArray reports whether v is a TOML array, as a []any.
func asArray(v any) ([]any, bool) {
	switch v := v.(type) {
	case []any:
		return v, true
	case []map[string]any:
		return anySlice(v), true
	}
	return nil, false
}

// tomlType names a decoded TOML value's type for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a datetime"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}
