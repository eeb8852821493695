package main

// What the edge logic's enrichment needs from Fastly, kept apart from the
// serving loop in main.go: per-site settings (config store), visitor-id
// salts and pixel signing keys (secret store), the Edge Rate Limiter,
// geolocation fields and the request headers pixel.Meta carries.
//
// Config store "edgepixel" keys read here:
//
//	sites, unknown_sites,   per-site settings: see edge/pixel (site.go)
//	site_default, site.SITE
//	rate_limit_client       hits per second a client address may send,
//	                        averaged over 10 s (Fastly's ERL allows 10 to
//	                        10000); over it, its hits get the GIF and are
//	                        counted as rate_limited for a minute. Unset or
//	                        0: no limit.
//	rate_limit_site         the same for all hits of one site.
//
// Secret store "edgepixel" entries read here:
//
//	visitor_salt_0, visitor_salt_1    the daily salts (edge/privacy;
//	                                  written by edgepixel-salt), read once
//	                                  per UTC day per instance
//	pixel_key.SITE                    SITE's pixel signing key
//	pixel_key.SITE.previous           the key before it, while rotating
//	                                  (edgepixel-sign)

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/hostcall"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/fastly/compute-sdk-go/erl"
	"github.com/fastly/compute-sdk-go/secretstore"
)

// Names of the Edge Rate Limiter's counter and penalty box.
const (
	rateCounterName = "edgepixel_hits"
	penaltyBoxName  = "edgepixel_limited"
)

// loadEnrichConfig reads the keys above into c.serve through get (""
// for an absent key).
func loadEnrichConfig(c *config, get func(key string) string) {
	sites, err := pixel.NewSites(get)
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: config store edgepixel: %v\n", err)
	}
	sites.Errors = func(err error) { fmt.Fprintf(os.Stderr, "edgepixel: config store edgepixel: %v\n", err) }
	c.serve.Sites = sites
	c.serve.Salts = currentSalts
	c.serve.PixelKeys = pixelKeys
	client, site := ratePolicy(get, storekeys.RateLimitClient), ratePolicy(get, storekeys.RateLimitSite)
	if client != nil || site != nil {
		limiter := erl.NewRateLimiter(erl.OpenRateCounter(rateCounterName), erl.OpenPenaltyBox(penaltyBoxName))
		c.serve.RateLimited = func(addr, s string, n uint32) bool {
			return overLimit(limiter, client, "c:", addr, n) || overLimit(limiter, site, "s:", s, n)
		}
	}
}

func ratePolicy(get func(string) string, key string) *erl.Policy {
	n, err := storekeys.ParseRateLimit(get(key))
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: config store edgepixel: %s: %v\n", key, err)
	}
	if n == 0 {
		return nil
	}
	return &erl.Policy{RateWindow: erl.RateWindow10s, MaxRate: n, PenaltyBoxDuration: pixel.RateLimitPenalty}
}

// overLimit counts n hits of entry and reports whether it is over p. A
// limiter that fails lets the hits through: a broken limiter must not
// stop counting.
func overLimit(l *erl.RateLimiter, p *erl.Policy, prefix, entry string, n uint32) bool {
	if p == nil || entry == "" {
		return false
	}
	blocked, err := l.CheckRate(erlEntry(prefix, entry), n, p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: rate limiter: %v\n", err)
		return false
	}
	return blocked
}

// salts are the visitor-id salts as last read, for day.
var salts struct {
	day    int32
	read   time.Time
	values privacy.Salts
}

// currentSalts returns the salts for now's UTC day, read from the secret
// store at an instance's first hit of the day, and again at most once a
// minute while today's is missing (edgepixel-salt may be late). Each read
// warns on stderr of a missing salt and of one of a day that is over
// (privacy.OverWarning).
func currentSalts(now time.Time) *privacy.Salts {
	day := privacy.Day(now)
	if salts.day == day && !salts.read.IsZero() {
		if _, ok := salts.values.For(day); ok || now.Sub(salts.read) < time.Minute {
			return &salts.values
		}
	}
	salts.day, salts.read, salts.values = day, now, privacy.Salts{}
	for i, key := range privacy.SaltKeys {
		v, err := secretstore.Plaintext(storekeys.Store, key)
		if err != nil {
			continue
		}
		s, err := privacy.ParseSalt(string(v))
		if err != nil {
			fmt.Fprintf(os.Stderr, "edgepixel: secret %s/%s: %v\n", storekeys.Store, key, err)
			continue
		}
		salts.values[i] = s
		// On Fastly no host reads the store to warn of a salt rotation
		// left behind, as edgepixel-pop does: say it here, once per read.
		if w := privacy.OverWarning(key, s, now.Add(-privacy.RotationGrace), "edgepixel-salt once a day after 00:30 UTC, with --fastly-store STORE_ID on Fastly or --dir DIR into a POP's salt files,"); w != "" {
			fmt.Fprintf(os.Stderr, "edgepixel: secret store %s: %s\n", storekeys.Store, w)
		}
	}
	if _, ok := salts.values.For(day); !ok {
		fmt.Fprintf(os.Stderr, "edgepixel: no visitor salt for %s in secret store %s (entries visitor_salt_0 and visitor_salt_1; the first time, edgepixel-salt --today writes today's: with --dir DIR into the files the store names, or with --fastly-store STORE_ID): events carry no visitor id and are counted as no_salt\n",
			now.UTC().Format(time.DateOnly), storekeys.Store)
	}
	return &salts.values
}

