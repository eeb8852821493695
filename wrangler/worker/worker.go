// Package worker is edgepixel on Cloudflare Workers: the Go side of the
// worker, free of any JavaScript. It serves a request with edge/pixel,
// exactly as the Fastly module does, and then runs that request's
// delivery as a state machine the worker's JavaScript drives (Next),
// because a worker's network calls are asynchronous JavaScript and the
// Go code cannot wait for them.
//
// The wasm exports around it are in wrangler/cmd/edgepixel-worker; the
// JavaScript (WASI shim, fetch handler, ctx.waitUntil delivery) is in
// wrangler/src.
//
// # Delivery
//
// Events of concurrent requests join one batch (Config.BatchWait, by
// default BatchWait; 0 makes every request's events a batch of their
// own, delivered at once). An isolate has at most one open batch; a
// request's events go into it. The batch closes when it is due
// (BatchEvents events, or its first event has waited Config.BatchWait),
// and is then delivered by one request: the one whose hit made it due
// (Serve's due), or else the first whose own timer, set for the batch's
// due time, fires. That request's ctx.waitUntil lasts until the delivery
// has ended; every other request whose events the batch holds waits,
// through its own waitUntil, on its own timer, so that one of them is
// there to deliver the batch. No request ever waits on a promise or
// timer of another: workerd runs a promise's continuations only in the
// request that made it, and never ran a delivery one request's timer
// promise was to start when another request resolved it (see
// src/edgepixel.js, settle). Workers keep an isolate until every
// waitUntil has settled (at most 30 s after the response), so no event
// is ever held by an isolate that no request waits for: an event is
// delivered, or in the fallback, or counted lost.
//
// Each batch is a pixel.Batcher in a "slot": the open batch's slot
// collects; a closed batch's slot delivers, and is idle again when its
// delivery ended. A slot is an edge instance in the counters' sense (its
// own instance id, cumulative counts), reused by later batches, so an
// isolate reports as few instances as it ever had batches open or
// delivering at once.
//
// A delivery tries, in order:
//
//  1. The signed batch (wire format, with the slot's unreported counts)
//     to ingest_url. The JavaScript retries it; the slot's Batcher keeps
//     the events until the aggregator acknowledged them.
//  2. When the batch fails or is refused, the same events and counts as
//     NDJSON lines (wire's event and counters lines, what the Fastly
//     module writes to its fallback log endpoint), signed the same way,
//     to ndjson_url (the aggregator's /ingest/ndjson). The aggregator
//     stores an event once whichever way, or both ways, it came.
//  3. When that fails too (all within Config.DeliveryDeadline), the
//     batch goes to the spool, a Durable Object that stores it on disk
//     before it answers and delivers it later (Spool; src/spool.js).
//  4. When there is no spool, or it could not be reached, the events
//     are counted as lost (wire.DropDeliveryFailed) in the slot's
//     counts, which ride on the slot's next delivery.
//
// What is lost without a count: a delivery still running when the
// isolate is stopped anyway (the module traps, or its waitUntil outlives
// Cloudflare's 30 s, which the JavaScript's deadlines keep it within), as
// with a Fastly instance killed mid-flush.
package worker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Configuration keys: Worker vars (wrangler.toml [vars]) and secrets
// (`wrangler secret put`). The CORS keys are edge/pixel's
// (pixel.ConfigCORSOrigins, pixel.ConfigCORSDefault); the others mean
// what they mean in the Fastly module's config store.
const (
	// ConfigIngestURL is where signed batches go: the aggregator's
	// /ingest, e.g. https://agg.example.com/ingest. Required to deliver.
	// Several aggregators sharing one dedupe may be listed, separated by
	// commas: a POST one does not take (no answer, 429, 5xx) goes to the
	// next (src/edgepixel.js, post).
	ConfigIngestURL = "ingest_url"
	// ConfigNDJSONURL is the fallback's URL, or several separated by
	// commas; default each ingest_url + "/ndjson".
	ConfigNDJSONURL = "ndjson_url"
	// ConfigSecret is the secret batches and fallback lines are signed
	// with (the aggregator's --secret). Keep it a Worker secret.
	ConfigSecret = "aggregator_secret"
	// ConfigLogToken, when set and aggregator_secret is not, authenticates
	// the fallback lines with "Authorization: Bearer" (the aggregator's
	// --log-token) and batches are not sent. A Worker secret.
	ConfigLogToken = "log_token"
	// ConfigPop names the edge in events' pop column; default the
	// request's cf.colo.
	ConfigPop = "pop"
	// ConfigBatchWait is how long, in milliseconds, a batch stays open
	// for the events of later requests after its first event (default
	// DefaultBatchWait; 0: each request's events are delivered on their
	// own).
	ConfigBatchWait = "batch_wait_ms"
	// ConfigDeliveryDeadline is how long, in milliseconds from a batch's
	// close, its delivery may try the aggregators (the batch POSTs have
	// the first half, the fallback the rest) before the batch goes to the
	// spool or is counted lost (default DefaultDeliveryDeadline).
	ConfigDeliveryDeadline = "delivery_deadline_ms"
	// ConfigSpoolRetry and ConfigSpoolRetryMax are the spool's first and
	// longest wait, in milliseconds, between delivery rounds while the
	// aggregators do not take its batches; the wait doubles after each
	// failed round (defaults DefaultSpoolRetry, DefaultSpoolRetryMax).
	ConfigSpoolRetry    = "spool_retry_ms"
	ConfigSpoolRetryMax = "spool_retry_max_ms"
	// ConfigSpoolMaxBytes bounds the bytes of batches the spool holds
	// (default DefaultSpoolMaxBytes); a batch that does not fit is
	// counted lost instead.
	ConfigSpoolMaxBytes = "spool_max_bytes"
	// ConfigSpoolMaxAge is how long, in seconds, the spool keeps a batch
	// the aggregators have not taken before counting its events lost
	// (default DefaultSpoolMaxAge, at most MaxSpoolAge).
	ConfigSpoolMaxAge = "spool_max_age_s"
	// ConfigKVCache is how long, in milliseconds, an isolate uses what it
	// read from the SALTS and SETTINGS KV namespaces before reading them
	// again (default DefaultKVCache, at most maxKVCache). The JavaScript
	// reads them; the value is parsed here, with the others, so that a
	// bad one is reported rather than silently replaced by the default.
	ConfigKVCache = "kv_cache_ms"
)

