// Package ingest is the aggregator's ingest endpoints. POST /ingest takes
// signed binary batches from the edge; POST /ingest/ndjson takes
// newline-delimited JSON events from CDN log streaming. Both authenticate
// the request, check it, and append it to the spool. The 200 answer means
// the request is on disk; storing it is the loader's job, so ingest stays
// fast and keeps accepting while Redis or ClickHouse are down.
//
// Edge counters (shared/wire, counters.go) arrive in version 2 batches
// and in NDJSON lines (an event line's "counts", or a counters line). They
// are checked like events (a record that fails becomes a bad row,
// invalid_counters or bad_time; the request's events are still accepted)
// and spooled with the request's events, merged to one record per
// instance: they are cumulative, so copies and retries are harmless.
//
// Whole requests are rejected (4xx, counted in
// edgepixel_aggregator_dropped_total) when they cannot be trusted or read:
// bad signature, undecodable framing, too large. Single events that are
// invalid become bad rows instead, spooled with the request's good events
// and stored in the bad_rows table (counted in
// edgepixel_aggregator_bad_rows_total by the loader, once per row id).
//
// Strangers cost little: everything that can be judged before the body
// is read is (method, content type and coding, declared length, the
// credential brake, a bearer token, the signature headers' form and
// timestamp window); the body is read into pooled memory that grows only
// as bytes arrive, charged to a Budget shared by all requests; and the
// work that needs the body (decompressing, decoding) starts only once its
// signature is checked.
//
// Bodies may be compressed (Content-Encoding gzip or zstd). The HMAC
// signature covers the body as sent, so a request is authenticated before
// anything is decompressed; MaxBody bounds both the body as sent and what
// it decompresses to.
//
// A request's events and bad rows are spooled in records of bounded size
// (RecordBytes, wire.MaxEvents events), appended as they are produced: a
// large NDJSON request becomes several records, never one the spool cannot
// take. The answer is 200 once all are durable. If an append fails midway
// the request is answered 503 and the sender retries it whole; the records
// already spooled are then spooled again, and deduplicated by the loader
// (event ids, and line ids derived from the line) and the bad_rows table
// (row ids derived from the input).
package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Reasons a request is rejected: the "reason" of the JSON answer and the
// label of edgepixel_aggregator_dropped_total.
const (
	ReasonMethod          = "method"                // 405: not POST
	ReasonContentType     = "content_type"          // 415: not wire.ContentType
	ReasonContentEncoding = "content_encoding"      // 415: a Content-Encoding other than gzip or zstd
	ReasonTooLarge        = "too_large"             // 413: body, or its decompressed form, over the limit
	ReasonReadError       = "read_error"            // 400: body could not be read (the client went away)
	ReasonBodyTimeout     = guard.ReasonBodyTimeout // 408: the body did not arrive within the body timeout
	ReasonBadEncoding     = "bad_encoding"          // 400: body does not decompress with its Content-Encoding
	ReasonBadSignature    = wire.ReasonBadSignature // 401: missing or wrong HMAC
	ReasonBadToken        = "bad_token"             // 401: wrong or unconfigured bearer token (NDJSON)
	ReasonStale           = wire.ReasonStale        // 401: timestamp outside the replay window
	ReasonRateLimited     = guard.ReasonRateLimited // 429: too many failed credentials from the address; retry later
	ReasonMalformed       = "malformed"             // 400: not a valid batch
	ReasonTooManyEvents   = "too_many_events"       // 413: more than wire.MaxEvents
	ReasonOverloaded      = "overloaded"            // 503: request bodies in progress hold the memory budget; retry later
	ReasonSpoolFull       = "spool_full"            // 503: loader behind; retry later
	ReasonShuttingDown    = "shutting_down"         // 503: stopping or failing; retry later
	ReasonSpoolError      = "spool_error"           // 503: the spool could not write (the process restarts); retry later
)

