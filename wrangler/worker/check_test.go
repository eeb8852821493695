package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// TestCheckNames: the tester's misspelt vars, each reported with the name
// it meant, and the names the worker reads (vars, secrets, bindings)
// not reported.
func TestCheckNames(t *testing.T) {
	names := []string{
		"sites", "site.shop.exmaple", "batch_wait", "ingest-url", "kv_cache_ms",
		"site.shop.example", "site_default", "aggregator_secret", "log_token",
		"pixel_key.shop.example", "pixel_key.shop.example.previous", "pixel_key.blog.exampel",
		"visitor_salt_0", "visitor_salt_1", "SPOOL", "SALTS", "SETTINGS", "pop",
		"rate_limit_client", "ndjson_url", "batch_max_age_ms", "sites.blog.example",
	}
	err := CheckNames(names, "shop.example blog.example")
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`batch_max_age_ms is a Fastly config store key`,
		`batch_wait is not a var, secret or binding the worker reads, so it does nothing; did you mean batch_wait_ms?`,
		`ingest-url is not a var, secret or binding the worker reads, so it does nothing; did you mean ingest_url?`,
		`pixel_key.blog.exampel is for site "blog.exampel", which sites ("shop.example blog.example") does not list, so it does nothing; did you mean pixel_key.blog.example?`,
		`site.shop.exmaple is for site "shop.exmaple", which sites ("shop.example blog.example") does not list, so it does nothing; did you mean site.shop.example?`,
		`sites.blog.example is not a var, secret or binding the worker reads, so it does nothing; did you mean site.blog.example?`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	// Without sites, any site's settings may apply (unknown_sites).
	if err := CheckNames([]string{"site.shop.exmaple", "pixel_key.x"}, ""); err != nil {
		t.Errorf("without sites: %v", err)
	}
}

// TestKVCacheVar: kv_cache_ms was parsed by the JavaScript, which took
// the default for "abc" without a word.
func TestKVCacheVar(t *testing.T) {
	for v, want := range map[string]string{"abc": `kv_cache_ms "abc": want milliseconds, 0 to 3600000; using 60000`, "-1": "kv_cache_ms", "5000": ""} {
		c, err := ParseConfig(func(k string) string {
			if k == ConfigKVCache {
				return v
			}
			return ""
		})
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", v, err)
		case want == "" && c.KVCache.Milliseconds() != 5000:
			t.Errorf("%q: KVCache %v", v, c.KVCache)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v, want %q", v, err, want)
		case want != "" && c.KVCache != DefaultKVCache:
			t.Errorf("%q: KVCache %v", v, c.KVCache)
		}
	}
}

// TestIngestURLChecked: make run prints the aggregator's base URL, and
// a URL without its scheme fails every delivery with "Invalid URL";
// neither was reported at start.
func TestIngestURLChecked(t *testing.T) {
	for _, c := range []struct{ ingest, ndjson, want string }{
		{"http://127.0.0.1:25044", "", `warning: ingest_url "http://127.0.0.1:25044": its path does not end in /ingest, where the aggregator takes them, so deliveries will likely get 404s; did you mean http://127.0.0.1:25044/ingest?`},
		{"127.0.0.1:25044/ingest", "", `ingest_url "127.0.0.1:25044/ingest" is not an http(s) URL: no hit can be delivered; want e.g. http://127.0.0.1:25044/ingest`},
		{"agg.example.org", "", `ingest_url "agg.example.org" is not an http(s) URL: no hit can be delivered; want e.g. http://agg.example.org/ingest`},
		{"https://a/ingest,ftp://b/ingest", "", `ingest_url "ftp://b/ingest" is not an http(s) URL`},
		{"https://a/ingest", "https://a/ingest", `warning: ndjson_url "https://a/ingest": its path does not end in /ingest/ndjson`},
		{"https://a/ingest/", "https://a/ingest/ndjson", ""},
		{"http://10.0.0.1:8080/edgepixel/ingest", "", ""},
	} {
		_, err := ParseConfig(func(k string) string {
			return map[string]string{ConfigIngestURL: c.ingest, ConfigNDJSONURL: c.ndjson}[k]
		})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ingest_url %q, ndjson_url %q: error %v, want %q", c.ingest, c.ndjson, err, c.want)
		}
	}
}

