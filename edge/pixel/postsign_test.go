package pixel

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// signConfig is a Config whose sites demo and shop check signatures under
// policy, with one key each; other sites do not.
func signConfig(policy string) (*Config, map[string][]byte) {
	keys := map[string][]byte{"demo": []byte("0123456789abcdef0123"), "shop": []byte("shop-key-0123456789")}
	sites, _ := NewSites(func(k string) string {
		if k == ConfigSitePrefix+"demo" || k == ConfigSitePrefix+"shop" {
			return "sign=" + policy
		}
		return ""
	})
	return &Config{Sites: sites, PixelKeys: func(site string) [][]byte {
		if k, ok := keys[site]; ok {
			return [][]byte{k}
		}
		return nil
	}}, keys
}

// A POST is signed by its URL's query, as a pixel is: under sign=reject
// only a body whose every checked event is vouched for by the URL counts,
// and under sign=mark every event is kept with its verdict.
func TestPostSignaturePolicies(t *testing.T) {
	now := meta().Now.Unix()
	_, keys := signConfig("off")
	sign := func(site, q string, exp int64) string {
		s, err := pixelsign.Sign(keys[site], q, exp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign("demo", "site=demo", now+3600)
	expired := sign("demo", "site=demo", now-1)
	tampered := strings.Replace(good, "exp=", "exp=1", 1)
	otherSite := sign("shop", "site=shop", now+3600) // a valid signature, for shop
	demo, shop, free := `{"site":"demo"}`, `{"site":"shop"}`, `{"site":"free"}`
	for _, tc := range []struct {
		query, body string
		want        map[string]string // policy -> signature column of each event, or drop:REASON
	}{
		{good, demo, map[string]string{"off": "", "mark": "verified", "reject": "verified"}},
		{good, "[" + demo + "," + free + "]", map[string]string{"off": ",", "mark": "verified,", "reject": "verified,"}},
		{"site=demo", demo, map[string]string{"off": "", "mark": "unsigned", "reject": "drop:unsigned"}},
		{"", demo, map[string]string{"off": "", "mark": "unsigned", "reject": "drop:unsigned"}},
		{expired, demo, map[string]string{"off": "", "mark": "unverified", "reject": "drop:expired_pixel"}},
		{tampered, demo, map[string]string{"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"}},
		{otherSite, demo, map[string]string{"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"}},
		{otherSite, shop, map[string]string{"off": "", "mark": "verified", "reject": "verified"}},
		// One body, two checked sites: the URL vouches for one only.
		{good, "[" + demo + "," + shop + "]", map[string]string{"off": ",", "mark": "verified,unverified", "reject": "drop:bad_pixel_signature"}},
		{"", free, map[string]string{"off": "", "mark": "", "reject": ""}},
		// Bound to the client it was issued to (meta's 203.0.113.77): it
		// verifies from there only.
		{sign("demo", "site=demo&cip=203.0.113.0%2F24", now+3600), demo, map[string]string{"off": "", "mark": "verified", "reject": "verified"}},
		{sign("demo", "site=demo&cip=203.0.113.77", now+3600), demo, map[string]string{"off": "", "mark": "verified", "reject": "verified"}},
		{sign("demo", "site=demo&cip=198.51.100.0%2F24", now+3600), demo, map[string]string{"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"}},
		{sign("demo", "site=demo&cip=not-an-address", now+3600), demo, map[string]string{"off": "", "mark": "unverified", "reject": "drop:bad_pixel_signature"}},
	} {
		for _, policy := range []string{"off", "mark", "reject"} {
			c, _ := signConfig(policy)
			evs, drop := FromJSON([]byte(tc.body), "", tc.query, meta(), c)
			var got string
			if drop != "" {
				got = "drop:" + drop
			} else {
				var vals []string
				for _, e := range evs {
					vals = append(vals, e.Signature)
				}
				got = strings.Join(vals, ",")
			}
			if got != tc.want[policy] {
				t.Errorf("sign=%s POST ?%s %s: %q, want %q", policy, tc.query, tc.body, got, tc.want[policy])
			}
		}
	}
}

// Serve answers a POST refused for its signature with 403 and the reason,
// and counts the drop; an accepted one with 204.
func TestServePostSignature(t *testing.T) {
	c, keys := signConfig("reject")
	now := meta().Now
	good, err := pixelsign.Sign(keys["demo"], "site=demo", now.Unix()+60)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query  string
		status int
		drop   string
	}{
		{good, 204, ""},
		{"site=demo", 403, wire.DropUnsigned},
		{strings.Replace(good, "sig=", "sig=A", 1), 403, wire.DropBadSignature},
	} {
		b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
		h, _ := hit("POST", PathPost, tc.query, `[{"site":"demo"},{"site":"demo","name":"x"}]`)
		resp := &Response{}
		Serve(h, c, b, now, resp)
		if resp.Status != tc.status || resp.Get("X-Edgepixel-Drop") != tc.drop {
			t.Errorf("?%s: %d %q, want %d %q", tc.query, resp.Status, resp.Get("X-Edgepixel-Drop"), tc.status, tc.drop)
		}
		// The refusal says what to do, not just "Forbidden".
		if tc.drop != "" && !strings.Contains(string(resp.Body), "edgepixel-sign") {
			t.Errorf("?%s: body %s", tc.query, resp.Body)
		}
		counts := b.Counts.Get("demo")
		if tc.drop != "" && (counts.Hits != 1 || counts.Events != 0 || counts.Dropped(tc.drop) != 1) {
			t.Errorf("?%s: counted %+v", tc.query, counts)
		}
		if tc.drop == "" && (counts.Hits != 1 || counts.Events != 2 || b.Len() != 2) {
			t.Errorf("?%s: counted %+v, buffered %d", tc.query, counts, b.Len())
		}
	}
}

// A URL whose signature verifies but whose cip does not hold the client
// is refused as bad_pixel_signature, and the answer names the range:
// telling the sender the signature is wrong would send them to re-sign a
// URL that is right.
func TestServePostOutsideCIP(t *testing.T) {
	c, keys := signConfig("reject")
	now := meta().Now // from 203.0.113.77
	for _, tc := range []struct {
		cip, want string
	}{
		{"198.51.100.0/24", "outside its cip range 198.51.100.0/24"},
		{"198.51.100.7", "outside its cip range 198.51.100.7"},
		{"not-an-address", "its cip not-an-address is not an IP address or CIDR range"},
	} {
		q, err := pixelsign.Sign(keys["demo"], "site=demo&cip="+url.QueryEscape(tc.cip), now.Unix()+60)
		if err != nil {
			t.Fatal(err)
		}
		b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
		h, _ := hit("POST", PathPost, q, `{"site":"demo"}`)
		resp := &Response{}
		Serve(h, c, b, now, resp)
		body := string(resp.Body)
		if resp.Status != 403 || resp.Drop != wire.DropBadSignature || !strings.Contains(body, tc.want) || strings.Contains(body, "does not verify") {
			t.Errorf("cip %s: %d %q %s", tc.cip, resp.Status, resp.Drop, body)
		}
		if counts := b.Counts.Get("demo"); counts.Dropped(wire.DropBadSignature) != 1 {
			t.Errorf("cip %s: counted %+v", tc.cip, counts)
		}
	}
	// A wrong signature with a cip the client is outside of is still a
	// wrong signature.
	q, _ := pixelsign.Sign(keys["demo"], "site=demo&cip=198.51.100.0%2F24", now.Unix()+60)
	h, _ := hit("POST", PathPost, strings.Replace(q, "sig=", "sig=A", 1), `{"site":"demo"}`)
	resp := &Response{}
	Serve(h, c, &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}, now, resp)
	if resp.Drop != wire.DropBadSignature || !strings.Contains(string(resp.Body), "does not verify") {
		t.Errorf("bad MAC with cip: %q %s", resp.Drop, resp.Body)
	}
}