// dropReasons and badRowReasons are the reasons above, declared to the
// metrics at start (metrics.DeclareDrops).
var (
	dropReasons = []string{ReasonMethod, ReasonContentType, ReasonContentEncoding, ReasonTooLarge, ReasonReadError, ReasonBodyTimeout,
		ReasonBadEncoding, ReasonBadSignature, ReasonBadToken, ReasonStale, ReasonRateLimited, ReasonMalformed, ReasonTooManyEvents,
		ReasonOverloaded, ReasonSpoolFull, ReasonShuttingDown, ReasonSpoolError}
	badRowReasons = []string{ReasonInvalidEvent, ReasonBadEventID, ReasonBadURL, ReasonBadTime, ReasonBadJSON, ReasonLineTooLong, ReasonUnknownSite, ReasonInvalidCounters}
)

// Reasons an event or line becomes a bad row rather than an event: the
// reason column of the bad_rows table and the label of
// edgepixel_aggregator_bad_rows_total. They never reject the request.
const (
	ReasonInvalidEvent = "invalid_event" // fails event.Validate (or a bad event_id or props in NDJSON)
	ReasonBadEventID   = "bad_event_id"  // an NDJSON client_event_id that event.ParseClientIDSkewed refuses
	ReasonBadURL       = "bad_url"       // an NDJSON url or referrer that urlescape.NoPage refuses, as the edge does (wire.DropBadURL)
	ReasonBadTime      = "bad_time"      // time missing, unreadable, or far from now
	ReasonBadJSON      = "bad_json"      // an NDJSON line that is not a JSON object of the event fields
	ReasonLineTooLong  = "line_too_long" // an NDJSON line over MaxLine
	ReasonUnknownSite  = "unknown_site"  // a site not in Config.Sites (when a list is configured)
	// ReasonInvalidCounters: edge counters that fail wire.Counters.Validate.
	// Counters with a time outside the window are bad_time.
	ReasonInvalidCounters = "invalid_counters"
)

// Appender is where accepted batches go (a *spool.Spool).
type Appender interface {
	Append(ctx context.Context, payload []byte) error
}

// Config configures the handlers. Secret and Spool are required.
type Config struct {
	Secret []byte
	// LogToken, if set, lets NDJSON requests authenticate with
	// "Authorization: Bearer <LogToken>" instead of the HMAC headers: CDN
	// log streaming can send a fixed header but cannot sign each body.
	LogToken     string
	Spool        Appender
	MaxBody      int64         // default 4 MiB
	ReplayWindow time.Duration // accepted signature timestamp skew; default 5 min
	// MaxEventAge and MaxEventAhead bound event times relative to now
	// (defaults 7 days and 1 hour). The edge stamps events itself, so a
	// time outside is a broken clock or a forgery; it would also land in a
	// far-off ClickHouse partition, or overflow DateTime.
	MaxEventAge   time.Duration
	MaxEventAhead time.Duration
	RetryAfter    time.Duration // sent with 503; default 5 s
	// Sites, if not empty, is the list of sites events may be for; events
	// for other sites become bad rows (unknown_site), kept in bad_rows so
	// they can be reclassified if a site was left out by mistake.
	Sites []string
	// Budget bounds the memory request bodies hold at once (see Budget);
	// nil: no bound. Share one between the handlers.
	Budget *Budget
	// Limiter brakes credential guessing per client address; nil: none.
	Limiter *guard.AuthLimiter
	// RecordBytes is the size at which a request's events and bad rows are
	// cut into another spool record; default 1 MiB. A binary batch with no
	// bad rows is spooled as signed, whatever its size (at most MaxBody).
	RecordBytes int
	// Failing, if set, returns why the aggregator is failing (it is about
	// to exit and be restarted); batches are then refused with 503, so the
	// sender retries against the restarted process.
	Failing func() error
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time // for tests; default time.Now
}

type handler struct {
	cfg    Config
	ndjson bool
	sites  map[string]bool // nil: any site
	// plusAsSpace is LogToken as it arrives when it was written unescaped
	// in a URL query (a POP's log endpoint), which decodes each '+' as a
	// space; "" when LogToken has no '+'. A token that fails but equals it
	// gets a warning (warnPlus) instead of only the credential summary.
	plusAsSpace string
	// lastPlusWarn is when that warning was last logged (unix nanoseconds).
	lastPlusWarn atomic.Int64
}

