package pop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// Conformance tests for config stores, dictionaries, secret stores, KV
// stores and geolocation. They run testdata/storeguest, which calls the
// compute-sdk-go packages and reports what they returned, and compare the
// reports with the manifest the POP was started with.

// storeResult mirrors the storeguest's JSON answer.
type storeResult struct {
	Instance   string
	Err        string
	Value      *string
	Bytes      []byte
	Has        *bool
	Meta       *string
	Generation uint64
	Keys       []string
	Pages      []struct {
		N          int
		NextCursor string `json:"next_cursor"`
	}
	Geo    *geoRecord
	N      *uint32
	Client string
}

// geoRecord is the SDK's geo.Geo as the guest encodes it.
type geoRecord struct {
	AsName           string  `json:"as_name"`
	AsNumber         int     `json:"as_number"`
	AreaCode         int     `json:"area_code"`
	City             string  `json:"city"`
	ConnSpeed        string  `json:"conn_speed"`
	ConnType         string  `json:"conn_type"`
	ContinentCode    string  `json:"continent"`
	CountryCode      string  `json:"country_code"`
	CountryCode3     string  `json:"country_code3"`
	CountryName      string  `json:"country_name"`
	Latitude         float64 `json:"latitude"`
	Longitude        float64 `json:"longitude"`
	MetroCode        int     `json:"metro_code"`
	PostalCode       string  `json:"postal_code"`
	ProxyDescription string  `json:"proxy_description"`
	ProxyType        string  `json:"proxy_type"`
	Region           string  `json:"region"`
	UTCOffset        int     `json:"utc_offset"`
}

// storePOP starts the storeguest with a manifest whose files are written
// to a fresh directory first.
func storePOP(t *testing.T, text string, files map[string][]byte) (*testPOP, *fastlytoml.Manifest) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := fastlytoml.Parse([]byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := startPOP(t, m, func(c *Config) {
		c.WasmPath = guestPath("storeguest")
		c.Instances, c.MaxInstances = 2, 4
		// KV values go in as request bodies, and some are larger than the
		// default request body limit.
		c.Clients.MaxRequestBody = 8 << 20
	})
	return p, m
}

