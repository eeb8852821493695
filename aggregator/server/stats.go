package server

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/aggregator/store"
)

// statsRoutes are the history API: GET /api/stats, /api/top, /api/top.csv,
// /api/quality and /api/dimensions (see README, "The API").
func (s *Server) statsRoutes(mux *http.ServeMux, auth func(string, http.HandlerFunc)) {
	auth("GET /api/dimensions", params(func(w http.ResponseWriter, r *http.Request) {
		reply.JSON(w, http.StatusOK, map[string]any{"dimensions": clickhouse.Dimensions, "ranges": query.Ranges})
	}))
	auth("GET /api/stats", s.withRequest(nil, func(w http.ResponseWriter, r *http.Request, e *query.Engine, req query.Request) {
		st, err := e.Stats(r.Context(), req)
		if err != nil {
			s.storeFailed(w, r.Context(), err)
			return
		}
		reply.JSON(w, http.StatusOK, st)
	}))
	top := func(csvOut bool) http.HandlerFunc {
		return s.withRequest([]string{"dim", "limit"}, func(w http.ResponseWriter, r *http.Request, e *query.Engine, req query.Request) {
			limit := query.DefaultLimit
			if v := r.Form.Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > query.MaxLimit {
					reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1.." + strconv.Itoa(query.MaxLimit), "reason": "bad_request"})
					return
				}
				limit = n
			}
			t, err := e.Top(r.Context(), req, r.Form.Get("dim"), limit)
			if err != nil {
				if t.Dim == "" {
					reply.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "reason": "bad_request"})
					return
				}
				s.storeFailed(w, r.Context(), err)
				return
			}
			if !csvOut {
				reply.JSON(w, http.StatusOK, t)
				return
			}
			name := req.Site + "-" + t.Dim + "-" + req.Range.From.Format("20060102") + "-" + req.Range.To.Add(-time.Second).Format("20060102") + ".csv"
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+safeFilename(name)+`"`)
			w.Header().Set("Cache-Control", "no-store")
			cw := csv.NewWriter(w)
			if d, _ := clickhouse.DimensionByName(t.Dim); d.Visit {
				// A table of visits has one count.
				cw.Write([]string{t.Dim, "visits"})
				for _, row := range t.Rows {
					cw.Write([]string{csvSafe(row.Value), strconv.FormatUint(row.Visits, 10)})
				}
				cw.Flush()
				return
			}
			cw.Write([]string{t.Dim, "visitors", "pageviews", "events"})
			for _, row := range t.Rows {
				cw.Write([]string{csvSafe(row.Value), strconv.FormatUint(row.Visitors, 10), strconv.FormatUint(row.Pageviews, 10), strconv.FormatUint(row.Events, 10)})
			}
			cw.Flush()
		})
	}
	auth("GET /api/top", top(false))
	auth("GET /api/top.csv", top(true))
	auth("GET /api/quality", s.withRequest(nil, s.quality))
}

// engine returns the query engine, or nil without ClickHouse.
func (s *Server) engine() *query.Engine {
	return s.query
}

// withRequest parses the common parameters (site, range, filters), checks
// the site may be read and that the store answers history. A parameter
// neither those nor extra (the endpoint's own) is refused.
func (s *Server) withRequest(extra []string, h func(http.ResponseWriter, *http.Request, *query.Engine, query.Request)) http.HandlerFunc {
	known := append(query.RequestParams(), extra...)
	return params(func(w http.ResponseWriter, r *http.Request) {
		req, err := query.ParseRequest(r.Form, time.Now())
		if err != nil {
			reply.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "reason": "bad_request"})
			return
		}
		if !canRead(w, r, req.Site) {
			return
		}
		e := s.engine()
		if e == nil {
			reply.JSON(w, http.StatusNotImplemented, map[string]string{"error": "history needs ClickHouse (--clickhouse); the " + s.store.Name() + " store keeps no rollups", "reason": "unsupported"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
		defer cancel()
		h(w, r.WithContext(ctx), e, req)
	}, known...)
}

// params answers 400 to a request with a query parameter that h does not
// read (known), naming it and the known ones, with one given more than
// once (query.CheckParams), or with a pair that does not parse (a '%' not
// followed by two hex digits, or a ';'): r.URL.Query() leaves such a
// pair out, so a malformed filter would answer unfiltered figures.
// Otherwise h reads the parsed parameters from r.Form (net/http's field
// for them; a POSTed form is still read into r.PostForm, not added).
func params(h http.HandlerFunc, known ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			reply.JSON(w, http.StatusBadRequest, map[string]string{"error": "malformed query: " + err.Error() +
				"; escape a literal % as %25 and ; as %3B, and separate parameters with &", "reason": "bad_request"})
			return
		}
		if err := query.CheckParams(q, known); err != nil {
			reply.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "reason": "bad_request"})
			return
		}
		r.Form = q
		h(w, r)
	}
}