// plusWarnEvery is how often at most the '+' decoded as space warning is
// logged: once is enough to be seen, while a POP that keeps retrying its
// queue would otherwise fill the log.
const plusWarnEvery = 10 * time.Minute

// New returns the /ingest handler: signed binary batches from the edge.
func New(cfg Config) http.Handler { return newHandler(cfg, false) }

// NewNDJSON returns the /ingest/ndjson handler: newline-delimited JSON
// events from CDN log streaming, authenticated by the HMAC headers or the
// bearer LogToken.
func NewNDJSON(cfg Config) http.Handler { return newHandler(cfg, true) }

func newHandler(cfg Config, ndjson bool) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 5 * time.Minute
	}
	if cfg.MaxEventAge <= 0 {
		cfg.MaxEventAge = 7 * 24 * time.Hour
	}
	if cfg.MaxEventAhead <= 0 {
		cfg.MaxEventAhead = time.Hour
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	cfg.Metrics.DeclareDrops(dropReasons...)
	cfg.Metrics.DeclareBadRows(badRowReasons...)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RecordBytes <= 0 {
		cfg.RecordBytes = DefaultRecordBytes
	}
	cfg.Logger = cfg.Logger.With("component", "ingest")
	h := &handler{cfg: cfg, ndjson: ndjson}
	if strings.Contains(cfg.LogToken, "+") {
		// Trimmed as TokenMatches trims the presented token: a '+' at
		// either end arrives as a space the header loses.
		h.plusAsSpace = strings.TrimSpace(strings.ReplaceAll(cfg.LogToken, "+", " "))
	}
	if len(cfg.Sites) > 0 {
		h.sites = map[string]bool{}
		for _, s := range cfg.Sites {
			h.sites[s] = true
		}
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.reject(w, r, http.StatusMethodNotAllowed, ReasonMethod, "use POST")
		return
	}
	if h.cfg.Failing != nil {
		if err := h.cfg.Failing(); err != nil {
			h.failing(w, r, err)
			return
		}
	}
	if h.ndjson {
		h.serveNDJSON(w, r)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != wire.ContentType {
		// Named with the other path: a log endpoint pointed here rather
		// than at /ingest/ndjson was told only to send a batch (a
		// tester's).
		h.reject(w, r, http.StatusUnsupportedMediaType, ReasonContentType, "Content-Type must be "+wire.ContentType+" (signed batches); NDJSON lines, from a log endpoint or an import, go to /ingest/ndjson")
		return
	}
	coding, ok := h.coding(w, r)
	if !ok || !h.declaredLength(w, r) || !h.allow(w, r) {
		return
	}
	now := h.cfg.Now()
	if !h.checkSignatureHeaders(w, r, now) {
		return
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return
	}
	defer raw.free()
	if !h.verifySignature(w, r, raw.Bytes(), now) {
		return
	}
	body, dec, ok := h.decompress(w, r, coding, raw.Bytes())
	if !ok {
		return
	}
	defer dec.free()
	// Authenticated: decoding may take its share of the budget (the events
	// take about twice the body, with their structs).
	work := decodeWork(int64(len(body)))
	if !h.cfg.Budget.acquire("", work) {
		h.overloaded(w, r)
		return
	}
	defer h.cfg.Budget.release("", work)
	if n, err := wire.Count(body); n > wire.MaxEvents {
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooManyEvents, fmt.Sprintf("%d events, at most %d", n, wire.MaxEvents))
		return
	} else if err != nil {
		h.reject(w, r, http.StatusBadRequest, ReasonMalformed, err.Error())
		return
	}
	evs, counters, err := wire.DecodeBatch(nil, body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, ReasonMalformed, err.Error())
		return
	}
	// An event that fails validation, has a time outside the window or is
	// for a site not on the list becomes a bad row; the batch's other
	// events are accepted. (The edge validates before it sends, so invalid
	// ones are bugs or forgeries: kept for inspection, not retried.) So do
	// invalid counters.
	// Every event keeps what its consent tier keeps (event.ApplyPrivacy),
	// whatever built it: the edge applies the rule too, so an edge's batch
	// is unchanged and spooled as signed; one it changes is spooled event
	// by event, as cleared. Clearing is not dropping.
	sp := h.newSpooler(r)
	nBad, changed := 0, false
	for i := range evs {
		was := evs[i]
		if evs[i].ApplyPrivacy(); evs[i] != was {
			changed = true
		}
		if _, err := h.check(&evs[i], now); err != nil {
			nBad++
		}
	}
	countsReason, countsErr := "", error(nil)
	if counters != nil {
		countsReason, countsErr = h.checkCounters(counters, now)
	}
	if nBad == 0 && !changed && countsErr == nil {
		// The common case: spool the batch as signed, one record.
		if len(evs) > 0 || counters != nil {
			sp.whole(body, len(evs))
		}
	} else {
		if counters != nil {
			if countsErr == nil {
				sp.counters(counters)
			} else {
				sp.badRow(record.NewBadRow(now.UnixMilli(), record.SourceWire, "", countsReason, countsErr.Error(),
					wire.AppendCountersLine(nil, counters)))
			}
		}
		per := len(body)/max(len(evs), 1) + 1
		for i := range evs {
			reason, err := h.check(&evs[i], now)
			if err == nil {
				sp.event(evs[i], per)
				continue
			}
			js, _ := json.Marshal(&evs[i])
			sp.badRow(record.NewBadRow(now.UnixMilli(), record.SourceWire, evs[i].Site, reason,
				fmt.Sprintf("event %d: %v", i, err), js))
		}
	}
	h.finish(w, r, sp)
}

