package fastlytoml

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sample = `
manifest_version = 3
name = "edgepixel"
language = "go"
some_future_key = { nested = true }

[scripts]
build = "env GOOS=wasip1 GOARCH=wasm go build -o bin/main.wasm ."

[local_server]
  [local_server.backends]
    [local_server.backends.aggregator]
      url = "http://127.0.0.1:8080/api"
      override_host = "aggregator.example"
      connect_timeout = 1500
      first_byte_timeout = "3s"
    [local_server.backends.tls]
      url = "https://example.com"

  [local_server.config_stores]
    [local_server.config_stores.edgepixel]
      format = "inline-toml"
      [local_server.config_stores.edgepixel.contents]
        pop = "local"
        empty = ""
    [local_server.config_stores.fromjson]
      format = "json"
      file = "store.json"

  [local_server.dictionaries]
    [local_server.dictionaries.legacy]
      format = "inline-toml"
      [local_server.dictionaries.legacy.contents]
        a = "b"

  [local_server.secret_stores]
    edgepixel = [
      { key = "inline", data = "s3cret" },
      { key = "fromfile", file = "secret.txt" },
      { key = "fromenv", env = "FASTLYTOML_TEST_SECRET" },
    ]

  [local_server.geolocation]
    format = "inline-toml"
    [local_server.geolocation.addresses]
      [local_server.geolocation.addresses."127.0.0.1"]
        country_code = "XX"

  [local_server.kv_stores]
    other = []
`

func TestParse(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "store.json"), []byte(`{"k":"v"}`), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("filesecret\n"), 0o644))
	t.Setenv("FASTLYTOML_TEST_SECRET", "envsecret")
	path := filepath.Join(dir, "fastly.toml")
	must(t, os.WriteFile(path, []byte(sample), 0o644))

	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "edgepixel" || m.ManifestVersion != 3 || m.Language != "go" {
		t.Errorf("top level: %+v", m)
	}
	if !strings.Contains(m.Scripts.Build, "GOOS=wasip1") {
		t.Errorf("scripts.build = %q", m.Scripts.Build)
	}
	if m.Dir != dir {
		t.Errorf("Dir = %q, want %q", m.Dir, dir)
	}
	agg := m.LocalServer.Backends["aggregator"]
	if agg.URL.Host != "127.0.0.1:8080" || agg.URL.Path != "/api" || agg.OverrideHost != "aggregator.example" {
		t.Errorf("aggregator backend: %+v", agg)
	}
	if agg.ConnectTimeout != 1500*time.Millisecond || agg.FirstByteTimeout != 3*time.Second || agg.Port() != 8080 {
		t.Errorf("aggregator timeouts/port: %v %v %d", agg.ConnectTimeout, agg.FirstByteTimeout, agg.Port())
	}
	if p := m.LocalServer.Backends["tls"].Port(); p != 443 {
		t.Errorf("tls port = %d", p)
	}
	if got := m.BackendNames(); strings.Join(got, ",") != "aggregator,tls" {
		t.Errorf("BackendNames = %v", got)
	}
	if v, ok := m.LocalServer.ConfigStores["edgepixel"]["empty"]; !ok || v != "" {
		t.Errorf("empty value: %q %v", v, ok)
	}
	if m.LocalServer.ConfigStores["edgepixel"]["pop"] != "local" || m.LocalServer.ConfigStores["fromjson"]["k"] != "v" {
		t.Errorf("config stores: %v", m.LocalServer.ConfigStores)
	}
	if m.LocalServer.Dictionaries["legacy"]["a"] != "b" {
		t.Errorf("dictionaries: %v", m.LocalServer.Dictionaries)
	}
	ss := m.LocalServer.SecretStores["edgepixel"]
	if string(ss["inline"]) != "s3cret" || string(ss["fromfile"]) != "filesecret\n" || string(ss["fromenv"]) != "envsecret" {
		t.Errorf("secret store: %q", ss)
	}
	if rec, ok := m.LocalServer.Geolocation.Lookup(netip.MustParseAddr("127.0.0.1")); !ok || rec["country_code"] != "XX" {
		t.Errorf("geolocation 127.0.0.1: %v %v", rec, ok)
	}
	if st, ok := m.LocalServer.KVStores["other"]; !ok || len(st) != 0 {
		t.Errorf("empty KV store: %v %v", st, ok)
	}
}

func TestParseMinimal(t *testing.T) {
	m, err := Parse([]byte(`name = "x"`), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.LocalServer.Backends) != 0 || m.LocalServer.ConfigStores == nil {
		t.Errorf("unexpected: %+v", m.LocalServer)
	}
}