// ask sends one request to the storeguest and decodes its answer.
func (p *testPOP) ask(t *testing.T, path string, params url.Values, body []byte) storeResult {
	t.Helper()
	method, rd := "GET", io.Reader(nil)
	if body != nil {
		method, rd = "POST", bytes.NewReader(body)
	}
	target := path + "?" + params.Encode()
	resp, text := p.do(t, method, target, rd, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d: %.200s", target, resp.StatusCode, text)
	}
	var r storeResult
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		t.Fatalf("%s: %v: %.200s", target, err, text)
	}
	return r
}

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestStoreConformanceConfigAndSecrets(t *testing.T) {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	p, m := storePOP(t, `
[local_server.config_stores.cfg]
format = "inline-toml"
[local_server.config_stores.cfg.contents]
short = "v"
empty = ""
unicode = "héllo ✓"
long = "`+strings.Repeat("L", 5000)+`"
max = "`+strings.Repeat("é", fastlytoml.MaxConfigValueChars)+`"
"key with spaces" = "spaced"
[local_server.config_stores.fromjson]
format = "json"
file = "cfg.json"
[local_server.dictionaries.dict]
format = "inline-toml"
[local_server.dictionaries.dict.contents]
k = "dict value"
[local_server.secret_stores]
sec = [
  { key = "bin", file = "bin.secret" },
  { key = "long", data = "`+strings.Repeat("S", 5000)+`" },
  { key = "text", data = "s3cret" },
]
fromjson = { format = "json", file = "secrets.json" }
`, map[string][]byte{
		"cfg.json":     []byte(`{"a": "from json", "b": "<&>"}`),
		"bin.secret":   allBytes,
		"secrets.json": []byte(`{"api.key": "json secret"}`),
	})

	// Every configured item reads back exactly, through the config store
	// API (dictionaries too: one namespace) and the dictionary API.
	check := func(route, store, key, want string) {
		t.Helper()
		r := p.ask(t, route, q("store", store, "key", key), nil)
		if r.Err != "" || r.Value == nil || *r.Value != want || r.Has == nil || !*r.Has {
			t.Errorf("%s %s/%s: err=%q has=%v value=%.40q..., want %.40q (%d bytes)", route, store, key, r.Err, r.Has, deref(r.Value), want, len(want))
		}
	}
	for _, st := range []map[string]map[string]string{m.LocalServer.ConfigStores, m.LocalServer.Dictionaries} {
		for store, kv := range st {
			for key, want := range kv {
				check("/config", store, key, want)
				check("/dict", store, key, want)
			}
		}
	}
	for store, secrets := range m.LocalServer.SecretStores {
		for key, want := range secrets {
			r := p.ask(t, "/secret", q("store", store, "key", key), nil)
			if r.Err != "" || !bytes.Equal(r.Bytes, want) {
				t.Errorf("secret %s/%s: err=%q %d bytes, want %d", store, key, r.Err, len(r.Bytes), len(want))
			}
		}
	}

	for _, tc := range []struct {
		route, store, key, err string
		has                    *bool // nil: Has must not have answered
	}{
		{"/config", "cfg", "missing", "configstore.ErrKeyNotFound", ptrTo(false)},
		{"/config", "nostore", "k", "configstore.ErrStoreNotFound", nil},
		{"/config", "", "k", "configstore.ErrStoreNameEmpty", nil},
		{"/config", strings.Repeat("n", 256), "k", "configstore.ErrStoreNameTooLong", nil},
		{"/dict", "dict", "missing", "edgedict.ErrKeyNotFound", ptrTo(false)},
		{"/dict", "nodict", "k", "edgedict.ErrDictionaryNotFound", nil},
		{"/secret", "sec", "missing", "secretstore.ErrSecretNotFound", nil},
		{"/secret", "nostore", "k", "secretstore.ErrSecretStoreNotFound", nil},
		{"/secret", "", "k", "secretstore.ErrInvalidSecretStoreName", nil},
		{"/secret", "sec", "", "secretstore.ErrInvalidSecretName", nil},
	} {
		r := p.ask(t, tc.route, q("store", tc.store, "key", tc.key), nil)
		if r.Err != tc.err || r.Value != nil || r.Bytes != nil || !equalPtr(r.Has, tc.has) {
			t.Errorf("%s %.20s/%s: err=%q has=%v value=%v, want err %q has %v", tc.route, tc.store, tc.key, r.Err, r.Has, r.Value, tc.err, tc.has)
		}
	}

	if r := p.ask(t, "/secret/frombytes", q("data", "made\x00by guest"), nil); r.Err != "" || string(r.Bytes) != "made\x00by guest" {
		t.Errorf("SecretFromBytes: %q %q", r.Err, r.Bytes)
	}
}