// checkCounters returns why c cannot be stored (a bad-row reason and the
// error), or a nil error: c must be valid and its times within the window
// events are held to.
func (h *handler) checkCounters(c *wire.Counters, now time.Time) (string, error) {
	if err := c.Validate(); err != nil {
		return ReasonInvalidCounters, err
	}
	lo, hi := now.Add(-h.cfg.MaxEventAge).UnixMilli(), now.Add(h.cfg.MaxEventAhead).UnixMilli()
	for i := range c.Sites {
		if t := c.Sites[i].Time; t < lo || t > hi {
			return ReasonBadTime, fmt.Errorf("counters of site %q: time %s is not within %v before to %v after now",
				c.Sites[i].Site, time.UnixMilli(t).UTC().Format(time.RFC3339), h.cfg.MaxEventAge, h.cfg.MaxEventAhead)
		}
	}
	return "", nil
}

// check returns why e cannot be stored (a bad-row reason and the error), or
// a nil error.
func (h *handler) check(e *event.Event, now time.Time) (string, error) {
	if err := e.Validate(); err != nil {
		return ReasonInvalidEvent, err
	}
	if h.sites != nil && !h.sites[e.Site] {
		return ReasonUnknownSite, fmt.Errorf("site %q is not on the aggregator's site list (--sites)", e.Site)
	}
	if t := e.Time; t < now.Add(-h.cfg.MaxEventAge).UnixMilli() || t > now.Add(h.cfg.MaxEventAhead).UnixMilli() {
		return ReasonBadTime, fmt.Errorf("time %s is not within %v before to %v after now",
			time.UnixMilli(t).UTC().Format(time.RFC3339), h.cfg.MaxEventAge, h.cfg.MaxEventAhead)
	}
	return "", nil
}

