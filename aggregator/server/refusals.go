package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/guard"
	"github.com/edgepixel/edgepixel/aggregator/ingest"
)

// refusalInterval is how often logRefusals writes its line.
const refusalInterval = time.Minute

// refusalsLoggedElsewhere are the drop reasons logRefusals leaves out:
// failed credentials, which the credential log sums up with the
// addresses, and the connection guard's, which a browser's preconnect to
// the dashboard makes in passing (header_timeout) and whose metrics say
// enough.
var refusalsLoggedElsewhere = map[string]bool{
	ingest.ReasonBadSignature: true, ingest.ReasonBadToken: true, ingest.ReasonStale: true, ingest.ReasonRateLimited: true,
	guard.ReasonTooManyConns: true, guard.ReasonTooManyConnsPerClient: true, guard.ReasonHeaderTimeout: true,
	guard.ReasonWriteTimeout: true, guard.ReasonHeaderTooLarge: true, guard.ReasonBadFraming: true,
}

// logRefusals logs, once per refusalInterval in which there were any, and
// at shutdown, one line with the requests ingest refused and the bad rows
// it kept, by reason, since the line before (but for
// refusalsLoggedElsewhere): /metrics has them as counters, but an
// operator reading the log saw only failed credentials (the credential
// log's lines) and nothing of a sender's malformed batches (a tester's).
func (s *Server) logRefusals(ctx context.Context) {
	t := time.NewTicker(refusalInterval)
	defer t.Stop()
	var seen refusalCounts
	log := func() {
		dropped, bad := s.metrics.DropCounts()
		for k := range refusalsLoggedElsewhere {
			delete(dropped, k)
		}
		next := refusalCounts{dropped, bad}
		if d, b := seen.since(next); d != "" || b != "" {
			s.log.Warn("requests refused and bad rows kept since the last such line (counted in /metrics as edgepixel_aggregator_dropped_total and edgepixel_aggregator_bad_rows_total; bad rows kept in ClickHouse's bad_rows)",
				"refused", d, "bad_rows", b)
		}
		seen = next
	}
	for {
		select {
		case <-ctx.Done():
			log()
			return
		case <-t.C:
			log()
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
