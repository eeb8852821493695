// Package ingest is the aggregator's POST /ingest endpoint: it
// authenticates a batch from the edge, checks it, and appends it to the
// spool. The 200 answer means the batch is on disk; storing it is the
// loader's job, so ingest stays fast and keeps accepting while Redis or
// ClickHouse are down.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Reasons a request is rejected: the "reason" of the JSON answer and the
// label of edgepixel_aggregator_dropped_total.
const (
	ReasonMethod        = "method"          // 405: not POST
	ReasonContentType   = "content_type"    // 415: not wire.ContentType
	ReasonTooLarge      = "too_large"       // 413: body over the limit
	ReasonReadError     = "read_error"      // 400: body could not be read
	ReasonBadSignature  = "bad_signature"   // 401: missing or wrong HMAC
	ReasonStale         = "stale"           // 401: timestamp outside the replay window
	ReasonMalformed     = "malformed"       // 400: not a valid batch
	ReasonTooManyEvents = "too_many_events" // 413: more than wire.MaxEvents
	ReasonInvalidEvent  = "invalid_event"   // 400: an event fails event.Validate
	ReasonBadTime       = "bad_time"        // 400: an event time far from now
	ReasonSpoolFull     = "spool_full"      // 503: loader behind; retry later
	ReasonShuttingDown  = "shutting_down"   // 503: retry later
	ReasonSpoolError    = "spool_error"     // 500: the spool could not write
)

// Appender is where accepted batches go (a *spool.Spool).
type Appender interface {
	Append(ctx context.Context, payload []byte) error
}

// Config configures the handler. Secret and Spool are required.
type Config struct {
	Secret       []byte
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
	Metrics       *metrics.Metrics
	Logger        *slog.Logger
	Now           func() time.Time // for tests; default time.Now
}

type handler struct{ cfg Config }

// New returns the /ingest handler.
func New(cfg Config) http.Handler {
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
	return &handler{cfg}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.reject(w, r, http.StatusMethodNotAllowed, ReasonMethod, "use POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != wire.ContentType {
		h.reject(w, r, http.StatusUnsupportedMediaType, ReasonContentType, "Content-Type must be "+wire.ContentType)
		return
	}
	body, err := h.readBody(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
		} else {
			h.reject(w, r, http.StatusBadRequest, ReasonReadError, "could not read the body")
		}
		return
	}
	now := h.cfg.Now()
	if err := wire.Verify(h.cfg.Secret, r.Header.Get(wire.HeaderTimestamp), r.Header.Get(wire.HeaderSignature), body, now, h.cfg.ReplayWindow); err != nil {
		if errors.Is(err, wire.ErrStale) {
			h.reject(w, r, http.StatusUnauthorized, ReasonStale, err.Error())
		} else {
			h.reject(w, r, http.StatusUnauthorized, ReasonBadSignature, err.Error())
		}
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
	oldest, newest := now.Add(-h.cfg.MaxEventAge).UnixMilli(), now.Add(h.cfg.MaxEventAhead).UnixMilli()
	for i := range evs {
		// One bad event rejects the batch: the edge validates before it
		// sends, so this is a bug or forgery, not something to salvage.
		if err := evs[i].Validate(); err != nil {
			h.reject(w, r, http.StatusBadRequest, ReasonInvalidEvent, fmt.Sprintf("event %d: %v", i, err))
			return
		}
		if t := evs[i].Time; t < oldest || t > newest {
			h.reject(w, r, http.StatusBadRequest, ReasonBadTime, fmt.Sprintf("event %d: time %s is not within %v before to %v after now",
				i, time.UnixMilli(t).UTC().Format(time.RFC3339), h.cfg.MaxEventAge, h.cfg.MaxEventAhead))
			return
		}
	}
	if len(evs) == 0 {
		writeJSON(w, http.StatusOK, map[string]int{"accepted": 0})
		return
	}
	// The append is not cancelled with the request: once it started, let it
	// finish, so a client that gave up does not leave a half-known state.
	if err := h.cfg.Spool.Append(context.WithoutCancel(r.Context()), body); err != nil {
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
	h.cfg.Metrics.AcceptedEvents.Add(uint64(len(evs)))
	writeJSON(w, http.StatusOK, map[string]int{"accepted": len(evs)})
}

func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.cfg.MaxBody {
		return nil, &http.MaxBytesError{Limit: h.cfg.MaxBody}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := io.Copy(&buf, http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	return buf.Bytes(), err
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