// serveNDJSON takes newline-delimited JSON events, as CDN log streaming
// (Fastly's HTTPS logging endpoint and the like) delivers them. The
// Content-Type is not checked: log shippers send text/plain,
// application/x-ndjson, application/json and others.
func (h *handler) serveNDJSON(w http.ResponseWriter, r *http.Request) {
	coding, ok := h.coding(w, r)
	if !ok || !h.declaredLength(w, r) || !h.allow(w, r) {
		return
	}
	// A bearer token is checked before the body is read; HMAC headers need
	// the body, but their form and timestamp do not.
	now := h.cfg.Now()
	bearer := r.Header.Get("Authorization") != ""
	if bearer && !h.verifyToken(w, r) || !bearer && !h.checkSignatureHeaders(w, r, now) {
		return
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return
	}
	defer raw.free()
	if !bearer && !h.verifySignature(w, r, raw.Bytes(), now) {
		return
	}
	// Lines are turned into events and bad rows and spooled a record at a
	// time: the work space is about two records, whatever the body holds.
	work := ndjsonWork(h.cfg.RecordBytes)
	if !h.cfg.Budget.acquire("", work) {
		h.overloaded(w, r)
		return
	}
	defer h.cfg.Budget.release("", work)
	body, dec, ok := h.decompress(w, r, coding, raw.Bytes())
	if !ok {
		return
	}
	defer dec.free()
	sp := h.newSpooler(r)
	splitLines(body, func(line []byte) bool {
		l, err := parseLine(line)
		reason := ""
		site := ""
		if le, ok := err.(*LineError); ok {
			reason, site = le.Reason, le.Site
		} else if err == nil && l.event {
			reason, err = h.check(&l.Event, now)
			site = l.Event.Site
		}
		if err != nil {
			sp.badRow(record.NewBadRow(now.UnixMilli(), record.SourceNDJSON, site, reason, err.Error(), line))
		} else if l.event {
			sp.event(l.Event, len(line))
		}
		if l.counters != nil {
			if reason, err := h.checkCounters(l.counters, now); err != nil {
				sp.badRow(record.NewBadRow(now.UnixMilli(), record.SourceNDJSON, site, reason, err.Error(), line))
			} else {
				sp.counters(l.counters)
			}
		}
		return sp.err == nil
	})
	h.finish(w, r, sp)
}

// spooler appends a request's events and bad rows to the spool as records
// of at most RecordBytes (about) and wire.MaxEvents events, as they are
// produced. After an append fails it takes nothing more; err says why.
type spooler struct {
	h    *handler
	r    *http.Request
	good []event.Event
	size int // estimated bytes of the pending record
	bad  []record.BadRow
	err  error

	accepted, nbad int // spooled so far
	records        int
	// counts are the request's counters, merged; spooled with the last
	// record.
	counts wire.Merger
	final  bool // the last flush: counters go with it
}

// counters adds a valid counters record.
func (s *spooler) counters(c *wire.Counters) { s.counts.Add(c) }

func (h *handler) newSpooler(r *http.Request) *spooler { return &spooler{h: h, r: r} }

// event adds e, whose wire form takes about size bytes.
func (s *spooler) event(e event.Event, size int) {
	if s.err != nil {
		return
	}
	s.good = append(s.good, e)
	s.size += size
	if len(s.good) >= wire.MaxEvents || s.size >= s.h.cfg.RecordBytes {
		s.flush()
	}
}

func (s *spooler) badRow(b record.BadRow) {
	if s.err != nil {
		return
	}
	s.bad = append(s.bad, b)
	s.size += 64 + len(b.Site) + len(b.Reason) + len(b.Error) + len(b.Raw)
	if s.size >= s.h.cfg.RecordBytes {
		s.flush()
	}
}

// whole spools a signed batch of n valid events as it is.
func (s *spooler) whole(batch []byte, n int) {
	if s.append(batch) {
		s.accepted += n
	}
}

func (s *spooler) flush() {
	var counters []wire.Counters
	if s.final {
		counters = s.counts.Result()
	}
	if s.err != nil || len(s.good) == 0 && len(s.bad) == 0 && len(counters) == 0 {
		return
	}
	var batches [][]byte
	if len(s.good) > 0 {
		batches = [][]byte{wire.Append(nil, s.good)}
	}
	if s.append(record.Encode(batches, s.bad, counters)) {
		s.accepted += len(s.good)
		s.nbad += len(s.bad)
	}
	clear(s.good) // drop the strings
	s.good, s.bad, s.size = s.good[:0], s.bad[:0], 0
}

