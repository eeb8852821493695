package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// refusalInterval is how often logRefusals writes its line.
const refusalInterval = time.Minute

// logRefusals logs, once per refusalInterval in which there were any, one
// line with the requests ingest refused and the bad rows it kept, by
// reason, since the line before: /metrics has them as counters, but an
// operator reading the log saw only failed credentials (the credential
// log's lines) and nothing of a sender's malformed or stale batches (a
// tester's).
func (s *Server) logRefusals(ctx context.Context) {
	t := time.NewTicker(refusalInterval)
	defer t.Stop()
	var seen refusalCounts
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			dropped, bad := s.metrics.DropCounts()
			next := refusalCounts{dropped, bad}
			if d, b := seen.since(next); d != "" || b != "" {
				s.log.Warn("requests refused and bad rows kept since the last such line (counted in /metrics as edgepixel_aggregator_dropped_total and edgepixel_aggregator_bad_rows_total; bad rows kept in ClickHouse's bad_rows)",
					"refused", d, "bad_rows", b, "interval", refusalInterval)
			}
			seen = next
		}
	}
}

// refusalCounts are Metrics.DropCounts' two maps.
type refusalCounts struct{ dropped, bad map[string]uint64 }

// since returns what next counts beyond c, per map as "reason=n" pairs
// in order of reason, "" where nothing grew.
func (c refusalCounts) since(next refusalCounts) (dropped, bad string) {
	return growth(c.dropped, next.dropped), growth(c.bad, next.bad)
}

func growth(was, now map[string]uint64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(now)) {
		if n := now[k] - was[k]; n > 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, n))
		}
	}
	return strings.Join(out, " ")
}
