package ingest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

func edgeCounters(t testing.TB, site string, hits uint64) wire.Counters {
	inst, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Counters{Instance: inst, Pop: "p", Sites: []wire.SiteCounts{
		{Site: site, Time: time.Now().UnixMilli(), Hits: hits, Events: hits - 1, Drops: []wire.Drop{{Reason: "bad_json", N: 1}}}}}
}

// Version 2 batches: spooled as signed with their counters; invalid
// counters become a bad row and the events are still accepted; counters
// alone are a batch too.
func TestBatchCounters(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	h := New(Config{Secret: secret, Spool: sp, Metrics: m})
	now := time.Now().Unix()
	evs := []event.Event{newEvent(t, "demo"), newEvent(t, "demo")}
	c := edgeCounters(t, "demo", 3)
	serve := func(body []byte) (int, map[string]any) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(body, now, secret))
		return w.Code, answer(t, w)
	}
	body := wire.AppendWithCounters(nil, evs, &c)
	if code, res := serve(body); code != 200 || res["accepted"] != 2.0 || string(sp.recs[0]) != string(body) {
		t.Fatalf("%d %v", code, res)
	}
	if got := recordCounters(sp.recs[0]); len(got) != 1 || got[0].Sites[0].Hits != 3 {
		t.Fatalf("counters %+v", got)
	}
	alone := wire.AppendWithCounters(nil, nil, &c)
	if code, res := serve(alone); code != 200 || res["accepted"] != 0.0 || len(recordCounters(sp.recs[1])) != 1 {
		t.Fatalf("counters alone: %d %v", code, res)
	}
	bad := c
	bad.Sites = []wire.SiteCounts{{Site: "demo", Time: time.Now().UnixMilli(), Drops: []wire.Drop{{Reason: "Not A Reason", N: 1}}}}
	if code, res := serve(wire.AppendWithCounters(nil, evs, &bad)); code != 200 || res["accepted"] != 2.0 || res["bad"] != 1.0 {
		t.Fatalf("invalid counters: %d %v", code, res)
	}
	gotEvs, gotBad, err := decodeRecord(sp.recs[2])
	if err != nil || len(gotEvs) != 2 || len(gotBad) != 1 || gotBad[0].Reason != ReasonInvalidCounters ||
		!strings.Contains(gotBad[0].Raw, `"type":"counters"`) || len(recordCounters(sp.recs[2])) != 0 {
		t.Fatalf("%v %d %+v", err, len(gotEvs), gotBad)
	}
	stale := edgeCounters(t, "demo", 2)
	stale.Sites[0].Time = time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	serve(wire.AppendWithCounters(nil, nil, &stale))
	if _, b, _ := decodeRecord(sp.recs[3]); len(b) != 1 || b[0].Reason != ReasonBadTime {
		t.Fatalf("stale counters: %+v", b)
	}
}

// NDJSON: the counts of journaled event lines and counters lines are
// merged, per instance and site, into the request's record; invalid ones
// are bad rows without costing their event.
func TestNDJSONCounters(t *testing.T) {
	sp := &memSpool{}
	m := metrics.New()
	const token = "log-token-0123456789"
	h := NewNDJSON(Config{Secret: secret, Spool: sp, Metrics: m, LogToken: token})
	c := edgeCounters(t, "demo", 0)
	var body []byte
	var lastAt int64
	for i := range 5 {
		e := newEvent(t, "demo")
		e.Time += int64(i)
		// The counts' time: the event's, or (a client-named event's time
		// is its client id's) the edge's clock, written in the counts.
		at := e.Time
		if i >= 3 {
			e.Time -= 3_600_000
			e.ID = e.ID.WithTime(e.Time)
		}
		lastAt = at
		sc := wire.SiteCounts{Site: "demo", Time: at, Hits: uint64(i + 1), Events: uint64(i + 1), Notes: []wire.Drop{{Reason: "no_salt", N: uint64(i)}}}
		body = append(wire.AppendEventLine(body, &e, c.Instance, &sc), '\n')
	}
	other := edgeCounters(t, "", 7)
	body = append(wire.AppendCountersLine(body, &other), '\n')
	badCounts := newEvent(t, "demo")
	body = append(wire.AppendEventLine(body, &badCounts, event.ID{}, &wire.SiteCounts{Hits: 1}), '\n')
	body = append(body, `{"type":"mystery","site":"demo"}`+"\n"...)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, ndjsonRequest(body, map[string]string{"Authorization": "Bearer " + token}))
	if res := answer(t, w); w.Code != 200 || res["accepted"] != 6.0 || res["bad"] != 2.0 {
		t.Fatalf("%d %v", w.Code, res)
	}
	_, bad, err := decodeRecord(sp.recs[0])
	if err != nil || len(bad) != 2 || bad[0].Reason != ReasonInvalidCounters || bad[1].Reason != ReasonBadJSON {
		t.Fatalf("%v %+v", err, bad)
	}
	got := recordCounters(sp.recs[0])
	if len(got) != 2 {
		t.Fatalf("%d counters records: %+v", len(got), got)
	}
	for _, g := range got {
		switch g.Instance {
		case c.Instance:
			if len(g.Sites) != 1 || g.Sites[0].Hits != 5 || g.Sites[0].Events != 5 || g.Sites[0].Noted("no_salt") != 4 ||
				g.Sites[0].Time != lastAt {
				t.Errorf("journal counts %+v", g)
			}
		case other.Instance:
			if g.Sites[0].Hits != 7 || g.Sites[0].Dropped("bad_json") != 1 || g.Pop != "p" {
				t.Errorf("counters line %+v", g)
			}
		default:
			t.Errorf("unexpected instance %+v", g)
		}
	}
	// A counters line is not an event for ParseLine, which old callers use.
	if _, err := ParseLine(wire.AppendCountersLine(nil, &other)); err == nil {
		t.Error("ParseLine took a counters line as an event")
	}
}

// An aggregator from before counters reads a counters line as an event
// without a time (a bad row) and ignores the counts of an event line:
// the lines are built so that old aggregators lose nothing but counts.
func TestCountersLinesForOldAggregators(t *testing.T) {
	type oldLine struct {
		event.Event
		TsMS json.RawMessage `json:"ts_ms"`
	}
	other := edgeCounters(t, "x", 2)
	var l oldLine
	if err := json.Unmarshal(wire.AppendCountersLine(nil, &other), &l); err != nil || len(l.TsMS) != 0 || l.Site != "" {
		t.Fatalf("a counters line has a top-level ts_ms or site: %s", fmt.Sprint(l.Event))
	}
}