// append writes one record. The append is not cancelled with the request:
// once it started, let it finish, so a client that gave up does not leave
// a half-known state.
func (s *spooler) append(p []byte) bool {
	if err := s.h.cfg.Spool.Append(context.WithoutCancel(s.r.Context()), p); err != nil {
		s.err = err
		return false
	}
	s.records++
	return true
}

// finish spools what is pending and answers: 200 once everything is
// durable (bad rows are reported, not retried: sending them again cannot
// make them good), else 503 with Retry-After.
func (h *handler) finish(w http.ResponseWriter, r *http.Request, s *spooler) {
	s.final = true
	s.flush()
	h.cfg.Metrics.AcceptedEvents.Add(uint64(s.accepted))
	if s.err != nil {
		switch {
		case errors.Is(s.err, spool.ErrFull):
			h.retryLater(w, r, h.cfg.RetryAfter, ReasonSpoolFull, "the aggregator is behind storing events; retry later")
		case errors.Is(s.err, spool.ErrClosed):
			h.retryLater(w, r, h.cfg.RetryAfter, ReasonShuttingDown, "the aggregator is shutting down; retry later")
		case errors.Is(s.err, spool.ErrNoSpace):
			// The spool logs when the disk fills and when it has room.
			h.retryLater(w, r, h.cfg.RetryAfter, ReasonSpoolError, spoolErrorMessage(s.err))
		default:
			// The spool failed: the process exits and is restarted.
			h.cfg.Logger.Error("spool append failed", "err", s.err)
			h.retryLater(w, r, h.cfg.RetryAfter, ReasonSpoolError, spoolErrorMessage(s.err))
		}
		return
	}
	if s.records > 0 {
		h.cfg.Metrics.AcceptedBatches.Add(1)
	}
	if s.nbad > 0 {
		h.cfg.Logger.Debug("bad rows kept", "count", s.nbad, "remote", r.RemoteAddr)
	}
	reply.JSON(w, http.StatusOK, map[string]int{"accepted": s.accepted, "bad": s.nbad})
}

// coding reads Content-Encoding; an unsupported one is answered 415.
func (h *handler) coding(w http.ResponseWriter, r *http.Request) (string, bool) {
	c, err := parseEncoding(r.Header.Get("Content-Encoding"))
	if err != nil {
		h.reject(w, r, http.StatusUnsupportedMediaType, ReasonContentEncoding, err.Error())
		return "", false
	}
	return c, true
}

// declaredLength refuses a body declared larger than MaxBody before any
// of it is read.
func (h *handler) declaredLength(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > h.cfg.MaxBody {
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
		return false
	}
	return true
}

// allow applies the credential brake: an address whose credentials
// failed too often is refused before its credential is evaluated.
func (h *handler) allow(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.Limiter == nil {
		return true
	}
	ok, after := h.cfg.Limiter.Allow(r.RemoteAddr)
	if !ok {
		h.retryLater(w, r, after, ReasonRateLimited, "too many failed credentials from your address; retry later")
	}
	return ok
}

func (h *handler) credentialFailed(r *http.Request, kind string) {
	if h.cfg.Limiter != nil {
		h.cfg.Limiter.Fail(r.RemoteAddr, kind)
	} else {
		h.cfg.Metrics.AuthFailure(kind)
	}
}

