package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// An event that arrives with tier aggregate is stored cleared, on every
// path, whatever sent it (event.ApplyPrivacy), and counted, not dropped.
// Found by a new-user tester (a privacy auditor): /ingest/ndjson stored
// an aggregate-tier row with a visitor id, a user agent, props and an
// untruncated address exactly as sent.
func TestAggregateTierClearedOnIngest(t *testing.T) {
	cleared := func(t *testing.T, e event.Event) {
		t.Helper()
		if e.Tier != event.TierAggregate || e.ConsentReason != "gpc" || e.VisitorID != 0 || e.UserAgent != "" || e.Props != "" ||
			e.ClientIP != "" || e.City != "" || e.BrowserVersion != "" || e.URL != "https://ndj.example/users/alice" {
			t.Errorf("aggregate tier stored as %+v", e)
		}
		if e.Site != "ndj" || e.Country != "NL" || e.Browser != "Firefox" {
			t.Errorf("aggregate tier lost its dimensions: %+v", e)
		}
	}

	// NDJSON: the tester's row.
	sp := &memSpool{}
	m := metrics.New()
	const token = "log-token-0123456789"
	h := NewNDJSON(Config{Secret: secret, Spool: sp, Metrics: m, LogToken: token})
	now := time.Now().UnixMilli()
	row := fmt.Sprintf(`{"ts_ms":%d,"site":"ndj","url":"https://ndj.example/users/alice?email=a@b.c","client_ip":"203.0.113.77","tier":"aggregate","consent_reason":"gpc",`+
		`"visitor_id":4242,"user_agent":"Mozilla raw","props":{"email":"x@y.z"},"country":"NL","city":"Amsterdam","browser":"Firefox","browser_version":"131"}`, now)
	full := fmt.Sprintf(`{"ts_ms":%d,"site":"ndj","client_ip":"203.0.113.77","tier":"full","visitor_id":4242}`, now)
	if code, res := serveOK(t, h, ndjsonRequest([]byte(row+"\n"+full), map[string]string{"Authorization": "Bearer " + token})); code != 200 || res["accepted"] != 2.0 || res["bad"] != 0.0 {
		t.Fatalf("%d %v", code, res)
	}
	evs, _, err := decodeRecord(sp.recs[0])
	if err != nil || len(evs) != 2 {
		t.Fatalf("%d events: %v", len(evs), err)
	}
	cleared(t, evs[0])
	// The full tier keeps its visitor id; its address is cut to /24, as
	// the edge sends one.
	if evs[1].VisitorID != 4242 || evs[1].ClientIP != "203.0.113.0" {
		t.Errorf("full tier stored as %+v", evs[1])
	}
	if m.Dropped(ReasonInvalidEvent) != 0 {
		t.Error("clearing counted as a drop")
	}

	// The edge's binary batches: an uncleared aggregate-tier event (a
	// forged or older sender) is stored cleared; a batch the edge built,
	// already cleared, is spooled as signed.
	sp = &memSpool{}
	h = New(Config{Secret: secret, Spool: sp, Metrics: metrics.New(), MaxBody: 64 << 10})
	e := newEvent(t, "ndj")
	e.URL, e.ClientIP, e.Tier, e.ConsentReason = "https://ndj.example/users/alice?email=a@b.c", "203.0.113.77", event.TierAggregate, "gpc"
	e.VisitorID, e.UserAgent, e.Props, e.Country, e.City, e.Browser, e.BrowserVersion = 4242, "Mozilla raw", `{"email":"x@y.z"}`, "NL", "Amsterdam", "Firefox", "131"
	other := newEvent(t, "ndj")
	body := wire.Append(nil, []event.Event{e, other})
	if code, res := serveOK(t, h, request(body, time.Now().Unix(), secret)); code != 200 || res["accepted"] != 2.0 {
		t.Fatalf("%d %v", code, res)
	}
	evs, _, err = decodeRecord(sp.recs[0])
	if err != nil || len(evs) != 2 {
		t.Fatalf("%d events: %v", len(evs), err)
	}
	cleared(t, evs[0])
	if evs[1] != other {
		t.Errorf("the batch's other event changed: %+v", evs[1])
	}
	e.ApplyPrivacy()
	body = wire.Append(nil, []event.Event{e, other})
	serveOK(t, h, request(body, time.Now().Unix(), secret))
	if len(sp.recs) != 2 || !bytes.Equal(sp.recs[1], body) {
		t.Error("a batch the edge cleared was not spooled as signed")
	}
}

func serveOK(t *testing.T, h http.Handler, r *http.Request) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, answer(t, w)
}