func TestStoreConformanceKV(t *testing.T) {
	items := map[string]any{}
	var itemKeys []string
	for i := range 150 {
		k := fmt.Sprintf("item/%03d", i)
		itemKeys = append(itemKeys, k)
		if i%2 == 0 {
			items[k] = fmt.Sprintf("value %d", i)
		} else {
			items[k] = map[string]string{"data": fmt.Sprintf("value %d", i), "metadata": fmt.Sprintf("meta %d", i)}
		}
	}
	items["big"] = map[string]string{"file": "big.bin"}
	kvJSON, _ := json.Marshal(items)
	p, m := storePOP(t, `
[local_server.kv_stores]
kv = { format = "json", file = "kv.json" }
other = [
  { key = "a", data = "1", metadata = "m-a" },
  { key = "b", file = "big.bin" },
]
empty = []
`, map[string][]byte{"kv.json": kvJSON, "big.bin": randomBytes(300 << 10)})

	// Everything configured reads back with its metadata and a generation.
	gens := map[uint64]bool{}
	for store, entries := range m.LocalServer.KVStores {
		for key, e := range entries {
			r := p.ask(t, "/kv/get", q("store", store, "key", key), nil)
			if r.Err != "" || !bytes.Equal(r.Bytes, e.Value) || deref(r.Meta) != string(e.Metadata) || r.Generation == 0 {
				t.Errorf("%s/%s: err=%q %d bytes meta=%q gen=%d, want %d bytes meta %q", store, key, r.Err, len(r.Bytes), deref(r.Meta), r.Generation, len(e.Value), e.Metadata)
			}
			if gens[r.Generation] {
				t.Errorf("%s/%s: generation %d seen before", store, key, r.Generation)
			}
			gens[r.Generation] = true
		}
	}

	for _, tc := range []struct{ store, key, err string }{
		{"kv", "missing", "kvstore.ErrKeyNotFound"},
		{"kv", "a?b", "kvstore.ErrInvalidKey"},
		{"kv", strings.Repeat("k", 1025), "kvstore.ErrInvalidKey"},
		{"nostore", "k", "kvstore.ErrStoreNotFound"},
		{"", "k", "kvstore.ErrStoreNotFound"},
	} {
		if r := p.ask(t, "/kv/get", q("store", tc.store, "key", tc.key), nil); r.Err != tc.err || r.Bytes != nil {
			t.Errorf("get %s/%.20s: err=%q, want %q", tc.store, tc.key, r.Err, tc.err)
		}
	}

	t.Run("list", func(t *testing.T) {
		r := p.ask(t, "/kv/list", q("store", "kv", "prefix", "item/", "limit", "40"), nil)
		if r.Err != "" || !slices.Equal(r.Keys, itemKeys) {
			t.Fatalf("prefix list: err=%q %d keys", r.Err, len(r.Keys))
		}
		var sizes []int
		for i, pg := range r.Pages {
			sizes = append(sizes, pg.N)
			if last := i == len(r.Pages)-1; last != (pg.NextCursor == "") {
				t.Errorf("page %d: next_cursor %q", i, pg.NextCursor)
			}
		}
		if !slices.Equal(sizes, []int{40, 40, 40, 30}) {
			t.Errorf("page sizes %v", sizes)
		}
		all := append(slices.Clone(itemKeys), "big")
		slices.Sort(all)
		if r := p.ask(t, "/kv/list", q("store", "kv"), nil); r.Err != "" || !slices.Equal(r.Keys, all) || len(r.Pages) != 1 {
			t.Errorf("full list: err=%q %d keys in %d pages", r.Err, len(r.Keys), len(r.Pages))
		}
		cursor := base64.StdEncoding.EncodeToString([]byte("item/099"))
		if r := p.ask(t, "/kv/list", q("store", "kv", "prefix", "item/", "cursor", cursor), nil); r.Err != "" || !slices.Equal(r.Keys, itemKeys[100:]) {
			t.Errorf("list from cursor: err=%q keys %v", r.Err, r.Keys)
		}
		if r := p.ask(t, "/kv/list", q("store", "kv", "cursor", "not base64!"), nil); r.Err != "kvstore.ErrBadRequest" {
			t.Errorf("bad cursor: err=%q", r.Err)
		}
		if r := p.ask(t, "/kv/list", q("store", "empty"), nil); r.Err != "" || len(r.Keys) != 0 {
			t.Errorf("empty store: err=%q keys %v", r.Err, r.Keys)
		}
	})

	t.Run("insert", func(t *testing.T) {
		put := func(key string, body []byte, kv ...string) storeResult {
			return p.ask(t, "/kv/put", q(append([]string{"store", "kv", "key", key}, kv...)...), body)
		}
		get := func(key string) storeResult { return p.ask(t, "/kv/get", q("store", "kv", "key", key), nil) }

		if r := put("new", []byte("v1"), "meta", "m1"); r.Err != "" {
			t.Fatalf("insert: %q", r.Err)
		}
		r := get("new")
		if r.Err != "" || string(r.Bytes) != "v1" || deref(r.Meta) != "m1" {
			t.Fatalf("after insert: %+v", r)
		}
		// The guest changed the POP's store, not an instance's copy.
		if it, ok := p.Server.kv.lookup(p.Server.kv.store("kv"), "new"); !ok || string(it.value) != "v1" || it.generation != r.Generation {
			t.Errorf("POP store: %+v %v, guest saw generation %d", it, ok, r.Generation)
		}
		g1 := r.Generation
		if r := put("new", []byte("x"), "mode", "add"); r.Err != "kvstore.ErrPreconditionFailed" {
			t.Errorf("add over an existing key: %q", r.Err)
		}
		if r := put("new", []byte("x"), "gen", fmt.Sprint(g1+1)); r.Err != "kvstore.ErrPreconditionFailed" {
			t.Errorf("generation mismatch: %q", r.Err)
		}
		if r := put("new", []byte("v2"), "gen", fmt.Sprint(g1)); r.Err != "" {
			t.Errorf("generation match: %q", r.Err)
		}
		if r := get("new"); string(r.Bytes) != "v2" || r.Generation <= g1 || deref(r.Meta) != "" {
			t.Errorf("after generation-matched insert: %q gen %d (was %d) meta %q", r.Bytes, r.Generation, g1, deref(r.Meta))
		}
		put("new", []byte("<A"), "mode", "append")
		put("new", []byte("P>"), "mode", "prepend")
		if r := get("new"); string(r.Bytes) != "P>v2<A" {
			t.Errorf("append+prepend: %q", r.Bytes)
		}
		if r := put("fresh", []byte("f"), "mode", "add"); r.Err != "" {
			t.Errorf("add of a new key: %q", r.Err)
		}

		if r := p.ask(t, "/kv/del", q("store", "kv", "key", "new"), nil); r.Err != "" {
			t.Errorf("delete: %q", r.Err)
		}
		if r := get("new"); r.Err != "kvstore.ErrKeyNotFound" {
			t.Errorf("after delete: %q", r.Err)
		}
		if r := p.ask(t, "/kv/del", q("store", "kv", "key", "new"), nil); r.Err != "" {
			t.Errorf("deleting a missing key (Viceroy: success): %q", r.Err)
		}
		if r := p.ask(t, "/kv/del", q("store", "kv", "key", "a|b"), nil); r.Err != "kvstore.ErrInvalidKey" {
			t.Errorf("delete of an invalid key: %q", r.Err)
		}

		big := randomBytes(2 << 20)
		if r := put("bigput", big); r.Err != "" {
			t.Fatalf("2 MiB insert: %q", r.Err)
		}
		if r := get("bigput"); !bytes.Equal(r.Bytes, big) {
			t.Errorf("2 MiB value read back as %d bytes", len(r.Bytes))
		}

		before := time.Now()
		put("ttl", []byte("t"), "ttl", "60")
		if it, ok := p.Server.kv.lookup(p.Server.kv.store("kv"), "ttl"); !ok || it.expires.Before(before.Add(59*time.Second)) || it.expires.After(time.Now().Add(60*time.Second)) {
			t.Errorf("ttl=60 stored as expiry %v (now %v)", it.expires, before)
		}

		// Metadata larger than the SDK's 2000-byte buffer is stored, but a
		// lookup answers $buflen, which the SDK reports as unexpected.
		if r := put("bigmeta", []byte("x"), "metalen", "2500"); r.Err != "" {
			t.Fatalf("insert with 2500 bytes of metadata: %q", r.Err)
		}
		if r := get("bigmeta"); !strings.HasPrefix(r.Err, "kvstore: unexpected error") {
			t.Errorf("lookup with 2500 bytes of metadata: %q", r.Err)
		}

		if r := put("x", []byte("1")); r.Err != "" {
			t.Fatal(r.Err)
		}
		if r := p.ask(t, "/kv/list", q("store", "kv", "prefix", "x"), nil); !slices.Equal(r.Keys, []string{"x"}) {
			t.Errorf("inserted key not listed: %v", r.Keys)
		}
	})

	t.Run("shared", func(t *testing.T) {
		// Concurrent appends from several instances all land, and every
		// instance reads the same value.
		const n = 16
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				p.ask(t, "/kv/put", q("store", "other", "key", "counter", "mode", "append"), []byte("x"))
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		var mu sync.Mutex
		for range 8 {
			wg.Go(func() {
				r := p.ask(t, "/kv/get", q("store", "other", "key", "counter", "sleep_ms", "100"), nil)
				if string(r.Bytes) != strings.Repeat("x", n) {
					t.Errorf("instance %s read %q", r.Instance, r.Bytes)
				}
				mu.Lock()
				seen[r.Instance] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(seen) < 2 {
			t.Errorf("only %d instance(s) answered; the test needs two to show sharing", len(seen))
		}
	})
}

func TestStoreConformanceGeo(t *testing.T) {
	longCity := strings.Repeat("C", 2000) // more than the SDK's first 1 KiB buffer
	p, m := storePOP(t, `
[local_server.geolocation]
format = "inline-toml"
[local_server.geolocation.addresses."203.0.113.9"]
as_name = "Test AS"
as_number = 64500
city = "`+longCity+`"
country_code = "CA"
latitude = 12.345
longitude = -54.321
utc_offset = -700
[local_server.geolocation.addresses."2001:db8::5"]
city = "Six City"
continent = "EU"
`, nil)
	want := func(addr string) geoRecord {
		rec, _ := m.LocalServer.Geolocation.Lookup(mustAddr(t, addr))
		js, _ := json.Marshal(rec)
		var g geoRecord
		json.Unmarshal(js, &g)
		return g
	}
	for _, tc := range []struct {
		ip   string
		want geoRecord
	}{
		{"203.0.113.9", want("203.0.113.9")},
		{"2001:db8::5", want("2001:db8::5")},
		{"127.0.0.1", want("127.0.0.1")}, // Viceroy's default record
		{"::1", want("::1")},
		{"198.51.100.77", geoRecord{}}, // unknown: an empty answer
	} {
		r := p.ask(t, "/geo", q("ip", tc.ip), nil)
		if r.Err != "" || r.Geo == nil || *r.Geo != tc.want {
			got, _ := json.Marshal(r.Geo)
			exp, _ := json.Marshal(tc.want)
			t.Errorf("%s: err=%q geo=%.300s, want %.300s", tc.ip, r.Err, got, exp)
		}
	}
	if g := want("127.0.0.1"); g.City != "San Francisco" || g.AsNumber != 54113 || g.Latitude != 37.77869 {
		t.Errorf("default loopback record: %+v", g)
	}
	if g := want("203.0.113.9"); g.City != longCity || g.AsNumber != 64500 || g.Longitude != -54.321 {
		t.Errorf("configured record: %.100v", g)
	}
	if r := p.ask(t, "/geo", q("ip", "badlen"), nil); r.Err != "geo.ErrInvalidIP" {
		t.Errorf("5-byte address: %q", r.Err)
	}
}

// TestStoreConformanceRaw checks answers to hostcall misuse the SDK never
// commits: bad handles, handles of the wrong kind, bad config records.
func TestStoreConformanceRaw(t *testing.T) {
	p, m := storePOP(t, `
[local_server.kv_stores]
kv = []
[local_server.dictionaries.d]
format = "inline-toml"
[local_server.dictionaries.d.contents]
k = "v"
[local_server.geolocation]
format = "inline-toml"
[local_server.geolocation.addresses."192.0.2.1"]
city = "Raw City"
`, nil)
	_, text := p.get(t, "/raw?kv=kv&dict=d&ip=192.0.2.1")
	var got map[string]uint32
	if err := json.Unmarshal([]byte(text), &got); err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	rec, _ := m.LocalServer.Geolocation.Lookup(mustAddr(t, "192.0.2.1"))
	recJSON, _ := json.Marshal(rec)
	for name, want := range map[string]uint32{
		"kv_open_unknown":                 stInval,
		"kv_open":                         stOK,
		"kv_lookup_bad_store":             stBadf,
		"kv_lookup_wait_bad_handle":       stBadf,
		"kv_insert_wait_on_lookup_handle": stBadf,
		"kv_insert_store_as_body":         stBadf,
		"kv_insert_bad_mode":              stInval,
		"kv_insert_empty_metadata":        stInval,
		"kv_list_empty_cursor":            stInval,
		"kv_list_bad_store":               stBadf,
		"geo_small_buffer":                stBufLen,
		"geo_small_buffer_needed":         uint32(len(recJSON)),
		"geo_addr_len_5":                  stInval,
		"config_get_bad_handle":           stBadf,
		"config_get_dictionary_handle":    stBadf,
		"secret_plaintext_bad_handle":     stBadf,
	} {
		if g, ok := got[name]; !ok || g != want {
			t.Errorf("%s = %d (present %v), want %d", name, g, ok, want)
		}
	}
}

// TestKVStoreSemantics covers what the guest cannot observe quickly:
// expiry, and generations under a clock that stands still.
func TestKVStoreSemantics(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	k := newKVStores(nil)
	k.now = func() time.Time { return now }
	st := &kvStore{name: "s", items: map[string]kvItem{}}
	k.stores["s"] = st

	if e := k.insert(st, kvInsert{key: "a", value: []byte("1"), ttl: 10 * time.Second}); e != kvErrOK {
		t.Fatal(e)
	}
	a1, _ := k.lookup(st, "a")
	k.insert(st, kvInsert{key: "b", value: []byte("2")})
	b1, _ := k.lookup(st, "b")
	if a1.generation == 0 || b1.generation <= a1.generation {
		t.Errorf("generations with a stopped clock: %d then %d", a1.generation, b1.generation)
	}
	now = now.Add(9 * time.Second)
	if _, ok := k.lookup(st, "a"); !ok {
		t.Errorf("expired early")
	}
	now = now.Add(time.Second)
	if _, ok := k.lookup(st, "a"); ok {
		t.Errorf("not expired after its TTL")
	}
	page, _ := k.list(st, "", "", 10)
	if !strings.Contains(string(page), `"data":["b"]`) {
		t.Errorf("expired key listed: %s", page)
	}
	// An expired key counts as absent: add succeeds, append starts fresh.
	if e := k.insert(st, kvInsert{key: "a", value: []byte("new"), mode: kvModeAppend}); e != kvErrOK {
		t.Errorf("append to an expired key: %d", e)
	}
	if it, _ := k.lookup(st, "a"); string(it.value) != "new" {
		t.Errorf("append to an expired key gave %q", it.value)
	}
	// if_generation_match against a missing key passes (Viceroy).
	if e := k.insert(st, kvInsert{key: "c", value: []byte("x"), ifGen: 42, hasIfGen: true}); e != kvErrOK {
		t.Errorf("if_generation_match on a missing key: %d", e)
	}
	if e := k.insert(st, kvInsert{key: "c", value: make([]byte, maxKVValue+1)}); e != kvErrPayloadTooLarge {
		t.Errorf("oversized value: %d", e)
	}
	page, _ = k.list(st, "", "", 2)
	var pg kvListPage
	json.Unmarshal(page, &pg)
	if !slices.Equal(pg.Data, []string{"a", "b"}) || pg.Meta.NextCursor != base64.StdEncoding.EncodeToString([]byte("b")) || pg.Meta.Limit != 2 {
		t.Errorf("page: %s", page)
	}
	if _, e := k.list(st, base64.StdEncoding.EncodeToString([]byte{0xff}), "", 2); e != kvErrBadRequest {
		t.Errorf("non-UTF-8 cursor: %d", e)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptrTo[T any](v T) *T { return &v }

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A secret file rewritten after start (edgepixel-salt rotating a salt) is
// read again on a reload (SIGHUP) or by the watcher: warm instances see
// the new value at their next open, and a file that went missing keeps
// the old values rather than emptying the store.
func TestSecretStoreReread(t *testing.T) {
	p, m := storePOP(t, `
[local_server.secret_stores]
sec = [ { key = "salt", file = "salt.secret" } ]
`, map[string][]byte{"salt.secret": []byte("day-1")})
	get := func() string {
		t.Helper()
		r := p.ask(t, "/secret", q("store", "sec", "key", "salt"), nil)
		if r.Err != "" {
			t.Fatal(r.Err)
		}
		return string(r.Bytes)
	}
	if v := get(); v != "day-1" {
		t.Fatalf("before: %q", v)
	}
	path := filepath.Join(m.Dir, "salt.secret")
	if err := os.WriteFile(path, []byte("day-2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "day-1" {
		t.Fatalf("read again before any reload: %q", v)
	}
	p.Reload(context.Background())
	for range 4 { // every warm instance
		if v := get(); v != "day-2" {
			t.Fatalf("after the reload: %q", v)
		}
	}
	os.Remove(path)
	p.reloadSecrets()
	if v := get(); v != "day-2" {
		t.Fatalf("after the file went missing: %q", v)
	}
	// Said on /healthz until the file is back (a tester saw an ERROR line
	// every 500 ms and /healthz ok).
	if d := p.Degraded(); !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "reading the secret stores again failed") }) {
		t.Errorf("a missing secret file: degraded %q", d)
	}
	if err := os.WriteFile(path, []byte("day-3"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A changed secret replaces the instances, which may have read it
	// once (edgepixel's module, its aggregator_secret).
	before := map[string]bool{}
	for range 8 {
		before[p.ask(t, "/secret", q("store", "sec", "key", "salt"), nil).Instance] = true
	}
	p.Reload(context.Background())
	if d := p.Degraded(); len(d) != 0 {
		t.Errorf("once the file is back: degraded %q", d)
	}
	for range 8 {
		r := p.ask(t, "/secret", q("store", "sec", "key", "salt"), nil)
		if string(r.Bytes) != "day-3" || before[r.Instance] {
			t.Fatalf("after the reload: %q from instance %s (before: %v)", r.Bytes, r.Instance, before)
		}
	}
}

// A config store changed in fastly.toml, or in a file it names, reaches
// the guest after a reload (SIGHUP) through new instances, as a change
// on Fastly reaches the instances started after it; with --watch, an
// edit of fastly.toml is picked up by itself. A change to a table the
// server holds (backends) is logged with the advice to restart, and a
// fastly.toml that no longer reads keeps the stores and shows on
// /healthz until it reads again.
func TestConfigStoreReload(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fastly.toml")
	write := func(name, text string) {
		t.Helper()
		// Renamed into place, as an editor does, so the watcher never
		// reads half a file.
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	toml := func(backendPort int) string {
		return fmt.Sprintf(`
[local_server.backends.origin]
url = "http://127.0.0.1:%d"
[local_server.config_stores.cfg]
format = "json"
file = "cfg.json"
`, backendPort)
	}
	write("fastly.toml", toml(1))
	write("cfg.json", `{"k": "v1"}`)
	m, err := fastlytoml.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p := startPOP(t, m, func(c *Config) {
		c.WasmPath = guestPath("storeguest")
		c.Instances, c.MaxInstances = 2, 4
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		c.Reload, c.ReloadInterval = true, 20*time.Millisecond
		c.CheckManifest = func(m *fastlytoml.Manifest) ([]string, error) {
			v := m.LocalServer.ConfigStores["cfg"]["k"]
			if v == "refused" {
				return []string{"the command's warning of k=" + v}, errors.New("the command refuses k = refused")
			}
			return []string{"the command's warning of k=" + v}, nil
		}
	})
	// get asks every warm instance (and a few more) and returns the
	// values and instances seen.
	get := func() (values, instances map[string]bool) {
		t.Helper()
		values, instances = map[string]bool{}, map[string]bool{}
		for range 8 {
			r := p.ask(t, "/config", q("store", "cfg", "key", "k"), nil)
			if r.Err != "" || r.Value == nil {
				t.Fatalf("get: %+v", r)
			}
			values[*r.Value], instances[r.Instance] = true, true
		}
		return values, instances
	}
	only := func(v map[string]bool, want string) bool { return len(v) == 1 && v[want] }
	v, before := get()
	if !only(v, "v1") {
		t.Fatalf("at start: %v", v)
	}
	// The watcher reads a store's own file again when it changes, as it
	// does fastly.toml (a tester edited one and waited).
	write("cfg.json", `{"k": "v2"}`)
	var after map[string]bool
	deadline := time.Now().Add(10 * time.Second)
	for v, after = get(); !only(v, "v2"); v, after = get() {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not apply an edited store file: %v", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for id := range after {
		if before[id] {
			t.Errorf("instance %s from before the reload still serves", id)
		}
	}
	// Nothing changed: the instances stay (no switch to a new program;
	// which instances answer depends on the pool's dispatch, not on it).
	// Counted once the watcher's reload has finished: its new instances
	// answer before it counts the switch (a run under load read 0, then
	// 1).
	p.reloadMu.Lock()
	switches := p.ps.reloads.Load()
	p.reloadMu.Unlock()
	if err := p.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := p.ps.reloads.Load(); n != switches {
		t.Errorf("a reload with nothing changed replaced the instances (%d switches, then %d)", switches, n)
	}
	if v, _ := get(); !only(v, "v2") {
		t.Errorf("after a reload with nothing changed: %v", v)
	}

	// The watcher: fastly.toml edited (a backend and the store's file).
	write("cfg.json", `{"k": "v3"}`)
	write("fastly.toml", toml(2))
	deadline = time.Now().Add(10 * time.Second)
	for v, _ = get(); !only(v, "v3"); v, _ = get() {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not apply an edited fastly.toml: %v", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "[local_server.backends] changed") {
		t.Errorf("a changed backend was not logged:\n%s", logs.String())
	}

	// A key misspelt by an edit is warned about on the reload, as at
	// the start.
	write("fastly.toml", toml(2)+"[local_server.backendz.x]\nurl = \"http://127.0.0.1:3\"\n")
	if err := p.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "backendz") {
		t.Errorf("a misspelt key after a reload was not warned about:\n%s", logs.String())
	}

	// A manifest the command refuses (at start, and so on a reload: an
	// edit must not take live what a restart would refuse) leaves the
	// stores as they were, says why, and degrades /healthz.
	write("cfg.json", `{"k": "refused"}`)
	if err := p.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "the command refuses") {
		t.Errorf("a manifest the command refuses: reload error %v", err)
	}
	if !strings.Contains(logs.String(), "the command's warning of k=v3") {
		t.Errorf("the command's warnings of an accepted manifest were not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "the command's warning of k=refused") {
		t.Errorf("the warnings of a refused manifest were logged beside its refusal:\n%s", logs.String())
	}
	if d := p.Degraded(); !slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, "the command refuses") }) {
		t.Errorf("a refused fastly.toml: degraded %q", d)
	}
	if v, _ := get(); !only(v, "v3") {
		t.Errorf("a refused fastly.toml changed the store: %v", v)
	}
	write("cfg.json", `{"k": "v3"}`)

	write("fastly.toml", "[local_server\n")
	p.Reload(context.Background())
	if d := p.Degraded(); !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "fastly.toml read again is not taken") }) {
		t.Errorf("a broken fastly.toml: degraded %q", d)
	}
	if v, _ := get(); !only(v, "v3") {
		t.Errorf("a broken fastly.toml changed the store: %v", v)
	}
	write("fastly.toml", toml(2))
	p.Reload(context.Background())
	if d := p.Degraded(); len(d) != 0 {
		t.Errorf("once fastly.toml reads again: degraded %q", d)
	}
}

