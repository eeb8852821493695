package pixel

import (
	"bytes"
	"crypto/rand"
	"image/gif"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func meta() *Meta {
	return &Meta{Now: time.UnixMilli(1_763_800_000_000), ClientIP: "203.0.113.77", UserAgent: "UA/1", Referer: "https://example.com/from-header", Pop: "test", Rand: rand.Reader}
}

func TestGIFIsTransparent1x1(t *testing.T) {
	if len(GIF) != 43 {
		t.Fatalf("GIF is %d bytes", len(GIF))
	}
	img, err := gif.Decode(bytes.NewReader(GIF))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("bounds %v", b)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("pixel not transparent: alpha %d", a)
	}
}

func TestFromQuery(t *testing.T) {
	e, drop := FromQuery("site=demo&url=https%3A%2F%2Fexample.com%2Fa%3Futm_source%3Dhn%26utm_campaign%3Dx&ref=https%3A%2F%2Fnews.ycombinator.com%2F", meta(), nil)
	if drop != "" {
		t.Fatal(drop)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	// The page is stored normalised without its campaign parameters,
	// which have their columns; no address leaves the edge by default; a
	// user agent that is no browser's is scored as such.
	want := event.Event{ID: e.ID, Time: 1_763_800_000_000, Site: "demo", Name: "pageview", URL: "https://example.com/a", Path: "/a",
		Referrer: "https://news.ycombinator.com/", UserAgent: "UA/1", UTMSource: "hn", UTMCampaign: "x", Pop: "test",
		Device: "other", BotScore: 40, BotReason: "not_browser", ReferrerHost: "news.ycombinator.com", Channel: "social", Source: "Hacker News",
		Tier: "full", ConsentReason: "default"}
	if e != want {
		t.Fatalf("got  %+v\nwant %+v", e, want)
	}
}

func TestFromQueryDefaultsAndDrops(t *testing.T) {
	e, drop := FromQuery("site=demo&e=signup", meta(), nil)
	if drop != "" || e.URL != "https://example.com/from-header" || e.Name != "signup" {
		t.Fatalf("%+v %s", e, drop)
	}
	for _, q := range []string{"", "site=", "site=%20", "%zz", "url=x"} {
		if _, drop := FromQuery(q, meta(), nil); drop != wire.DropMissingSite {
			t.Errorf("%q: drop %q", q, drop)
		}
	}
	// A malformed pair must not lose the rest of the hit.
	if e, drop := FromQuery("site=demo&bad=%zz", meta(), nil); drop != "" || e.Site != "demo" {
		t.Fatalf("partial query lost: %+v %s", e, drop)
	}
	long := strings.Repeat("x", event.MaxURLLen*2)
	if e, _ := FromQuery("site=demo&url="+long, meta(), nil); len(e.URL) != event.MaxURLLen || e.Validate() != nil {
		t.Fatalf("url not truncated: %d", len(e.URL))
	}
}

func TestFromJSON(t *testing.T) {
	evs, drop := FromJSON([]byte(` [{"site":"demo","name":"signup","url":"https://e.com/x","ref":"r","props":{ "plan" : "pro" }},{"site":"demo"}] `), "", "", meta(), nil)
	if drop != "" || len(evs) != 2 {
		t.Fatalf("%d events, drop %q", len(evs), drop)
	}
	if evs[0].Name != "signup" || evs[0].Props != `{"plan":"pro"}` || evs[0].Referrer != "r" {
		t.Fatalf("%+v", evs[0])
	}
	if evs[1].Name != event.KindPageview || evs[1].URL != "https://example.com/from-header" {
		t.Fatalf("%+v", evs[1])
	}
	if evs[0].ID == evs[1].ID {
		t.Fatal("events share an id")
	}
	one, drop := FromJSON([]byte(`{"site":"demo"}`), "", "", meta(), nil)
	if drop != "" || len(one) != 1 || one[0].Name != event.KindPageview {
		t.Fatal(drop, one)
	}
	// Only site is required, and the answer to a bad body says so: it
	// once called name required while a body without it was stored.
	if msg := dropMessage(wire.DropBadJSON, 400); !strings.Contains(msg, `name (default "pageview")`) {
		t.Errorf("bad_json message %q does not say name defaults to pageview", msg)
	}
	// "site=demo;x=1" has no pair the parser reads: the answer says why a
	// site that was sent is missing.
	if site := queryValue("site=demo;x=1", "site"); site != "" {
		t.Fatalf("site=demo;x=1 read as site %q", site)
	}
	if msg := dropMessage(wire.DropMissingSite, 400); !strings.Contains(msg, "';'") || !strings.Contains(msg, "%3B") {
		t.Errorf("missing_site message %q does not say a pair with ';' is skipped", msg)
	}
	// A POST's site is its body's: the answer says so (a tester put it
	// in the query and was told only about the query).
	if msg := dropMessage(wire.DropMissingSite, 400); !strings.Contains(msg, `POST's in each JSON event ("site":"demo")`) {
		t.Errorf("missing_site message %q does not say where a POST's site goes", msg)
	}
	// A byte order mark before the JSON is ignored (RFC 8259 §8.1).
	if evs, drop := FromJSON([]byte("\ufeff{\"site\":\"d\"}"), "", "", meta(), nil); drop != "" || len(evs) != 1 {
		t.Errorf("body with a BOM: %q", drop)
	}
	// White space around a site or a name goes: a blank name is a pageview.
	if evs, drop := FromJSON([]byte(`{"site":"  d  ","name":" \t "}`), "", "", meta(), nil); drop != "" || evs[0].Site != "d" || evs[0].Name != event.KindPageview {
		t.Errorf("site and name with white space around: %q %+v", drop, evs)
	}
}

func TestFromJSONRejects(t *testing.T) {
	many := "[" + strings.Repeat(`{"site":"d"},`, MaxPostEvents) + `{"site":"d"}]`
	for body, want := range map[string]string{
		``:                                 wire.DropBadJSON,
		`nope`:                             wire.DropBadJSON,
		`{"site":`:                         wire.DropBadJSON,
		`[]`:                               wire.DropBadJSON,
		`{"name":"x"}`:                     wire.DropMissingSite,
		`{"site":"d","props":[1]}`:         wire.DropBadJSON,
		`{"site":"d","props":"x"}`:         wire.DropBadJSON,
		many:                               wire.DropTooManyEvents,
		strings.Repeat(" ", MaxPostBody+1): wire.DropTooLarge,
	} {
		if _, drop := FromJSON([]byte(body), "", "", meta(), nil); drop != want {
			t.Errorf("%.40q: drop %q, want %q", body, drop, want)
		}
	}
}

// FuzzFromJSON: whatever the body, Idempotency-Key and request headers,
// every event the edge builds passes the aggregator's Validate, which
// holds every string to event.Clean's rule (valid UTF-8, no control
// characters) and its limit.
func FuzzFromJSON(f *testing.F) {
	key := event.ID{0x01, 0x9a, 0x9c, 0x5c, 0x9e, 0x00, 0x70, 0, 0x80}.String()
	f.Add([]byte(`{"site":"demo","props":{"a":1}}`), "", "UA/1", "https://example.com/")
	f.Add([]byte(`[{"site":"demo"},{"site":"x","name":"y","event_id":"`+key+`"}]`), key, "UA\xff", "\x00")
	f.Add([]byte("{\"site\":\"d\xffe\",\"url\":\"\\u0000\",\"props\":{\"k\":\"\\ud800\"}}"), "", "", "")
	f.Add([]byte(`{"site":"d","consent":1,"consent":"0","us_privacy":"1YYN","us_privacy":{}}`), "", "", "")
	f.Fuzz(func(t *testing.T, body []byte, idemKey, ua, referer string) {
		m := meta()
		m.UserAgent, m.Referer = ua, referer
		evs, drop := FromJSON(body, idemKey, "", m, nil)
		if drop != "" {
			return
		}
		for i := range evs {
			if err := evs[i].Validate(); err != nil {
				t.Fatalf("edge built an event the aggregator would reject: %v", err)
			}
		}
	})
}

// FuzzFromQuery: the same property for the pixel's query and headers.
func FuzzFromQuery(f *testing.F) {
	f.Add("site=demo&url=https%3A%2F%2Fexample.com%2Fa", "UA/1", "https://example.com/")
	f.Add("site=d%ffe&url=%00%C2%85&e=%ed%a0%80&ref=x%E2%82", "UA\x7f", "ref\xff")
	f.Fuzz(func(t *testing.T, q, ua, referer string) {
		m := meta()
		m.UserAgent, m.Referer = ua, referer
		e, drop := FromQuery(q, m, nil)
		if drop == "" {
			if err := e.Validate(); err != nil {
				t.Fatalf("edge built an event the aggregator would reject: %v", err)
			}
		}
	})
}

func BenchmarkFromQuery(b *testing.B) {
	m := &Meta{Now: time.Now(), ClientIP: "203.0.113.9", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		Referer: "https://www.google.com/search?q=x", Pop: "lcl", Rand: rand.Reader}
	b.ReportAllocs()
	for b.Loop() {
		FromQuery("site=example.com&url=https%3A%2F%2Fexample.com%2Fpricing%3Futm_source%3Dnews&ref=https%3A%2F%2Fgoogle.com%2F", m, nil)
	}
}

// FuzzQueryValue holds queryValue to url.ParseQuery's answers.
func FuzzQueryValue(f *testing.F) {
	f.Add("site=a&url=https%3A%2F%2Fx%2F&e=", "url")
	f.Add("s%69te=a+b&site=c", "site")
	f.Add("a=%zz&a=ok;x&a=2", "a")
	f.Fuzz(func(t *testing.T, raw, key string) {
		q, _ := url.ParseQuery(raw)
		if got, want := queryValue(raw, key), q.Get(key); got != want {
			t.Errorf("queryValue(%q, %q) = %q, url.ParseQuery says %q", raw, key, got, want)
		}
	})
}

// The one-pass reading of a pixel's query gives each parameter exactly
// what queryValue (url.ParseQuery's first well-formed pair) gives it, and
// the same again in a reused buffer.
func FuzzPixelQuery(f *testing.F) {
	for _, s := range []string{
		"site=a&url=https%3A%2F%2Fx.example%2Fp%3Fq%3D1&ref=r+s&e=signup&t=1&sw=390&consent=0&us_privacy=1YNN&open=1",
		"site=%zz&site=b&url=a;b&url=ok", "site&site=x", "%73ite=s%20t&u%72l=%", "site=a&&site=b&url=%4", "url=%41%42+%43&site=",
		"e=%E2%82%AC&ref=%ff", "site=a%3Bb&t=+1+",
		"site=a&consent=1&consent=0", "consent=0&consent=1&us_privacy=1NNN&us_privacy=1YYN", "consent=%zz&consent=&consent=false",
		"consent=1&amp;consent=0", "a=1;Consent=1&consent=1", "us_privacy=%zz&consent=1%",
	} {
		f.Add(s)
	}
	f.Add("Consent=0&US_PRIVACY=1YYN&%43onsent=1")
	var room []byte
	f.Fuzz(func(t *testing.T, raw string) {
		// The consent signals' names count in any case (paramIndex):
		// the references read them so spelt.
		folded := foldConsentNames(raw)
		for range 2 {
			var q pixelQuery
			q.parse(raw, &room)
			for i, name := range pixelParams {
				if got, want := q.value(i), queryValue(folded, name); got != want {
					t.Fatalf("%q: %s = %q, queryValue %q", raw, name, got, want)
				}
			}
			// The consent signals take every pair url.ParseQuery reads,
			// and a signal named in a pair it drops (read leniently: ';'
			// as '&', a key unescaped to a pair read as one) is an
			// opt-out, whatever it said: what decides the tier must
			// agree, under either site default.
			var want privacy.Signals
			strict, _ := url.ParseQuery(folded)
			for _, v := range strict["consent"] {
				want.AddConsent(v)
			}
			for _, v := range strict["us_privacy"] {
				want.AddUSPrivacy(v)
			}
			lenient := map[string]int{}
			var count func(q string)
			count = func(q string) {
				for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
					k, _, _ := strings.Cut(pair, "=")
					if n, err := url.QueryUnescape(k); err == nil && n != k && strings.ContainsAny(n, "=&;") {
						count(n)
					} else if err == nil {
						lenient[strings.ToLower(n)]++
					}
				}
			}
			count(folded)
			if lenient["consent"] > len(strict["consent"]) {
				want.AddConsent(privacy.SignalUnreadable)
			}
			if lenient["us_privacy"] > len(strict["us_privacy"]) {
				want.AddUSPrivacy(privacy.SignalUnreadable)
			}
			for _, def := range []privacy.Tier{privacy.TierFull, privacy.TierAggregate} {
				gt, gr := privacy.Decide(def, q.signals)
				wt, wr := privacy.Decide(def, want)
				if gt != wt || gr != wr {
					t.Fatalf("%q: under %v, signals %+v decide %v %s; url.ParseQuery's %+v decide %v %s", raw, def, q.signals, gt, gr, want, wt, wr)
				}
			}
		}
	})
}

// foldConsentNames is raw with each pair's name that is consent or
// us_privacy in another letter case (once unescaped) written in lower
// case, the rest as it was.
func foldConsentNames(raw string) string {
	pairs := strings.Split(raw, "&")
	for i, pair := range pairs {
		k, v, eq := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		for _, canon := range []string{"consent", "us_privacy"} {
			if strings.EqualFold(name, canon) {
				pairs[i] = canon
				if eq {
					pairs[i] += "=" + v
				}
			}
		}
	}
	return strings.Join(pairs, "&")
}

func TestIsParam(t *testing.T) {
	for _, name := range []string{"site", "url", "open", "utm_source", "utm_content", "sig", "exp", "cip"} {
		if !IsParam(name) {
			t.Errorf("IsParam(%q) = false", name)
		}
	}
	for _, name := range []string{"id", "utm_id", "Site", ""} {
		if IsParam(name) {
			t.Errorf("IsParam(%q) = true", name)
		}
	}
}
