package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/storekeys"
)

// A misspelt store key was read as absent and its setting silently did
// not apply; a misspelt journal key also got past checkDelivery.
func TestManifestWarnsOfUnknownStoreKeys(t *testing.T) {
	m, err := fastlytoml.Parse([]byte(`manifest_version = 3
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "local"
jurnal = "edgepixel_journal"
"site.example.com" = "consent=required"
[local_server.dictionaries.edgepixel]
format = "inline-toml"
[local_server.dictionaries.edgepixel.contents]
site_defualt = "consent=none"
[local_server.secret_stores]
edgepixel = [{ key = "aggregator_secert", data = "s" }, { key = "pixel_key.example.com", data = "k" }]
other = [{ key = "anything", data = "x" }]
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got := storeWarnings(m)
	want := []string{
		`secret store "other" is not one the edge module opens (it opens edgepixel), so its entries do nothing`,
		`config store edgepixel: key "jurnal" is not one the edge module reads, so it does nothing; did you mean journal?`,
		`config store edgepixel: key "site_defualt" is not one the edge module reads, so it does nothing; did you mean site_default?`,
		`secret store edgepixel: key "aggregator_secert" is not one the edge module reads, so it does nothing; did you mean aggregator_secret?`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d: %q, want it to begin %q", i, got[i], want[i])
		}
	}
}

// A backend the config store names that the manifest has not: every
// batch to it fails, while /healthz said ok (a tester's "agregator").
func TestManifestWarnsOfUnknownBackend(t *testing.T) {
	m, err := fastlytoml.Parse([]byte(`manifest_version = 3
[local_server.backends.aggregator]
url = "http://127.0.0.1:8080"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
backend = "agregator, aggregator"
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got := storeWarnings(m)
	if len(got) != 1 || !strings.Contains(got[0], `has no backend "agregator" (it has aggregator)`) || !strings.HasSuffix(got[0], "did you mean aggregator?") {
		t.Errorf("warnings %q, want one naming agregator", got)
	}
	// No backend set, and the module's default misspelt in the
	// backends' table (a tester's).
	m, err = fastlytoml.Parse([]byte(`manifest_version = 3
[local_server.backends.agregator]
url = "http://127.0.0.1:8080"
[local_server.config_stores.edgepixel]
format = "inline-toml"
[local_server.config_stores.edgepixel.contents]
pop = "local"
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got = storeWarnings(m)
	if len(got) != 1 || !strings.Contains(got[0], `sets no backend, so the module delivers to "aggregator", but [local_server.backends] has no backend "aggregator" (it has agregator)`) || !strings.HasSuffix(got[0], "did you mean agregator?") {
		t.Errorf("warnings %q, want one naming the default backend and agregator", got)
	}
}

// Every store key this repository's manifest sets, for `fastly compute
// deploy` ([setup]) and for local runs ([local_server]), is one the module
// reads.
func TestShippedManifestStoreKeysKnown(t *testing.T) {
	var raw struct {
		Setup struct {
			ConfigStores map[string]struct{ Items map[string]any }   `toml:"config_stores"`
			SecretStores map[string]struct{ Entries map[string]any } `toml:"secret_stores"`
		}
		LocalServer struct {
			ConfigStores map[string]struct{ Contents map[string]any } `toml:"config_stores"`
			SecretStores map[string][]struct{ Key string }            `toml:"secret_stores"`
		} `toml:"local_server"`
	}
	if _, err := toml.DecodeFile("../../fastly.toml", &raw); err != nil {
		t.Fatal(err)
	}
	var config, secret []string
	for k := range raw.Setup.ConfigStores[storekeys.Store].Items {
		config = append(config, k)
	}
	for k := range raw.LocalServer.ConfigStores[storekeys.Store].Contents {
		config = append(config, k)
	}
	for k := range raw.Setup.SecretStores[storekeys.Store].Entries {
		secret = append(secret, k)
	}
	for _, e := range raw.LocalServer.SecretStores[storekeys.Store] {
		secret = append(secret, e.Key)
	}
	if len(config) < 4 || len(secret) < 2 {
		t.Fatalf("read config keys %q and secret keys %q: the manifest's layout changed", config, secret)
	}
	for _, w := range append(unknownKeys("config store", config, storekeys.Config), unknownKeys("secret store", secret, storekeys.Secret)...) {
		t.Error(w)
	}
}

func TestUnknownKeys(t *testing.T) {
	config, secret := storekeys.Config, storekeys.Secret
	for _, c := range []struct {
		kind  string
		key   string
		known []string
		want  string // "" for a known key; else a part of the warning
	}{
		{"config store", "journal", config, ""},
		{"config store", "site.example.com", config, ""},
		{"config store", "site.", config, `key "site."`}, // a prefix needs a site after it
		{"config store", "jurnal", config, "did you mean journal?"},
		{"config store", "site_defualt", config, "did you mean site_default?"},
		{"config store", "cors_defualt", config, "did you mean cors_default?"},
		{"config store", "batch_max_event", config, "did you mean batch_max_events?"},
		{"config store", "sites.example.com", config, "did you mean site.example.com?"},
		{"config store", "sitex.example.com", config, "did you mean site.example.com?"},
		{"config store", "sit", config, "did you mean sites?"},
		{"config store", "colour", config, `config store edgepixel: key "colour" is not one the edge module reads, so it does nothing (the keys are`},
		{"secret store", "aggregator_secret", secret, ""},
		{"secret store", "visitor_salt_1", secret, ""},
		{"secret store", "pixel_key.example.com", secret, ""},
		{"secret store", "pixel_key.example.com.previous", secret, ""},
		{"secret store", "aggregator_secert", secret, "did you mean aggregator_secret?"},
		{"secret store", "pixelkey.example.com", secret, "did you mean pixel_key.example.com?"},
		{"secret store", "journal", secret, `secret store edgepixel: key "journal"`},
	} {
		got := unknownKeys(c.kind, []string{c.key}, c.known)
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%q: %q, want no warning", c.key, got)
		case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)):
			t.Errorf("%q: %q, want one warning containing %q", c.key, got, c.want)
		}
	}
	got := unknownKeys("config store", []string{"zz", "pop", "aa"}, config)
	if len(got) != 2 || !strings.Contains(got[0], `"aa"`) || !strings.Contains(got[1], `"zz"`) {
		t.Fatalf("%q: want aa's warning, then zz's", got)
	}
}

// The fastly.toml the README gives for one's own machines loads, with
// no warning, and needs the journal's endpoint, which the README's
// pop.env gives: an operator without make run starts from it.
func TestReadmeOwnMachinesManifest(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- readme-manifest: own-machines -->\\s*```toml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no toml block marked <!-- readme-manifest: own-machines -->")
	}
	dir := t.TempDir()
	// The salts as edgepixel-salt --today writes them: today's and
	// tomorrow's, each under its day's key.
	today := privacy.Day(time.Now())
	files := map[string]string{"secret": "x\n", "log-token": "x\n"}
	for _, d := range []int32{today, today + 1} {
		files["secrets/"+privacy.SaltKey(d)] = privacy.NewSalt(d, [16]byte{1}).String() + "\n"
	}
	for f, v := range files {
		os.MkdirAll(filepath.Join(dir, "secrets"), 0o700)
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	manifest, err := fastlytoml.Parse([]byte(strings.ReplaceAll(string(m[1]), "/etc/edgepixel/", dir+"/")), dir)
	if err != nil {
		t.Fatal(err)
	}
	if w := storeWarnings(manifest); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
	if len(manifest.LocalServer.SecretStores[storekeys.Store]) != 3 || manifest.LocalServer.Backends["aggregator"].URL == nil {
		t.Errorf("the stores or the backend did not load: %+v", manifest.LocalServer)
	}
	if checkDelivery(manifest, nil) == nil {
		t.Error("the journal was accepted without its endpoint")
	}
	env := regexp.MustCompile(`(?m)^EDGEPIXEL_POP_LOG_ENDPOINTS=(.*)$`).FindSubmatch(readme)
	if env == nil {
		t.Fatal("README.md's pop.env sets no EDGEPIXEL_POP_LOG_ENDPOINTS")
	}
	var eps []logsink.Endpoint
	for _, v := range strings.Split(strings.ReplaceAll(string(env[1]), "/etc/edgepixel/", dir+"/"), ",") {
		ep, err := parseEndpoint(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		eps = append(eps, ep)
	}
	queue := regexp.MustCompile(`(?m)^EDGEPIXEL_POP_LOG_QUEUE_DIR=(.*)$`).FindSubmatch(readme)
	if queue == nil {
		t.Fatal("README.md's pop.env sets no EDGEPIXEL_POP_LOG_QUEUE_DIR: the journal would queue in memory")
	}
	queueIn(eps, string(queue[1]))
	if w, err := checkManifest(manifest, eps); err != nil || len(w) > 0 {
		t.Errorf("with pop.env's endpoints: %q, %v", w, err)
	}
}

// What a tester configured that answered every hit and delivered less
// than the operator meant, each said at start and at each reload.
func TestCheckManifest(t *testing.T) {
	manifest := func(contents string) *fastlytoml.Manifest {
		t.Helper()
		m, err := fastlytoml.Parse([]byte("manifest_version = 3\n[local_server.config_stores.edgepixel]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixel.contents]\n"+contents), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	disk := func(name string) logsink.Endpoint {
		return logsink.Endpoint{Name: name, Kind: logsink.HTTP, URL: "http://agg/ingest/ndjson", Queue: "/var/lib/q/" + name}
	}
	memory := disk("edgepixel_journal")
	memory.Queue = ""
	for _, tc := range []struct {
		name     string
		contents string
		eps      []logsink.Endpoint
		warn     string // "" for none
		err      string // "" for none
	}{
		{"as the README says", `journal = "edgepixel_journal"`, []logsink.Endpoint{disk("edgepixel_journal"), disk("edgepixel_fallback")}, "", ""},
		{"the journal endpoint but no journal key", `pop = "a"`, []logsink.Endpoint{disk("edgepixel_journal"), disk("edgepixel_fallback")},
			`config store edgepixel sets no journal: hits are not journaled`, ""},
		{"an endpoint nothing writes to", `journal = "edgepixel_journal"`, []logsink.Endpoint{disk("edgepixel_journal"), disk("other")},
			`log endpoint other is configured, but the module writes to no log endpoint of that name`, ""},
		{"a journal queued in memory", `journal = "edgepixel_journal"`, []logsink.Endpoint{memory},
			`the journal's log endpoint edgepixel_journal queues in memory`, ""},
		{"a misspelt fallback", `fallback_log_endpoint = "edgepixel_fallbak"`, []logsink.Endpoint{disk("edgepixel_fallback")},
			"log endpoint edgepixel_fallback is configured, but the module writes to no log endpoint of that name", `sets fallback_log_endpoint = "edgepixel_fallbak", but the log endpoint configured is "edgepixel_fallback": one of the two names is misspelt`},
		{"the fallback turned off", `fallback_log_endpoint = "none"`, nil, "", ""}, // "none" is no endpoint's name
	} {
		w, err := checkManifest(manifest(tc.contents), tc.eps)
		switch {
		case tc.warn == "" && len(w) > 0, tc.warn != "" && !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, tc.warn) }):
			t.Errorf("%s: warnings %q, want %q", tc.name, w, tc.warn)
		}
		switch {
		case tc.err == "" && err != nil, tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	// A misspelt store name: its keys do nothing, and the one meant is named.
	m, err := fastlytoml.Parse([]byte("manifest_version = 3\n[local_server.config_stores.edgepixl]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixl.contents]\njournal = \"edgepixel_journal\"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if w := storeWarnings(m); len(w) != 1 || !strings.Contains(w[0], `config store "edgepixl" is not one the edge module opens (it opens edgepixel), so its entries do nothing; did you mean edgepixel?`) {
		t.Errorf("a misspelt store: %q", w)
	}
}

// A bad value the module would report per instance, or at a site's first
// hit, is said once at the POP's start and reload.
func TestValueWarnings(t *testing.T) {
	w := valueWarnings(map[string]string{
		"site.demo": "tier=agregate", "site.ok": "tier=aggregate", "site_default": "sign=maybe",
		"cors_default": "example.com", "unknown_sites": "keep",
		"rate_limit_client": "5", "rate_limit_site": "50/s",
	})
	for _, want := range []string{"site.demo: ", "site_default: ", "unknown_sites: ", "cors_default", `rate_limit_client: "5" is not a rate`, `rate_limit_site: "50/s"`} {
		if !slices.ContainsFunc(w, func(s string) bool {
			return strings.HasPrefix(s, "config store edgepixel: ") && strings.Contains(s, want)
		}) {
			t.Errorf("no warning of %s in %q", want, w)
		}
	}
	if slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "site.ok") }) {
		t.Errorf("a good value warned of: %q", w)
	}
	if w := valueWarnings(map[string]string{"site.a": "tier=full sign=mark", "cors_default": "*", "rate_limit_client": "0", "rate_limit_site": " 10000 "}); len(w) != 0 {
		t.Errorf("good values: %q", w)
	}
}

