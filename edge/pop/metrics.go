package pop

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/shared/clientip"
)

// metrics are plain atomic counters: cheap enough to bump on every request
// and hostcall without a metrics library.
type metrics struct {
	requests       atomic.Uint64
	errors         atomic.Uint64 // requests the POP answered itself (5xx): guest failure, no response, shutdown
	noResponse     atomic.Uint64 // guest moved on or ended without responding
	started        atomic.Uint64
	crashed        atomic.Uint64
	hostcallErrors atomic.Uint64
	unsupported    atomic.Uint64
	backendSends   atomic.Uint64
	backendErrors  atomic.Uint64

	// Filled in by ServeHTTP when a request is complete (server.go).
	byClass  [6]atomic.Uint64 // index status/100; 0 unused
	duration histogram

	// Instance startup: from spawning to first waiting for a request,
	// which is what a visitor waits for when no warm instance is free.
	startup   histogram
	startupMu sync.Mutex
	startups  []time.Duration // the most recent, oldest first, bounded
}

const keepStartups = 1024

// guestTimes are the guest run times of client requests, when measured
// (Config.MeasureGuestTime): the most recent keepGuestTimes.
type guestTimes struct {
	mu    sync.Mutex
	times []GuestSample
	next  int // where the next goes once times is full
}

const keepGuestTimes = 1 << 18

func (g *guestTimes) observe(s GuestSample) {
	g.mu.Lock()
	if len(g.times) < keepGuestTimes {
		g.times = append(g.times, s)
	} else {
		g.times[g.next] = s
		g.next = (g.next + 1) % keepGuestTimes
	}
	g.mu.Unlock()
}

// GuestSample is one client request's guest run time (GuestTimes), split
// where its response went to the client.
type GuestSample struct {
	// Instance is the instance that served it: a guest's batch is its
	// instance's, so its flush amortises over that instance's requests.
	Instance uint64
	// CPU is the request's whole run time, as GuestTimes reports it.
	CPU time.Duration
	// Answer is the part up to the response's send_downstream (CPU when
	// the guest sent none); CPU-Answer is the work after it, a batch
	// flush among it. The split costs one more clock reading, inside
	// Answer.
	Answer time.Duration
	// BackendSends is how many backend requests the guest made while
	// serving it (a batch delivery makes one or more).
	BackendSends int
}

// GuestTimes returns, with Config.MeasureGuestTime, the CPU time the
// instance used for each of the most recent client requests (up to
// 262144), in no particular order: from the hostcall that handed it the
// request to the one asking for the next. Work a guest does after
// answering (a batch flush) counts to the request it followed.
//
// On Linux it is the CPU time of the instance's thread: the guest's code
// and the hostcalls' work on its behalf, while time waiting (for a
// backend, in a sleep, for a CPU) is not in it. The clock is read only at
// the request's two ends and where it is answered, because a reading is
// a system call and reading it around every hostcall cost about as much
// as a hit's guest code. Elsewhere it is wall time, hostcalls and sleeps
// excluded. reset empties it.
func (s *Server) GuestTimes(reset bool) []time.Duration {
	samples := s.GuestSamples(reset)
	out := make([]time.Duration, len(samples))
	for i, g := range samples {
		out[i] = g.CPU
	}
	return out
}

// GuestSamples is GuestTimes with each request's split and instance, in
// the order the requests ended (oldest first).
func (s *Server) GuestSamples(reset bool) []GuestSample {
	g := &s.guest
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GuestSample, 0, len(g.times))
	out = append(out, g.times[g.next:]...)
	out = append(out, g.times[:g.next]...)
	if reset {
		g.times, g.next = g.times[:0], 0
	}
	return out
}

func (m *metrics) observeStartup(d time.Duration) {
	m.startup.observe(d)
	m.startupMu.Lock()
	if len(m.startups) == keepStartups {
		m.startups = append(m.startups[:0], m.startups[1:]...)
	}
	m.startups = append(m.startups, d)
	m.startupMu.Unlock()
}

// InstanceStartups returns how long the most recent guest instances (up
// to 1024) took from being spawned to waiting for their first request:
// instantiation, the Go runtime's start and the guest's own init. The
// benchmark reports them as cold-start figures.
func (s *Server) InstanceStartups() []time.Duration {
	s.m.startupMu.Lock()
	defer s.m.startupMu.Unlock()
	return slices.Clone(s.m.startups)
}