// checkSignatureHeaders checks what the HMAC headers say on their own,
// before the body is read: both present, the timestamp unix seconds
// within the replay window, the signature 64 hex digits (wire.Verify
// checks all of it again with the body).
func (h *handler) checkSignatureHeaders(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	tsH, sigH := r.Header.Get(wire.HeaderTimestamp), r.Header.Get(wire.HeaderSignature)
	var msg string
	ts, err := strconv.ParseInt(tsH, 10, 64)
	switch _, herr := hex.DecodeString(sigH); {
	case tsH == "" || sigH == "":
		msg = fmt.Sprintf("unsigned: send %s (unix seconds) and %s (hex HMAC-SHA256 of the timestamp and body under the shared --secret, as shared/wire.Sign computes it)", wire.HeaderTimestamp, wire.HeaderSignature)
		if h.ndjson {
			msg += ", or Authorization: Bearer with the aggregator's --log-token"
		}
	case err != nil:
		msg = "malformed signature headers: " + wire.HeaderTimestamp + " is not unix seconds"
	case herr != nil || len(sigH) != 2*sha256.Size:
		msg = "malformed signature headers: " + wire.HeaderSignature + " is not a hex HMAC-SHA256 (64 hex digits)"
	default:
		if d := now.Sub(time.Unix(ts, 0)); d > h.cfg.ReplayWindow || d < -h.cfg.ReplayWindow {
			h.credentialFailed(r, guard.CredSignature)
			h.reject(w, r, http.StatusUnauthorized, ReasonStale, wire.ErrStale.Error())
			return false
		}
		return true
	}
	h.credentialFailed(r, guard.CredSignature)
	h.reject(w, r, http.StatusUnauthorized, ReasonBadSignature, msg)
	return false
}

func (h *handler) verifySignature(w http.ResponseWriter, r *http.Request, body []byte, now time.Time) bool {
	err := wire.Verify(h.cfg.Secret, r.Header.Get(wire.HeaderTimestamp), r.Header.Get(wire.HeaderSignature), body, now, h.cfg.ReplayWindow)
	switch {
	case err == nil:
		return true
	case errors.Is(err, wire.ErrStale):
		h.reject(w, r, http.StatusUnauthorized, ReasonStale, err.Error())
	default:
		h.reject(w, r, http.StatusUnauthorized, ReasonBadSignature, err.Error())
	}
	h.credentialFailed(r, guard.CredSignature)
	return false
}

// verifyToken checks "Authorization: Bearer <token>" against LogToken in
// constant time (both sides are hashed first, so not even the length
// leaks).
func (h *handler) verifyToken(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.LogToken == "" {
		h.credentialFailed(r, guard.CredLogToken)
		h.reject(w, r, http.StatusUnauthorized, ReasonBadToken, "no ingest token is configured (--log-token); sign the body with the HMAC headers instead")
		return false
	}
	auth := r.Header.Get("Authorization")
	if !TokenMatches(auth, h.cfg.LogToken) {
		h.credentialFailed(r, guard.CredLogToken)
		msg := "Authorization must be Bearer and the configured ingest token"
		// Compared in constant time too; the branch depends on the
		// configured token alone (whether it has a '+').
		if h.plusAsSpace != "" && TokenMatches(auth, h.plusAsSpace) {
			h.warnPlus(r)
		}
		// A hint from what the client sent itself, so it tells nothing
		// of the configured token.
		if _, tok, ok := strings.Cut(strings.TrimSpace(auth), " "); ok && strings.Contains(strings.TrimSpace(tok), " ") {
			msg += "; the token sent has a space in it: a '+' written in a URL query arrives as a space, so write it as %2B"
		}
		h.reject(w, r, http.StatusUnauthorized, ReasonBadToken, msg)
		return false
	}
	return true
}

// warnPlus logs, at most once per plusWarnEvery, that a bearer token
// failed only because its '+' arrived as spaces: the credential summary
// (guard) says no more than log_token=N, and nothing on the aggregator's
// side looks wrong. The token itself is never logged.
func (h *handler) warnPlus(r *http.Request) {
	now := h.cfg.Now().UnixNano()
	last := h.lastPlusWarn.Load()
	if last != 0 && now-last < int64(plusWarnEvery) || !h.lastPlusWarn.CompareAndSwap(last, now) {
		return
	}
	h.cfg.Logger.Warn("a bearer token was refused that is --log-token with each '+' turned into a space: "+
		"the sender put the token in a URL query (a POP's --log-endpoint ...?header=Authorization:Bearer%20TOKEN), which decodes '+' as a space; "+
		"write each '+' there as %2B, or use a URL-safe token: head -c 24 /dev/urandom | base64 | tr '+/' '-_' (on the aggregator's --log-token and the sender alike)",
		"remote", r.RemoteAddr, "every", plusWarnEvery)
}

