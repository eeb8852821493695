// Command edgepixel is the edge module: built with GOOS=wasip1 GOARCH=wasm it
// runs on Fastly Compute and under edgepixel's own POP (edge/cmd/edgepixel-pop).
//
// It answers the pixel (GET /p.gif) and event POSTs (POST /e) at once, then,
// with the visitor's response already sent, buffers the events and delivers
// them in signed batches to the "aggregator" backend, falling back to a
// log endpoint when the aggregator cannot take them (deliver.go). A warm
// instance serves many requests (a reusable sandbox), so events from many
// visitors share one delivery; an instance that sits idle for MaxAge
// delivers what it holds, and one that then stays idle exits. Every hit is counted, and the
// counts travel with the events (edge/pixel, counters.go).
// The serving loop and delivery call the ABI directly (edge/hostcall):
// fsthttp's per-request setup dominated a hit's cost, and its backend
// send needs a goroutine scheduler (see hostcall.BackendRequest); stores
// and log endpoints use compute-sdk-go.
//
// Configuration comes from the config store "edgepixel" (all keys optional:
// pop, backend (one backend name or several, comma-separated: see
// deliver.go), ingest_url, batch_max_events, batch_max_age_ms,
// cors_origins, cors_default (see pixel.Origins), the delivery keys of
// deliver.go: journal, fallback_log_endpoint, log_endpoint, and the
// enrichment keys of enrich.go: per-site settings and rate limits) and the
// secret store "edgepixel" (key aggregator_secret, required to deliver
// batches, not used when log_endpoint is set; the visitor salts and pixel
// keys of enrich.go).
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/hostcall"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/fastly/compute-sdk-go/configstore"
	"github.com/fastly/compute-sdk-go/secretstore"
)

// config is read once per instance, not per request: store lookups are
// hostcalls and the values do not change during an instance's life.
type config struct {
	pop string
	// backends are the aggregators' backend names, in order: config key
	// "backend", one name or several separated by commas (see send).
	backends  []string
	ingestURL string
	secret    []byte
	// logName, when set, delivers events as NDJSON lines to this log
	// endpoint (Fastly's real-time log streaming batches and posts them to
	// the aggregator's /ingest/ndjson) instead of signed batches to the
	// backend: no backend or secret is needed at the edge.
	logName string
	// journalName and fallbackName: see deliver.go.
	journalName, fallbackName string
	// serve is what pixel.Serve is configured with, parsed once here.
	serve pixel.Config
}

var (
	cfg     config
	batcher = pixel.Batcher{MaxEvents: 500, MaxAge: 200 * time.Millisecond, MaxBuffered: 20000}
)

func main() {
	cfg = loadConfig()
	setupDelivery(&cfg)
	serveMany()
	finish()
}

// maxLifetime bounds how long one instance serves, as fsthttp.ServeMany's
// MaxLifetime would: a long-lived instance's heap only grows.
const maxLifetime = 5 * time.Minute

// serveMany answers requests until the platform has no more for this
// instance (a reusable sandbox) and flushes the batch when it is due, after
// each visitor has been answered. Waiting no longer than a batch may age
// for the next request bounds how stale a buffered event can get when
// traffic stops (next); an instance that then stays idle, holding nothing,
// ends, and main flushes whatever is left.
func serveMany() {
	began := time.Now()
	r, err := hostcall.Downstream()
	if err != nil {
		panic(err)
	}
	v := newVisitor()
	for {
		// One clock reading a hit: the batch is due, or not, as of the
		// hit's arrival, and the next hit looks again.
		now := time.Now()
		v.serve(r, now)
		if batcher.Due(now) {
			flush()
		}
		if now.Sub(began) > maxLifetime {
			return
		}
		var ok bool
		r, ok, err = next()
		if err != nil {
			fmt.Fprintf(os.Stderr, "edgepixel: waiting for the next request: %v\n", err)
			return
		}
		if !ok {
			return
		}
	}
}

// idleWait is how long an instance that holds nothing to deliver waits
// for its next request before it ends. Ending as soon as a batch's age
// passed made a host start instances again and again under steady load,
// where some of its pool always sits idle for a moment, and a guest's
// start (its runtime's initialisation and collections) costs many hits.
const idleWait = 5 * time.Second

// next waits for the next request. While the batcher holds events or
// unreported counts it waits no longer than a batch may age; when that
// passes it delivers them and waits again, for up to idleWait. It reports
// false when no request came in that time, when the platform has none
// to give, and when a delivery left events buffered (the instance then
// ends, and finish takes them every way it can). Counts alone that could
// not be delivered keep the instance, which tries them again waiting
// twice as long each time, up to idleWait: an aggregator that is down
// got an attempt and a log line every MaxAge from every idle instance.
func next() (hostcall.Request, bool, error) {
	countsWait := batcher.MaxAge
	for {
		pending := batcher.Pending()
		wait := idleWait
		if pending {
			wait = batcher.MaxAge
			if batcher.Len() == 0 {
				wait = countsWait
			}
		}
		r, ok, err := hostcall.Next(wait)
		if err != nil || ok || !pending {
			return r, ok, err
		}
		flush()
		if batcher.Len() > 0 {
			return r, false, nil
		}
		if batcher.Pending() {
			countsWait = min(2*countsWait, idleWait)
		}
	}
}