// Delivery deadlines and the spool's bounds. Cloudflare gives a
// response's ctx.waitUntil work 30 s: a batch's wait (at most
// maxBatchWait), its delivery (DefaultDeliveryDeadline) and the hand-over
// to the spool (src/edgepixel.js SPOOL_PUT_MS) fit in it. The spool's age
// bound stays below the aggregator's oldest accepted event (its
// MaxEventAge, 7 days by default), since a batch older than that would be
// refused event by event.
const (
	DefaultDeliveryDeadline = 20 * time.Second
	maxDeliveryDeadline     = DefaultDeliveryDeadline
	DefaultSpoolRetry       = time.Second
	DefaultSpoolRetryMax    = time.Minute
	DefaultSpoolMaxBytes    = 1 << 30
	DefaultSpoolMaxAge      = 24 * time.Hour
	MaxSpoolAge             = 6 * 24 * time.Hour
	DefaultKVCache          = time.Minute
	// maxKVCache bounds ConfigKVCache: a settings change should apply
	// within the hour, and the salts are written a day ahead, far beyond it.
	maxKVCache = time.Hour
)

// Batching: a batch closes when it holds BatchEvents events or its first
// event has waited the configured wait (default DefaultBatchWait),
// whichever comes first. Batching across requests is on by default: it
// sends far fewer POSTs and costs the isolate less CPU per request than
// a POST per request (figures in README.md, from make bench).
const (
	BatchEvents      = 500
	BatchWait        = 100 * time.Millisecond
	DefaultBatchWait = BatchWait
	// maxBatchWait bounds ConfigBatchWait: a request's waitUntil waits
	// this long at most before its batch's delivery, which has the rest
	// of Cloudflare's 30 s.
	maxBatchWait = 5 * time.Second
)

// Config is the worker's configuration, from the Worker's environment.
type Config struct {
	Serve     pixel.Config
	IngestURL string
	NDJSONURL string
	Secret    []byte
	LogToken  string
	Pop       string
	BatchWait time.Duration
	// DeliveryDeadline bounds a batch's delivery to the aggregators.
	DeliveryDeadline time.Duration
	// The spool's retry waits and bounds (ConfigSpool*).
	SpoolRetry, SpoolRetryMax time.Duration
	SpoolMaxBytes             int64
	SpoolMaxAge               time.Duration
	// KVCache is how long an isolate keeps what it read from KV.
	KVCache time.Duration
	// Salts are the visitor-id salts from the environment, until the
	// worker is given others (Worker.SetSalts).
	Salts privacy.Salts

	env func(key string) string // what the config was read from
}

