// Package ingest is the aggregator's ingest endpoints. POST /ingest takes
// signed binary batches from the edge; POST /ingest/ndjson takes
// newline-delimited JSON events from CDN log streaming. Both authenticate
// the request, check it, and append it to the spool. The 200 answer means
// the request is on disk; storing it is the loader's job, so ingest stays
// fast and keeps accepting while Redis or ClickHouse are down.
//
// Whole requests are rejected (4xx, counted in
// edgepixel_aggregator_dropped_total) when they cannot be trusted or read:
// bad signature, undecodable framing, too large. Single events that are
// invalid become bad rows instead, spooled with the request's good events
// and stored in the bad_rows table (counted in
// edgepixel_aggregator_bad_rows_total).
//
// Bodies may be compressed (Content-Encoding gzip or zstd). The HMAC
// signature covers the body as sent, so a request is authenticated before
// anything is decompressed; MaxBody bounds both the body as sent and what
// it decompresses to.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Reasons a request is rejected: the "reason" of the JSON answer and the
// label of edgepixel_aggregator_dropped_total.
const (
	ReasonMethod          = "method"           // 405: not POST
	ReasonContentType     = "content_type"     // 415: not wire.ContentType
	ReasonContentEncoding = "content_encoding" // 415: a Content-Encoding other than gzip or zstd
	ReasonTooLarge        = "too_large"        // 413: body, or its decompressed form, over the limit
	ReasonReadError       = "read_error"       // 400: body could not be read
	ReasonBadEncoding     = "bad_encoding"     // 400: body does not decompress with its Content-Encoding
	ReasonBadSignature    = "bad_signature"    // 401: missing or wrong HMAC
	ReasonBadToken        = "bad_token"        // 401: wrong or unconfigured bearer token (NDJSON)
	ReasonStale           = "stale"            // 401: timestamp outside the replay window
	ReasonMalformed       = "malformed"        // 400: not a valid batch
	ReasonTooManyEvents   = "too_many_events"  // 413: more than wire.MaxEvents
	ReasonSpoolFull       = "spool_full"       // 503: loader behind; retry later
	ReasonShuttingDown    = "shutting_down"    // 503: retry later
	ReasonSpoolError      = "spool_error"      // 500: the spool could not write
)

// Reasons an event or line becomes a bad row rather than an event: the
// reason column of the bad_rows table and the label of
// edgepixel_aggregator_bad_rows_total. They never reject the request.
const (
	ReasonInvalidEvent = "invalid_event" // fails event.Validate (or a bad event_id or props in NDJSON)
	ReasonBadTime      = "bad_time"      // time missing, unreadable, or far from now
	ReasonBadJSON      = "bad_json"      // an NDJSON line that is not a JSON object of the event fields
	ReasonLineTooLong  = "line_too_long" // an NDJSON line over MaxLine
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
}

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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cfg.Logger.With("component", "ingest")
	return &handler{cfg: cfg, ndjson: ndjson}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.reject(w, r, http.StatusMethodNotAllowed, ReasonMethod, "use POST")
		return
	}
	if h.cfg.Failing != nil {
		if err := h.cfg.Failing(); err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Seconds())))
			h.reject(w, r, http.StatusServiceUnavailable, ReasonShuttingDown, "the aggregator is failing and restarts; retry later")
			return
		}
	}
	if h.ndjson {
		h.serveNDJSON(w, r)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != wire.ContentType {
		h.reject(w, r, http.StatusUnsupportedMediaType, ReasonContentType, "Content-Type must be "+wire.ContentType)
		return
	}
	coding, ok := h.coding(w, r)
	if !ok {
		return
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return
	}
	now := h.cfg.Now()
	if !h.verifySignature(w, r, raw, now) {
		return
	}
	body, ok := h.decompress(w, r, coding, raw)
	if !ok {
		return
	}
	if n, err := wire.Count(body); n > wire.MaxEvents {
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooManyEvents, fmt.Sprintf("%d events, at most %d", n, wire.MaxEvents))
		return
	} else if err != nil {
		h.reject(w, r, http.StatusBadRequest, ReasonMalformed, err.Error())
		return
	}
	evs, err := wire.Decode(nil, body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, ReasonMalformed, err.Error())
		return
	}
	// An event that fails validation or has a time outside the window
	// becomes a bad row; the batch's other events are accepted. (The edge
	// validates before it sends, so these are bugs or forgeries: kept for
	// inspection, not retried.)
	var bad []record.BadRow
	var isBad map[int]bool
	for i := range evs {
		if reason, err := h.check(&evs[i], now); err != nil {
			js, _ := json.Marshal(&evs[i])
			bad = append(bad, record.NewBadRow(now.UnixMilli(), record.SourceWire, evs[i].Site, reason,
				fmt.Sprintf("event %d: %v", i, err), js))
			if isBad == nil {
				isBad = map[int]bool{}
			}
			isBad[i] = true
		}
	}
	var batches [][]byte
	nGood := len(evs) - len(bad)
	switch {
	case len(bad) == 0:
		batches = [][]byte{body} // the common case: spool the batch as signed
	case nGood > 0:
		good := make([]event.Event, 0, nGood)
		for i := range evs {
			if !isBad[i] {
				good = append(good, evs[i])
			}
		}
		batches = [][]byte{wire.Append(nil, good)}
	}
	h.spool(w, r, batches, nGood, bad)
}

