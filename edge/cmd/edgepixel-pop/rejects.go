package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// The POP refuses some requests itself, before the module sees them (a
// body over --max-request-body, a URL or head over Fastly's limits): the
// module, which counts every hit it answers for the aggregator, never
// counts those. So that every hit the edge refuses reaches /api/loss and
// the aggregator's /metrics, not only the POP's own (a new user's
// 2 MB POST was counted only on an admin listener make run had not
// opened), the POP reports them as the module reports its drops: a
// counters line (shared/wire) of an instance of its own, written to the
// log endpoint the module delivers through.
//
// Only the refusals of requests on the module's hit paths (pixel.HitPath,
// pop.Server.HitRejects) are reported: a scanner's long URL on
// /wp-login.php, or bytes that are not HTTP, are no lost hits (a tester
// saw them raise the hits of /api/loss), and stay on the POP's own
// edgepixel_pop_client_rejects_total. Of those, only the reasons named in
// wire.DropReasons: the others are answered by the module
// (ambiguous_framing: counted by the module too) or come before any
// request (proxy_header), or are net/http's unnamed answers ("other").

// rejectReportEvery is how often the refusals are looked at for a
// change to report; rejectInstanceLife how long one reporting instance
// lasts before the next takes over from zero, well inside
// wire.MaxInstanceLife (the aggregator's look-back for an instance's
// previous count).
var (
	rejectReportEvery  = 10 * time.Second
	rejectInstanceLife = wire.MaxInstanceLife / 2
)

// rejectReporter reports the POP's refusals as counters lines.
type rejectReporter struct {
	counts func() map[string]uint64                            // pop.Server.HitRejects
	write  func(endpoint string, line []byte) error            // pop.Server.WriteLog
	stores func(string) (map[string]string, map[string][]byte) // pop.Server.Stores
	now    func() time.Time                                    // time.Now
	rand   io.Reader                                           // crypto/rand.Reader
	log    *slog.Logger

	instance event.ID
	began    time.Time
	base     map[string]uint64 // the counts when instance began (nil: the POP's start)
	sent     map[string]uint64 // what instance last reported
	said     string            // the last failure logged
}

func newRejectReporter(s *pop.Server, log *slog.Logger) *rejectReporter {
	return &rejectReporter{counts: s.HitRejects, write: s.WriteLog, stores: s.Stores, now: time.Now, rand: rand.Reader, log: log}
}

// run reports every rejectReportEvery until ctx ends; the caller reports
// once more when no request can come any more.
func (r *rejectReporter) run(ctx context.Context) {
	t := time.NewTicker(rejectReportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.report()
		}
	}
}

// report writes a counters line when a refusal was counted since the
// last one it wrote, to the log endpoint the module delivers events
// through (endpoint). A line not taken is written again next time: the
// counts are cumulative, so a later line holds what a lost one said.
func (r *rejectReporter) report() {
	now := r.now()
	counts := r.counts()
	if !r.instance.IsZero() && now.Sub(r.began) >= rejectInstanceLife {
		if !r.flush(now, counts) {
			return // the old instance's last counts first
		}
		r.instance, r.base = event.ID{}, counts
	}
	if r.instance.IsZero() {
		id, err := event.NewID(now.UnixMilli(), r.rand)
		if err != nil {
			r.fail("cannot mint an instance id for the POP's refusals", err)
			return
		}
		r.instance, r.began, r.sent = id, now, nil
	}
	r.flush(now, counts)
}

// flush writes the counts of r.instance if they changed since it last
// did, and reports whether nothing is left unwritten.
func (r *rejectReporter) flush(now time.Time, counts map[string]uint64) bool {
	since := map[string]uint64{}
	for _, reason := range wire.DropReasons {
		if n := counts[reason] - r.base[reason]; n > 0 {
			since[reason] = n
		}
	}
	if maps.Equal(since, r.sent) {
		return true
	}
	config, _ := r.stores(storekeys.Store)
	endpoint := endpoint(config)
	if endpoint == "" {
		return true // the module's events have nowhere to go either
	}
	site := wire.SiteCounts{Time: now.UnixMilli()}
	for _, reason := range slices.Sorted(maps.Keys(since)) {
		site.Drops = append(site.Drops, wire.Drop{Reason: reason, N: since[reason]})
		site.Hits += since[reason]
	}
	name := config[storekeys.Pop]
	if name == "" {
		name = pop.PopName
	}
	c := wire.Counters{Instance: r.instance, Pop: event.Clean(name, event.MaxShortLen), Sites: []wire.SiteCounts{site}}
	if err := r.write(endpoint, wire.AppendCountersLine(nil, &c)); err != nil {
		r.fail("cannot write the POP's refusals to log endpoint "+endpoint+"; written again with the next", err)
		return false
	}
	r.sent, r.said = since, ""
	return true
}

func (r *rejectReporter) fail(msg string, err error) {
	if s := msg + err.Error(); s != r.said {
		r.said = s
		r.log.Warn(msg, "err", err)
	}
}

// endpoint is the log endpoint the module delivers events through, by
// config (the edgepixel config store): its log_endpoint, else its
// journal, else its fallback log endpoint; "" when that is "none".
func endpoint(config map[string]string) string {
	for _, key := range []string{wire.ConfigLogEndpoint, wire.ConfigJournal} {
		if name := config[key]; name != "" {
			return name
		}
	}
	return storekeys.FallbackLogEndpoint(config[wire.ConfigFallbackLogEndpoint])
}
