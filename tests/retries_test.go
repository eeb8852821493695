package tests

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestClientRetriesAreNotLoss: through the POP, an event POSTed three
// times with the same event_id and a two-event array POSTed three times
// with the same Idempotency-Key are each stored once, and /api/loss counts
// the six retries as duplicates, not lost, with either delivery (journal
// lines to /ingest/ndjson, or signed batches), and with the retries sent
// while the aggregator is down (batches then fail and the POP's fallback
// log endpoint delivers them once it is back, as the journal's queue
// does).
func TestClientRetriesAreNotLoss(t *testing.T) {
	for _, tc := range []struct {
		delivery string
		outage   bool
	}{{stack.DeliveryJournal, false}, {stack.DeliveryBatches, false}, {stack.DeliveryJournal, true}, {stack.DeliveryBatches, true}} {
		name := tc.delivery
		if tc.outage {
			name += ", retries during an outage"
		}
		t.Run(name, func(t *testing.T) { clientRetries(t, tc.delivery, tc.outage) })
	}
}

func clientRetries(t *testing.T, delivery string, outage bool) {
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stack.Options{Delivery: delivery, EdgeConfig: map[string]string{"batch_max_age_ms": "50"},
		PopArgs: []string{"--admin-addr", admin}})
	const site = "idem"
	newKey := func() string {
		id, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}
	eventID, idemKey := newKey(), newKey()
	send := func(body string, hdr map[string]string) {
		t.Helper()
		hdr["User-Agent"] = uaChrome
		resp, b := post(t, s.PopURL+"/e", "application/json", []byte(body), hdr)
		if resp.StatusCode != 204 || resp.Header.Get("X-Edgepixel-Drop") != "" {
			t.Fatalf("POST %s: %s %q %s", body, resp.Status, resp.Header.Get("X-Edgepixel-Drop"), b)
		}
	}
	for i := range 3 {
		send(fmt.Sprintf(`{"site":%q,"name":"named","event_id":%q}`, site, eventID), map[string]string{})
		send(fmt.Sprintf(`[{"site":%q,"name":"keyed-1"},{"site":%q,"name":"keyed-2"}]`, site, site), map[string]string{"Idempotency-Key": `"` + idemKey + `"`})
		if outage && i == 0 {
			// The first attempts stored, the aggregator stops and the
			// retries meet it down.
			eventually(t, 60*time.Second, "the first attempts stored", func() (bool, string) {
				l := lossOf(t, s, site)
				return l.Stored == 3, fmt.Sprintf("%+v", l)
			})
			if err := s.Aggregator.Stop(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if outage {
		time.Sleep(2 * time.Second) // the POP's batches fail meanwhile
		if err := s.StartAggregator(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "the retries counted and stored once", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Hits == 6 && l.Events == 9 && l.Stored == 3 && l.Duplicates == 6, fmt.Sprintf("%+v", l)
	})
	time.Sleep(time.Second) // a late double or duplicate would land now
	f := strings.Fields(chQuery(t, s.ClickHouse.HTTPURL, "SELECT count(), uniqExact(event_id), uniqExact(name) FROM events WHERE site = '"+site+"'"))
	if len(f) != 3 || f[0] != "3" || f[1] != "3" || f[2] != "3" {
		t.Errorf("events of %s: count, distinct ids, distinct names %v, want 3 each", site, f)
	}
	l := lossOf(t, s, site)
	if l.Hits != 6 || l.Events != 9 || l.Stored != 3 || l.Duplicates != 6 || l.Lost != 0 || l.LossRate != 0 {
		t.Errorf("/api/loss %+v: want 6 hits, 9 events, 3 stored, 6 duplicates, 0 lost", l)
	}
	if n := metricsOf(t, s)["edgepixel_aggregator_edge_duplicates_total"]; n != 6 {
		t.Errorf("edge_duplicates_total %v, want 6", n)
	}
	if endpoint := stack.FallbackEndpoint; outage && delivery == stack.DeliveryBatches && popMetric(t, s, "edgepixel_pop_log_lines_delivered_total", endpoint) == 0 {
		t.Errorf("nothing was delivered through %s during the outage", endpoint)
	}
}