func loadConfig() config {
	c := config{pop: os.Getenv("FASTLY_POP"), ingestURL: storekeys.DefaultIngestURL}
	backends := ""
	if st, err := configstore.Open(storekeys.Store); err == nil {
		get := func(key string, dst *string) {
			if v, err := st.Get(key); err == nil && v != "" {
				*dst = v
			}
		}
		get(storekeys.Pop, &c.pop)
		get(wire.ConfigLogEndpoint, &c.logName)
		get(storekeys.Backend, &backends)
		get(storekeys.IngestURL, &c.ingestURL)
		get(wire.ConfigJournal, &c.journalName)
		get(wire.ConfigFallbackLogEndpoint, &c.fallbackName)
		var n, ms string
		get(storekeys.BatchMaxEvents, &n)
		get(storekeys.BatchMaxAgeMS, &ms)
		for _, p := range setBatchLimits(&batcher, n, ms) {
			fmt.Fprintf(os.Stderr, "edgepixel: config store edgepixel: %s\n", p)
		}
		var origins, def string
		get(pixel.ConfigCORSOrigins, &origins)
		get(pixel.ConfigCORSDefault, &def)
		var err error
		// Bad entries are skipped, the rest applies; say which.
		if c.serve.Origins, err = pixel.ParseOrigins(origins, def); err != nil {
			fmt.Fprintf(os.Stderr, "edgepixel: config store edgepixel: %v\n", err)
		}
		loadEnrichConfig(&c, func(key string) string { v, _ := st.Get(key); return v })
	} else {
		loadEnrichConfig(&c, func(string) string { return "" })
	}
	c.backends = storekeys.Backends(backends)
	if c.pop == "" {
		c.pop = "unknown"
	}
	if c.logName != "" {
		return c
	}
	secret, err := secretstore.Plaintext(storekeys.Store, storekeys.AggregatorSecret)
	// A secret kept in a file often ends in a newline; it is never part of it.
	secret = bytes.TrimSpace(secret)
	if err == nil && len(secret) == 0 {
		// An empty file: said now, as a missing one is, not at the first
		// delivery (found by a new-user tester).
		err = errors.New("it is empty")
	}
	if err != nil {
		// What still reaches the aggregator: each hit's journal line,
		// or the fallback's, which need no secret (a tester read
		// "cannot be delivered" of hits its journal stored).
		fate := "hits are answered but cannot be delivered"
		switch {
		case c.journalName != "":
			fate = "batches cannot be signed; each hit still reaches the aggregator through the journal log endpoint " + c.journalName
		case storekeys.FallbackLogEndpoint(c.fallbackName) != "":
			fate = "batches cannot be signed; hits go to the fallback log endpoint instead"
		}
		fmt.Fprintf(os.Stderr, "edgepixel: no secret edgepixel/aggregator_secret (%v): %s\n", err, fate)
	}
	c.secret = secret
	return c
}

// setBatchLimits sets b's MaxEvents and MaxAge from the config values n
// (batch_max_events) and ms (batch_max_age_ms), "" for absent. A value
// that is not a whole number above 0 keeps b's, and a batch_max_events
// over wire.MaxEvents (the most one batch may carry) is lowered to it.
// Each such value is returned as a problem naming the value that applies
// instead, for stderr as the other keys' are: dropped or clamped
// silently, a typo looked as if it had applied.
func setBatchLimits(b *pixel.Batcher, n, ms string) (problems []string) {
	if n = strings.TrimSpace(n); n != "" {
		switch v, err := strconv.Atoi(n); {
		case err != nil || v <= 0:
			problems = append(problems, fmt.Sprintf("batch_max_events=%q is not a whole number of events above 0; %d applies", n, b.MaxEvents))
		case v > wire.MaxEvents:
			b.MaxEvents = wire.MaxEvents
			problems = append(problems, fmt.Sprintf("batch_max_events=%q is over %d, the most one batch may carry; %d applies", n, wire.MaxEvents, b.MaxEvents))
		default:
			b.MaxEvents = v
		}
	}
	if ms = strings.TrimSpace(ms); ms != "" {
		if v, err := strconv.Atoi(ms); err != nil || v <= 0 {
			problems = append(problems, fmt.Sprintf("batch_max_age_ms=%q is not a whole number of milliseconds above 0; %d applies", ms, b.MaxAge.Milliseconds()))
		} else {
			b.MaxAge = time.Duration(v) * time.Millisecond
		}
	}
	return problems
}

