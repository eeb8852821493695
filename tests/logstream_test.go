package tests

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestLogStreamingDelivery runs the other delivery path: the edge module
// writes each event as a JSON line to a log endpoint (config key
// log_endpoint), the POP batches those lines and POSTs them as NDJSON the
// way Fastly's real-time log streaming does, and the aggregator's
// /ingest/ndjson, authenticated by a bearer token, stores them. Every hit
// must be stored exactly once, with the id the edge minted.
func TestLogStreamingDelivery(t *testing.T) {
	agg, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	const token = "log-stream-token"
	s := startStack(t, stack.Options{
		AggregatorAddr: agg,
		AggregatorArgs: []string{"--log-token", token},
		EdgeConfig:     map[string]string{"log_endpoint": "events", "batch_max_age_ms": "50"},
		Delivery:       stack.DeliveryBatches, // no journal: log_endpoint is the delivery
		PopArgs: []string{"--admin-addr", admin, "--log-endpoint",
			"events=http://" + agg + "/ingest/ndjson?period=200ms&max_entries=25&header=Authorization:Bearer%20" + token},
	})

	const hits = 60
	for i := range hits {
		resp, body := get(t, pixelURL(s.PopURL, "logs", fmt.Sprintf("https://logs.example/%d", i), ""), map[string]string{"User-Agent": ua})
		checkPixel(t, resp, body)
	}
	eventually(t, 30*time.Second, "all hits stored", func() (bool, string) {
		n, _ := strconv.Atoi(chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = 'logs'"))
		return n >= hits, fmt.Sprintf("%d of %d stored", n, hits)
	})
	// Let any straggling or repeated delivery land before counting exactly.
	time.Sleep(time.Second)
	got := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count(), uniqExact(event_id), uniqExact(url), countIf(user_agent = '"+ua+"') FROM events WHERE site = 'logs' FORMAT TSV")
	if want := fmt.Sprintf("%d\t%d\t%d\t%d", hits, hits, hits, hits); got != want {
		t.Errorf("stored (rows, ids, urls, with UA) = %q, want %q", got, want)
	}

	// They came through the log endpoint, not as signed batches: the
	// events, and counters lines with the hits counted.
	_, m := get(t, "http://"+admin+"/metrics", nil)
	re := regexp.MustCompile(`edgepixel_pop_log_lines_delivered_total\{endpoint="events",kind="http"\} (\d+)`)
	if got := re.FindSubmatch(m); got == nil || atoi(t, string(got[1])) <= hits {
		t.Errorf("POP metrics: want more than %d lines (the events and their counts) delivered to the events endpoint:\n%s", hits, m)
	}
	eventually(t, 30*time.Second, "the hits counted", func() (bool, string) {
		l := lossOf(t, s, "logs")
		return l.Hits == hits && l.Events == hits && l.Stored == hits, fmt.Sprintf("%+v", l)
	})

	// The endpoint refuses a wrong token, and says why.
	resp, body := post(t, s.AggregatorURL+"/ingest/ndjson", "application/x-ndjson", []byte(`{"site":"logs"}`+"\n"),
		map[string]string{"Authorization": "Bearer wrong"})
	wantStatus(t, resp, body, http.StatusUnauthorized)
}
