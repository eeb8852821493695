// Package admin is the aggregator's data-governance operations: retention
// (drop day partitions older than N days) and erasure (delete one person's
// events), on HTTP endpoints guarded by an admin token, plus the daily
// retention run. Every operation writes an audit log line: who asked (the
// request's actor and address), what (the operation and its outcome), when
// (the log record's time).
package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// Store is what the operations run against (a *clickhouse.Client).
type Store interface {
	DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]clickhouse.Partition, error)
	Erase(ctx context.Context, e clickhouse.Erasure, wait time.Duration) (clickhouse.ErasureResult, error)
	WaitMutations(ctx context.Context, wait time.Duration) (bool, error)
}

// RemovedWait bounds how long an erasure still running when its request
// is answered (202) is followed, to call Config.Removed once it is done.
const RemovedWait = time.Hour

// Config configures the handler.
type Config struct {
	// Token guards every endpoint ("Authorization: Bearer <Token>"). Empty
	// disables them: they answer 403.
	Token string
	// Store runs the operations; nil (the on-disk store) makes them answer
	// 501.
	Store Store
	// RetentionDays is the default of POST /admin/retention.
	RetentionDays int
	// EraseWait bounds how long an erasure waits for its mutations to
	// finish before answering (default 30 s).
	EraseWait time.Duration
	// Limiter brakes token guessing per client address; refused attempts
	// are summed up in its log line, not logged one by one. nil: none.
	Limiter *guard.AuthLimiter
	// Removed, if set, is called once stored events are gone: an
	// erasure's mutations finished (within RemovedWait of the request),
	// or retention dropped partitions. The live counts are read again.
	Removed func()
	Logger  *slog.Logger
	Now     func() time.Time
}

type handler struct {
	cfg    Config
	mux    *http.ServeMux
	routes map[string]http.HandlerFunc // path: its POST handler
}

// New returns the handler for /admin/: POST /admin/erase and POST
// /admin/retention.
func New(cfg Config) http.Handler {
	if cfg.EraseWait <= 0 {
		cfg.EraseWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cfg.Logger.With("component", "admin")
	h := &handler{cfg: cfg, mux: http.NewServeMux()}
	h.routes = map[string]http.HandlerFunc{"/admin/erase": h.erase, "/admin/retention": h.retention}
	for path, f := range h.routes {
		h.mux.HandleFunc("POST "+path, f)
	}
	h.mux.HandleFunc("/admin/", h.fallback)
	return h
}

// fallback answers what no route takes, in JSON as the routes do: 405
// with Allow for another method on a route, else 404.
func (h *handler) fallback(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.routes[r.URL.Path]; ok {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+": use POST")
		return
	}
	writeJSON(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path+" (POST "+strings.Join(slices.Sorted(maps.Keys(h.routes)), " or ")+")")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Token != "" && h.cfg.Limiter != nil {
		if ok, after := h.cfg.Limiter.Allow(r.RemoteAddr); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int((after+time.Second-1)/time.Second))))
			writeJSON(w, http.StatusTooManyRequests, guard.ReasonRateLimited, "too many failed credentials from your address; retry later")
			return
		}
	}
	switch {
	case h.cfg.Token == "":
		writeJSON(w, http.StatusForbidden, "admin_disabled", "admin endpoints are disabled: no --admin-token configured")
	case !tokenMatches(r.Header.Get("Authorization"), h.cfg.Token):
		// Counted and logged in aggregate by the limiter, not a line each:
		// a guessing client must not be able to flood the log.
		if h.cfg.Limiter != nil {
			h.cfg.Limiter.Fail(r.RemoteAddr, guard.CredAdminToken)
		}
		writeJSON(w, http.StatusUnauthorized, "bad_token", "Authorization must be Bearer and the admin token")
	case h.cfg.Store == nil:
		writeJSON(w, http.StatusNotImplemented, "unsupported", "admin operations need ClickHouse (--clickhouse); the on-disk store has none")
	default:
		h.mux.ServeHTTP(w, r)
	}
}

// removed calls Config.Removed, if set.
func (h *handler) removed() {
	if h.cfg.Removed != nil {
		h.cfg.Removed()
	}
}

// tokenMatches compares "Bearer token" in constant time (hashes first, so
// the length does not leak either).
func tokenMatches(header, token string) bool {
	const prefix = "bearer "
	if token == "" || len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(prefix):])))
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

type eraseRequest struct {
	clickhouse.Erasure
	// Site shadows Erasure.Site, to tell "site" left out (every site:
	// Erasure.AllSites) from "site" given empty, which is refused: an
	// empty name must not widen an erasure to all of them.
	Site  siteName `json:"site"`
	Actor string   `json:"actor"` // who asks, for the audit log (free text)
}