// TestNoSaltSaid: without a salt for the day, events were stored with
// visitor_id 0 and counted no_salt without a word; NoSalt is told once
// a day, and not when the salt is there.
func TestNoSaltSaid(t *testing.T) {
	hit := func(w *Worker) {
		t.Helper()
		serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "cf-connecting-ip:203.0.113.7\n", ""), 200)
	}
	var told []time.Time
	w := newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: "s"})
	w.NoSalt = func(now time.Time) { told = append(told, now) }
	hit(w)
	hit(w)
	if len(told) != 1 {
		t.Errorf("without salts: NoSalt told %d times, want once", len(told))
	}
	if n := w.Counts("shop").Noted(wire.NoteNoSalt); n != 2 {
		t.Errorf("no_salt %d, want 2", n)
	}

	day := privacy.Day(time.Now())
	told = nil
	w = newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: "s",
		privacy.SaltKey(day): privacy.NewSalt(day, [16]byte{7}).String()})
	w.NoSalt = func(now time.Time) { told = append(told, now) }
	hit(w)
	if len(told) != 0 {
		t.Errorf("with today's salt: NoSalt told %d times", len(told))
	}
}

// TestCheckPixelKeys: a sign=reject site without its pixel_key secret
// dropped every hit with nothing said.
func TestCheckPixelKeys(t *testing.T) {
	env := map[string]string{
		pixel.ConfigSites: "shop.example blog.example news.example", "site.shop.example": "sign=reject",
		"site.blog.example": "sign=mark", "pixel_key.news.example": "k", pixel.ConfigSiteDefault: "sign=reject",
		"site.other.example": "tier=aggregate", "site.keyed.example": "sign=reject", "pixel_key.keyed.example.previous": "k",
	}
	var names []string
	for k := range env {
		names = append(names, k)
	}
	err := CheckPixelKeys(names, getter(env))
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		`site.shop.example signs pixels ("sign=reject") but there is no pixel_key.shop.example secret, so every hit of shop.example is dropped as unsigned; add the site's key (edgepixel-sign): wrangler secret put pixel_key.shop.example`,
		`site.blog.example signs pixels ("sign=mark") but there is no pixel_key.blog.example secret, so no hit of blog.example can be verified`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, not := range []string{"news.example", "other.example", "keyed.example"} {
		if strings.Contains(got, not) {
			t.Errorf("%s reported:\n%s", not, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 2 {
		t.Errorf("%d reports, want 2:\n%s", n, got)
	}
}

func TestCheckSpool(t *testing.T) {
	if err := CheckSpool([]string{"ingest_url", "SPOOL"}); err != nil {
		t.Errorf("SPOOL bound: %v", err)
	}
	if err := CheckSpool([]string{"ingest_url", "SPOL"}); err == nil || !strings.Contains(err.Error(), "no SPOOL binding") {
		t.Errorf("no SPOOL: %v", err)
	}
}

// TestOverSaltSaid: a salt of a day long over, left in KV or the secrets
// by a rotation that stopped, is said at most once an hour; today's and
// tomorrow's are not.
func TestOverSaltSaid(t *testing.T) {
	day := privacy.Day(time.Now())
	for _, c := range []struct {
		name  string
		other int32 // the second salt's day
		want  int
	}{{"tomorrow's", day + 1, 0}, {"three days ago", day - 3, 1}} {
		w := newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: "s",
			privacy.SaltKey(day): privacy.NewSalt(day, [16]byte{7}).String(), privacy.SaltKey(day + 1): privacy.NewSalt(c.other, [16]byte{8}).String()})
		var told []string
		w.OverSalt = func(m string) { told = append(told, m) }
		for range 2 {
			serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "cf-connecting-ip:203.0.113.7\n", ""), 200)
		}
		if len(told) != c.want || c.want > 0 && !strings.Contains(told[0], privacy.NewSalt(c.other, [16]byte{8}).Date()) {
			t.Errorf("%s salt beside today's: told %q, want %d naming its day", c.name, told, c.want)
		}
	}
}