// durationBuckets are the upper bounds, in seconds, of the request latency
// histogram: a warm ServeMany guest answers in well under a millisecond,
// a cold or backend-bound one in tens to hundreds, and anything near the
// top is a stuck guest or backend.
var durationBuckets = [...]float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// durationBucketsNs is durationBuckets in nanoseconds, so observing needs
// no float arithmetic.
var durationBucketsNs = func() (ns [len(durationBuckets)]int64) {
	for i, b := range durationBuckets {
		ns[i] = int64(b * 1e9)
	}
	return
}()

// histogram counts observations per bucket (not cumulatively: one atomic
// add per observation); WritePrometheus sums them up.
type histogram struct {
	counts [len(durationBuckets) + 1]atomic.Uint64 // last: +Inf
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	ns := int64(d)
	i := 0
	for i < len(durationBucketsNs) && ns > durationBucketsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(ns, 0)))
}

// observeStatus counts a finished request by status class.
func (m *metrics) observeStatus(code int) {
	c := code / 100
	if c < 1 || c > 5 {
		c = 5
	}
	m.byClass[c].Add(1)
}

// WritePrometheus writes the server's metrics in the Prometheus text format.
func (s *Server) WritePrometheus(w io.Writer) {
	type metric struct {
		name, kind, help string
		value            uint64
	}
	for _, m := range []metric{
		{"edgepixel_pop_requests_total", "counter", "Client requests received.", s.m.requests.Load()},
		{"edgepixel_pop_request_errors_total", "counter", "Client requests the POP answered with an error itself (guest failure, no response, shutdown).", s.m.errors.Load()},
		{"edgepixel_pop_guest_no_response_total", "counter", "Client requests a guest finished without sending a response.", s.m.noResponse.Load()},
		{"edgepixel_pop_instances_live", "gauge", "Guest instances currently running.", uint64(max(s.live.Load(), 0))},
		{"edgepixel_pop_instances_idle", "gauge", "Guest instances waiting for a request.", uint64(max(s.idle.Load(), 0))},
		{"edgepixel_pop_instances_started_total", "counter", "Guest instances started.", s.m.started.Load()},
		{"edgepixel_pop_instances_failed_total", "counter", "Guest instances that trapped or exited with an error.", s.m.crashed.Load()},
		{"edgepixel_pop_hostcall_errors_total", "counter", "Hostcalls that returned an error status.", s.m.hostcallErrors.Load()},
		{"edgepixel_pop_hostcall_unsupported_total", "counter", "Calls to hostcalls this POP does not implement.", s.m.unsupported.Load()},
		{"edgepixel_pop_backend_sends_total", "counter", "Requests sent to backends.", s.m.backendSends.Load()},
		{"edgepixel_pop_backend_errors_total", "counter", "Backend requests that failed without a response.", s.m.backendErrors.Load()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.kind, m.name, m.value)
	}

	const resp = "edgepixel_pop_responses_total"
	fmt.Fprintf(w, "# HELP %s Client requests completed, by status class (4xx holds 499: the client went away before an answer).\n# TYPE %s counter\n", resp, resp)
	for c := 1; c <= 5; c++ {
		fmt.Fprintf(w, "%s{code=\"%dxx\"} %d\n", resp, c, s.m.byClass[c].Load())
	}

	writeHistogram(w, "edgepixel_pop_request_duration_seconds",
		"Time from receiving a client request to completing its response body.", &s.m.duration)
	writeHistogram(w, "edgepixel_pop_instance_startup_seconds",
		"Time from spawning a guest instance to its first wait for a request.", &s.m.startup)

	s.writePoolMetrics(w) // limit breaches, idle exits, reloads
	s.writeERLMetrics(w)  // rate counter and penalty box entries (erl.go)
	if s.geo.db != nil {
		s.geo.db.WritePrometheus(w) // geolocation database lookups and reloads
	}
	s.writeClientMetrics(w) // connections, timeouts, refusals (clients.go)
	s.backendFails.writePrometheus(w, slices.Collect(maps.Keys(s.backends)))
	if s.sinks != nil {
		s.sinks.WritePrometheus(w)
	}
}

func writeHistogram(w io.Writer, name, help string, h *histogram) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(durationBuckets)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n",
		name, cum, name, strconv.FormatFloat(float64(h.sumNs.Load())/1e9, 'g', -1, 64), name, cum)
}

// poolStats are the counters of limits.go, pool.go and reload.go,
// written by writePoolMetrics.
type poolStats struct {
	breaches       [numLimits]atomic.Uint64
	idleExits      atomic.Uint64
	reloads        atomic.Uint64
	reloadFailures atomic.Uint64
}