// check returns why e cannot be stored (a bad-row reason and the error), or
// a nil error.
func (h *handler) check(e *event.Event, now time.Time) (string, error) {
	if err := e.Validate(); err != nil {
		return ReasonInvalidEvent, err
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
	if !ok {
		return
	}
	// A bearer token is checked before the body is read; HMAC headers need
	// the body.
	bearer := r.Header.Get("Authorization") != ""
	if bearer && !h.verifyToken(w, r) {
		return
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return
	}
	now := h.cfg.Now()
	if !bearer && !h.verifySignature(w, r, raw, now) {
		return
	}
	body, ok := h.decompress(w, r, coding, raw)
	if !ok {
		return
	}
	var good []event.Event
	var bad []record.BadRow
	splitLines(body, func(line []byte) {
		e, err := ParseLine(line)
		reason := ""
		site := ""
		if le, ok := err.(*LineError); ok {
			reason, site = le.Reason, le.Site
		} else if err == nil {
			reason, err = h.check(&e, now)
			site = e.Site
		}
		if err != nil {
			bad = append(bad, record.NewBadRow(now.UnixMilli(), record.SourceNDJSON, site, reason, err.Error(), line))
			return
		}
		good = append(good, e)
	})
	// One record for the whole request, holding as many wire batches as
	// its events need (a batch holds at most wire.MaxEvents).
	var batches [][]byte
	for lo := 0; lo < len(good); lo += wire.MaxEvents {
		batches = append(batches, wire.Append(nil, good[lo:min(lo+wire.MaxEvents, len(good))]))
	}
	h.spool(w, r, batches, len(good), bad)
}

// spool appends one record with batches and bad rows and answers. The
// answer is 200 once both are durable; bad rows are reported, not
// retried: sending them again cannot make them good.
func (h *handler) spool(w http.ResponseWriter, r *http.Request, batches [][]byte, nGood int, bad []record.BadRow) {
	if len(batches) == 0 && len(bad) == 0 {
		writeJSON(w, http.StatusOK, map[string]int{"accepted": 0, "bad": 0})
		return
	}
	// The append is not cancelled with the request: once it started, let it
	// finish, so a client that gave up does not leave a half-known state.
	if err := h.cfg.Spool.Append(context.WithoutCancel(r.Context()), record.Encode(batches, bad)); err != nil {
		switch {
		case errors.Is(err, spool.ErrFull):
			w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Seconds())))
			h.reject(w, r, http.StatusServiceUnavailable, ReasonSpoolFull, "the aggregator is behind storing events; retry later")
		case errors.Is(err, spool.ErrClosed):
			w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Seconds())))
			h.reject(w, r, http.StatusServiceUnavailable, ReasonShuttingDown, "the aggregator is shutting down; retry later")
		default:
			h.cfg.Logger.Error("spool append failed", "err", err)
			h.reject(w, r, http.StatusInternalServerError, ReasonSpoolError, "could not write the batch to disk")
		}
		return
	}
	h.cfg.Metrics.AcceptedBatches.Add(1)
	h.cfg.Metrics.AcceptedEvents.Add(uint64(nGood))
	for i := range bad {
		h.cfg.Metrics.BadRow(bad[i].Reason, 1)
	}
	if len(bad) > 0 {
		h.cfg.Logger.Debug("bad rows kept", "count", len(bad), "first_reason", bad[0].Reason, "first_error", bad[0].Error, "remote", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": nGood, "bad": len(bad)})
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
	return false
}

// verifyToken checks "Authorization: Bearer <token>" against LogToken in
// constant time (both sides are hashed first, so not even the length
// leaks).
func (h *handler) verifyToken(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.LogToken == "" {
		h.reject(w, r, http.StatusUnauthorized, ReasonBadToken, "no ingest token is configured (--log-token); sign the body with the HMAC headers instead")
		return false
	}
	if !TokenMatches(r.Header.Get("Authorization"), h.cfg.LogToken) {
		h.reject(w, r, http.StatusUnauthorized, ReasonBadToken, "Authorization must be Bearer and the configured ingest token")
		return false
	}
	return true
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

func (h *handler) decompress(w http.ResponseWriter, r *http.Request, coding string, raw []byte) ([]byte, bool) {
	body, err := decompress(coding, raw, h.cfg.MaxBody)
	switch {
	case err == nil:
		return body, true
	case errors.Is(err, errTooLarge):
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body decompresses to more than %d bytes", h.cfg.MaxBody))
	default:
		h.reject(w, r, http.StatusBadRequest, ReasonBadEncoding, err.Error())
	}
	return nil, false
}

// readBody reads the body as sent (compressed or not), at most MaxBody
// bytes; over that it answers 413.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > h.cfg.MaxBody {
		h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
		return nil, false
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := io.Copy(&buf, http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
		} else {
			h.reject(w, r, http.StatusBadRequest, ReasonReadError, "could not read the body")
		}
		return nil, false
	}
	return buf.Bytes(), true
}

func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	h.cfg.Metrics.Drop(reason)
	h.cfg.Logger.Debug("rejected", "reason", reason, "status", status, "remote", r.RemoteAddr, "msg", msg)
	writeJSON(w, status, map[string]string{"error": msg, "reason": reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