// siteName is an erasure's "site" as the body gives it: whether it is
// there at all (null included), and the name.
type siteName struct {
	given bool
	name  string
}

// UnmarshalJSON takes a string; null is kept as given, empty, and so
// refused as "" is.
func (s *siteName) UnmarshalJSON(b []byte) error {
	s.given = true
	if string(b) == "null" {
		return nil
	}
	return json.Unmarshal(b, &s.name)
}

func (h *handler) erase(w http.ResponseWriter, r *http.Request) {
	var req eraseRequest
	if !readJSON(w, r, &req) {
		return
	}
	// White space only names nobody: the audit line would not say who.
	if req.Actor = strings.TrimSpace(req.Actor); req.Actor == "" {
		writeJSON(w, http.StatusBadRequest, "bad_request", "actor is required (who asks, for the audit log)")
		return
	}
	if req.Site.given {
		if strings.TrimSpace(req.Site.name) == "" {
			writeJSON(w, http.StatusBadRequest, "bad_request", `site is required: name the site to erase from, or leave "site" out to erase on every site`)
			return
		}
		req.Erasure.Site = strings.TrimSpace(req.Site.name) // as the edge trims a site
	} else {
		req.Erasure.AllSites = true
	}
	// The identifiers are personal data: the audit line carries a short
	// keyed hash of each (fingerprint), not the value that is erased.
	audit := []any{"op", "erase", "actor", req.Actor, "remote", r.RemoteAddr, "site", req.Erasure.Site, "all_sites", req.Erasure.AllSites,
		"visitor_id_hmac", h.fingerprint(string(req.VisitorID)), "user_id_hmac", h.fingerprint(req.UserID),
		"client_ip_hmac", h.fingerprint(req.ClientIP)}
	res, err := h.cfg.Store.Erase(r.Context(), req.Erasure, h.cfg.EraseWait)
	if ee := (*clickhouse.ErasureError)(nil); errors.As(err, &ee) {
		h.cfg.Logger.Warn("audit: erase refused", append(audit, "err", err)...)
		writeJSON(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		h.cfg.Logger.Error("audit: erase failed", append(audit, "statements", len(res.Statements), "err", err)...)
		writeJSON(w, http.StatusServiceUnavailable, "store_error", err.Error())
		return
	}
	h.cfg.Logger.Info("audit: erase submitted", append(audit, "statements", len(res.Statements), "matched", res.Matched, "done", res.Done)...)
	status := http.StatusOK
	if res.Done {
		h.removed()
	} else {
		status = http.StatusAccepted // the mutations go on in the background
		if h.cfg.Removed != nil {
			go func() {
				if done, _ := h.cfg.Store.WaitMutations(context.Background(), RemovedWait); done {
					h.cfg.Removed()
				}
			}()
		}
	}
	reply.JSON(w, status, res)
}

// MaxRetentionDays bounds a retention period: 100 years keeps everything
// ClickHouse's DateTime holds (from 1970), and a longer one would put the
// cut-off before it.
const MaxRetentionDays = 36500

type retentionRequest struct {
	Days  int    `json:"days"` // 0: the configured --retention-days
	Actor string `json:"actor"`
}

func (h *handler) retention(w http.ResponseWriter, r *http.Request) {
	var req retentionRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Days == 0 {
		req.Days = h.cfg.RetentionDays
	}
	if req.Days <= 0 {
		writeJSON(w, http.StatusBadRequest, "bad_request", "days must be positive (no --retention-days configured to default to)")
		return
	}
	if req.Days > MaxRetentionDays {
		writeJSON(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("days must be at most %d (100 years)", MaxRetentionDays))
		return
	}
	if req.Actor = strings.TrimSpace(req.Actor); req.Actor == "" {
		req.Actor = "unnamed"
	}
	dropped, err := Apply(r.Context(), h.cfg.Store, req.Days, h.cfg.Now(), h.cfg.Logger, "actor", req.Actor, "remote", r.RemoteAddr)
	if len(dropped) > 0 {
		h.removed()
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, "store_error", err.Error())
		return
	}
	if dropped == nil {
		dropped = []clickhouse.Partition{}
	}
	reply.JSON(w, http.StatusOK, map[string]any{"days": req.Days, "dropped": dropped})
}

// Apply drops the partitions older than days before now and writes the
// audit line, with who (extra key/value pairs) asked.
func Apply(ctx context.Context, s Store, days int, now time.Time, log *slog.Logger, who ...any) ([]clickhouse.Partition, error) {
	cutoff := now.AddDate(0, 0, -days)
	dropped, err := s.DropPartitionsBefore(ctx, cutoff)
	ids := make([]string, len(dropped))
	for i, p := range dropped {
		ids[i] = p.Table + "/" + p.ID
	}
	attrs := append([]any{"op", "retention", "days", days, "cutoff", cutoff.UTC().Format(time.RFC3339), "dropped", ids}, who...)
	if err != nil {
		log.Error("audit: retention failed", append(attrs, "err", err)...)
		return dropped, err
	}
	log.Info("audit: retention applied", attrs...)
	return dropped, nil
}