// keys caches each site's pixel keys for the instance's life (a key
// rotation is seen by instances started after it).
var keys = map[string][][]byte{}

const maxCachedKeys = 1000

// pixelKeys returns site's pixel keys; it is asked only for a site whose
// settings check signatures. A site without a key gets one line on
// stderr, at its first hit in the instance (when it is cached): every
// signed hit of it was otherwise dropped bad_pixel_signature, or stored
// unverified, with nothing said (found by a new-user tester). On Fastly
// no host sees the secret store to warn at start, as edgepixel-pop does.
func pixelKeys(site string) [][]byte {
	if k, ok := keys[site]; ok {
		return k
	}
	var k [][]byte
	names := storekeys.PixelKeys(site)
	for _, name := range names {
		if v, err := secretstore.Plaintext(storekeys.Store, name); err == nil {
			k = append(k, pixelsign.Key(v))
		}
	}
	if len(keys) < maxCachedKeys {
		if k == nil {
			fmt.Fprintf(os.Stderr, "edgepixel: site %s checks pixel signatures, but secret store %s has no %s: no hit of it verifies (sign=reject drops them, sign=mark stores them unverified); create the entry with the key edgepixel-sign signs with\n", site, storekeys.Store, names[0])
		}
		// A copy: site may point into the request's buffers (pixel's
		// unescaped query values), which the next request overwrites
		// under the map's key.
		keys[strings.Clone(site)] = k
	}
	return k
}

// hints are the request headers pixel.Meta carries beyond User-Agent and
// Referer, each read into a buffer of its own that the next request
// reuses.
var hintNames = [...]string{"Sec-GPC", "DNT", "Sec-Purpose", "Purpose", "X-Purpose", "X-Moz", "Sec-CH-UA"}

type hintBufs [len(hintNames)][]byte

// readHints fills m's header fields.
func (v *visitor) readHints(m *pixel.Meta) {
	// One assignment each: an array of pointers to m's fields would be
	// allocated by TinyGo at every hit.
	m.SecGPC = v.headerView(hintNames[0], &v.hints[0])
	m.DNT = v.headerView(hintNames[1], &v.hints[1])
	m.SecPurpose = v.headerView(hintNames[2], &v.hints[2])
	m.Purpose = v.headerView(hintNames[3], &v.hints[3])
	m.XPurpose = v.headerView(hintNames[4], &v.hints[4])
	m.XMoz = v.headerView(hintNames[5], &v.hints[5])
	m.SecCHUA = v.headerView(hintNames[6], &v.hints[6])
}

// readGeo fills m's country, region, city and ASN from a geolocation
// record (views into it).
func readGeo(m *pixel.Meta, rec []byte) {
	g := hostcall.GeoFields(rec)
	m.Country = bytesView(g.Country)
	m.Region = bytesView(g.Region)
	m.City = bytesView(g.City)
	m.ASN = g.ASN
}

// erlMaxEntry is the longest entry Fastly's Edge Rate Limiter takes, in
// bytes (compute-sdk-go's erl package; the POP applies the same): a
// longer one fails the call, and overLimit lets the hit through.
const erlMaxEntry = 64

// erlEntry is the limiter's entry for entry under prefix: prefix+entry,
// or, when that is over erlMaxEntry (a site id may be 100 bytes, and one
// made long on purpose passed the site limit), prefix, "#" and a hash
// of entry, which no site id of that length can spell.
func erlEntry(prefix, entry string) string {
	if len(prefix)+len(entry) <= erlMaxEntry {
		return prefix + entry
	}
	sum := sha256.Sum256([]byte(entry))
	return prefix + "#" + hex.EncodeToString(sum[:24])
}
