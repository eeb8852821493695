package tests

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestSignedPostsAndNoSaltThroughPOP runs the real edge .wasm under the
// POP with a sign=reject site, a sign=mark site and no visitor salt in
// the secret store:
//   - event POSTs to a URL signed for the site are stored as verified;
//     unsigned, expired, tampered or other-site URLs are answered 403 with
//     their reason and counted, and nothing of them is stored;
//   - every event stored without a visitor id for want of a salt is
//     counted as no_salt, which reaches edge_counters and /api/loss.
func TestSignedPostsAndNoSaltThroughPOP(t *testing.T) {
	s := startStack(t, stack.Options{
		EdgeConfig: map[string]string{
			"batch_max_age_ms":                   "50",
			pixel.ConfigSitePrefix + "ps-reject": "sign=reject",
			pixel.ConfigSitePrefix + "ps-mark":   "sign=mark",
		},
		// Keys for both sites, and deliberately no visitor_salt_*.
		EdgeSecrets: map[string]string{"pixel_key.ps-reject": pixelKey, "pixel_key.ps-mark": pixelKey},
	})
	signedFor := func(site string, exp time.Time) string {
		q, err := pixelsign.Sign([]byte(pixelKey), "site="+site, exp.Unix())
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	good := signedFor("ps-reject", time.Now().Add(time.Hour))
	postTo := func(query, body string) (int, string) {
		t.Helper()
		resp, b := post(t, s.PopURL+"/e?"+query, "text/plain", []byte(body), map[string]string{"User-Agent": uaChrome})
		if resp.StatusCode >= 500 {
			t.Fatalf("POST ?%s: %s %s", query, resp.Status, b)
		}
		return resp.StatusCode, resp.Header.Get("X-Edgepixel-Drop")
	}
	body := func(site, name string) string {
		return fmt.Sprintf(`[{"site":%q,"name":%q,"url":"https://shop.example/a"},{"site":%q,"name":%q}]`, site, name, site, name+"-2")
	}
	for _, tc := range []struct {
		name, query, body string
		status            int
		drop              string
	}{
		{"signed", good, body("ps-reject", "signed"), 204, ""},
		{"unsigned", "site=ps-reject", body("ps-reject", "unsigned"), 403, wire.DropUnsigned},
		{"no query", "", body("ps-reject", "no-query"), 403, wire.DropUnsigned},
		{"expired", signedFor("ps-reject", time.Now().Add(-time.Minute)), body("ps-reject", "expired"), 403, wire.DropExpiredPixel},
		{"tampered", strings.Replace(good, "exp=", "exp=9", 1), body("ps-reject", "tampered"), 403, wire.DropBadSignature},
		{"other site's URL", signedFor("ps-mark", time.Now().Add(time.Hour)), body("ps-reject", "other-site"), 403, wire.DropBadSignature},
		{"mark, unsigned", "", body("ps-mark", "mark-unsigned"), 204, ""},
		{"mark, signed", signedFor("ps-mark", time.Now().Add(time.Hour)), body("ps-mark", "mark-signed"), 204, ""},
	} {
		if status, drop := postTo(tc.query, tc.body); status != tc.status || drop != tc.drop {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, drop, tc.status, tc.drop)
		}
	}
	// And a pixel hit, which no salt leaves without a visitor id too.
	if drop := hit(t, s, "site=ps-mark&e=pixel", "", uaChrome, nil); drop != "" {
		t.Fatalf("pixel: %q", drop)
	}

	got := waitEnriched(t, s, "ps-%", 7)
	for name, sig := range map[string]string{"signed": "verified", "signed-2": "verified", "mark-unsigned": "unsigned",
		"mark-unsigned-2": "unsigned", "mark-signed": "verified", "mark-signed-2": "verified", "pixel": "unsigned"} {
		e, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: not stored", name)
		case e.Signature != sig || e.VisitorID != 0:
			t.Errorf("%s: signature %q (want %q), visitor id %x (no salt: want none)", name, e.Signature, sig, e.VisitorID)
		}
	}
	if len(got) != 7 {
		t.Errorf("stored %d events, want 7: %v", len(got), names(got))
	}

	// The counters reach the aggregator: the refused POSTs as drops of
	// the site their events name (ps-reject, whose policy refused them,
	// also for the URL signed for ps-mark and the one without a query),
	// every stored event as noted no_salt for its site.
	eventually(t, 30*time.Second, "no_salt counted", func() (bool, string) {
		r, m := lossOf(t, s, "ps-reject"), lossOf(t, s, "ps-mark")
		return r.Noted["no_salt"] == 2 && m.Noted["no_salt"] == 5 && r.Dropped[wire.DropUnsigned] == 2 &&
			r.Dropped[wire.DropExpiredPixel] == 1 && r.Dropped[wire.DropBadSignature] == 2 && len(m.Dropped) == 0, fmt.Sprintf("ps-reject %+v, ps-mark %+v", r, m)
	})
	if n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT sum(v) FROM (SELECT max(value) AS v FROM edge_counters WHERE counter = 'noted' AND reason = 'no_salt' AND site = 'ps-mark' GROUP BY instance)"); n != "5" {
		t.Errorf("edge_counters no_salt for ps-mark: %q", n)
	}

	// A salt written after the start, as make run's hourly rotation
	// writes one, reaches the POP once the manifest is written again and
	// the POP told: it reads the files its fastly.toml names, and the
	// manifest written at the start named only those there then.
	var r [16]byte
	rand.Read(r[:])
	day := privacy.Day(time.Now())
	if err := os.WriteFile(s.SecretFile(privacy.SaltKey(day)), []byte(privacy.NewSalt(day, r).String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteManifest(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pop.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i := 0
	eventually(t, 30*time.Second, "a visitor id from the new salt", func() (bool, string) {
		i++
		if drop := hit(t, s, fmt.Sprintf("site=ps-mark&e=salted-%d", i), "", uaChrome, nil); drop != "" {
			t.Fatalf("pixel: %q", drop)
		}
		n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'ps-mark' AND name LIKE 'salted-%' AND visitor_id != 0 FORMAT TSV")
		return n != "0", n
	})
}

func names[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