// A config store edited together with a module that fails to load: the
// edit still reaches the instances once a later reload succeeds, even
// when that reload finds the module as it was before the failure.
func TestConfigStoreReloadAfterFailedModule(t *testing.T) {
	dir := t.TempDir()
	manifest, wasm := filepath.Join(dir, "fastly.toml"), filepath.Join(dir, "main.wasm")
	replaceFile(t, manifest, []byte("[local_server.config_stores.cfg]\nformat = \"json\"\nfile = \"cfg.json\"\n"))
	replaceFile(t, filepath.Join(dir, "cfg.json"), []byte(`{"k": "v1"}`))
	good := readFile(t, guestPath("storeguest"))
	replaceFile(t, wasm, good)
	m, err := fastlytoml.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	p := startPOP(t, m, func(c *Config) {
		c.WasmPath = wasm
		c.Instances, c.MaxInstances = 1, 2
	})
	get := func() string {
		t.Helper()
		r := p.ask(t, "/config", q("store", "cfg", "key", "k"), nil)
		if r.Err != "" || r.Value == nil {
			t.Fatalf("get: %+v", r)
		}
		return *r.Value
	}
	if v := get(); v != "v1" {
		t.Fatalf("at start: %q", v)
	}
	replaceFile(t, filepath.Join(dir, "cfg.json"), []byte(`{"k": "v2"}`))
	replaceFile(t, wasm, []byte("\x00asm\x01\x00\x00\x00garbage"))
	if err := p.Reload(context.Background()); err == nil {
		t.Fatal("Reload accepted a broken module")
	}
	if v := get(); v != "v1" {
		t.Errorf("after the failed reload the running instances changed: %q", v)
	}
	replaceFile(t, wasm, good)
	if err := p.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != "v2" {
		t.Errorf("the store's edit did not reach the instances once the module loaded again: %q", v)
	}
	switches := p.ps.reloads.Load()
	if err := p.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := p.ps.reloads.Load(); n != switches {
		t.Errorf("the edit was applied again by a later reload (%d switches, then %d)", switches, n)
	}
}