// A mixed body refused by one site's rule is counted as that site's
// drop, not the first event's site's, which would have taken it.
func TestServePostDropCountedForRefusingSite(t *testing.T) {
	sites, _ := NewSites(func(k string) string {
		if k == ConfigSitePrefix+"shop" {
			return "sign=reject"
		}
		return ""
	})
	now := meta().Now
	shopOnly, _ := ParseOrigins("shop=https://shop.example", "")
	for _, tc := range []struct {
		name, sites, origin, drop string
	}{
		{"unsigned", "", "", wire.DropUnsigned},
		{"unknown site", "demo", "", wire.DropUnknownSite},
		{"origin", "", "https://demo.example", wire.DropOriginNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Sites: sites}
			if tc.sites != "" {
				c.Sites, _ = NewSites(func(k string) string {
					if k == ConfigSites {
						return tc.sites
					}
					return ""
				})
			}
			if tc.origin != "" {
				c = &Config{Origins: shopOnly}
			}
			b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
			h := corsHit("POST", "", `[{"site":"demo"},{"site":"shop"}]`, tc.origin, nil)
			resp := &Response{}
			Serve(h, c, b, now, resp)
			if resp.Drop != tc.drop {
				t.Fatalf("drop %q, want %q", resp.Drop, tc.drop)
			}
			demo, shop := b.Counts.Get("demo"), b.Counts.Get("shop")
			if shop.Hits != 1 || shop.Dropped(tc.drop) != 1 || demo.Hits != 0 || len(demo.Drops) != 0 {
				t.Errorf("demo %+v, shop %+v: want the drop counted for shop", demo, shop)
			}
		})
	}
}

