package tests

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop/geoip/geoiptest"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

const (
	uaChrome  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaFirefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaBot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaGmail   = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)

// pixelKey signs the pixels of site en-signed and en-mark.
var pixelKey = "e2e-pixel-key-0123456789abcdef"

// enrichStack is a stack whose POP trusts 127.0.0.1 to name the client
// (X-Forwarded-For), so hits come from the documentation addresses a
// MaxMind-format database built here places in Frankfurt (AS3320), with
// per-site settings, today's visitor salt and a pixel key.
func enrichStack(t *testing.T, extraConfig map[string]string) *stack.Stack {
	t.Helper()
	dir := t.TempDir()
	city, err := geoiptest.CityDB("GeoLite2-City", time.Now().Unix(), geoiptest.City{Network: "203.0.113.0/24", Continent: "EU",
		Country: "DE", CountryName: "Germany", Subdivisions: []string{"HE"}, City: "Frankfurt am Main", TimeZone: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	asn, err := geoiptest.ASNDB("GeoLite2-ASN", time.Now().Unix(), geoiptest.AS{Network: "203.0.113.0/24", Number: 3320, Organization: "Deutsche Telekom AG"})
	if err != nil {
		t.Fatal(err)
	}
	cityPath, asnPath := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := os.WriteFile(cityPath, city, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(asnPath, asn, 0o644); err != nil {
		t.Fatal(err)
	}
	var r [16]byte
	rand.Read(r[:])
	day := privacy.Day(time.Now())
	cfg := map[string]string{
		"batch_max_age_ms":                   "50",
		pixel.ConfigSitePrefix + "en-signed": "sign=reject",
		pixel.ConfigSitePrefix + "en-mark":   "sign=mark",
		pixel.ConfigSitePrefix + "en-agg":    "tier=aggregate",
		pixel.ConfigSitePrefix + "en-ip":     "ip=prefix",
		pixel.ConfigSitePrefix + "en-q":      "query=drop",
	}
	for k, v := range extraConfig {
		cfg[k] = v
	}
	return startStack(t, stack.Options{
		Dir:        dir,
		EdgeConfig: cfg,
		EdgeSecrets: map[string]string{
			privacy.SaltKey(day): privacy.NewSalt(day, r).String(),
			// Tomorrow's entry still holds a salt of three days ago: a
			// rotation that stopped, which the module says on stderr.
			privacy.SaltKey(day + 1): staleSalt(day).String(),
			"pixel_key.en-signed":    pixelKey,
			"pixel_key.en-mark":      pixelKey,
		},
		PopArgs: []string{"--geoip-db", cityPath, "--geoip-db", asnPath, "--trusted-proxies", "127.0.0.0/8"},
	})
}

// staleSalt is the salt of three days before day that enrichStack leaves
// in tomorrow's entry.
func staleSalt(day int32) privacy.Salt { return privacy.NewSalt(day-3, [16]byte{3}) }

// hit sends one pixel request from client address ip and returns the
// drop reason the POP answered.
func hit(t *testing.T, s *stack.Stack, query, ip, ua string, hdr map[string]string) string {
	t.Helper()
	h := map[string]string{"X-Forwarded-For": ip, "User-Agent": ua}
	for k, v := range hdr {
		h[k] = v
	}
	resp, body := get(t, s.PopURL+"/p.gif?"+query, h)
	if resp.StatusCode != 200 || !bytes.Equal(body, pixel.GIF) { // the GIF, dropped or not
		t.Errorf("pixel answered %s, %d bytes", resp.Status, len(body))
	}
	return resp.Header.Get("X-Edgepixel-Drop")
}

// rows returns the stored events of the sites matching like, keyed by
// name (each name once), with every column.
func rows(t *testing.T, s *stack.Stack, like string) map[string]event.Event {
	t.Helper()
	q := "SELECT *, path FROM events WHERE site LIKE '" + like + "' FORMAT JSONEachRow"
	resp, err := http.Post(s.ClickHouse.HTTPURL+"/?database=edgepixel&output_format_json_quote_64bit_integers=0", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]event.Event{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e event.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		if _, dup := out[e.Name]; dup {
			t.Fatalf("event %q stored twice", e.Name)
		}
		out[e.Name] = e
	}
	return out
}

func waitEnriched(t *testing.T, s *stack.Stack, like string, n int) map[string]event.Event {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d events of %s", n, like), func() (bool, string) {
		c := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site LIKE '"+like+"'")
		return c == strconv.Itoa(n), c
	})
	return rows(t, s, like)
}

// TestEnrichmentThroughPOP sends hits through the POP running the real
// edge .wasm and reads what ClickHouse stored: the user agent's classes,
// bots, channels, campaign parameters and click ids, geography from the
// POP's MaxMind-format database, consent tiers, visitor ids, signed pixel
// policies and email-open marking, and a rate limit.
func TestEnrichmentThroughPOP(t *testing.T) {
	s := enrichStack(t, map[string]string{"rate_limit_client": "10"})
	const ip, ip2 = "203.0.113.7", "203.0.113.8"
	page := func(site, name, u, ref string) string {
		v := url.Values{"site": {site}, "url": {u}, "ref": {ref}}
		if name != "" {
			v.Set("e", name)
		}
		return v.Encode()
	}
	want := map[string]func(e event.Event) bool{}
	send := func(query, ip, ua string, hdr map[string]string, drop string, check func(e event.Event) bool) {
		t.Helper()
		if got := hit(t, s, query, ip, ua, hdr); got != drop {
			t.Fatalf("%s: drop %q, want %q", query, got, drop)
		}
		if drop == "" {
			q, _ := url.ParseQuery(query)
			want[q.Get("e")] = check
		}
	}
	send(page("en-a", "chrome", "https://shop.example/p?id=7&gclid=abc&utm_source=g&utm_term=shoes&utm_content=hero", ""), ip, uaChrome, nil, "", func(e event.Event) bool {
		return e.Browser == "Chrome" && e.BrowserVersion == "131" && e.OS == "Windows" && e.OSVersion == "10" && e.Device == "desktop" &&
			e.BotScore < 50 && e.Channel == "paid" && e.ClickIDs == "gclid" && e.UTMSource == "g" && e.UTMTerm == "shoes" && e.UTMContent == "hero" &&
			e.URL == "https://shop.example/p?id=7" && e.Path == "/p" && e.Country == "DE" && e.Region == "HE" && e.City == "Frankfurt am Main" &&
			e.ASN == 3320 && e.Tier == "full" && e.ConsentReason == "default" && e.VisitorID != 0 && e.ClientIP == "" && e.Signature == ""
	})
	send(page("en-a", "firefox", "https://shop.example/q", "https://www.google.com/"), ip, uaFirefox, nil, "", func(e event.Event) bool {
		return e.Browser == "Firefox" && e.OS == "Linux" && e.Channel == "search" && e.Source == "Google" && e.ReferrerHost == "www.google.com"
	})
	send(page("en-a", "bot", "https://shop.example/", ""), ip, uaBot, nil, "", func(e event.Event) bool {
		return e.Device == "bot" && e.BotScore >= 50 && e.BotReason == "crawler"
	})
	send(page("en-a", "social", "https://shop.example/", "https://t.co/x"), ip, uaChrome, nil, "", func(e event.Event) bool {
		return e.Channel == "social" && e.Source == "Twitter"
	})
	send(page("en-a", "mail-campaign", "https://shop.example/?utm_medium=email&utm_source=nl", ""), ip, uaChrome, nil, "", func(e event.Event) bool {
		return e.Channel == "email"
	})
	send(page("en-a", "prefetch", "https://shop.example/", ""), ip, uaChrome, map[string]string{"Sec-Purpose": "prefetch"}, "", func(e event.Event) bool {
		return e.BotReason == "prefetch" && e.BotScore >= 50
	})
	// One page, one spelling: a mailer's escapes and a browser's raw
	// marks and UTF-8 (package urlescape).
	send(page("en-a", "mailer-spelling", "https://SHOP.example:443/it%27s/caf%c3%a9#top", ""), ip2, uaChrome, nil, "", func(e event.Event) bool {
		return e.URL == "https://shop.example/it's/caf%C3%A9" && e.Path == "/it's/caf%C3%A9"
	})
	send(page("en-a", "browser-spelling", "https://shop.example/it's/café", ""), ip2, uaChrome, nil, "", func(e event.Event) bool {
		return e.URL == "https://shop.example/it's/caf%C3%A9" && e.Path == "/it's/caf%C3%A9"
	})
	// Visitor ids: stable for a client within the day, per site.
	send(page("en-a", "same-visitor", "https://shop.example/r", ""), ip, uaChrome, nil, "", nil)
	send(page("en-a", "other-visitor", "https://shop.example/r", ""), ip2, uaChrome, nil, "", nil)
	send(page("en-b", "other-site", "https://blog.example/", ""), ip, uaChrome, nil, "", nil)
	// Consent tiers.
	// The tier keeps a referrer's origin, ref.
	private := func(reason, ref string) func(e event.Event) bool {
		return func(e event.Event) bool {
			return e.Tier == "aggregate" && e.ConsentReason == reason && e.VisitorID == 0 && e.UserAgent == "" && e.Referrer == ref &&
				e.URL == "https://shop.example/private" && e.Browser == "Chrome" && e.Country == "DE"
		}
	}
	priv := page("en-a", "", "https://shop.example/private?email=a@b.c", "https://www.google.com/search?q=me")
	send(priv+"&e=gpc", ip, uaChrome, map[string]string{"Sec-GPC": "1"}, "", private("gpc", "https://www.google.com/"))
	send(priv+"&e=dnt", ip, uaChrome, map[string]string{"DNT": "1"}, "", private("dnt", "https://www.google.com/"))
	send(priv+"&e=no-consent&consent=0", ip, uaChrome, nil, "", private("no_consent", "https://www.google.com/"))
	send(page("en-agg", "agg-default", "https://shop.example/private?x=1", ""), ip, uaChrome, nil, "", private("default", ""))
	send(page("en-agg", "agg-consented", "https://shop.example/", "")+"&consent=1", ip, uaChrome, nil, "", func(e event.Event) bool {
		return e.Tier == "full" && e.ConsentReason == "consent" && e.VisitorID != 0
	})
	// An address leaves the edge only for a site that opts in.
	send(page("en-ip", "ip", "https://shop.example/", ""), ip, uaChrome, nil, "", func(e event.Event) bool { return e.ClientIP == "203.0.113.0" })
	// Signed pixels.
	signed, err := pixelsign.Sign([]byte(pixelKey), page("en-signed", "signed", "https://mail.example/c", ""), time.Now().Add(time.Hour).Unix())
	if err != nil {
		t.Fatal(err)
	}
	send(signed, ip, uaChrome, nil, "", func(e event.Event) bool { return e.Signature == "verified" })
	send(page("en-signed", "unsigned", "https://mail.example/c", ""), ip, uaChrome, nil, wire.DropUnsigned, nil)
	send(strings.Replace(signed, "e=signed", "e=forged", 1), ip, uaChrome, nil, wire.DropBadSignature, nil)
	expired, _ := pixelsign.Sign([]byte(pixelKey), page("en-signed", "expired", "https://mail.example/c", ""), time.Now().Add(-time.Minute).Unix())
	send(expired, ip, uaChrome, nil, wire.DropExpiredPixel, nil)
	send(page("en-mark", "mark-unsigned", "https://mail.example/c", ""), ip, uaChrome, nil, "", func(e event.Event) bool { return e.Signature == "unsigned" })
	send(strings.NewReplacer("en-signed", "en-mark", "e=signed", "e=mark-forged").Replace(signed), ip, uaChrome, nil, "", func(e event.Event) bool { return e.Signature == "unverified" })
	// Email opens: Gmail's image proxy, and a person; neither a visitor.
	send(page("en-a", "open-gmail", "", "")+"&open=email", "203.0.113.9", uaGmail, nil, "", func(e event.Event) bool { return e.MailOpen == "gmail" && e.VisitorID == 0 })
	send(page("en-a", "open-person", "", "")+"&open=email", ip, uaChrome, nil, "", func(e event.Event) bool { return e.MailOpen == "person" && e.VisitorID == 0 })

	// query=drop: neither query stored, the campaign read first; a
	// servlet's session id never stored.
	send(page("en-q", "no-query", "https://shop.example/cart;jsessionid=0A1B?q=alice%40example.com&utm_source=news&utm_medium=email", "https://shop.example/login?token=s3cret"), ip, uaChrome, nil, "", func(e event.Event) bool {
		return e.URL == "https://shop.example/cart" && e.Referrer == "https://shop.example/login" && e.UTMSource == "news" && e.Channel == "email"
	})

	got := waitEnriched(t, s, "en-%", len(want))
	// The module read the salts at its first hit and said the stale one.
	if l := string(proc.Tail(filepath.Join(s.Options().Dir, "logs", "pop.log"), 1<<20)); !strings.Contains(l, "holds the visitor salt of "+staleSalt(privacy.Day(time.Now())).Date()) ||
		!strings.Contains(l, "with --fastly-store STORE_ID on Fastly") { // the module's words, not the POP's
		t.Errorf("no warning of the salt of a day that is over from the module in the POP's log")
	}
	for name, check := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s: not stored", name)
			continue
		}
		if check != nil && !check(e) {
			t.Errorf("%s: %+v", name, e)
		}
	}
	a, b, c, d := got["same-visitor"].VisitorID, got["chrome"].VisitorID, got["other-visitor"].VisitorID, got["other-site"].VisitorID
	if a == 0 || a != b || c == a || d == a || c == 0 || d == 0 {
		t.Errorf("visitor ids: same client %x %x, other client %x, other site %x", a, b, c, d)
	}

	// Over the per-client limit (10 hits a second over 10 s), hits still
	// get the GIF, are counted as rate_limited and store nothing.
	sent, limited := 0, 0
	for sent < 2000 && limited == 0 {
		sent++
		if drop := hit(t, s, page("rl-one", "x"+strconv.Itoa(sent), "https://shop.example/", ""), "203.0.113.50", uaChrome, nil); drop == wire.DropRateLimited {
			limited++
		} else if drop != "" {
			t.Fatalf("drop %q", drop)
		}
	}
	for range 5 { // in the penalty box now
		sent++
		if drop := hit(t, s, page("rl-one", "x"+strconv.Itoa(sent), "https://shop.example/", ""), "203.0.113.50", uaChrome, nil); drop == wire.DropRateLimited {
			limited++
		}
	}
	if limited < 6 {
		t.Fatalf("%d of %d hits from one client were limited", limited, sent)
	}
	// Another client is not limited.
	if drop := hit(t, s, page("rl-other", "y", "https://shop.example/", ""), "203.0.113.51", uaChrome, nil); drop != "" {
		t.Fatalf("another client: %q", drop)
	}
	waitEnriched(t, s, "rl-other", 1)
	stored := len(waitEnriched(t, s, "rl-one", sent-limited))
	t.Logf("rate limit: %d hits from one client, %d limited, %d stored", sent, limited, stored)
}