func TestParseErrors(t *testing.T) {
	for name, text := range map[string]string{
		"syntax":          `name = `,
		"no url":          "[local_server.backends.a]\noverride_host = \"x\"\n",
		"bad scheme":      "[local_server.backends.a]\nurl = \"ftp://x\"\n",
		"bad format":      "[local_server.config_stores.a]\nformat = \"yaml\"\n",
		"non-string":      "[local_server.config_stores.a]\nformat = \"inline-toml\"\n[local_server.config_stores.a.contents]\nn = 1\n",
		"missing file":    "[local_server.dictionaries.a]\nformat = \"json\"\nfile = \"nope.json\"\n",
		"secret two srcs": "[local_server]\nsecret_stores.s = [{ key = \"k\", data = \"a\", env = \"B\" }]\n",
		"secret no env":   "[local_server]\nsecret_stores.s = [{ key = \"k\", env = \"FASTLYTOML_SURELY_UNSET\" }]\n",
		"bad timeout":     "[local_server.backends.a]\nurl = \"http://x\"\nconnect_timeout = \"soon\"\n",
	} {
		if _, err := Parse([]byte(text), t.TempDir()); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

func TestRepoManifest(t *testing.T) {
	// The project's own manifest must load (its secret file may not exist
	// in a fresh checkout, so only parse errors other than that fail).
	m, err := Load("../fastly.toml")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.Skipf("manifest refers to a file not present here: %v", err)
		}
		t.Fatal(err)
	}
	if _, ok := m.LocalServer.Backends["aggregator"]; !ok {
		t.Errorf("aggregator backend missing")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// An unknown key of [local_server], such as a misspelt table, is ignored
// as Viceroy ignores it, and listed in Warnings, in the file's order, with the nearest key and
// the known ones; a known table's own unknown keys are not (found by a
// new-user tester).
func TestUnknownLocalServerKeys(t *testing.T) {
	m, err := Parse([]byte(`
some_future_key = 1
[local_server]
  fake_valid_fastly_keys = ["k"]
  [local_server.backendz]
    [local_server.backendz.aggregator]
      url = "http://127.0.0.1:8080"
  [local_server.backends.real]
    url = "http://127.0.0.1:8080"
    some_future_field = true
  [local_server.zzzzzzzzzz]
    a = 1
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.LocalServer.Backends) != 1 {
		t.Errorf("backends %v", m.LocalServer.Backends)
	}
	want := []string{
		"local_server.fake_valid_fastly_keys is read by Viceroy, not by this host: ignored",
		"local_server.backendz is not a key of [local_server]: ignored; did you mean local_server.backends? (the keys are acls, backends, config_stores, device_detection, dictionaries, geolocation, kv_stores, object_store, object_stores, secret_stores, shielding_sites)",
		"local_server.zzzzzzzzzz is not a key of [local_server]: ignored (the keys are acls, backends, config_stores, device_detection, dictionaries, geolocation, kv_stores, object_store, object_stores, secret_stores, shielding_sites)",
	}
	if strings.Join(m.Warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(m.Warnings, "\n"), strings.Join(want, "\n"))
	}
	if m, err := Parse([]byte(sample), t.TempDir()); err == nil && len(m.Warnings) > 0 {
		t.Errorf("the sample: %q", m.Warnings)
	}
}

// A store's file that does not exist yet (before the step that creates
// it) is said so, with the store, the file and what to put in it, and
// still matches fs.ErrNotExist: "no such file" alone was all it said
// (found by a new-user tester).
func TestMissingStoreFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ manifest, want string }{
		{`[local_server.secret_stores]
  s = [{ key = "k", file = "gone/secret" }]`,
			`local_server.secret_stores.s[0]: secret "k": file ` + filepath.Join(dir, "gone/secret") + ` does not exist: create it holding the secret's value`},
		{`[local_server.secret_stores.s]
  format = "json"
  file = "secrets.json"`,
			`local_server.secret_stores.s: file ` + filepath.Join(dir, "secrets.json") + ` does not exist: create it holding a JSON object of secret names to values, e.g. {"name": "value"}`},
		{`[local_server.config_stores.c]
  format = "json"
  file = "c.json"`,
			`local_server.config_stores.c: file ` + filepath.Join(dir, "c.json") + ` does not exist: create it holding a JSON object of keys to string values`},
		{`[local_server.kv_stores]
  k = [{ key = "a", file = "a.bin" }]`,
			`file ` + filepath.Join(dir, "a.bin") + ` does not exist: create it holding the entry's value`},
	} {
		_, err := Parse([]byte(tc.manifest), dir)
		var mf *MissingFileError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &mf) {
			t.Errorf("%s:\n%v\nwant a MissingFileError saying %q", tc.manifest, err, tc.want)
		}
	}
}