// exampleHost reports whether host is a name RFC 2606 reserves for
// documentation (sections 2 and 3: .example, .invalid, example.com,
// example.net, example.org and the names under them), such as
// wrangler.toml's placeholder: no aggregator can answer there, and a
// fetch to one only fails in DNS, which workerd logs with a stack trace
// per try.
func exampleHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, d := range []string{"example", "invalid", "example.com", "example.net", "example.org"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// dropExamples takes out of list (key's value, as urlList left it) the
// URLs whose host is an exampleHost, with an error for each that names
// path, the aggregator's endpoint for key: nothing is sent to them, so a
// worker deployed with the placeholder fails no fetch and its spool holds
// the batches until a URL is set (SpoolDelivery).
func dropExamples(key, list, path string) (string, error) {
	var keep []string
	var errs []error
	for _, v := range strings.Split(list, ",") {
		if u, err := url.Parse(v); err == nil && exampleHost(u.Hostname()) {
			errs = append(errs, fmt.Errorf("%s %q is a placeholder (RFC 2606 keeps %s for examples): nothing is sent there; set it to your aggregators' %s (wrangler.toml [vars], or --var); until then, batches with nowhere else to go wait in the spool, up to spool_max_age_s", key, v, u.Hostname(), path))
			continue
		}
		if v != "" {
			keep = append(keep, v)
		}
	}
	return strings.Join(keep, ","), errors.Join(errs...)
}

// urlList returns the comma-separated URLs of v without spaces, empty
// entries or a trailing slash: "https://a/ingest/" would be a path the
// aggregator does not serve (404), which the spool would retry until
// spool_max_age_s.
func urlList(v string) string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return strings.Join(out, ",")
}

// checkURLs reports the URLs of list (key's value, as urlList left it)
// that cannot be what key needs: one that is not an absolute http(s)
// URL fails every delivery (fetch throws "Invalid URL"), and one whose
// path does not end in path (the aggregator's endpoint) gets 404s,
// which the spool retries until spool_max_age_s. make run prints the
// aggregator's base URL, which is easy to paste as it is.
func checkURLs(key, list, path string) error {
	var errs []error
	for _, v := range strings.Split(list, ",") {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			want := "https://agg.example.com" + path
			if !strings.Contains(v, "://") {
				want = "http://" + v
				if !strings.HasSuffix(v, path) {
					want += path
				}
			}
			errs = append(errs, fmt.Errorf("%s %q is not an http(s) URL: no hit can be delivered; want e.g. %s", key, v, want))
			continue
		}
		if !strings.HasSuffix(u.Path, path) {
			errs = append(errs, fmt.Errorf("warning: %s %q: its path does not end in %s, where the aggregator takes them, so deliveries will likely get 404s; did you mean %s?", key, v, path, strings.TrimSuffix(v, u.Path)+path))
		}
	}
	return errors.Join(errs...)
}

// ParseConfig reads the keys above from env (Worker vars and secrets by
// name). A bad CORS entry is skipped and reported in the error, the rest
// applies, as in the Fastly module.
func ParseConfig(env func(key string) string) (Config, error) {
	c := Config{
		env:       env,
		IngestURL: urlList(env(ConfigIngestURL)),
		NDJSONURL: urlList(env(ConfigNDJSONURL)),
		// A secret kept in a file often ends in a newline; it is never part of it.
		Secret:    []byte(strings.TrimSpace(env(ConfigSecret))),
		LogToken:  strings.TrimSpace(env(ConfigLogToken)),
		Pop:       strings.TrimSpace(env(ConfigPop)),
		BatchWait: DefaultBatchWait,

		DeliveryDeadline: DefaultDeliveryDeadline,
		SpoolRetry:       DefaultSpoolRetry,
		SpoolRetryMax:    DefaultSpoolRetryMax,
		SpoolMaxBytes:    DefaultSpoolMaxBytes,
		SpoolMaxAge:      DefaultSpoolMaxAge,
		KVCache:          DefaultKVCache,
	}
	werr := errors.Join(
		duration(env, ConfigBatchWait, time.Millisecond, 0, maxBatchWait, &c.BatchWait),
		duration(env, ConfigDeliveryDeadline, time.Millisecond, 100*time.Millisecond, maxDeliveryDeadline, &c.DeliveryDeadline),
		duration(env, ConfigSpoolRetry, time.Millisecond, time.Millisecond, time.Hour, &c.SpoolRetry),
		duration(env, ConfigSpoolRetryMax, time.Millisecond, time.Millisecond, 24*time.Hour, &c.SpoolRetryMax),
		duration(env, ConfigSpoolMaxAge, time.Second, time.Second, MaxSpoolAge, &c.SpoolMaxAge),
		duration(env, ConfigKVCache, time.Millisecond, 0, maxKVCache, &c.KVCache),
	)
	if v := strings.TrimSpace(env(ConfigSpoolMaxBytes)); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			werr = errors.Join(werr, fmt.Errorf("%s %q: want bytes, at least 1; using %d", ConfigSpoolMaxBytes, v, DefaultSpoolMaxBytes))
		} else {
			c.SpoolMaxBytes = n
		}
	}
	c.SpoolRetryMax = max(c.SpoolRetryMax, c.SpoolRetry)
	for _, l := range []struct {
		key, path string
		list      *string
	}{{ConfigIngestURL, "/ingest", &c.IngestURL}, {ConfigNDJSONURL, "/ingest/ndjson", &c.NDJSONURL}} {
		var err error
		*l.list, err = dropExamples(l.key, *l.list, l.path)
		werr = errors.Join(werr, err, checkURLs(l.key, *l.list, l.path))
	}
	if c.NDJSONURL == "" && c.IngestURL != "" {
		var urls []string
		for _, u := range strings.Split(c.IngestURL, ",") {
			urls = append(urls, u+"/ndjson")
		}
		c.NDJSONURL = strings.Join(urls, ",")
	}
	var err, serr error
	c.Serve.Origins, err = pixel.ParseOrigins(env(pixel.ConfigCORSOrigins), env(pixel.ConfigCORSDefault))
	// Per-site settings, salts and pixel keys are vars and secrets under
	// the Fastly module's names (edge/pixel's site.go; visitor_salt_0/1,
	// pixel_key.SITE[.previous]). A Worker's environment is fixed per
	// deployment: salts that rotate without a redeploy come from the
	// KV namespace the JavaScript reads (Worker.SetSalts).
	c.Serve.Sites, serr = pixel.NewSites(env)
	serr = errors.Join(serr, readSalts(&c.Salts, env))
	c.Serve.PixelKeys = func(site string) [][]byte {
		var keys [][]byte
		for _, k := range storekeys.PixelKeys(site) {
			if v := pixelsign.Key([]byte(env(k))); len(v) > 0 {
				keys = append(keys, v)
			}
		}
		return keys
	}
	return c, errors.Join(err, serr, werr)
}