// TestTrackerThroughPOP loads s.js from the POP into a page of another
// origin in headless Chromium: the script comes gzipped with the gzip
// body's ETag,
// and its pageview, single-page-app view and custom event are stored
// with the screen width, the client's clock and the consent word.
func TestTrackerThroughPOP(t *testing.T) {
	s := enrichStack(t, nil)
	// The script itself, as a CDN or browser cache would ask for it.
	resp, body := get(t, s.PopURL+"/s.js", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != tracker.GzipETag || resp.Header.Get("Cache-Control") != tracker.CacheControl ||
		resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, tracker.Gzip) || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("s.js: %d %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	if resp, _ := get(t, s.PopURL+"/s.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": tracker.GzipETag}); resp.StatusCode != 304 {
		t.Fatalf("revalidation: %d", resp.StatusCode)
	}

	page := newPage(t, fmt.Sprintf(`<!doctype html><meta charset="utf-8"><title>t</title>
<script src="%s/s.js" data-site="tr-shop"></script>`, s.PopURL))
	ctx := browser(t, 2*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(page+"/start?utm_source=news&fbclid=x")); err != nil {
		t.Fatal(err)
	}
	waitEnriched(t, s, "tr-shop", 1)
	for _, js := range []string{`history.pushState({}, "", "/cart")`, `edgepixel("signup", {plan: "pro"})`} {
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](js)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "3 events of tr-shop", func() (bool, string) {
		c := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'tr-shop'")
		return c == "3", c
	})
	got := map[string][]event.Event{}
	q := "SELECT *, path FROM events WHERE site = 'tr-shop' ORDER BY ts_ms FORMAT JSONEachRow"
	r, err := http.Post(s.ClickHouse.HTTPURL+"/?database=edgepixel&output_format_json_quote_64bit_integers=0", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		var e event.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		got[e.Name] = append(got[e.Name], e)
	}
	views, signups := got["pageview"], got["signup"]
	if len(views) != 2 || len(signups) != 1 {
		t.Fatalf("stored %v", got)
	}
	now := uint64(time.Now().UnixMilli())
	for _, e := range append(views, signups...) {
		// Headless Chromium says so in its user agent: an automated browser.
		if e.ScreenWidth == 0 || e.ClientTime == 0 || e.ClientTime > now || e.Method != "POST" || e.BotReason != "automation" || e.Tier != "full" {
			t.Errorf("%s: %+v", e.Name, e)
		}
	}
	if views[0].URL != page+"/start" || views[0].UTMSource != "news" || views[0].ClickIDs != "fbclid" || views[1].Path != "/cart" || views[1].ReferrerHost == "" ||
		views[1].Channel != "internal" || signups[0].Props != `{"plan":"pro"}` {
		t.Errorf("views %+v\nsignup %+v", views, signups[0])
	}
}

// newPage serves html at every path of a loopback server of its own (an
// origin other than the POP's) and returns its URL.
func newPage(t *testing.T, html string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(html))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
