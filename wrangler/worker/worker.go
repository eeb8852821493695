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
// A Workers isolate can be evicted at any moment once no request is
// running, with no hook to flush what it holds, so no event waits in
// memory for a later request: each request delivers its own events in
// its ctx.waitUntil, after its response. Delivery uses pixel.Batcher,
// one per "slot": a request takes an idle slot, serves into its
// Batcher, and holds the slot until its delivery ended, so concurrent
// requests of one isolate never share events in flight. A slot is an
// edge instance in the counters' sense (its own instance id, cumulative
// counts), reused by later requests, so an isolate reports as few
// instances as it ever had requests delivering at once.
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
//  3. When that fails too, the events are counted as lost
//     (pixel.DropDeliveryFailed) in the slot's counts, which ride on the
//     slot's next delivery.
//
// What an evicted isolate held in a delivery that had not ended is lost
// without a count, as with a Fastly instance killed mid-flush.
package worker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
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
)

// Config is the worker's configuration, from the Worker's environment.
type Config struct {
	Serve     pixel.Config
	IngestURL string
	NDJSONURL string
	Secret    []byte
	LogToken  string
	Pop       string
}

// ParseConfig reads the keys above from env (Worker vars and secrets by
// name). A bad CORS entry is skipped and reported in the error, the rest
// applies, as in the Fastly module.
func ParseConfig(env func(key string) string) (Config, error) {
	c := Config{
		IngestURL: strings.TrimSpace(env(ConfigIngestURL)),
		NDJSONURL: strings.TrimSpace(env(ConfigNDJSONURL)),
		// A secret kept in a file often ends in a newline; it is never part of it.
		Secret:   []byte(strings.TrimSpace(env(ConfigSecret))),
		LogToken: strings.TrimSpace(env(ConfigLogToken)),
		Pop:      strings.TrimSpace(env(ConfigPop)),
	}
	if c.NDJSONURL == "" && c.IngestURL != "" {
		var urls []string
		for _, u := range strings.Split(c.IngestURL, ",") {
			if u = strings.TrimSpace(u); u != "" {
				urls = append(urls, strings.TrimSuffix(u, "/")+"/ndjson")
			}
		}
		c.NDJSONURL = strings.Join(urls, ",")
	}
	var err, serr error
	c.Serve.Origins, err = pixel.ParseOrigins(env(pixel.ConfigCORSOrigins), env(pixel.ConfigCORSDefault))
	// Per-site settings, salts and pixel keys are vars and secrets under
	// the Fastly module's names (edge/pixel's site.go; visitor_salt_0/1,
	// pixel_key.SITE[.previous]). A Worker's environment is fixed per
	// deployment: salts rotate by `wrangler secret put` from a daily job.
	c.Serve.Sites, serr = pixel.NewSites(env)
	var salts privacy.Salts
	for i, k := range privacy.SaltKeys {
		if v := env(k); v != "" {
			s, perr := privacy.ParseSalt(v)
			if perr != nil {
				serr = errors.Join(serr, fmt.Errorf("%s: %w", k, perr))
				continue
			}
			salts[i] = s
		}
	}
	c.Serve.Salts = func(time.Time) *privacy.Salts { return &salts }
	c.Serve.PixelKeys = func(site string) [][]byte {
		var keys [][]byte
		for _, k := range [...]string{"pixel_key." + site, "pixel_key." + site + ".previous"} {
			if v := strings.TrimSpace(env(k)); v != "" {
				keys = append(keys, []byte(v))
			}
		}
		return keys
	}
	return c, errors.Join(err, serr)
}

// Worker is one isolate's edgepixel. Not safe for concurrent use: an
// isolate runs one piece of JavaScript, and so one call into Go, at a
// time.
type Worker struct {
	cfg   Config
	slots []*slot
	idle  []int // indexes of idle slots, most recently used last

	hit  pixel.Hit
	meta pixel.Meta
	req  *Request
	resp pixel.Response
	out  Delivery
}

// New returns a worker serving with c.
func New(c Config) *Worker {
	w := &Worker{cfg: c}
	w.hit.Meta = w.readMeta
	w.hit.Body = w.readBody
	w.hit.Header = func(name string) string { return w.req.Header(name) }
	return w
}

// Config returns the worker's configuration.
func (w *Worker) Config() *Config { return &w.cfg }

// Serve answers r. The response is valid until the next call of Serve.
// A handle other than 0 names the delivery r started: the caller drives
// it with Next after answering the visitor.
func (w *Worker) Serve(r *Request, now time.Time) (resp *pixel.Response, handle uint32) {
	w.req = r
	w.hit.Method = r.Method
	w.hit.Path, w.hit.RawQuery = splitURL(r.URL)
	w.meta.Now = now
	i := w.take(r, now)
	s := w.slots[i]
	pixel.Serve(&w.hit, &w.cfg.Serve, &s.b, now, &w.resp)
	w.req = nil
	if s.b.Len() == 0 && !s.b.Due(now) {
		// Nothing to deliver yet: drop counts wait for the slot's next
		// delivery, at most until Due says they have waited enough.
		w.release(i)
		return &w.resp, 0
	}
	s.state = stateStart
	return &w.resp, uint32(i + 1)
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

// cfBotScore maps Cloudflare's bot score (1: surely automated ... 99:
// surely human; "verified" for a verified bot) onto edge/enrich/bot's
// scale (0 person ... 100 program) and a reason; 0 when there is none.
func cfBotScore(s string) (uint8, string) {
	if s == "verified" {
		return 100, "verified_bot"
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 99 {
		return 0, ""
	}
	return uint8(100 - n), ""
}

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
}

// Next advances the delivery h after outcome and returns the next POST to
// make, or nil when the delivery has ended (its slot is then idle and h
// invalid). The Delivery is valid until the next call of Next or Serve.
func (w *Worker) Next(h uint32, outcome int) (*Delivery, error) {
	i := int(h) - 1
	if i < 0 || i >= len(w.slots) || w.slots[i].state == stateIdle {
		return nil, fmt.Errorf("worker: no delivery %d", h)
	}
	s := w.slots[i]
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
		n := s.b.Len()
		s.b.Lost(now)
		return nil, fmt.Errorf("worker: %d events lost (%s): no delivery path took them", n-s.b.Len(), pixel.DropDeliveryFailed)
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
	d.URL, d.Body, d.Retry = url, body, retry
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

// take returns an idle slot for r, making one if none is idle. An idle
// slot whose counts are due (losses counted after its last delivery)
// goes first, so that sequential requests, which would otherwise reuse
// one slot for ever, deliver every slot's counts.
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
	s := &slot{b: pixel.Batcher{MaxEvents: wire.MaxEvents, MaxAge: 200 * time.Millisecond, MaxBuffered: wire.MaxEvents}}
	s.b.Counts.Pop = w.pop(r)
	w.slots = append(w.slots, s)
	return len(w.slots) - 1
}

func (w *Worker) release(i int) {
	w.slots[i].state = stateIdle
	w.idle = append(w.idle, i)
}

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
	stateIdle state = iota
	stateStart
	stateBatch    // the batch s.sent is out
	stateFallback // its lines s.lines are out
)

// slot is one delivery context: a Batcher and the bytes in flight.
type slot struct {
	b       pixel.Batcher
	state   state
	sent    []byte // the batch being delivered, as pixel.Batcher.Take signed it
	ts, sig string
	lines   []byte
	evs     []event.Event
}
