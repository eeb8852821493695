package fastlytoml

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFiles creates name -> content files in a fresh directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

// testPEM is a certificate that parses (ca_certificate is checked so).
var testPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

func TestBackendViceroyKeys(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ca.pem": testPEM})
	m, err := Parse([]byte(`
[local_server.backends.a]
url = "https://origin.example:8443/p"
override_host = "h.example"
first_byte_timeout_ms = 2500
between_bytes_timeout_ms = 700
health = "Unhealthy"
grpc = true
ca_certificate = [{ file = "ca.pem" }, { value = """`+testPEM+`""" }]
[local_server.backends.b]
url = "http://127.0.0.1:1"
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	a := m.LocalServer.Backends["a"]
	if a.FirstByteTimeout != 2500*time.Millisecond || a.BetweenBytesTimeout != 700*time.Millisecond {
		t.Errorf("timeouts: %v %v", a.FirstByteTimeout, a.BetweenBytesTimeout)
	}
	if a.Health != "unhealthy" || !a.GRPC || a.OverrideHost != "h.example" || a.Port() != 8443 {
		t.Errorf("backend a: %+v", a)
	}
	if n := strings.Count(string(a.CACertPEM), "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("ca_certificate: %d certificates in %q", n, a.CACertPEM)
	}
	if b := m.LocalServer.Backends["b"]; b.Health != "unknown" || b.CACertPEM != nil || b.FirstByteTimeout != 0 {
		t.Errorf("backend b defaults: %+v", b)
	}
}

func TestConfigStoreForms(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"sub/cfg.json": `{"k":"v","unicode":"é"}`,
	})
	m, err := Parse([]byte(`
[local_server.config_stores.j]
format = "json"
file = "sub/cfg.json"
[local_server.dictionaries.d]
format = "inline-toml"
[local_server.dictionaries.d.contents]
"key with spaces" = "x"
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.LocalServer.ConfigStores["j"]; len(got) != 2 || got["k"] != "v" || got["unicode"] != "é" {
		t.Errorf("json store: %v", got)
	}
	if got := m.LocalServer.Dictionaries["d"]["key with spaces"]; got != "x" {
		t.Errorf("dictionary: %q", got)
	}
	// The files read, for a host that watches them: the JSON one only.
	if got := m.LocalServer.ConfigFiles; len(got) != 1 || got[0] != filepath.Join(dir, "sub/cfg.json") {
		t.Errorf("config files %q", got)
	}
}

func TestSecretStoreForms(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"secrets.json": `{"api.key":"from json","other_one":"2"}`,
		"bin.secret":   "\x00\xff\x01binary",
	})
	m, err := Parse([]byte(`
[local_server.secret_stores]
fromjson = { format = "json", file = "secrets.json" }
[[local_server.secret_stores.arr]]
key = "bin"
file = "bin.secret"
[[local_server.secret_stores.arr]]
key = "plain-1"
data = "p"
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	ss := m.LocalServer.SecretStores
	if string(ss["fromjson"]["api.key"]) != "from json" || string(ss["fromjson"]["other_one"]) != "2" || len(ss["fromjson"]) != 2 {
		t.Errorf("json secrets: %q", ss["fromjson"])
	}
	if string(ss["arr"]["bin"]) != "\x00\xff\x01binary" || string(ss["arr"]["plain-1"]) != "p" {
		t.Errorf("array-of-tables secrets: %q", ss["arr"])
	}
}

func TestKVStoreForms(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"value.bin": "file value\x00",
		"kv.json": `{
			"plain": "just a string",
			"withmeta": {"data": "d", "metadata": "m"},
			"fromfile": {"file": "value.bin"}
		}`,
	})
	m, err := Parse([]byte(`
[local_server.kv_stores]
inline = [
  { key = "a", data = "1" },
  { key = "b", data = "2", metadata = "meta-b" },
  { key = "c", file = "value.bin" },
  { key = "d", path = "value.bin" },
  { key = "a", data = "replaced" },
]
empty = []
fromjson = { format = "json", file = "kv.json" }
[local_server.object_stores]
legacy = [{ key = "x", data = "y" }]
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	kv := m.LocalServer.KVStores
	in := kv["inline"]
	if string(in["a"].Value) != "replaced" || in["a"].Metadata != nil {
		t.Errorf("a: %+v", in["a"])
	}
	if string(in["b"].Value) != "2" || string(in["b"].Metadata) != "meta-b" {
		t.Errorf("b: %+v", in["b"])
	}
	if string(in["c"].Value) != "file value\x00" || string(in["d"].Value) != "file value\x00" {
		t.Errorf("c/d from file: %q %q", in["c"].Value, in["d"].Value)
	}
	if st, ok := kv["empty"]; !ok || len(st) != 0 {
		t.Errorf("empty store: %v %v", st, ok)
	}
	js := kv["fromjson"]
	if string(js["plain"].Value) != "just a string" || string(js["withmeta"].Value) != "d" ||
		string(js["withmeta"].Metadata) != "m" || string(js["fromfile"].Value) != "file value\x00" || len(js) != 3 {
		t.Errorf("json store: %+v", js)
	}
	if string(kv["legacy"]["x"].Value) != "y" {
		t.Errorf("object_stores alias: %+v", kv["legacy"])
	}
}

func TestGeolocationForms(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"geo.json": `{"192.0.2.7": {"city": "Json City", "as_number": 64512, "latitude": 1.25},
		              "2001:db8::1": {"city": "Six"}}`,
	})
	m, err := Parse([]byte(`
[local_server.geolocation]
format = "inline-toml"
[local_server.geolocation.addresses."203.0.113.9"]
city = "Toml City"
as_number = 12345
latitude = 12.5
proxy = false
[local_server.geolocation.addresses."::ffff:198.51.100.1"]
city = "Mapped"
`), "")
	if err != nil {
		t.Fatal(err)
	}
	g := m.LocalServer.Geolocation
	rec, ok := g.Lookup(netip.MustParseAddr("203.0.113.9"))
	if !ok || rec["city"] != "Toml City" || rec["as_number"] != int64(12345) || rec["latitude"] != 12.5 || rec["proxy"] != false {
		t.Errorf("inline record: %v %v", rec, ok)
	}
	if rec, ok := g.Lookup(netip.MustParseAddr("198.51.100.1")); !ok || rec["city"] != "Mapped" {
		t.Errorf("IPv4-mapped key, IPv4 lookup: %v %v", rec, ok)
	}
	if rec, ok := g.Lookup(netip.MustParseAddr("::ffff:203.0.113.9")); !ok || rec["city"] != "Toml City" {
		t.Errorf("IPv4 key, IPv4-mapped lookup: %v %v", rec, ok)
	}
	if _, ok := g.Lookup(netip.MustParseAddr("203.0.113.10")); ok {
		t.Errorf("unknown address found")
	}
	for _, lo := range []string{"127.0.0.1", "127.1.2.3", "::1"} {
		rec, ok := g.Lookup(netip.MustParseAddr(lo))
		if !ok || rec["city"] != "San Francisco" || rec["as_number"] != int64(54113) {
			t.Errorf("loopback %s: %v %v", lo, rec, ok)
		}
	}

	m, err = Parse([]byte(`
[local_server.geolocation]
use_default_loopback = false
format = "json"
file = "geo.json"
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	g = m.LocalServer.Geolocation
	rec, ok = g.Lookup(netip.MustParseAddr("192.0.2.7"))
	if !ok || rec["city"] != "Json City" || rec["as_number"] != json.Number("64512") || rec["latitude"] != json.Number("1.25") {
		t.Errorf("json record: %#v %v", rec, ok)
	}
	if rec, ok := g.Lookup(netip.MustParseAddr("2001:db8::1")); !ok || rec["city"] != "Six" {
		t.Errorf("json IPv6 record: %v %v", rec, ok)
	}
	if _, ok := g.Lookup(netip.MustParseAddr("127.0.0.1")); ok {
		t.Errorf("use_default_loopback = false still answered loopback")
	}

	// No geolocation table at all: loopback still gets the default.
	m, err = Parse([]byte(`name = "x"`), "")
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok := m.LocalServer.Geolocation.Lookup(netip.MustParseAddr("127.0.0.1")); !ok || rec["country_code"] != "US" {
		t.Errorf("default loopback without a table: %v %v", rec, ok)
	}
}

// TestStoreErrors checks that bad input is refused with a message naming
// the table, the entry and (for data read from files) the file.
func TestStoreErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"notobj.json":  `["a"]`,
		"badval.json":  `{"k": 1}`,
		"badkv.json":   `{"ok": "x", "bad": {"data": "a", "file": "b"}}`,
		"badgeo.json":  `{"not-an-ip": {"city": "x"}}`,
		"badsec.json":  `{"bad name": "x"}`,
		"longval.json": `{"k": "` + strings.Repeat("v", MaxConfigValueChars+1) + `"}`,
	})
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"empty override_host", "[local_server.backends.a]\nurl = \"http://x\"\noverride_host = \"\"\n",
			[]string{"local_server.backends.a", "override_host"}},
		{"bad health", "[local_server.backends.a]\nurl = \"http://x\"\nhealth = \"meh\"\n",
			[]string{"local_server.backends.a", "health"}},
		{"float _ms", "[local_server.backends.a]\nurl = \"http://x\"\nfirst_byte_timeout_ms = 1.5\n",
			[]string{"first_byte_timeout_ms", "integer"}},
		{"timeout twice", "[local_server.backends.a]\nurl = \"http://x\"\nfirst_byte_timeout = 1\nfirst_byte_timeout_ms = 2\n",
			[]string{"first_byte_timeout_ms", "already set"}},
		{"ca not pem", "[local_server.backends.a]\nurl = \"https://x\"\nca_certificate = \"hello\"\n",
			[]string{"ca_certificate", "PEM"}},
		{"json not object", "[local_server.config_stores.c]\nformat = \"json\"\nfile = \"notobj.json\"\n",
			[]string{"local_server.config_stores.c", "notobj.json", "JSON object"}},
		{"json non-string", "[local_server.dictionaries.d]\nformat = \"json\"\nfile = \"badval.json\"\n",
			[]string{"local_server.dictionaries.d", "badval.json", `"k"`}},
		{"value too long", "[local_server.config_stores.c]\nformat = \"json\"\nfile = \"longval.json\"\n",
			[]string{"local_server.config_stores.c", "longval.json", "k:", "8000"}},
		{"inline key too long", "[local_server.config_stores.c]\nformat = \"inline-toml\"\n[local_server.config_stores.c.contents]\n" + strings.Repeat("k", 257) + " = \"v\"\n",
			[]string{"local_server.config_stores.c", "contents.kkk", "256"}},
		{"inline dotted bare key", "[local_server.config_stores.c.contents]\nsite.shop.example = \"tier=aggregate\"\n",
			[]string{"local_server.config_stores.c", "contents.site", `quote a key with dots, "site.shop.example" = "..."`}},
		{"inline no contents", "[local_server.config_stores.c]\nformat = \"inline-toml\"\n",
			[]string{"local_server.config_stores.c", "contents"}},
		{"secret json bad name", "[local_server.secret_stores]\ns = { format = \"json\", file = \"badsec.json\" }\n",
			[]string{"local_server.secret_stores.s", "badsec.json", `"bad name"`}},
		{"secret bad store name", "[local_server.secret_stores]\n\"a b\" = []\n",
			[]string{"local_server.secret_stores.a b", "invalid store name"}},
		{"secret format only", "[local_server.secret_stores]\ns = { format = \"json\" }\n",
			[]string{"local_server.secret_stores.s", "together"}},
		{"secret no key", "[local_server.secret_stores]\ns = [{ data = \"x\" }]\n",
			[]string{"local_server.secret_stores.s[0]", "key is required"}},
		{"secret dup", "[local_server.secret_stores]\ns = [{ key = \"k\", data = \"x\" }, { key = \"k\", data = \"y\" }]\n",
			[]string{"local_server.secret_stores.s[1]", "twice"}},
		{"secret data not string", "[local_server.secret_stores]\ns = [{ key = \"k\", data = 5 }]\n",
			[]string{"local_server.secret_stores.s[0]", `"k"`, "data must be a string"}},
		{"kv not array", "[local_server.kv_stores]\nk = \"x\"\n",
			[]string{"local_server.kv_stores.k", "array"}},
		{"kv no data", "[local_server.kv_stores]\nk = [{ key = \"a\" }]\n",
			[]string{"local_server.kv_stores.k[0]", `"a"`, "data or file"}},
		{"kv data and file", "[local_server.kv_stores]\nk = [{ key = \"a\", data = \"x\", file = \"y\" }]\n",
			[]string{"local_server.kv_stores.k[0]", `"a"`, "not both"}},
		{"kv missing file", "[local_server.kv_stores]\nk = [{ key = \"a\", file = \"nope.bin\" }]\n",
			[]string{"local_server.kv_stores.k[0]", "nope.bin"}},
		{"kv bad key", "[local_server.kv_stores]\nk = [{ key = \"a?b\", data = \"x\" }]\n",
			[]string{"local_server.kv_stores.k[0]", `"?"`}},
		{"kv metadata not string", "[local_server.kv_stores]\nk = [{ key = \"a\", data = \"x\", metadata = 1 }]\n",
			[]string{"local_server.kv_stores.k[0]", "metadata must be a string"}},
		{"kv json entry", "[local_server.kv_stores]\nk = { format = \"json\", file = \"badkv.json\" }\n",
			[]string{"local_server.kv_stores.k", "badkv.json", `"bad"`, "not both"}},
		{"kv bad format", "[local_server.kv_stores]\nk = { format = \"yaml\", file = \"x\" }\n",
			[]string{"local_server.kv_stores.k", "yaml"}},
		{"kv defined twice", "[local_server.kv_stores]\nk = []\n[local_server.object_store]\nk = []\n",
			[]string{"local_server.object_store.k", "twice"}},
		{"geo bad format", "[local_server.geolocation]\nformat = \"csv\"\n",
			[]string{"local_server.geolocation", "csv"}},
		{"geo no addresses", "[local_server.geolocation]\nformat = \"inline-toml\"\n",
			[]string{"local_server.geolocation", "addresses"}},
		{"geo bad ip", "[local_server.geolocation]\nformat = \"inline-toml\"\n[local_server.geolocation.addresses.\"1.2.3\"]\ncity = \"x\"\n",
			[]string{"local_server.geolocation", `addresses."1.2.3"`, "IP address"}},
		{"geo bad field", "[local_server.geolocation]\nformat = \"inline-toml\"\n[local_server.geolocation.addresses.\"1.2.3.4\"]\ncity = [1]\n",
			[]string{"local_server.geolocation", `addresses."1.2.3.4"`, "city"}},
		{"geo duplicate", "[local_server.geolocation]\nformat = \"inline-toml\"\n[local_server.geolocation.addresses.\"1.2.3.4\"]\ncity = \"a\"\n[local_server.geolocation.addresses.\"::ffff:1.2.3.4\"]\ncity = \"b\"\n",
			[]string{"local_server.geolocation", "twice"}},
		{"geo json bad ip", "[local_server.geolocation]\nformat = \"json\"\nfile = \"badgeo.json\"\n",
			[]string{"local_server.geolocation", "badgeo.json", `"not-an-ip"`}},
		{"geo json no file", "[local_server.geolocation]\nformat = \"json\"\n",
			[]string{"local_server.geolocation", "file is required"}},
		{"geo loopback type", "[local_server.geolocation]\nuse_default_loopback = \"no\"\n",
			[]string{"local_server.geolocation", "use_default_loopback"}},
	} {
		_, err := Parse([]byte(tc.text), dir)
		if err == nil {
			t.Errorf("%s: expected an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

func TestLoadErrorNamesManifest(t *testing.T) {
	dir := writeFiles(t, map[string]string{"fastly.toml": "[local_server.kv_stores]\nk = [{ key = \"\", data = \"x\" }]\n"})
	_, err := Load(filepath.Join(dir, "fastly.toml"))
	if err == nil || !strings.Contains(err.Error(), "fastly.toml: local_server.kv_stores.k[0]: key") {
		t.Errorf("Load error: %v", err)
	}
}

func TestCheckKVKey(t *testing.T) {
	good := []string{"a", "a/b", "x.y", "..a", "a..", strings.Repeat("k", 1024), "é", ".well-known/other", "!"}
	bad := []string{"", strings.Repeat("k", 1025), ".", "..", "a/../b", "a/..", "./a", "a/.", "a\nb", "a\rb",
		"a#b", "a;b", "a?b", "a^b", "a|b", " ", "\x00", "\uFFFE", ".well-known/acme-challenge/x", "\xff"}
	for _, k := range good {
		if err := CheckKVKey(k); err != nil {
			t.Errorf("%.20q refused: %v", k, err)
		}
	}
	for _, k := range bad {
		if err := CheckKVKey(k); err == nil {
			t.Errorf("%.20q accepted", k)
		}
	}
}
