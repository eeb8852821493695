package ingest

import (
	"strings"
	"testing"

	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/metrics"
)

// TestReasonsDeclared: every reason ingest and the guard can count is on
// /metrics at 0 before its first count, so an alert on a counter's
// increase sees the first one (found by a new-user tester: the series
// appeared only with it).
func TestReasonsDeclared(t *testing.T) {
	m := metrics.New()
	New(Config{Secret: []byte("0123456789abcdef0123456789abcdef"), Spool: &memSpool{}, Metrics: m})
	guard.NewAuthLimiter(guard.AuthConfig{Metrics: m})
	var b strings.Builder
	m.WriteTo(&b)
	for _, want := range []string{
		`edgepixel_aggregator_dropped_total{reason="bad_token"} 0`,
		`edgepixel_aggregator_dropped_total{reason="spool_full"} 0`,
		`edgepixel_aggregator_dropped_total{reason="rate_limited"} 0`,
		`edgepixel_aggregator_bad_rows_total{reason="bad_json"} 0`,
		`edgepixel_aggregator_bad_rows_total{reason="invalid_counters"} 0`,
		`edgepixel_aggregator_auth_failures_total{kind="log_token"} 0`,
		`edgepixel_aggregator_auth_failures_total{kind="dashboard"} 0`,
		`edgepixel_aggregator_build_info{revision=`,
		// The edges' reasons too (a tester's alert on delivery_failed
		// would have missed the first loss after a restart).
		`edgepixel_aggregator_edge_drops_total{reason="delivery_failed"} 0`,
		`edgepixel_aggregator_edge_drops_total{reason="missing_site"} 0`,
		`edgepixel_aggregator_edge_notes_total{reason="no_salt"} 0`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, r := range dropReasons {
		if !strings.Contains(b.String(), `edgepixel_aggregator_dropped_total{reason="`+r+`"} 0`) {
			t.Errorf("drop reason %s not declared", r)
		}
	}
}