// RunRetention applies retention at once and then every day until ctx
// ends. A failed run (ClickHouse down) is retried after retryEvery.
// removed (if not nil) is called after a run dropped partitions.
func RunRetention(ctx context.Context, s Store, days int, log *slog.Logger, retryEvery time.Duration, removed func()) {
	log = log.With("component", "admin")
	for {
		wait := 24 * time.Hour
		dropped, err := Apply(ctx, s, days, time.Now(), log, "actor", "scheduler")
		if err != nil {
			wait = retryEvery
		}
		if len(dropped) > 0 && removed != nil {
			removed()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// fingerprint is the first 6 bytes of HMAC-SHA256(admin token, v), in
// hex: enough for whoever holds the token to match a request to its log
// line, and not reversible by whoever reads only the log. A plain hash
// was: an address or a user id is one of few enough values to try every
// one (a /8 of IPv4 addresses in seconds).
func (h *handler) fingerprint(v string) string {
	if v == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(h.cfg.Token))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:6])
}

// MaxBody bounds an admin request's body. An erasure or retention request
// is a few hundred bytes.
const MaxBody = 64 << 10

// readJSON decodes the request's body, one JSON object and nothing after
// it but whitespace, into v; else it answers 400 saying why (413 for a
// body over MaxBody, 415 for a compressed one) and returns false. Every
// endpoint reads its body with it.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	// A body is a few hundred bytes, not worth compressing: a gzip one
	// read as JSON was refused as "invalid character", which sends the
	// user looking for a fault in the object. 415 with Accept-Encoding
	// says which codings the server takes (RFC 9110, section 15.5.16).
	if c := strings.TrimSpace(r.Header.Get("Content-Encoding")); c != "" && !strings.EqualFold(c, "identity") {
		w.Header().Set("Accept-Encoding", "identity")
		writeJSON(w, http.StatusUnsupportedMediaType, "unsupported_encoding", fmt.Sprintf("Content-Encoding %q: send an admin request's body uncompressed", c))
		return false
	}
	// A body over the bound is refused as such: cut off silently (as it
	// was), it was refused as a broken object (unexpected EOF) or, with
	// whitespace after the object, as data after it.
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields() // a misspelt identifier must not erase by less than asked
	if err := dec.Decode(v); err != nil {
		if !tooLarge(w, err) {
			writeJSON(w, http.StatusBadRequest, "bad_request", jsonError(err, v))
		}
		return false
	}
	// Data after the object (a second object, text) is refused, not
	// ignored: which of two objects was meant is not for the handler to
	// guess, and it must not run the first as if it were all.
	off := dec.InputOffset()
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		if !tooLarge(w, err) {
			writeJSON(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body must be one JSON object: data after it at offset %d", off))
		}
		return false
	}
	return true
}

// tooLarge answers 413 and returns true when err is MaxBytesReader's.
func tooLarge(w http.ResponseWriter, err error) bool {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return false
	}
	writeJSON(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes (%d KiB): an admin request is one small JSON object", mbe.Limit, mbe.Limit>>10))
	return true
}

// jsonError says what is wrong with a body Decode refused into v: a
// field's value of the wrong type names the field and the type it wants,
// rather than the Go struct behind it; an unknown field names the known
// ones (a misspelling is the likely cause); a field's own refusal (a
// negative visitor_id) is said as it is. Only a body that is not a JSON
// object is said to be one: prefixing every refusal so (as before) told
// the sender of a well-formed object to fix what was not broken.
func jsonError(err error, v any) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return flaghint.JSONField(fmt.Sprintf("field %q", te.Field), te)
	case errors.Is(err, io.EOF):
		return "body must be a JSON object, not empty"
	case errors.As(err, &te), errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return "body must be a JSON object: " + err.Error()
	}
	// encoding/json has no type for an unknown field: its text is the
	// only sign ("json: unknown field \"bogus\"").
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s (known: %s)", name, strings.Join(jsonFields(reflect.TypeOf(v)), ", "))
	}
	return err.Error()
}

// jsonFields is the JSON names of the fields of the struct t points to
// (embedded structs' included), sorted.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	if t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
		case f.Anonymous && name == "":
			names = append(names, jsonFields(f.Type)...)
		case name != "":
			names = append(names, name)
		default:
			names = append(names, f.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names) // a field shadowing an embedded one's name
}

func writeJSON(w http.ResponseWriter, status int, reason, msg string) {
	reply.JSON(w, status, map[string]string{"error": msg, "reason": reason})
}