// An event that cannot get a visitor id for want of a salt is stored and
// counted as an event, and noted under no_salt for its site; with a salt,
// or without salts configured at all, nothing is noted.
func TestNoSaltNoted(t *testing.T) {
	now := meta().Now
	var salts privacy.Salts
	salts[0] = privacy.NewSalt(privacy.Day(now), [16]byte{7})
	for _, tc := range []struct {
		name   string
		salts  func(time.Time) *privacy.Salts
		noted  uint64
		withID bool
	}{
		{"salt for today", func(time.Time) *privacy.Salts { return &salts }, 0, true},
		{"no salt for today", func(time.Time) *privacy.Salts { return &privacy.Salts{} }, 3, false},
		{"store unreadable", func(time.Time) *privacy.Salts { return nil }, 3, false},
		{"platform without salts", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Salts: tc.salts}
			b := &Batcher{MaxEvents: 100, MaxAge: time.Second, MaxBuffered: 100}
			resp := &Response{}
			h, _ := hit("GET", PathPixel, "site=a.com", "")
			Serve(h, c, b, now, resp)
			h, _ = hit("POST", PathPost, "", `[{"site":"a.com"},{"site":"b.com"}]`)
			Serve(h, c, b, now, resp)
			// The aggregate tier keeps no visitor id by design: not noted.
			h, _ = hit("GET", PathPixel, "site=a.com&consent=0", "")
			Serve(h, c, b, now, resp)
			a, bc := b.Counts.Get("a.com"), b.Counts.Get("b.com")
			if got := a.Noted(wire.NoteNoSalt) + bc.Noted(wire.NoteNoSalt); got != tc.noted {
				t.Errorf("noted %d no_salt, want %d (a.com %+v, b.com %+v)", got, tc.noted, a, bc)
			}
			if tc.noted > 0 && (a.Noted(wire.NoteNoSalt) != 2 || bc.Noted(wire.NoteNoSalt) != 1) {
				t.Errorf("notes not counted for each event's site: a.com %+v, b.com %+v", a, bc)
			}
			if a.Events != 3 || bc.Events != 1 || len(a.Drops)+len(bc.Drops) != 0 {
				t.Errorf("events must be accepted, not dropped: a.com %+v, b.com %+v", a, bc)
			}
			if b.Len() != 4 {
				t.Fatalf("%d events buffered", b.Len())
			}
			e, err := b.events.Event(0)
			if err != nil || (e.VisitorID != 0) != tc.withID {
				t.Errorf("visitor id %x, %v", e.VisitorID, err)
			}
		})
	}
}

// FuzzPostSignature: whatever the POST's query and body, under sign=mark
// and sign=reject the edge neither crashes nor builds an event the
// aggregator would refuse, and sign=reject never accepts an event of a
// checked site without a verified signature.
func FuzzPostSignature(f *testing.F) {
	_, keys := signConfig("off")
	good, _ := pixelsign.Sign(keys["demo"], "site=demo&x="+url.QueryEscape("a b"), 1<<40)
	f.Add(good, `{"site":"demo"}`)
	f.Add("site=demo&sig=%zz&exp=-1", `[{"site":"demo"},{"site":"shop"}]`)
	f.Add("site=shop&site=demo&sig=AAAA", `{"site":"free"}`)
	f.Fuzz(func(t *testing.T, query, body string) {
		for _, policy := range []string{"mark", "reject"} {
			c, _ := signConfig(policy)
			evs, drop := FromJSON([]byte(body), "", query, meta(), c)
			if drop != "" {
				continue
			}
			for i := range evs {
				if err := evs[i].Validate(); err != nil {
					t.Fatalf("edge built an event the aggregator would reject: %v", err)
				}
				checked := evs[i].Site == "demo" || evs[i].Site == "shop"
				if policy == "reject" && checked && evs[i].Signature != SignatureVerified {
					t.Fatalf("sign=reject accepted %q with signature %q", evs[i].Site, evs[i].Signature)
				}
			}
		}
	})
}