// storeFailed answers a dashboard query of the store that failed: 504 when
// ctx, the query's, ran out (the store did not answer in time: its errors,
// one per part of the query, would only repeat that), else 503. A query
// whose client went away (ctx canceled: the page was left while its
// queries ran) is no failure of the store and is logged at DEBUG: as a
// warning, make run printed it (a tester's 17 in a minute of browsing).
func (s *Server) storeFailed(w http.ResponseWriter, ctx context.Context, err error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		s.log.Debug("dashboard query ended: its client went away", "err", err)
		return
	}
	s.log.Warn("dashboard query failed", "err", err)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reply.JSON(w, http.StatusGatewayTimeout, map[string]string{
			"error":  fmt.Sprintf("%s did not answer within %s (--query-timeout)", s.store.Name(), s.cfg.QueryTimeout),
			"reason": "store_timeout"})
		return
	}
	reply.JSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error(), "reason": "store_unavailable"})
}

// quality answers the quality panel: the edges' hits against stored
// events and their drop reasons over the range (store.Loss), the
// aggregator's drops and bad rows since it started (by reason, all sites:
// a refused request may not name a valid site) with the edges' drops of
// requests that named no site over the range ("edge_no_site", by
// reason; they belong to no site's own figures), the drift between the
// live count and the committed rows of the site, and the bot share and
// consent tiers of its events (query.Engine.Mix).
func (s *Server) quality(w http.ResponseWriter, r *http.Request, e *query.Engine, req query.Request) {
	out := map[string]any{"site": req.Site, "range": req.Range}
	admin := grantOf(r).Admin
	// The aggregator's refusals and bad rows are counted over every site,
	// as /metrics has them, and so are the edges' drops of requests that
	// named none: for the admin only, not for a viewer token or a share
	// link, which read their own sites.
	var agg map[string]any
	if admin {
		dropped, bad := s.metrics.DropCounts()
		agg = map[string]any{"dropped": dropped, "bad_rows": bad, "since": s.started.UTC()}
		out["aggregator"] = agg
	}
	if cst, ok := s.store.(store.CounterStore); ok {
		to := req.Range.To
		if now := time.Now(); now.Before(to) {
			to = now
		}
		l, err := cst.Loss(r.Context(), req.Site, false, req.Range.From, to)
		if err != nil {
			s.storeFailed(w, r.Context(), err)
			return
		}
		out["edge"] = l
		if admin {
			none, err := cst.Loss(r.Context(), "", false, req.Range.From, to)
			if err != nil {
				s.storeFailed(w, r.Context(), err)
				return
			}
			agg["edge_no_site"] = none.Dropped
		}
	}
	sites, _, _, ready := s.hub.Snapshot()
	counts, _, err := s.store.Counts(r.Context(), []string{req.Site}, 0)
	if err != nil {
		s.storeFailed(w, r.Context(), err)
		return
	}
	// Read after the store so a load in between shows as the live count
	// ahead, never behind.
	liveN := sites[req.Site]
	if now, _, _, _ := s.hub.Snapshot(); now[req.Site] > liveN {
		liveN = now[req.Site]
	}
	out["drift"] = map[string]any{"live": liveN, "committed": counts[req.Site], "difference": int64(liveN) - int64(counts[req.Site]), "live_ready": ready}
	mix, err := e.Mix(r.Context(), req)
	if err != nil {
		s.storeFailed(w, r.Context(), err)
		return
	}
	out["mix"] = mix
	reply.JSON(w, http.StatusOK, out)
}

// csvSafe keeps a spreadsheet from running a cell as a formula (OWASP,
// "CSV Injection"): a cell whose first character, after any blanks, starts
// a formula gets a leading "'". Blanks are skipped because some importers
// trim them (LibreOffice's "Trim spaces"), and the full-width signs count
// because spreadsheets in East Asian locales read them as the ASCII ones.
func csvSafe(v string) string {
	if v != "" && (v[0] == '\t' || v[0] == '\r' || v[0] == '\n') {
		return "'" + v
	}
	t := strings.TrimLeft(v, " \t\r\n")
	for _, p := range []string{"=", "+", "-", "@", "\uFF1D", "\uFF0B", "\uFF0D", "\uFF20"} {
		if strings.HasPrefix(t, p) {
			return "'" + v
		}
	}
	return v
}

func safeFilename(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