// TokenMatches reports whether an Authorization header value is "Bearer
// token", comparing the token in constant time.
func TokenMatches(header, token string) bool {
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) || token == "" {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(prefix):])))
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// decompress returns the body decoded with coding: raw itself without a
// coding, else a buffer (free it) holding the decoded bytes.
func (h *handler) decompress(w http.ResponseWriter, r *http.Request, coding string, raw []byte) ([]byte, *buffer, bool) {
	if coding == "" {
		return raw, nil, true
	}
	out := newBuffer(h.cfg.Budget, "") // authenticated: the total only
	err := decompress(coding, raw, h.cfg.MaxBody, out)
	switch {
	case err == nil:
		return out.Bytes(), out, true
	case errors.Is(err, errTooLarge):
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body decompresses to more than %d bytes", h.cfg.MaxBody))
	case errors.Is(err, errOverloaded):
		h.overloaded(w, r)
	default:
		h.reject(w, r, http.StatusBadRequest, ReasonBadEncoding, err.Error())
	}
	out.free()
	return nil, nil, false
}

// readBody reads the body as sent (compressed or not) into a buffer that
// grows as bytes arrive: at most MaxBody bytes (over that: 413), within
// the body deadline (package guard; past it: 408, and the connection is
// closed), and within the Budget (else 503). Free the buffer.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) (*buffer, bool) {
	buf := newBuffer(h.cfg.Budget, guard.ClientKey(r.RemoteAddr))
	err := buf.readAll(r.Body, h.cfg.MaxBody)
	if err == nil {
		return buf, true
	}
	buf.free()
	switch {
	case errors.Is(err, errTooLarge):
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
	case errors.Is(err, errOverloaded):
		h.overloaded(w, r)
	case guard.IsTimeout(err):
		w.Header().Set("Connection", "close")
		h.reject(w, r, http.StatusRequestTimeout, ReasonBodyTimeout, "the body did not arrive in time")
	default:
		h.reject(w, r, http.StatusBadRequest, ReasonReadError, "could not read the body")
	}
	return nil, false
}

func (h *handler) overloaded(w http.ResponseWriter, r *http.Request) {
	h.retryLater(w, r, time.Second, ReasonOverloaded, "the aggregator is reading too many request bodies at once; retry later")
}

// retryLater refuses with Retry-After: 503, or 429 for the rate limit.
// failing answers a request that came while the aggregator fails with
// err and is about to exit. A spool that cannot write is named as such,
// with the system's reason (a full disk needs its owner, not only the
// restart); the paths in err stay in the log and on /healthz.
func (h *handler) failing(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, spool.ErrFailed) {
		h.retryLater(w, r, h.cfg.RetryAfter, ReasonShuttingDown, "the aggregator is failing and restarts; retry later")
		return
	}
	h.retryLater(w, r, h.cfg.RetryAfter, ReasonSpoolError, spoolErrorMessage(err))
}

// spoolErrorMessage is the answer to a batch the spool could not write
// (err): the system's reason when there is one, such as "no space left
// on device", without the paths err holds, and whether the aggregator
// restarts (a failed spool) or goes on (a disk with no room, which its
// owner frees).
func spoolErrorMessage(err error) string {
	msg := "the aggregator's spool cannot write"
	var errno syscall.Errno
	if errors.As(err, &errno) {
		msg += " (" + errno.Error() + ")"
	}
	if errors.Is(err, spool.ErrNoSpace) {
		return msg + "; retry later"
	}
	return msg + "; the aggregator restarts; retry later"
}

func (h *handler) retryLater(w http.ResponseWriter, r *http.Request, after time.Duration, reason, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((after+time.Second-1)/time.Second))))
	status := http.StatusServiceUnavailable
	if reason == ReasonRateLimited {
		status = http.StatusTooManyRequests
	}
	h.reject(w, r, status, reason, msg)
}

func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	h.cfg.Metrics.Drop(reason)
	h.cfg.Logger.Debug("rejected", "reason", reason, "status", status, "remote", r.RemoteAddr, "msg", msg)
	reply.JSON(w, status, map[string]string{"error": msg, "reason": reason})
}