// duration reads key from env as a whole number of units between lo
// and hi into *d, leaving *d and returning an error when it is not one.
func duration(env func(string) string, key string, unit, lo, hi time.Duration, d *time.Duration) error {
	v := strings.TrimSpace(env(key))
	if v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < int64(lo/unit) || n > int64(hi/unit) {
		name := map[time.Duration]string{time.Millisecond: "milliseconds", time.Second: "seconds"}[unit]
		return fmt.Errorf("%s %q: want %s, %d to %d; using %d", key, v, name, lo/unit, hi/unit, *d/unit)
	}
	*d = time.Duration(n) * unit
	return nil
}

// readSalts sets the salts of s that env has (privacy.SaltKeys), leaving
// the others; a salt that does not parse is left and reported.
func readSalts(s *privacy.Salts, env func(key string) string) error {
	var err error
	for i, k := range privacy.SaltKeys {
		if v := env(k); v != "" {
			salt, perr := privacy.ParseSalt(v)
			if perr != nil {
				err = errors.Join(err, fmt.Errorf("%s: %w", k, perr))
				continue
			}
			s[i] = salt
		}
	}
	return err
}

// SettingsKeys are the keys of the per-site settings (edge/pixel's
// Sites and Origins) a Workers KV namespace may hold, besides site.SITE
// for each site its sites key lists (Worker.SettingsKeys). Each replaces
// the Worker var of its name; pixel keys stay Worker secrets.
var SettingsKeys = []string{pixel.ConfigSites, pixel.ConfigUnknownSites, pixel.ConfigSiteDefault, pixel.ConfigCORSOrigins, pixel.ConfigCORSDefault}

