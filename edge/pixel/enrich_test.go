package pixel

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

const (
	uaChrome  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaFirefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	uaBot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaGmail   = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)

func hitWith(t *testing.T, query string, c *Config, edit func(m *Meta)) event.Event {
	t.Helper()
	m := meta()
	m.UserAgent = uaChrome
	if edit != nil {
		edit(m)
	}
	e, drop := FromQuery(query, m, c)
	if drop != "" {
		t.Fatalf("%s: dropped %s", query, drop)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return e
}

func TestEnrichUserAgentBotGeo(t *testing.T) {
	for _, tc := range []struct {
		ua, browser, version, os, device string
		bot                              bool
	}{
		{uaChrome, "Chrome", "131", "Windows", "desktop", false},
		{uaFirefox, "Firefox", "133", "Linux", "desktop", false},
		{uaIPhone, "Safari", "17", "iOS", "mobile", false},
		{uaBot, "", "", "", "bot", true},
	} {
		e := hitWith(t, "site=demo&url=https://example.com/", nil, func(m *Meta) {
			m.UserAgent = tc.ua
			m.Country, m.Region, m.City, m.ASN = "US", "CA", "San Francisco", 7922
		})
		if e.Browser != tc.browser || e.BrowserVersion != tc.version || e.OS != tc.os || e.Device != tc.device {
			t.Errorf("%s: %q %q %q %q", tc.ua, e.Browser, e.BrowserVersion, e.OS, e.Device)
		}
		if (e.BotScore >= 50) != tc.bot || tc.bot && e.BotReason != "crawler" {
			t.Errorf("%s: bot score %d reason %q", tc.ua, e.BotScore, e.BotReason)
		}
		if e.Country != "US" || e.Region != "CA" || e.City != "San Francisco" || e.ASN != 7922 {
			t.Errorf("geo %q %q %q %d", e.Country, e.Region, e.City, e.ASN)
		}
	}
	// A prefetch is marked, not dropped; the platform's own verdict wins
	// when it is higher.
	e := hitWith(t, "site=demo", nil, func(m *Meta) { m.SecPurpose = "prefetch" })
	if e.BotReason != "prefetch" || e.BotScore < 50 {
		t.Errorf("prefetch: %d %q", e.BotScore, e.BotReason)
	}
	e = hitWith(t, "site=demo", nil, func(m *Meta) { m.BotScore = 98 })
	if e.BotReason != BotReasonPlatform || e.BotScore != 98 || e.Device != "bot" {
		t.Errorf("platform verdict: %d %q %q", e.BotScore, e.BotReason, e.Device)
	}
}

func TestEnrichWhereFrom(t *testing.T) {
	page := func(u string) string { return "site=demo&url=" + url.QueryEscape(u) }
	for _, tc := range []struct {
		query, ref                                  string
		channel, source, host, clickIDs, path, stor string
	}{
		{page("https://example.com/a"), "https://www.google.com/", "search", "Google", "www.google.com", "", "/a", "https://example.com/a"},
		{page("https://example.com/a"), "", "direct", "", "", "", "/a", "https://example.com/a"},
		{page("https://example.com/b?id=1&gclid=xyz&utm_source=g"), "", "paid", "", "", "gclid", "/b", "https://example.com/b?id=1"},
		{page("https://Example.COM:443/c/../d?utm_medium=email&utm_term=shoes&utm_content=hero#top"), "", "email", "", "", "", "/d", "https://example.com/d"},
		{page("https://example.com/e"), "https://example.com/f", "internal", "", "example.com", "", "/e", "https://example.com/e"},
		{page("https://example.com/e") + "&ref=" + url.QueryEscape("https://t.co/x"), "", "social", "Twitter", "t.co", "", "/e", "https://example.com/e"},
		// A page given as a path: the origin of the page that sent it.
		{page("/relative/path?q=1"), "https://example.com/a", "internal", "", "example.com", "", "/relative/path", "https://example.com/relative/path?q=1"},
	} {
		e := hitWith(t, tc.query, nil, func(m *Meta) { m.Referer = tc.ref })
		if tc.ref != "" && !strings.Contains(tc.query, "ref=") {
			// A plain <img>: the Referer is the page, not its referrer.
			e = hitWith(t, tc.query+"&ref="+url.QueryEscape(tc.ref), nil, nil)
		}
		if e.Channel != tc.channel || e.Source != tc.source || e.ReferrerHost != tc.host || e.ClickIDs != tc.clickIDs || e.Path != tc.path || e.URL != tc.stor {
			t.Errorf("%s ref %s: channel %q source %q host %q click %q path %q url %q", tc.query, tc.ref, e.Channel, e.Source, e.ReferrerHost, e.ClickIDs, e.Path, e.URL)
		}
	}
	// With no page to take the origin from, a path stays as it is.
	if e := hitWith(t, page("/x"), nil, func(m *Meta) { m.Referer = "" }); e.URL != "/x" || e.Path != "/x" {
		t.Errorf("a path without a Referer: url %q path %q", e.URL, e.Path)
	}
	e := hitWith(t, page("https://example.com/?utm_source=nl&utm_medium=email&utm_campaign=c&utm_term=t&utm_content=x"), nil, nil)
	if e.UTMSource != "nl" || e.UTMMedium != "email" || e.UTMCampaign != "c" || e.UTMTerm != "t" || e.UTMContent != "x" {
		t.Errorf("utm: %+v", e)
	}
}

func testSalts(now time.Time) *privacy.Salts {
	d := privacy.Day(now)
	return &privacy.Salts{privacy.NewSalt(d, [16]byte{1}), privacy.NewSalt(d-1, [16]byte{2})}
}

func TestConsentTiersAndVisitorIDs(t *testing.T) {
	c := &Config{Salts: testSalts}
	full := hitWith(t, "site=demo&url=https://example.com/a?q=1&sw=1280", c, nil)
	if full.Tier != "full" || full.ConsentReason != "default" || full.VisitorID == 0 || full.ScreenWidth != 1280 || full.UserAgent == "" {
		t.Fatalf("full tier: %+v", full)
	}
	again := hitWith(t, "site=demo&url=https://example.com/b", c, nil)
	other := hitWith(t, "site=other", c, nil)
	otherIP := hitWith(t, "site=demo", c, func(m *Meta) { m.ClientIP = "198.51.100.1" })
	if again.VisitorID != full.VisitorID || other.VisitorID == full.VisitorID || otherIP.VisitorID == full.VisitorID {
		t.Errorf("visitor ids: same %x %x, other site %x, other address %x", full.VisitorID, again.VisitorID, other.VisitorID, otherIP.VisitorID)
	}
	if full.PrevVisitorID != 0 {
		t.Errorf("previous day's id at %v", meta().Now.UTC())
	}
	midnight := hitWith(t, "site=demo", c, func(m *Meta) { m.Now = time.Date(2026, 1, 2, 0, 10, 0, 0, time.UTC) })
	if midnight.PrevVisitorID == 0 || midnight.PrevVisitorID == midnight.VisitorID {
		t.Errorf("10 minutes after midnight: %x %x", midnight.VisitorID, midnight.PrevVisitorID)
	}
	for _, tc := range []struct {
		query  string
		edit   func(m *Meta)
		reason string
	}{
		{"", func(m *Meta) { m.SecGPC = "1" }, "gpc"},
		{"", func(m *Meta) { m.DNT = "1" }, "dnt"},
		{"&consent=0", nil, "no_consent"},
		{"&us_privacy=1YYN", nil, "ccpa_opt_out"},
	} {
		edit := func(m *Meta) {
			m.City, m.ASN = "Amsterdam", 1136
			if tc.edit != nil {
				tc.edit(m)
			}
		}
		e := hitWith(t, "site=demo&sw=1280&t=1763800000000&url="+url.QueryEscape("https://example.com/a?q=secret&utm_term=x")+"&ref="+url.QueryEscape("https://www.google.com/search?q=me")+tc.query, c, edit)
		if e.Tier != "aggregate" || e.ConsentReason != tc.reason {
			t.Errorf("%s: tier %q reason %q", tc.reason, e.Tier, e.ConsentReason)
		}
		if e.VisitorID != 0 || e.PrevVisitorID != 0 || e.UserAgent != "" || e.Referrer != "https://www.google.com/" || e.URL != "https://example.com/a" || e.UTMTerm != "" ||
			e.ScreenWidth != 0 || e.ClientTime != 0 || e.ClientIP != "" || e.BrowserVersion != "" || e.OSVersion != "" || e.City != "" || e.ASN != 0 {
			t.Errorf("%s: aggregate tier keeps %+v", tc.reason, e)
		}
		if e.Channel != "search" || e.ReferrerHost != "www.google.com" || e.Browser != "Chrome" || e.Path != "/a" {
			t.Errorf("%s: aggregate tier lost its dimensions: %+v", tc.reason, e)
		}
	}
	// POSTs: the tier clears props too.
	evs, drop := FromJSON([]byte(`{"site":"demo","name":"buy","props":{"email":"a@b.c"},"consent":0}`), "", "", meta(), c)
	if drop != "" || evs[0].Props != "" || evs[0].Tier != "aggregate" || evs[0].VisitorID != 0 {
		t.Errorf("POST consent 0: %q %+v", drop, evs)
	}
	// A site whose default is aggregate: consent=1 raises it.
	sites, err := NewSites(func(k string) string { return map[string]string{"site.demo": "tier=aggregate"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	c.Sites = sites
	if e := hitWith(t, "site=demo", c, nil); e.Tier != "aggregate" || e.ConsentReason != "default" || e.VisitorID != 0 {
		t.Errorf("aggregate site: %+v", e)
	}
	if e := hitWith(t, "site=demo&consent=1", c, nil); e.Tier != "full" || e.ConsentReason != "consent" || e.VisitorID == 0 {
		t.Errorf("aggregate site with consent: %+v", e)
	}
	// No salt: counted, without a visitor id.
	if e := hitWith(t, "site=x", &Config{Salts: func(time.Time) *privacy.Salts { return &privacy.Salts{} }}, nil); e.VisitorID != 0 || e.Tier != "full" {
		t.Errorf("without salts: %+v", e)
	}
}

// Every opt-out the pixel honours is honoured by POST /e too, from the
// body and from the URL's query alike, and a parameter given twice (or in
// the query and the body) with a consent and an opt-out is an opt-out.
// Found by a new-user tester (a privacy auditor): us_privacy in a POST's
// body or query, consent=0 in its query and the pixel's
// consent=1&consent=0 were all stored in the full tier.
func TestOptOutWinsOnEveryPath(t *testing.T) {
	c := &Config{Salts: testSalts}
	aggregate := func(t *testing.T, what string, e event.Event, reason string) {
		t.Helper()
		if e.Tier != event.TierAggregate || e.ConsentReason != reason || e.VisitorID != 0 || e.Props != "" || e.UserAgent != "" {
			t.Errorf("%s: tier %q reason %q (want %s) visitor %x props %q ua %q", what, e.Tier, e.ConsentReason, reason, e.VisitorID, e.Props, e.UserAgent)
		}
	}
	for _, tc := range []struct{ query, reason string }{
		{"&consent=1&consent=0", "no_consent"},
		{"&consent=0&consent=1", "no_consent"},
		{"&consent=&consent=0", "no_consent"},
		{"&consent=false", "no_consent"},
		{"&us_privacy=1NNN&us_privacy=1YYN", "ccpa_opt_out"},
		{"&us_privacy=1YYN&consent=1", "ccpa_opt_out"},
		{"&c%6Fnsent=1&consent=%30", "no_consent"},
		// A consent that cannot be read as sent is a refusal (a privacy
		// auditor tester): a pair with a ';', an HTML-escaped &amp;, an
		// escape that does not decode, also after a consent.
		{"&consent=0;", "no_consent"},
		{"&consent=1;", "no_consent"},
		{"&amp;consent=0", "no_consent"},
		{"&x=1;C%6Fnsent=1", "no_consent"},
		{"&consent=0%G", "no_consent"},
		{"&consent=1&consent=%zz", "no_consent"},
		{"&Consent%3D1", "no_consent"},
		{"&%26amp%3Bconsent=0", "no_consent"},
		{"&a;b%3Bconsent%3D1", "no_consent"},
		{"&consent=1&us_privacy=1YYN;", "ccpa_opt_out"},
		{"&amp;us_privacy=1NNN", "ccpa_opt_out"},
		{"&us_privacy=1Y%ZZ", "ccpa_opt_out"},
	} {
		aggregate(t, "pixel "+tc.query, hitWith(t, "site=demo"+tc.query, c, nil), tc.reason)
	}
	if e := hitWith(t, "site=demo&consent=1&consent=1", c, nil); e.Tier != event.TierFull || e.VisitorID == 0 {
		t.Errorf("pixel with consent twice: %+v", e)
	}
	// Pairs the reader skips that name no consent change nothing.
	for _, q := range []string{"site=demo&a=1;b=2", "site=demo&consentx=0;", "site=demo&x=%zz", "site=demo&ref=%zz", "site=demo&x%3D1=2", "site=demo&us_privacyx=1YYN;"} {
		if e := hitWith(t, q, c, nil); e.Tier != event.TierFull || e.VisitorID == 0 {
			t.Errorf("pixel %s: tier %q reason %q", q, e.Tier, e.ConsentReason)
		}
	}
	for _, tc := range []struct{ body, query, reason string }{
		{`{"site":"demo","name":"ev","us_privacy":"1YYN","props":{"a":"b"}}`, "", "ccpa_opt_out"},
		{`{"site":"demo","name":"ev","props":{"a":"b"}}`, "us_privacy=1YYN", "ccpa_opt_out"},
		{`{"site":"demo","name":"ev","props":{"a":"b"}}`, "consent=0", "no_consent"},
		{`{"site":"demo","name":"ev","consent":1,"props":{"a":"b"}}`, "consent=0", "no_consent"},
		{`{"site":"demo","name":"ev","consent":0,"props":{"a":"b"}}`, "consent=1", "no_consent"},
		{`{"site":"demo","name":"ev","consent":0,"consent":1,"props":{"a":"b"}}`, "", "no_consent"},
		{`{"site":"demo","name":"ev","consent":"false","props":{"a":"b"}}`, "", "no_consent"},
		{`{"site":"demo","name":"ev","us_privacy":"1YYN","us_privacy":"1NNN","props":{"a":"b"}}`, "", "ccpa_opt_out"},
		{`{"site":"demo","name":"ev","us_privacy":"1NNN","props":{"a":"b"}}`, "us_privacy=1YYN", "ccpa_opt_out"},
		{`{"site":"demo","name":"ev","consent":["0"],"props":{"a":"b"}}`, "", "no_consent"},
		{`{"site":"demo","name":"ev","consent":{"analytics":false},"props":{"a":"b"}}`, "", "no_consent"},
		{`{"site":"demo","name":"ev","consent":[1],"props":{"a":"b"}}`, "", "no_consent"},
		{`{"site":"demo","name":"ev","us_privacy":["1YYN"],"props":{"a":"b"}}`, "", "ccpa_opt_out"},
	} {
		evs, drop := FromJSON([]byte(tc.body), "", tc.query, meta(), c)
		if drop != "" || len(evs) != 1 {
			t.Fatalf("POST ?%s %s: drop %q", tc.query, tc.body, drop)
		}
		aggregate(t, "POST ?"+tc.query+" "+tc.body, evs[0], tc.reason)
	}
	if evs, _ := FromJSON([]byte(`{"site":"demo","us_privacy":"1NNN","consent":1}`), "", "consent=1", meta(), c); evs[0].Tier != event.TierFull || evs[0].VisitorID == 0 {
		t.Errorf("POST without an opt-out: %+v", evs[0])
	}
	for _, b := range []string{`{"site":"demo","consent":null}`, `{"site":"demo","consent":""}`} {
		if evs, _ := FromJSON([]byte(b), "", "", meta(), c); evs[0].Tier != event.TierFull || evs[0].VisitorID == 0 {
			t.Errorf("POST %s, no consent word: tier %q", b, evs[0].Tier)
		}
	}
}

func TestSitesSettings(t *testing.T) {
	store := map[string]string{
		ConfigSites:               "demo, shop\nblog",
		ConfigSiteDefault:         "sign=mark",
		ConfigSitePrefix + "shop": "ip=prefix tier=full",
		ConfigSitePrefix + "blog": "tier=sometimes ip=prefix colour=blue",
	}
	var logged []error
	sites, err := NewSites(func(k string) string { return store[k] })
	if err != nil {
		t.Fatal(err)
	}
	sites.Errors = func(err error) { logged = append(logged, err) }
	c := &Config{Sites: sites}
	if _, drop := FromQuery("site=unlisted", meta(), c); drop != wire.DropUnknownSite {
		t.Errorf("unlisted: %q", drop)
	}
	if _, drop := FromJSON([]byte(`[{"site":"demo"},{"site":"unlisted"}]`), "", "", meta(), c); drop != wire.DropUnknownSite {
		t.Errorf("POST with an unlisted site: %q", drop)
	}
	if e := hitWith(t, "site=demo", c, nil); e.Signature != SignatureUnsigned || e.ClientIP != "" {
		t.Errorf("demo (site_default): %+v", e)
	}
	if e := hitWith(t, "site=shop", c, nil); e.Signature != "" || e.ClientIP != "203.0.113.0" {
		t.Errorf("shop: signature %q ip %q", e.Signature, e.ClientIP)
	}
	if e := hitWith(t, "site=blog", c, nil); e.ClientIP != "203.0.113.0" || len(logged) != 1 || !strings.Contains(logged[0].Error(), "tier=sometimes") {
		t.Errorf("blog: ip %q, errors %v", e.ClientIP, logged)
	}
	// One line on stderr, naming the entry, for all its bad pairs.
	if len(logged) == 1 && (strings.Contains(logged[0].Error(), "\n") || !strings.Contains(logged[0].Error(), "colour=blue") || !strings.HasPrefix(logged[0].Error(), ConfigSitePrefix+"blog: ")) {
		t.Errorf("blog's report: %q", logged[0])
	}
	hitWith(t, "site=blog", c, nil)
	if len(logged) != 1 {
		t.Errorf("a bad entry reported %d times: it is read once", len(logged))
	}
	// query=drop: neither the page's query nor the referrer's is stored,
	// but the campaign and the search engine are read from them first.
	store[ConfigSites] += " news"
	store[ConfigSitePrefix+"news"] = "query=drop"
	if sites, err = NewSites(func(k string) string { return store[k] }); err != nil {
		t.Fatal(err)
	}
	c = &Config{Sites: sites}
	q := "url=" + url.QueryEscape("https://news.example/search?q=alice%40example.com&utm_source=mail&utm_medium=email") +
		"&ref=" + url.QueryEscape("https://news.example/login?token=s3cret")
	for site, want := range map[string][2]string{
		"news": {"https://news.example/search", "https://news.example/login"},
		"demo": {"https://news.example/search?q=alice%40example.com", "https://news.example/login?token=s3cret"},
	} {
		if e := hitWith(t, "site="+site+"&"+q, c, nil); e.URL != want[0] || e.Path != "/search" || e.Referrer != want[1] || e.UTMSource != "mail" || e.Channel != "email" {
			t.Errorf("%s: url %q path %q referrer %q utm_source %q channel %q, want %q", site, e.URL, e.Path, e.Referrer, e.UTMSource, e.Channel, want)
		}
	}
	store[ConfigUnknownSites] = "accept"
	if sites, _ = NewSites(func(k string) string { return store[k] }); !sites.Known("unlisted") {
		t.Error("unknown_sites=accept")
	}
	if _, err := NewSites(func(k string) string { return map[string]string{ConfigUnknownSites: "maybe"}[k] }); err == nil {
		t.Error("unknown_sites=maybe accepted")
	}
}

func TestSignedPixelPolicies(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	old := []byte("fedcba9876543210fedc")
	now := meta().Now.Unix()
	sign := func(k []byte, q string, exp int64) string {
		s, err := pixelsign.Sign(k, q, exp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(key, "site=demo&url=https%3A%2F%2Fexample.com%2Fmail", now+3600)
	rotated := sign(old, "site=demo&url=https%3A%2F%2Fexample.com%2Fmail", now+3600)
	expired := sign(key, "site=demo", now-1)
	tampered := strings.Replace(good, "mail", "male", 1)
	unsigned := "site=demo"
	here := sign(key, "site=demo&cip=203.0.113.0%2F24", now+3600) // meta's client
	elsewhere := sign(key, "site=demo&cip=2001:db8::%2F48", now+3600)
	for _, policy := range []string{"off", "mark", "reject"} {
		sites, _ := NewSites(func(k string) string {
			if k == ConfigSitePrefix+"demo" {
				return "sign=" + policy
			}
			return ""
		})
		c := &Config{Sites: sites, PixelKeys: func(site string) [][]byte {
			if site == "demo" {
				return [][]byte{key, old}
			}
			return nil
		}}
		want := map[string]map[string]string{ // query -> policy -> signature column or drop
			good:      {"off": "", "mark": "verified", "reject": "verified"},
			rotated:   {"off": "", "mark": "verified", "reject": "verified"},
			expired:   {"off": "", "mark": "unverified", "reject": "drop:expired_pixel"},
			tampered:  {"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"},
			unsigned:  {"off": "", "mark": "unsigned", "reject": "drop:unsigned"},
			here:      {"off": "", "mark": "verified", "reject": "verified"},
			elsewhere: {"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"},
		}
		for q, w := range want {
			e, drop := FromQuery(q, meta(), c)
			got := e.Signature
			if drop != "" {
				got = "drop:" + drop
			}
			if got != w[policy] {
				t.Errorf("sign=%s %s: %q, want %q", policy, q, got, w[policy])
			}
		}
	}
}

func TestClientTimeAndScreen(t *testing.T) {
	now := meta().Now.UnixMilli()
	for _, tc := range []struct {
		t      string
		ms     uint64
		reason string
	}{
		{strconv.FormatInt(now-1000, 10), uint64(now - 1000), ""},
		{strconv.FormatInt(now-int64(MaxClientLag/time.Millisecond)+1, 10), uint64(now - int64(MaxClientLag/time.Millisecond) + 1), ""},
		{strconv.FormatInt(now-int64(MaxClientLag/time.Millisecond)-1, 10), 0, ClientTimeOutOfRange},
		{strconv.FormatInt(now+int64(MaxClientLead/time.Millisecond)+1, 10), 0, ClientTimeOutOfRange},
		{"yesterday", 0, ClientTimeMalformed},
		{"-5", 0, ClientTimeMalformed},
		{"99999999999999999999", 0, ClientTimeMalformed},
	} {
		e := hitWith(t, "site=demo&sw=390&t="+url.QueryEscape(tc.t), nil, nil)
		if e.ClientTime != tc.ms || e.ClientTimeReason != tc.reason || e.Time != now || e.ScreenWidth != 390 {
			t.Errorf("t=%s: client %d %q, time %d, sw %d", tc.t, e.ClientTime, e.ClientTimeReason, e.Time, e.ScreenWidth)
		}
	}
	for _, sw := range []string{"70000", "-1", "wide"} {
		if e := hitWith(t, "site=demo&sw="+sw, nil, nil); e.ScreenWidth != 0 {
			t.Errorf("sw=%s: %d", sw, e.ScreenWidth)
		}
	}
	evs, drop := FromJSON([]byte(`{"site":"demo","sw":1440,"t":`+strconv.FormatInt(now, 10)+`}`), "", "", meta(), nil)
	if drop != "" || evs[0].ScreenWidth != 1440 || evs[0].ClientTime != uint64(now) {
		t.Errorf("POST: %q %+v", drop, evs)
	}
	evs, drop = FromJSON([]byte(`{"site":"demo","sw":"1440","t":{"x":1}}`), "", "", meta(), nil)
	if drop != "" || evs[0].ScreenWidth != 1440 || evs[0].ClientTime != 0 {
		t.Errorf("POST with odd types: %q %+v", drop, evs)
	}
}

func TestMailOpens(t *testing.T) {
	for _, tc := range []struct {
		ua   string
		asn  uint32
		want string
	}{
		{uaGmail, 15169, "gmail"},
		{"Mozilla/5.0", 36183, "apple"},
		{uaChrome, 3320, "person"},
	} {
		e := hitWith(t, "site=demo&open=email", nil, func(m *Meta) { m.UserAgent, m.ASN = tc.ua, tc.asn })
		if e.MailOpen != tc.want {
			t.Errorf("%s AS%d: %q, want %q", tc.ua, tc.asn, e.MailOpen, tc.want)
		}
	}
	// An open is not a visit (a tester's visitors and visits grew, and
	// the bounce rate fell, with each): no visitor ids, and without e=
	// its name is open, not pageview. A pixel that is no open keeps both.
	c := &Config{Salts: testSalts}
	for q, want := range map[string]string{"site=demo&open=email": event.KindOpen, "site=demo&open=feed&e=read": "read", "site=demo&e=open&open=email": event.KindOpen} {
		if e := hitWith(t, q, c, nil); e.VisitorID != 0 || e.PrevVisitorID != 0 || e.Name != want {
			t.Errorf("%s: visitor ids %d %d, name %q; want none and %q", q, e.VisitorID, e.PrevVisitorID, e.Name, want)
		}
	}
	if e := hitWith(t, "site=demo", c, nil); e.VisitorID == 0 || e.Name != event.KindPageview {
		t.Errorf("a pixel that is no open: visitor id %d, name %q", e.VisitorID, e.Name)
	}
	if e := hitWith(t, "site=demo", nil, func(m *Meta) { m.UserAgent = uaGmail }); e.MailOpen != "" || e.BotReason != "link_preview" {
		t.Errorf("a pixel not flagged as an open: %q, bot %q", e.MailOpen, e.BotReason)
	}
	// An open's bot verdict follows who fetched it (found by a new-user
	// tester): Gmail's proxy and Outlook's fetch on a person's open, and
	// bots=exclude (bot_score >= event.BotScoreMin) must keep them;
	// Apple's privacy prefetch comes whether or not the mail is read, and
	// bots=exclude must leave it out. The platform's own verdict does not
	// overrule what the open's classification knows.
	for _, tc := range []struct {
		ua             string
		asn            uint32
		platform       uint8
		score          uint8
		reason, device string
	}{
		{uaGmail, 15169, 0, 0, "", "other"},
		{uaGmail, 15169, 98, 0, "", "other"},
		{uaChrome, 8075, 0, 0, "", "desktop"},
		{"Mozilla/5.0", 36183, 0, 70, "mail_prefetch", "bot"},
		{uaChrome, 3320, 0, 0, "", "desktop"},
		{uaChrome, 3320, 98, 98, BotReasonPlatform, "bot"},
	} {
		e := hitWith(t, "site=demo&open=email", nil, func(m *Meta) { m.UserAgent, m.ASN, m.BotScore = tc.ua, tc.asn, tc.platform })
		if e.BotScore != tc.score || e.BotReason != tc.reason || e.Device != tc.device {
			t.Errorf("open by %s AS%d (platform %d): bot %d %q device %q, want %d %q %q", tc.ua, tc.asn, tc.platform, e.BotScore, e.BotReason, e.Device, tc.score, tc.reason, tc.device)
		}
	}
	// open= with any value was an open: open=0 was stored with
	// mail_open=person (found by a new-user tester). Only the documented
	// values are; another is refused and counted (bad_open), an empty one
	// is no flag.
	for q, want := range map[string]string{"site=demo&open=feed": "person", "site=demo&open=Email": "person", "site=demo&open=": ""} {
		if e := hitWith(t, q, nil, nil); e.MailOpen != want {
			t.Errorf("%s: mail_open %q, want %q", q, e.MailOpen, want)
		}
	}
	for _, q := range []string{"site=demo&open=0", "site=demo&open=1", "site=demo&open=yes", "site=demo&open=email%20"} {
		if e, drop := FromQuery(q, meta(), nil); drop != wire.DropBadOpen || e.MailOpen != "" {
			t.Errorf("%s: drop %q mail_open %q, want %s", q, drop, e.MailOpen, wire.DropBadOpen)
		}
	}
}

// An open pixel without url= stored the Referer as its page: an Outlook
// web open kept the reader's mailbox message URL in url and path, and it
// showed in the Pages table (found by a new-user tester). An open takes
// neither its page nor, but for the origin, its referrer from the
// Referer; a pixel that is not an open still does.
func TestOpenKeepsNoMailboxURL(t *testing.T) {
	const mailbox = "https://outlook.live.com/mail/0/inbox/id/AQQkADAwATM0MDAAMS1iNTcwLWEwYjItMDACLTAwCgAQAP"
	withMailbox := func(m *Meta) { m.Referer = mailbox }
	for _, q := range []string{"site=news&e=open&open=email", "site=news&e=open&open=email&url=/issue/42"} {
		e := hitWith(t, q, nil, withMailbox)
		if strings.Contains(e.URL, "outlook") || strings.Contains(e.Path, "inbox") || strings.Contains(e.Referrer, "inbox") {
			t.Errorf("%s: url %q path %q referrer %q: the mailbox URL is stored", q, e.URL, e.Path, e.Referrer)
		}
		if e.Referrer != "https://outlook.live.com/" || e.ReferrerHost != "outlook.live.com" || e.Channel != "email" || e.Source == "" {
			t.Errorf("%s: referrer %q host %q channel %q source %q, want the webmail's origin and channel email", q, e.Referrer, e.ReferrerHost, e.Channel, e.Source)
		}
	}
	if e := hitWith(t, "site=news&e=open&open=email&url=/issue/42", nil, withMailbox); e.URL != "/issue/42" {
		t.Errorf("an open's relative url= resolved against the mailbox: %q", e.URL)
	}
	if e := hitWith(t, "site=news&open=email&ref=https://news.example/archive", nil, withMailbox); e.Referrer != "https://news.example/archive" {
		t.Errorf("an open's own ref= replaced: %q", e.Referrer)
	}
	if e := hitWith(t, "site=news", nil, withMailbox); e.URL != mailbox {
		t.Errorf("a pixel that is not an open no longer takes its page from the Referer: %q", e.URL)
	}
}

// UTM parameters written on the pixel itself, the natural thing for an
// email campaign, were dropped: only those inside url= counted (found by a
// new-user tester). All five apply when url= carries none; url='s win, as
// a set.
func TestPixelOwnUTM(t *testing.T) {
	e := hitWith(t, "site=news&e=open&open=email&utm_source=nl&utm_medium=email&utm_campaign=spring%20sale&utm_term=t&utm_content=hero", nil, nil)
	if e.UTMSource != "nl" || e.UTMMedium != "email" || e.UTMCampaign != "spring sale" || e.UTMTerm != "t" || e.UTMContent != "hero" || e.Channel != "email" {
		t.Errorf("the pixel's own UTM: %q %q %q %q %q, channel %q", e.UTMSource, e.UTMMedium, e.UTMCampaign, e.UTMTerm, e.UTMContent, e.Channel)
	}
	e = hitWith(t, "site=news&utm_campaign=pixel&url="+url.QueryEscape("https://news.example/a?utm_source=page&id=1"), nil, nil)
	if e.UTMSource != "page" || e.UTMCampaign != "" {
		t.Errorf("url='s UTM and the pixel's: source %q campaign %q, want url='s set alone", e.UTMSource, e.UTMCampaign)
	}
	e = hitWith(t, "site=news&utm_campaign=pixel&url="+url.QueryEscape("https://news.example/a?id=1"), nil, nil)
	if e.UTMCampaign != "pixel" || e.URL != "https://news.example/a?id=1" {
		t.Errorf("url= without UTM: campaign %q url %q", e.UTMCampaign, e.URL)
	}
	// Signed like every other parameter: changed after signing, the
	// pixel is refused under sign=reject.
	key := []byte("0123456789abcdef0123")
	sites, _ := NewSites(func(k string) string {
		if k == ConfigSitePrefix+"news" {
			return "sign=reject"
		}
		return ""
	})
	c := &Config{Sites: sites, PixelKeys: func(string) [][]byte { return [][]byte{key} }}
	signed, err := pixelsign.Sign(key, "site=news&open=email&utm_campaign=spring", meta().Now.Unix()+3600)
	if err != nil {
		t.Fatal(err)
	}
	if e := hitWith(t, signed, c, nil); e.UTMCampaign != "spring" || e.Signature != SignatureVerified {
		t.Errorf("signed: campaign %q signature %q", e.UTMCampaign, e.Signature)
	}
	for _, q := range []string{strings.Replace(signed, "utm_campaign=spring", "utm_campaign=autumn", 1), signed + "&utm_source=forged"} {
		if _, drop := FromQuery(q, meta(), c); drop != wire.DropBadSignature {
			t.Errorf("%s: drop %q, want %s", q, drop, wire.DropBadSignature)
		}
	}
}

// The values the pixel stores in mail_open and signature are the closed
// sets the dashboard checks a filter's value against (event.MailOpens,
// event.Signatures): a value added here and not there could not be
// filtered by.
func TestClosedValues(t *testing.T) {
	opens := []string{"person", mailopen.Apple, mailopen.Gmail, mailopen.Yahoo, mailopen.Outlook, mailopen.Feed}
	if fmt.Sprint(opens) != fmt.Sprint(event.MailOpens) {
		t.Errorf("mail_open values %q, event.MailOpens %q", opens, event.MailOpens)
	}
	sigs := []string{SignatureVerified, SignatureUnverified, SignatureUnsigned}
	if fmt.Sprint(sigs) != fmt.Sprint(event.Signatures) {
		t.Errorf("signature values %q, event.Signatures %q", sigs, event.Signatures)
	}
}

// Over a rate limit, the pixel still answers the GIF; the hit is counted
// as rate_limited and stores nothing. A POST gets 429.
func TestRateLimited(t *testing.T) {
	var seen []string
	c := &Config{RateLimited: func(client, site string, n uint32) bool {
		seen = append(seen, fmt.Sprint(client, " ", site, " ", n))
		return site == "busy"
	}}
	b := &Batcher{MaxEvents: 100, MaxAge: time.Hour, MaxBuffered: 100}
	m := meta()
	hit := Hit{Method: "GET", Path: PathPixel, RawQuery: "site=busy", Meta: func() *Meta { return m }}
	var resp Response
	Serve(&hit, c, b, m.Now, &resp)
	if resp.Status != 200 || !bytes.Equal(resp.Body, GIF) || resp.Drop != wire.DropRateLimited || b.Len() != 0 {
		t.Fatalf("over the limit: %d %q, %d buffered", resp.Status, resp.Drop, b.Len())
	}
	if sc := b.Counts.sites["busy"]; sc == nil || sc.Hits != 1 || len(sc.Drops) != 1 || sc.Drops[0].Reason != wire.DropRateLimited {
		t.Fatalf("counts %+v", sc)
	}
	hit.RawQuery = "site=calm"
	if Serve(&hit, c, b, m.Now, &resp); resp.Drop != "" || b.Len() != 1 {
		t.Fatalf("under the limit: %q", resp.Drop)
	}
	post := Hit{Method: "POST", Path: PathPost, Meta: func() *Meta { return m },
		Body: func(int) ([]byte, error) { return []byte(`{"site":"busy"}`), nil }}
	if Serve(&post, c, b, m.Now, &resp); resp.Status != 429 || resp.Drop != wire.DropRateLimited || resp.Get("Retry-After") != "60" {
		t.Fatalf("POST over the limit: %d %q", resp.Status, resp.Drop)
	}
	// Counted for the site its body names, not under "" for the URL
	// that names none.
	if sc := b.Counts.sites["busy"]; sc == nil || sc.Hits != 2 || sc.Drops[0].N != 2 {
		t.Errorf("a refused POST not counted for its body's site: %+v, %q's %+v", sc, "", b.Counts.sites[""])
	}
	if strings.Join(seen, ",") != "203.0.113.77 busy 1,203.0.113.77 calm 1,203.0.113.77 busy 1" {
		t.Errorf("checked %q", seen)
	}
	// A POST counts each of its events, once per site with that site's
	// events, in the order posted; one site over its limit refuses it all.
	for _, c2 := range []struct{ body, want string }{
		{`[{"site":"calm"},{"site":" calm"},{"site":"calm"}]`, "calm 3"},
		{`[{"site":"calm"},{"site":"other"},{"site":"calm"}]`, "calm 2,other 1"},
		{`[{"site":"calm"},{"site":"busy"},{"site":"later"}]`, "calm 1,busy 1"},
	} {
		seen = nil
		post.Body = func(int) ([]byte, error) { return []byte(c2.body), nil }
		Serve(&post, c, b, m.Now, &resp)
		if got := strings.ReplaceAll(strings.Join(seen, ","), "203.0.113.77 ", ""); got != c2.want {
			t.Errorf("POST %s: counted %q, want %q", c2.body, got, c2.want)
		}
		if over := strings.Contains(c2.want, "busy"); over != (resp.Drop == wire.DropRateLimited) {
			t.Errorf("POST %s: drop %q", c2.body, resp.Drop)
		}
	}
}

func TestServeScript(t *testing.T) {
	headers := map[string]string{}
	hit := Hit{Method: "GET", Path: PathScript, Header: func(name string) string { return headers[name] }}
	var resp Response
	Serve(&hit, nil, &Batcher{}, time.Now(), &resp)
	if resp.Status != 200 || !bytes.Equal(resp.Body, tracker.Script) || resp.Get("ETag") != tracker.ETag || resp.Get("Content-Encoding") != "" ||
		resp.Get("Cache-Control") != tracker.CacheControl || !strings.HasPrefix(resp.Get("Content-Type"), "text/javascript") {
		t.Fatalf("plain: %d %v", resp.Status, resp.Header)
	}
	headers["Accept-Encoding"] = "br, gzip;q=0.8"
	Serve(&hit, nil, &Batcher{}, time.Now(), &resp)
	zr, err := gzip.NewReader(bytes.NewReader(resp.Body))
	if err != nil || resp.Get("Content-Encoding") != "gzip" || resp.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip: %v %v", err, resp.Header)
	}
	if js, _ := io.ReadAll(zr); !bytes.Equal(js, tracker.Script) {
		t.Fatal("gzip body is not s.js")
	}
	// Each representation has its own strong tag (RFC 9110 section 8.8.3),
	// and a client holding one does not get a 304 for the other.
	if resp.Get("ETag") != tracker.GzipETag || tracker.GzipETag == tracker.ETag {
		t.Errorf("gzip ETag %s, plain %s", resp.Get("ETag"), tracker.ETag)
	}
	if resp.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("no Access-Control-Allow-Origin: * for subresource integrity: %v", resp.Header)
	}
	headers["If-None-Match"] = tracker.ETag
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Status != 200 || resp.Get("ETag") != tracker.GzipETag {
		t.Errorf("gzip asked with the plain body's tag: %d %s", resp.Status, resp.Get("ETag"))
	}
	headers["If-None-Match"] = tracker.GzipETag
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Status != 304 || resp.Get("ETag") != tracker.GzipETag {
		t.Errorf("gzip revalidation: %d %s", resp.Status, resp.Get("ETag"))
	}
	delete(headers, "If-None-Match")
	headers["Accept-Encoding"] = "gzip;q=0"
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}
	headers["If-None-Match"] = `"other", W/` + tracker.GzipETag
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Status != 200 || resp.Get("ETag") != tracker.ETag {
		t.Errorf("plain asked with the gzip body's tag: %d %s", resp.Status, resp.Get("ETag"))
	}
	headers["If-None-Match"] = `"other", W/` + tracker.ETag
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Status != 304 || len(resp.Body) != 0 || resp.Get("ETag") != tracker.ETag ||
		resp.Get("Access-Control-Allow-Origin") != "*" || resp.Get("Vary") != "Accept-Encoding" {
		t.Errorf("revalidation: %d %v", resp.Status, resp.Header)
	}
	hit.Method = "POST"
	if Serve(&hit, nil, &Batcher{}, time.Now(), &resp); resp.Status != 405 {
		t.Errorf("POST /s.js: %d", resp.Status)
	}
}

// FuzzSiteSettings: any settings value parses without panicking, and
// what it reports as applied survives a round trip through its own
// canonical text.
func FuzzSiteSettings(f *testing.F) {
	for _, s := range []string{"tier=aggregate sign=reject ip=prefix", "sign=mark;;tier=full", "tier", "=", "ip=PREFIX,,sign=Off", "query=Drop tier=aggregate"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, _ := ParseSiteSettings(s)
		text := "tier=" + st.Tier.String() + " sign=" + [...]string{"off", "mark", "reject"}[st.Sign] + " ip=" + map[bool]string{false: "off", true: "prefix"}[st.IPPrefix] +
			" query=" + map[bool]string{false: "keep", true: "drop"}[st.DropQuery]
		again, err := ParseSiteSettings(text)
		if err != nil || again != st {
			t.Fatalf("%q -> %+v -> %q -> %+v %v", s, st, text, again, err)
		}
	})
}

// TestSitesSettingsOfReusedBuffer looks sites up, as the edge module does,
// by strings that are views of a buffer the next request overwrites: the
// settings remembered for the last site must not follow the buffer.
func TestSitesSettingsOfReusedBuffer(t *testing.T) {
	store := map[string]string{ConfigSitePrefix + "shop": "ip=prefix"}
	sites, err := NewSites(func(k string) string { return store[k] })
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("shop")
	view := unsafe.String(&buf[0], len(buf))
	for range 2 { // a miss, then the remembered site
		if !sites.Settings(view).IPPrefix {
			t.Fatal("shop: no ip=prefix")
		}
	}
	copy(buf, "demo")
	if sites.Settings(view).IPPrefix {
		t.Error("demo got shop's settings after the buffer was reused")
	}
	copy(buf, "shop")
	if !sites.Settings(view).IPPrefix {
		t.Error("shop lost its settings")
	}
}

// TestCountsOfReusedBuffer: the same for the counters, and sites taking
// turns are each counted as theirs.
func TestCountsOfReusedBuffer(t *testing.T) {
	var c Counts
	now := time.Now()
	buf := []byte("aa")
	view := unsafe.String(&buf[0], len(buf))
	for _, s := range []string{"aa", "aa", "bb", "aa", "bb", "bb"} {
		copy(buf, s)
		c.site(now, view).Hits++
	}
	if a, b := c.Get("aa").Hits, c.Get("bb").Hits; a != 3 || b != 3 {
		t.Errorf("aa %d hits, bb %d hits; want 3 and 3", a, b)
	}
}

// A POST body of JSON with a value of the wrong type is refused whole,
// its drop counted for the site it names (found by a new-user tester: it
// was counted under ""); a body that is not JSON falls back on the URL's.
func TestBadJSONCountedForItsSite(t *testing.T) {
	b := &Batcher{MaxEvents: 100, MaxAge: time.Hour, MaxBuffered: 100}
	m := meta()
	for _, c := range []struct{ query, body, site string }{
		{"", `{"site":"bj3","name":123}`, "bj3"},
		{"", `[{"site":" bj4 ","t":"x","url":5}]`, "bj4"},
		{"site=q1", `{"site":`, "q1"},
		{"site=q2", `{"name":"x","url":5}`, "q2"},
	} {
		post := Hit{Method: "POST", Path: PathPost, RawQuery: c.query, Meta: func() *Meta { return m },
			Body: func(int) ([]byte, error) { return []byte(c.body), nil }}
		var resp Response
		if Serve(&post, nil, b, m.Now, &resp); resp.Status != 400 || resp.Drop != wire.DropBadJSON {
			t.Errorf("%s: %d %q, want 400 bad_json", c.body, resp.Status, resp.Drop)
		}
		if sc := b.Counts.sites[c.site]; sc == nil || sc.Hits != 1 || len(sc.Drops) != 1 || sc.Drops[0].Reason != wire.DropBadJSON {
			t.Errorf("%s: %q's counts %+v, want its bad_json", c.body, c.site, sc)
		}
	}
	if sc := b.Counts.sites[""]; sc != nil {
		t.Errorf("counted under no site: %+v", sc)
	}
}

// A body refused for one event's own values is counted for that event's
// site, not the body's first.
func TestEventDropCountedForItsSite(t *testing.T) {
	b := &Batcher{MaxEvents: 100, MaxAge: time.Hour, MaxBuffered: 100}
	m := meta()
	big := `{"k":"` + strings.Repeat("x", 5000) + `"}`
	for _, c := range []struct{ body, site, drop string }{
		{`[{"site":"ok1"},{"site":"ev2","url":"javascript:alert(1)"}]`, "ev2", wire.DropBadURL},
		{`[{"site":"ok1"},{"site":"ev3","props":` + big + `}]`, "ev3", wire.DropPropsTooLarge},
		{`[{"site":"ok1"},{"site":"ev4","event_id":"nope"}]`, "ev4", wire.DropBadEventID},
	} {
		post := Hit{Method: "POST", Path: PathPost, Meta: func() *Meta { return m },
			Body: func(int) ([]byte, error) { return []byte(c.body), nil }}
		var resp Response
		if Serve(&post, nil, b, m.Now, &resp); resp.Drop != c.drop {
			t.Errorf("%.60s: %d %q, want %s", c.body, resp.Status, resp.Drop, c.drop)
		}
		if sc := b.Counts.sites[c.site]; sc == nil || sc.Hits != 1 || len(sc.Drops) != 1 || sc.Drops[0].Reason != c.drop {
			t.Errorf("%.60s: %q's counts %+v, want its %s", c.body, c.site, sc, c.drop)
		}
	}
	if sc := b.Counts.sites["ok1"]; sc != nil {
		t.Errorf("counted for the first event's site: %+v", sc)
	}
	// A body refused whole (buffer_full) is still the first event's.
	full := &Batcher{MaxEvents: 100, MaxAge: time.Hour, MaxBuffered: 1}
	post := Hit{Method: "POST", Path: PathPost, Meta: func() *Meta { return m },
		Body: func(int) ([]byte, error) { return []byte(`[{"site":"first"},{"site":"last"}]`), nil }}
	var resp Response
	if Serve(&post, nil, full, m.Now, &resp); resp.Drop != wire.DropBufferFull {
		t.Fatalf("%d %q, want buffer_full", resp.Status, resp.Drop)
	}
	if sc := full.Counts.sites["first"]; sc == nil || len(sc.Drops) != 1 || full.Counts.sites["last"] != nil {
		t.Errorf("buffer_full counted as %+v for first, %+v for last; want first's", sc, full.Counts.sites["last"])
	}
}

// A page or referrer that names no web page (urlescape.NoPage) is
// dropped as bad_url on both paths, also when the page is the Referer
// header the pixel and the POST default to, and when white space that
// the normalisation drops hides the scheme.
func TestBadURL(t *testing.T) {
	refMeta := func(ref string) *Meta { m := meta(); m.Referer = ref; return m }
	for _, tc := range []struct {
		q string
		m *Meta
	}{
		{"site=a&url=javascript%3Aalert(1)", meta()},
		{"site=a&url=%C2%A0javascript%3Aalert(1)", meta()},
		{"site=a&url=https%3A%2F%2Fa%2F&ref=DATA%3A%2Cx", meta()},
		{"site=a", refMeta("javascript:alert(1)")},
		{"site=a&url=file%3A%2F%2F%2FUsers%2Falice%2Fsaved.html", meta()},
		{"site=a&url=mailto%3Aalice%40example.com", meta()},
		{"site=a&url=about%3Ablank", meta()},
	} {
		if e, drop := FromQuery(tc.q, tc.m, nil); drop != wire.DropBadURL || e.URL != "" {
			t.Errorf("pixel %s (Referer %q): drop %q url %q", tc.q, tc.m.Referer, drop, e.URL)
		}
	}
	// An open's page is never the Referer (its mailbox): nothing to drop.
	if _, drop := FromQuery("site=a&e=open&open=email", refMeta("javascript:x"), nil); drop != "" {
		t.Errorf("open with a javascript: Referer: drop %q", drop)
	}
	for _, tc := range []struct {
		body string
		m    *Meta
	}{
		{`{"site":"a","url":"\u00a0javascript:alert(1)"}`, meta()},
		{`{"site":"a","referrer":"vbscript:x"}`, meta()},
		{`{"site":"a","ref":" data:,x"}`, meta()},
		{`{"site":"a"}`, refMeta("JavaScript:x")},
		{`{"site":"a","url":"file:///C:/Users/alice/saved.html"}`, meta()},
	} {
		if evs, drop := FromJSON([]byte(tc.body), "", "", tc.m, nil); drop != wire.DropBadURL || len(evs) != 0 {
			t.Errorf("POST %s (Referer %q): drop %q, %d events", tc.body, tc.m.Referer, drop, len(evs))
		}
	}
	if msg := dropMessage(wire.DropBadURL, 400); !strings.Contains(msg, "javascript:") || !strings.Contains(msg, "file:") {
		t.Errorf("message %q", msg)
	}
}

// The consent signals' names are read in any ASCII case on the pixel, as
// a POST's JSON keys are: an opt-out written Consent=0 wins there too.
func TestConsentNameCase(t *testing.T) {
	for _, q := range []string{"site=a&Consent=0", "site=a&CONSENT=false", "site=a&US_Privacy=1YYN", "site=a&consent=1&Consent=0"} {
		if e, drop := FromQuery(q, meta(), nil); drop != "" || e.Tier != "aggregate" {
			t.Errorf("%s: tier %q (%s), drop %q", q, e.Tier, e.ConsentReason, drop)
		}
	}
	if e, _ := FromQuery("site=a&Consentx=0", meta(), nil); e.Tier != "full" {
		t.Errorf("another name: tier %q", e.Tier)
	}
}