// A site that checks signatures without its key in the secret store had
// every signed hit dropped bad_pixel_signature (or stored unverified) with
// nothing said (found by a new-user tester): the POP says so at start and
// at each reload, naming the entry and the file to create.
func TestSigningKeyWarnings(t *testing.T) {
	manifest := func(contents, secrets string) *fastlytoml.Manifest {
		t.Helper()
		m, err := fastlytoml.Parse([]byte("manifest_version = 3\n[local_server.secret_stores]\nedgepixel = ["+secrets+"]\n[local_server.config_stores.edgepixel]\nformat = \"inline-toml\"\n[local_server.config_stores.edgepixel.contents]\n"+contents), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const key = `{ key = "pixel_key.news", data = "0123456789abcdef0123" }`
	for _, tc := range []struct {
		name, contents, secrets string
		want                    []string // a warning containing each, and no more warnings
	}{
		{"sign=reject without its key", `"site.news" = "sign=reject"`, "",
			[]string{`site.news checks pixel signatures of site news, but secret store edgepixel has no pixel_key.news: every signed hit is dropped bad_pixel_signature; create the key`, `{ key = "pixel_key.news", file = "FILE" }`}},
		{"sign=mark without its key", `"site.news" = "sign=mark tier=full"`, `{ key = "pixel_key.other", data = "0123456789abcdef0123" }`,
			[]string{`has no pixel_key.news: every signed hit is stored unverified`}},
		{"with its key", `"site.news" = "sign=reject"`, key, nil},
		{"with the previous key only", `"site.news" = "sign=reject"`, `{ key = "pixel_key.news.previous", data = "0123456789abcdef0123" }`, nil},
		{"a key too short", `"site.news" = "sign=reject"`, `{ key = "pixel_key.news", data = "short\n" }`,
			[]string{`pixel_key.news has 5 bytes, and a key under 16 never verifies`}},
		{"sign=off", `"site.news" = "sign=off"`, "", nil},
		{"site_default for the listed sites", "sites = \"news, blog\"\nsite_default = \"sign=reject\"\n\"site.blog\" = \"tier=full\"", "",
			[]string{`site_default checks pixel signatures of site news, but secret store edgepixel has no pixel_key.news`}},
		{"site_default for any site, no key at all", `site_default = "sign=mark"`, "",
			[]string{`site_default checks pixel signatures of every site without a site.SITE entry, but secret store edgepixel has no pixel_key.SITE entry for any`}},
		{"site_default for any site, a key", `site_default = "sign=mark"`, key, nil},
	} {
		w, err := checkManifest(manifest(tc.contents, tc.secrets), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(w) != min(len(tc.want), 1) {
			t.Errorf("%s: warnings %q, want %d", tc.name, w, min(len(tc.want), 1))
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(w[0], want) {
				t.Errorf("%s: warning %q, want it to contain %q", tc.name, w[0], want)
			}
		}
	}
}

func TestSaltWarnings(t *testing.T) {
	day := func(d int32) []byte { return []byte(privacy.NewSalt(d, [16]byte{1}).String() + "\n") }
	noon := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	today := privacy.Day(noon)
	for _, c := range []struct {
		name    string
		now     time.Time
		salts   map[string][]byte
		warning string // the day named, "" for none
	}{
		{"today and tomorrow", noon, map[string][]byte{privacy.SaltKey(today): day(today), privacy.SaltKey(today + 1): day(today + 1)}, ""},
		{"yesterday within the visit window", noon.Add(-11*time.Hour - 45*time.Minute), map[string][]byte{privacy.SaltKey(today): day(today), privacy.SaltKey(today - 1): day(today - 1)}, ""},
		{"yesterday past it", noon, map[string][]byte{privacy.SaltKey(today): day(today), privacy.SaltKey(today - 1): day(today - 1)}, "2026-12-04"},
		{"an older one", noon, map[string][]byte{privacy.SaltKey(today - 2): day(today - 2)}, "2026-12-03"},
		{"none", noon, nil, ""},
		{"not a salt", noon, map[string][]byte{privacy.SaltKeys[0]: []byte("00112233445566778899aabbccddeeff\n")}, "is not a visitor salt (privacy: a salt is YYYY-MM-DD:32 lowercase hex digits"},
	} {
		got := saltWarnings(c.salts, c.now)
		switch {
		case c.warning == "" && len(got) != 0:
			t.Errorf("%s: %q, want no warning", c.name, got)
		case c.warning != "" && (len(got) != 1 || !strings.Contains(got[0], c.warning) || !strings.Contains(got[0], "edgepixel-salt")):
			t.Errorf("%s: %q, want one naming %s and edgepixel-salt", c.name, got, c.warning)
		}
	}
}