// SettingsKeys returns the settings keys still to read from KV, given
// the values read so far (have; "" for a key KV does not hold):
// SettingsKeys, then site.SITE for each site of the sites value read
// (or of the Worker's vars if KV has none). A caller reads what it is
// given and asks again until the answer is empty, then calls
// SetSettings with all it read.
func (w *Worker) SettingsKeys(have map[string]string) []string {
	var keys []string
	for _, k := range SettingsKeys {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		return keys
	}
	sites := have[pixel.ConfigSites]
	if sites == "" {
		sites = w.cfg.env(pixel.ConfigSites)
	}
	for _, site := range pixel.SiteList(sites) {
		if k := pixel.ConfigSitePrefix + site; site != "" {
			if _, ok := have[k]; !ok {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// SetSettings replaces the per-site settings and CORS origins with those
// read through get (from KV, under SettingsKeys and site.SITE), each key
// get has no value for ("") falling back to the Worker's var. A bad
// value is reported in the error, and what parses applies, as in
// ParseConfig.
func (w *Worker) SetSettings(get func(key string) string) error {
	// Sites reads a site.SITE value, and reports it if bad, when the
	// site is first served: fromKV says where the value just read came
	// from, so that the report names its source.
	fromKV := false
	merged := func(k string) string {
		if v := get(k); v != "" {
			fromKV = true
			return v
		}
		fromKV = false
		return w.cfg.env(k)
	}
	origins, err := pixel.ParseOrigins(merged(pixel.ConfigCORSOrigins), merged(pixel.ConfigCORSDefault))
	sites, serr := pixel.NewSites(merged)
	var varErrors func(error)
	if old := w.cfg.Serve.Sites; old != nil {
		varErrors = old.Errors
	}
	sites.Errors = func(err error) {
		switch {
		case fromKV && w.SettingsErrors != nil:
			w.SettingsErrors(err)
		case !fromKV && varErrors != nil:
			varErrors(err)
		}
	}
	w.cfg.Serve.Origins, w.cfg.Serve.Sites = origins, sites
	return errors.Join(err, serr)
}

// SetSalts replaces the visitor-id salts with those get has under
// privacy.SaltKeys (from the Workers KV namespace edgepixel-salt writes);
// a key get has no value for, or one that does not parse, keeps its salt.
func (w *Worker) SetSalts(get func(key string) string) error {
	return readSalts(&w.salts, get)
}

// Salts returns the salts the worker uses now.
func (w *Worker) Salts() privacy.Salts { return w.salts }

// Worker is one isolate's edgepixel. Not safe for concurrent use: an
// isolate runs one piece of JavaScript, and so one call into Go, at a
// time.
type Worker struct {
	cfg   Config
	slots []*slot
	idle  []int  // indexes of idle slots, most recently used last
	open  int    // index of the open batch's slot, -1 if none
	batch uint32 // the last batch id given out
	salts privacy.Salts

	hit  pixel.Hit
	meta pixel.Meta
	req  *Request
	resp pixel.Response
	out  Delivery

	// SettingsErrors, when set, receives a bad site.SITE value read
	// from KV (SetSettings) when its site is first served; a bad var
	// goes to Config.Serve.Sites.Errors, so that each is reported under
	// the source it must be fixed in.
	SettingsErrors func(error)
	// NoSalt, when set, is told the first time in a UTC day that the
	// worker serves a hit without a visitor-id salt for it: its events
	// then carry no visitor id and are counted as no_salt, which is a
	// configuration problem (no SALTS binding and no visitor_salt_*
	// secrets, an empty SALTS, or secrets not rotated) that nothing else
	// says.
	NoSalt    func(now time.Time)
	noSaltDay int32 // the day NoSalt was last told of
	// OverSalt, when set, is told at most once an hour while a hit is
	// served of each salt that serves a day that is over
	// (privacy.OverWarning, less privacy.RotationGrace): the rotation
	// that deletes it has not run, which nothing else says on Workers
	// (edgepixel-pop warns of it at its reloads).
	OverSalt      func(warning string)
	overSaltCheck int64 // the hour (unix seconds / 3600) of the last check
	// NoPixelKey, when set, is told once per site (up to
	// maxNoPixelKeySites) that a hit of a site whose settings check
	// signatures found no pixel_key.SITE secret: CheckPixelKeys sees at
	// start only the sites the vars name, and a site signing by its
	// settings in KV, or by site_default without a sites list, dropped
	// every hit as unsigned with nothing said (a tester's). secret is
	// the secret to put.
	NoPixelKey func(site, secret string)
	noKeySites map[string]bool

	spooled    uint64        // events the spool has stored (Spooled)
	spoolEvs   []event.Event // SpoolDelivery's work space
	spoolLines []byte
}

// maxNoPixelKeySites bounds the sites Worker.NoPixelKey is told of, so
// that hits naming ever new sites cannot grow an isolate's memory.
const maxNoPixelKeySites = 1000

// New returns a worker serving with c.
func New(c Config) *Worker {
	w := &Worker{cfg: c, open: -1, salts: c.Salts}
	if w.cfg.env == nil {
		w.cfg.env = func(string) string { return "" }
	}
	w.cfg.Serve.Salts = func(now time.Time) *privacy.Salts {
		if day := privacy.Day(now); day != w.noSaltDay {
			if _, ok := w.salts.For(day); !ok {
				w.noSaltDay = day
				if w.NoSalt != nil {
					w.NoSalt(now)
				}
			}
		}
		if hour := now.Unix() / 3600; hour != w.overSaltCheck && w.OverSalt != nil {
			w.overSaltCheck = hour
			for i, s := range w.salts {
				if m := privacy.OverWarning(privacy.SaltKeys[i], s, now.Add(-privacy.RotationGrace), "edgepixel-salt --cf-kv NAMESPACE_ID, once a day after 00:30 UTC,"); m != "" {
					w.OverSalt(m)
				}
			}
		}
		return &w.salts
	}
	if keys := w.cfg.Serve.PixelKeys; keys != nil {
		w.cfg.Serve.PixelKeys = func(site string) [][]byte {
			k := keys(site)
			if len(k) == 0 && w.NoPixelKey != nil && !w.noKeySites[site] && len(w.noKeySites) < maxNoPixelKeySites {
				if w.noKeySites == nil {
					w.noKeySites = map[string]bool{}
				}
				site = string(append([]byte(nil), site...)) // site may point into the request's buffers
				w.noKeySites[site] = true
				w.NoPixelKey(site, storekeys.PixelKeys(site)[0])
			}
			return k
		}
	}
	w.hit.Meta = w.readMeta
	w.hit.Body = w.readBody
	w.hit.Header = func(name string) string { return w.req.Header(name) }
	return w
}

// Config returns the worker's configuration.
func (w *Worker) Config() *Config { return &w.cfg }

// Serve answers r, putting its events into the open batch. The response
// is valid until the next call of Serve.
//
// A batch id other than 0 names the batch that holds r's events, or the
// counts (hits, drops) it changed: the caller keeps r's waitUntil open until
// that batch's delivery has ended, and starts the delivery (Next with
// Start) once: after the batch's wait (Config.BatchWait) from when the
// id was first given out, or at once when due is true (the batch is
// full, or has waited long enough: it is closed already). The same id
// is given to every request whose events join the batch.
func (w *Worker) Serve(r *Request, now time.Time) (resp *pixel.Response, batch uint32, due bool) {
	w.req = r
	w.hit.Method = r.Method
	w.hit.Path, w.hit.RawQuery = splitURL(r.URL)
	w.meta.Now = now
	i := w.openSlot(r, now)
	s := w.slots[i]
	pixel.Serve(&w.hit, &w.cfg.Serve, &s.b, now, &w.resp)
	w.req = nil
	if !s.b.Pending() {
		return &w.resp, 0, false // nothing to deliver
	}
	// Counts alone (a request that brought no event, only a drop) get a
	// batch too: an isolate may serve nothing after it, and counts left
	// waiting for a later request would go with it when it is evicted.
	if s.batch == 0 {
		w.batch = w.batch%maxBatchID + 1
		s.batch = w.batch
	}
	if s.b.Due(now) {
		w.close(i)
		return &w.resp, s.batch, true
	}
	return &w.resp, s.batch, false
}

// maxBatchID bounds batch ids: the exports give the JavaScript an id
// and a flag in one uint32.
const maxBatchID = 1<<31 - 1

// close ends the open batch i's collecting: later hits go to another.
func (w *Worker) close(i int) {
	if w.open == i {
		w.open = -1
	}
	w.slots[i].state = stateStart
}

func (w *Worker) readMeta() *pixel.Meta {
	m := &w.meta
	r := w.req
	m.ClientIP = r.Header("cf-connecting-ip")
	m.UserAgent = r.Header("user-agent")
	m.Referer = r.Header("referer")
	m.Country = r.CF.Country
	m.Region, m.City = r.CF.Region, r.CF.City
	m.ASN = 0
	if n, err := strconv.ParseUint(r.CF.ASN, 10, 32); err == nil {
		m.ASN = uint32(n)
	}
	m.BotScore, m.BotReason = cfBotScore(r.CF.BotScore)
	m.SecGPC, m.DNT = r.Header("sec-gpc"), r.Header("dnt")
	m.SecPurpose, m.Purpose, m.XPurpose, m.XMoz = r.Header("sec-purpose"), r.Header("purpose"), r.Header("x-purpose"), r.Header("x-moz")
	m.SecCHUA = r.Header("sec-ch-ua")
	m.Pop = w.pop(r)
	m.Rand = rand.Reader
	return m
}

// cfBotScore maps Cloudflare's bot score (1: automated, 2-29: likely
// automated, 30-99: likely human; "verified" for a verified bot) onto
// edge/enrich/bot's scale (0 person ... 100 program; event.BotScoreMin
// and more a bot) and a reason; 0 when there is none. A score that
// means human is 0, no verdict: any platform score above the edge's own
// makes the event's bot_reason "platform" (edge/pixel readRequest), and
// turning 30-99 around (to 70-1) stored people as flagged by the
// platform, and those Cloudflare scored 30-50 as bots. An automated
// score is turned around, to 71-99.
func cfBotScore(s string) (uint8, string) {
	if s == "verified" {
		return 100, "verified_bot"
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n >= cfHumanScore {
		return 0, ""
	}
	return uint8(100 - n), ""
}

// cfHumanScore is the least of Cloudflare's bot scores that it calls
// likely human.
const cfHumanScore = 30

func (w *Worker) pop(r *Request) string {
	switch {
	case w.cfg.Pop != "":
		return w.cfg.Pop
	case r.CF.Colo != "":
		return r.CF.Colo
	}
	return "unknown"
}

func (w *Worker) readBody(max int) ([]byte, error) {
	b := w.req.Body
	if len(b) > max+1 {
		b = b[:max+1]
	}
	return b, nil
}

// Outcomes the caller reports to Next.
const (
	Start     = 0 // begin the delivery Serve's handle names
	Delivered = 1 // the last Delivery was acknowledged (2xx)
	Failed    = 2 // the last Delivery failed after its retries, or was refused
)

// Delivery is one HTTP POST the caller makes for a delivery.
type Delivery struct {
	URL    string
	Header []pixel.Field
	Body   []byte
	// Retry says whether a failure with a status outside 400, 401 and 413
	// may be retried with the same bytes; a refusal with those never is
	// (see pixel.ErrRejected).
	Retry bool
	// Fallback marks the fallback's NDJSON lines (else a batch).
	Fallback bool
	// Spool marks the last resort: Body (a batch, as pixel.Batcher took
	// it) goes to the worker's spool (see Spool), not to URL. Delivered
	// means the spool has stored it, or counted its events lost, durably.
	Spool bool
}

// Next advances the delivery of batch h after outcome and returns the
// next POST to make, or nil when the delivery has ended (its slot is then
// idle and h invalid). Start closes the batch if it is still open. The
// Delivery is valid until the next call of Next or Serve.
func (w *Worker) Next(h uint32, outcome int) (*Delivery, error) {
	i := -1
	for j, s := range w.slots {
		if h != 0 && s.batch == h && s.state != stateIdle {
			i = j
			break
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("worker: no batch %d", h)
	}
	s := w.slots[i]
	if s.state == stateSpool && outcome == Delivered {
		w.spooled += uint64(s.b.Len())
		defer func() { w.spooled -= uint64(s.b.Len()) }()
	}
	if s.state == stateOpen {
		if outcome != Start {
			return nil, fmt.Errorf("worker: outcome %d for batch %d, which is not out", outcome, h)
		}
		w.close(i)
	}
	d, err := w.step(s, outcome)
	if d == nil {
		w.release(i)
	}
	return d, err
}

func (w *Worker) step(s *slot, outcome int) (*Delivery, error) {
	now := time.Now()
	switch {
	case s.state == stateStart, s.state != stateStart && outcome == Delivered:
		if s.state != stateStart {
			s.b.Delivered() // by batch or by its NDJSON lines
		}
		r, ok := s.b.Take(w.secret(), now)
		if !ok {
			return nil, nil // nothing (more) to send
		}
		s.sent, s.ts, s.sig = r.Body, r.Timestamp, r.Signature
		if len(w.cfg.Secret) == 0 || w.cfg.IngestURL == "" {
			// No batches without their secret or URL: straight to the
			// fallback, which may have a log token.
			return w.fallback(s)
		}
		s.state = stateBatch
		return w.delivery(w.cfg.IngestURL, wire.ContentType, s.sent, s.ts, s.sig, true), nil
	case s.state == stateBatch && outcome == Failed:
		return w.fallback(s)
	case s.state == stateFallback && outcome == Failed:
		// The aggregators took neither form: the batch goes to the
		// spool (when the worker has one; the caller answers Failed at
		// once when not), which keeps it on disk and delivers it later.
		// The bytes are the batch as taken, event ids and counts
		// included; the spool signs them afresh when it sends them.
		s.state = stateSpool
		d := w.delivery("", wire.ContentType, s.sent, "", "", false)
		d.Spool = true
		return d, nil
	case s.state == stateSpool && outcome == Failed:
		n := s.b.Len()
		s.b.Lost(now)
		return nil, fmt.Errorf("worker: %d events lost (%s): no delivery path took them", n-s.b.Len(), wire.DropDeliveryFailed)
	}
	return nil, fmt.Errorf("worker: outcome %d in state %d", outcome, s.state)
}

// fallback turns the captured batch into the fallback's NDJSON lines.
func (w *Worker) fallback(s *slot) (*Delivery, error) {
	evs, c, err := wire.DecodeBatch(s.evs[:0], s.sent)
	s.evs = evs
	if err != nil { // our own encoding: a bug
		return nil, fmt.Errorf("worker: decoding the batch for the fallback: %v", err)
	}
	s.lines = AppendNDJSON(s.lines[:0], evs, c)
	clear(s.evs) // drop the strings
	s.state = stateFallback
	if w.cfg.NDJSONURL == "" {
		return w.step(s, Failed)
	}
	var ts, sig string
	if len(w.cfg.Secret) > 0 {
		t := time.Now().Unix()
		ts, sig = strconv.FormatInt(t, 10), wire.Sign(w.cfg.Secret, t, s.lines)
	}
	d := w.delivery(w.cfg.NDJSONURL, "application/x-ndjson", s.lines, ts, sig, true)
	d.Fallback = true
	if sig == "" && w.cfg.LogToken != "" {
		d.Header = append(d.Header, pixel.Field{Name: "Authorization", Value: "Bearer " + w.cfg.LogToken})
	}
	return d, nil
}

// AppendNDJSON appends evs and c as the NDJSON lines the aggregator's
// /ingest/ndjson takes (shared/wire's event and counters lines, each
// ended by '\n'): what pixel.Batcher.Spill writes for the same events
// and counts.
func AppendNDJSON(dst []byte, evs []event.Event, c *wire.Counters) []byte {
	for i := range evs {
		dst = wire.AppendEventLine(dst, &evs[i], event.ID{}, nil)
		dst = append(dst, '\n')
	}
	if c != nil && len(c.Sites) > 0 {
		dst = wire.AppendCountersLine(dst, c)
		dst = append(dst, '\n')
	}
	return dst
}

func (w *Worker) delivery(url, ctype string, body []byte, ts, sig string, retry bool) *Delivery {
	d := &w.out
	d.URL, d.Body, d.Retry, d.Fallback, d.Spool = url, body, retry, false, false
	d.Header = append(d.Header[:0], pixel.Field{Name: "Content-Type", Value: ctype})
	if sig != "" {
		d.Header = append(d.Header,
			pixel.Field{Name: wire.HeaderTimestamp, Value: ts},
			pixel.Field{Name: wire.HeaderSignature, Value: sig})
	}
	return d
}

// unsigned stands in for a missing secret where pixel.Batcher must sign
// to encode: the batch is then never sent, only turned into lines.
var unsigned = []byte("unsigned")

func (w *Worker) secret() []byte {
	if len(w.cfg.Secret) == 0 {
		return unsigned
	}
	return w.cfg.Secret
}

// openSlot returns the open batch's slot, opening one if there is none:
// an idle slot, or a new one if none is idle. An idle slot whose counts
// are due (losses counted after its last delivery) goes first, so that
// later batches, which would otherwise reuse one slot for ever, deliver
// every slot's counts.
func (w *Worker) openSlot(r *Request, now time.Time) int {
	if w.open >= 0 {
		return w.open
	}
	w.open = w.take(r, now)
	w.slots[w.open].state = stateOpen
	return w.open
}

func (w *Worker) take(r *Request, now time.Time) int {
	if n := len(w.idle); n > 0 {
		k := n - 1
		for j := range w.idle {
			if w.slots[w.idle[j]].b.Due(now) {
				k = j
				break
			}
		}
		i := w.idle[k]
		w.idle = append(w.idle[:k], w.idle[k+1:]...)
		return i
	}
	s := &slot{b: pixel.Batcher{MaxEvents: BatchEvents, MaxAge: w.cfg.BatchWait, MaxBuffered: wire.MaxEvents}}
	s.b.Counts.Pop = w.pop(r)
	w.slots = append(w.slots, s)
	return len(w.slots) - 1
}

func (w *Worker) release(i int) {
	w.slots[i].state = stateIdle
	w.slots[i].batch = 0
	w.idle = append(w.idle, i)
}

// Spooled returns how many events the worker has handed to the spool
// (deliveries that ended with Delivered in the spool step).
func (w *Worker) Spooled() uint64 { return w.spooled }

// Slots returns how many slots (edge instances) the worker has made.
func (w *Worker) Slots() int { return len(w.slots) }

// Counts returns the counts of all slots summed for site (for tests).
func (w *Worker) Counts(site string) wire.SiteCounts {
	t := wire.SiteCounts{Site: site}
	for _, s := range w.slots {
		t.Add(s.b.Counts.Get(site))
	}
	return t
}

type state int

const (
	stateIdle     state = iota
	stateOpen           // collecting the hits of requests
	stateStart          // closed, its delivery not begun
	stateBatch          // the batch s.sent is out
	stateFallback       // its lines s.lines are out
	stateSpool          // s.sent is with the spool
)

// slot is one delivery context: a Batcher and the bytes in flight.
type slot struct {
	b       pixel.Batcher
	state   state
	batch   uint32 // the id of the batch it holds; 0 while none was given out
	sent    []byte // the batch being delivered, as pixel.Batcher.Take signed it
	ts, sig string
	lines   []byte
	evs     []event.Event
}