// visitor reads the current downstream request for pixel.Serve. One value
// lives for the whole instance and its buffers are reused, so a hit costs
// few allocations; Meta and Body are bound once, in main.
//
// The request's path, query, user agent, referer, address and country are
// strings over those buffers (bytesView), not copies: pixel.Serve keeps no
// string of a request beyond its call (its Batcher encodes events as they
// arrive), and the buffers are only rewritten by the next request.
type visitor struct {
	req           hostcall.Request
	uri, hdr, geo []byte
	ua, ref, ip   []byte
	body          []byte
	hints         hintBufs // enrich.go
	meta          pixel.Meta
	request       pixel.Hit
	resp          pixel.Response
}

// random feeds event ids: crypto/rand read 4 KiB at a time rather than
// once a hit, which was one more call into the host per hit.
var random = bufio.NewReaderSize(rand.Reader, 4096)

func newVisitor() *visitor {
	v := &visitor{}
	v.request.Meta = v.readMeta
	v.request.Body = v.readBody
	v.request.Header = v.header
	return v
}

// serve answers one request; the visitor's response is complete when it
// returns.
func (v *visitor) serve(r hostcall.Request, now time.Time) {
	v.req = r
	v.meta = pixel.Meta{}
	method, err := r.Method(v.hdr[:0])
	v.hdr = method // its room, for the next reading
	if err != nil {
		v.fail(err)
		return
	}
	v.request.Method = methodName(method)
	v.uri, err = r.URI(v.uri[:0])
	if err != nil {
		v.fail(err)
		return
	}
	v.request.Path, v.request.RawQuery = splitURI(v.uri)
	v.meta.Now = now
	pixel.Serve(&v.request, &cfg.serve, &batcher, now, &v.resp)
	v.request.Path, v.request.RawQuery = "", ""
	if err := v.send(); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: answering %s: %v\n", v.request.Path, err)
	}
}

// send answers with v.resp.
func (v *visitor) send() error {
	resp, err := hostcall.NewResponse(v.resp.Status)
	if err != nil {
		return err
	}
	for _, f := range v.resp.Header {
		if err := resp.AppendHeader(f.Name, f.Value); err != nil {
			return err
		}
	}
	return resp.Send(v.resp.Body)
}

// fail answers a request the module could not even read.
func (v *visitor) fail(err error) {
	fmt.Fprintf(os.Stderr, "edgepixel: reading the request: %v\n", err)
	if resp, err := hostcall.NewResponse(500); err == nil {
		resp.Send(nil)
	}
}

// splitURI returns the path and raw query of an absolute URI
// (scheme://authority/path?query), without net/url: parsing the whole URL
// showed up in profiles and only these two parts are used.
// Both point into uri (bytesView).
func splitURI(uri []byte) (path, rawQuery string) {
	s := uri
	if i := hostcall.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		// The authority ends at the first '/', '?' or '#'.
		if j := bytes.IndexAny(s, "/?#"); j >= 0 {
			s = s[j:]
		} else {
			s = nil
		}
	}
	if i := bytes.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	p, q := s, []byte(nil)
	if i := bytes.IndexByte(s, '?'); i >= 0 {
		p, q = s[:i], s[i+1:]
	}
	if len(p) == 0 {
		return "/", bytesView(q)
	}
	return bytesView(p), bytesView(q)
}

// bytesView is b as a string without a copy; b must not change while the
// string is in use (see visitor).
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// methodName is the request method as a string, without allocating one
// for the methods the edge answers (hostcall.Equal: TinyGo allocates for
// string(m) == s).
func methodName(m []byte) string {
	for _, s := range [...]string{"GET", "POST", "HEAD", "OPTIONS"} {
		if hostcall.Equal(m, s) {
			return s
		}
	}
	return string(m)
}

func (v *visitor) readMeta() *pixel.Meta {
	m := &v.meta
	m.Pop = cfg.pop
	m.Rand = random
	m.UserAgent = v.headerView("User-Agent", &v.ua)
	m.Referer = v.headerView("Referer", &v.ref)
	if ip, err := v.req.ClientIP(); err == nil {
		v.ip = ip.AppendTo(v.ip[:0])
		m.ClientIP = bytesView(v.ip)
		rec, err := hostcall.Geo(ip, v.geo[:0])
		v.geo = rec // kept even without a record: the room it grew to
		if err == nil {
			readGeo(m, rec)
		}
	}
	v.readHints(m)
	return m
}

// headerView reads a header into *buf and returns it as a view of it
// (bytesView), "" if absent.
func (v *visitor) headerView(name string, buf *[]byte) string {
	b, ok, err := v.req.Header(name, (*buf)[:0])
	*buf = b // kept even when absent: the room it grew to
	if !ok || err != nil {
		return ""
	}
	return bytesView(b)
}

func (v *visitor) header(name string) string {
	b, ok, err := v.req.Header(name, v.hdr[:0])
	v.hdr = b
	if !ok || err != nil {
		return ""
	}
	return string(b)
}

func (v *visitor) readBody(max int) ([]byte, error) {
	var err error
	v.body, err = v.req.ReadBody(v.body[:0], max)
	return v.body, err
}