func (s *Server) writePoolMetrics(w io.Writer) {
	const b = "edgepixel_pop_limit_breaches_total"
	fmt.Fprintf(w, "# HELP %s Guest instances terminated for exceeding an execution limit.\n# TYPE %s counter\n", b, b)
	for k := limitWall; k < numLimits; k++ {
		fmt.Fprintf(w, "%s{limit=%q} %d\n", b, k.String(), s.ps.breaches[k].Load())
	}
	const ie = "edgepixel_pop_instances_idle_exits_total"
	fmt.Fprintf(w, "# HELP %s Instances above the warm size told to end after sitting idle.\n# TYPE %s counter\n%s %d\n",
		ie, ie, ie, s.ps.idleExits.Load())
	const rl = "edgepixel_pop_reloads_total"
	fmt.Fprintf(w, "# HELP %s Attempts to switch to a changed module, or to new instances for changed config stores.\n# TYPE %s counter\n", rl, rl)
	fmt.Fprintf(w, "%s{result=\"ok\"} %d\n%s{result=\"failed\"} %d\n", rl, s.ps.reloads.Load(), rl, s.ps.reloadFailures.Load())
}

func (s *Server) writeClientMetrics(w io.Writer) {
	t := &s.conns
	open, waiting := t.counts()
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	gauge("edgepixel_pop_conns_open", "Client connections open.", int64(open))
	gauge("edgepixel_pop_conns_waiting", "Client connections without a request in progress (idle keep-alive, or the first request head not complete).", int64(waiting))
	gauge("edgepixel_pop_request_body_bytes", "Bytes of client request bodies held, in whole buffer chunks.", max(s.bodyBytes.Load(), 0))
	const acc = "edgepixel_pop_conns_accepted_total"
	fmt.Fprintf(w, "# HELP %s Client connections accepted.\n# TYPE %s counter\n%s %d\n", acc, acc, acc, t.accepted.Load())
	labelled := func(name, help, label string, names []string, get func(i int) uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		for i, n := range names {
			if n != "" {
				fmt.Fprintf(w, "%s{%s=%q} %d\n", name, label, n, get(i))
			}
		}
	}
	labelled("edgepixel_pop_conns_refused_total", "Client connections refused at accept (a 503 on cleartext), by the limit reached.", "reason",
		refusalNames[:refusalFDLimit], func(i int) uint64 { return t.refused[i].Load() })
	labelled("edgepixel_pop_conns_evicted_total", "Client connections without a request in progress closed to make room, by what was short.", "reason",
		[]string{refusalMaxConns: "max_conns", refusalFDLimit: "fd_limit", refusalPerAddr: ""}, func(i int) uint64 { return t.evicted[i].Load() })
	labelled("edgepixel_pop_accept_errors_total", "Failed accepts of client connections, retried after a back-off.", "reason",
		[]string{"fd_limit", "other"}, func(i int) uint64 { return t.acceptErrors[i].Load() })
	labelled("edgepixel_pop_client_timeouts_total", "Client connections closed, or requests answered 408, for missing a deadline: idle keep-alive, request head, request body, response write.", "phase",
		phaseNames[:], func(i int) uint64 { return t.timeouts[i].Load() })
	if s.trust != nil {
		labelled("edgepixel_pop_forwarded_total", "Requests by what the trusted-proxy header rule found: the client, only trusted proxies, an unreadable entry, no header from a trusted proxy, or a header from a peer not trusted (ignored).", "result",
			clientip.ResultNames[:], func(i int) uint64 { return s.trust.results[i].Load() })
	}
	labelled("edgepixel_pop_client_rejects_total", "Client requests refused before any guest saw them, or whose connection was closed after the answer, by reason.", "reason",
		rejectNames[:], func(i int) uint64 { return t.rejects[i].Load() })
}

func (s *Server) writeERLMetrics(w io.Writer) {
	counters, penalties := s.erl.sizes()
	const n = "edgepixel_pop_erl_entries"
	fmt.Fprintf(w, "# HELP %s Edge Rate Limiting entries held, by table.\n# TYPE %s gauge\n", n, n)
	fmt.Fprintf(w, "%s{table=\"ratecounter\"} %d\n%s{table=\"penaltybox\"} %d\n", n, counters, n, penalties)
	const ev = "edgepixel_pop_erl_evictions_total"
	fmt.Fprintf(w, "# HELP %s Edge Rate Limiting entries evicted because their table was full (--erl-max-entries), by table.\n# TYPE %s counter\n", ev, ev)
	fmt.Fprintf(w, "%s{table=\"ratecounter\"} %d\n%s{table=\"penaltybox\"} %d\n", ev, s.erl.counterEvictions.Load(), ev, s.erl.penaltyEvictions.Load())
}
