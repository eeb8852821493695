// Package metrics holds the aggregator's counters and writes them in the
// Prometheus text format. It is hand-written rather than a client library
// because the aggregator exports a dozen numbers and nothing more.
package metrics

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Metrics are the aggregator's counters and gauges. The zero value is not
// usable; call New. All methods are safe for concurrent use.
type Metrics struct {
	AcceptedEvents  atomic.Uint64 // events in batches written to the spool
	AcceptedBatches atomic.Uint64
	Deduped         atomic.Uint64 // events dropped as already stored
	Requeued        atomic.Uint64 // events moved to the spool's end: another live aggregator held their claim
	Inserted        atomic.Uint64 // rows written to the store
	Loads           atomic.Uint64 // successful store inserts (loader batches)
	DedupeErrors    atomic.Uint64 // failed calls to the dedupe store (Redis)
	StoreErrors     atomic.Uint64 // failed calls to the event store (ClickHouse)
	SpoolCorrupt    atomic.Uint64 // spool records that could not be decoded
	DedupeCalls     atomic.Uint64 // Claim and MarkDone calls (Redis round trips)
	DedupeNanos     atomic.Uint64 // their total duration
	Failing         atomic.Int32  // 1 once a component failed (the process exits)
	AcceptedConns   atomic.Uint64 // connections admitted by the guard
	AcceptErrors    atomic.Uint64 // accepts that failed for lack of file descriptors
	IdleTimeouts    atomic.Uint64 // keep-alive connections closed after the idle timeout
	FramingCloses   atomic.Uint64 // answers sent with Connection: close for Transfer-Encoding or HTTP/1.0
	LiveOtherEvents atomic.Uint64 // stored events the live counts sum up as "other" (site over the bound or not listed)
	LiveDropped     atomic.Uint64 // live clients dropped because their update queue was full
	// LiveVisitorsCapped counts the visitor ids the live view could not
	// keep because it held its cap (--live-max-visitors) of them.
	LiveVisitorsCapped atomic.Uint64
	// EdgeHits and EdgeEvents are the hits the edges answered and the
	// events they accepted, as their stored counters grew (EdgeCount).
	EdgeHits   atomic.Uint64
	EdgeEvents atomic.Uint64
	// EdgeDuplicates are the events the edges accepted that were a
	// client's retry of one stored (wire.CounterDuplicates), as the
	// loader's stored counters grew.
	EdgeDuplicates atomic.Uint64

	// Gauges are read when metrics are written.
	SpoolBytes  func() int64   // bytes appended but not yet committed
	LoaderLag   func() float64 // seconds the loader has been behind
	LiveClients func() int
	LiveSites   func() int   // sites the live counts list one by one
	OpenConns   func() int   // open HTTP connections
	BodyMemory  func() int64 // bytes request bodies hold now (the ingest budget in use)
	dropMu      sync.Mutex
	dropped     map[string]*atomic.Uint64
	bad         map[string]*atomic.Uint64 // bad rows by reason; under dropMu
	authFails   map[string]*atomic.Uint64 // failed credential checks by kind; under dropMu
	edgeDrops   map[string]*atomic.Uint64 // edge drops by reason; under dropMu
	edgeNotes   map[string]*atomic.Uint64 // edge notes by reason; under dropMu

	// LoaderPaused is 1 while loading waits for Redis or the store (a
	// failed attempt being retried), else 0.
	LoaderPaused func() int
	// SpoolNoRoom is 1 from an append the spool's disk had no room for
	// until one writes (spool.Spool.Refusing), else 0.
	SpoolNoRoom func() int
}

// New returns empty metrics.
func New() *Metrics {
	m := &Metrics{dropped: map[string]*atomic.Uint64{}}
	// The edges' reasons at 0 from the start, as DeclareDrops does for
	// the aggregator's own: the README's alert on delivery_failed's
	// increase missed the first loss after a restart, the series
	// appearing with it.
	m.declare(&m.edgeDrops, wire.DropReasons)
	m.declare(&m.edgeNotes, wire.NoteReasons)
	return m
}

// Drop counts one rejected request for reason.
func (m *Metrics) Drop(reason string) {
	m.dropMu.Lock()
	c := counterOf(&m.dropped, reason)
	m.dropMu.Unlock()
	c.Add(1)
}

// counterOf returns the counter of key in *counts, made (with the map)
// when there is none; called under dropMu.
func counterOf(counts *map[string]*atomic.Uint64, key string) *atomic.Uint64 {
	if *counts == nil {
		*counts = map[string]*atomic.Uint64{}
	}
	c, ok := (*counts)[key]
	if !ok {
		c = new(atomic.Uint64)
		(*counts)[key] = c
	}
	return c
}

// BadRow counts n bad rows (invalid events kept in the bad_rows table)
// for reason.
func (m *Metrics) BadRow(reason string, n int) {
	m.dropMu.Lock()
	c := counterOf(&m.bad, reason)
	m.dropMu.Unlock()
	c.Add(uint64(n))
}

// BadRows returns the bad-row count for reason.
func (m *Metrics) BadRows(reason string) uint64 {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	if c, ok := m.bad[reason]; ok {
		return c.Load()
	}
	return 0
}

// maxEdgeReasons bounds the reason labels of the edge drops; further
// reasons count as "other". Reasons are wire.ValidReason strings.
const maxEdgeReasons = 64

// EdgeCount adds n to the edges' counter (wire.CounterHits,
// CounterEvents, CounterDuplicates, or CounterDropped or CounterNoted
// with reason).
func (m *Metrics) EdgeCount(counter, reason string, n uint64) {
	switch counter {
	case wire.CounterHits:
		m.EdgeHits.Add(n)
		return
	case wire.CounterEvents:
		m.EdgeEvents.Add(n)
		return
	case wire.CounterDuplicates:
		m.EdgeDuplicates.Add(n)
		return
	}
	m.dropMu.Lock()
	byReason := &m.edgeDrops
	if counter == wire.CounterNoted {
		byReason = &m.edgeNotes
	}
	if *byReason == nil {
		*byReason = map[string]*atomic.Uint64{}
	}
	c, ok := (*byReason)[reason]
	if !ok {
		if len(*byReason) >= maxEdgeReasons {
			reason = "other"
		}
		if c, ok = (*byReason)[reason]; !ok {
			c = new(atomic.Uint64)
			(*byReason)[reason] = c
		}
	}
	m.dropMu.Unlock()
	c.Add(n)
}

// EdgeNotes returns the edges' notes counted for reason.
func (m *Metrics) EdgeNotes(reason string) uint64 {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	if c, ok := m.edgeNotes[reason]; ok {
		return c.Load()
	}
	return 0
}

// EdgeDrops returns the edges' drops counted for reason.
func (m *Metrics) EdgeDrops(reason string) uint64 {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	if c, ok := m.edgeDrops[reason]; ok {
		return c.Load()
	}
	return 0
}

// DeclareDrops, DeclareBadRows and DeclareAuthFailures list reasons (or
// credential kinds) that may be counted, so that /metrics shows each at 0
// from the start: an alert on a counter's increase does not see a series
// appear with its first count (Prometheus's advice: export every label
// value known in advance).
func (m *Metrics) DeclareDrops(reasons ...string) { m.declare(&m.dropped, reasons) }

// DeclareBadRows: see DeclareDrops.
func (m *Metrics) DeclareBadRows(reasons ...string) { m.declare(&m.bad, reasons) }

// DeclareAuthFailures: see DeclareDrops.
func (m *Metrics) DeclareAuthFailures(kinds ...string) { m.declare(&m.authFails, kinds) }

func (m *Metrics) declare(counts *map[string]*atomic.Uint64, keys []string) {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	for _, k := range keys {
		counterOf(counts, k)
	}
}

// AuthFailure counts one failed credential check of kind.
func (m *Metrics) AuthFailure(kind string) {
	m.dropMu.Lock()
	c := counterOf(&m.authFails, kind)
	m.dropMu.Unlock()
	c.Add(1)
}

// AuthFailures returns the failed credential checks of kind.
func (m *Metrics) AuthFailures(kind string) uint64 {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	if c, ok := m.authFails[kind]; ok {
		return c.Load()
	}
	return 0
}

// ObserveDedupe records the duration of one dedupe call.
func (m *Metrics) ObserveDedupe(d time.Duration) {
	m.DedupeCalls.Add(1)
	m.DedupeNanos.Add(uint64(d))
}

// Dropped returns the count for reason.
func (m *Metrics) Dropped(reason string) uint64 {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	if c, ok := m.dropped[reason]; ok {
		return c.Load()
	}
	return 0
}

// WriteTo writes every metric in the Prometheus text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v any) {
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	const p = "edgepixel_aggregator_"
	counter(p+"accepted_events_total", "Events in accepted batches (written to the spool).", m.AcceptedEvents.Load())
	counter(p+"accepted_batches_total", "Batches accepted and spooled.", m.AcceptedBatches.Load())
	// byLabel writes one counter family with a value per label value,
	// sorted; called under dropMu.
	byLabel := func(name, label, help string, values map[string]*atomic.Uint64) {
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(cw, "%s{%s=%q} %d\n", name, label, k, values[k].Load())
		}
	}
	m.dropMu.Lock()
	byLabel(p+"dropped_total", "reason", "Requests and connections refused or cut off, by reason.", m.dropped)
	byLabel(p+"bad_rows_total", "reason", "Events or lines kept as bad rows instead of stored, by reason.", m.bad)
	byLabel(p+"auth_failures_total", "kind", "Failed credential checks (HMAC signature, log token, admin token), by kind.", m.authFails)
	byLabel(p+"edge_drops_total", "reason", "Hits the edges rejected and accepted events they could not deliver, by reason, as their stored counters grew (per site: /api/loss).", m.edgeDrops)
	byLabel(p+"edge_notes_total", "reason", "Events the edges accepted and stored without something they normally carry, by reason (no_salt: no visitor id; client_clock: a client's event id out of bounds, its time moved near the edge's), as their stored counters grew (per site: /api/loss).", m.edgeNotes)
	m.dropMu.Unlock()
	counter(p+"edge_hits_total", "Requests the edges answered on the pixel and event paths, as their stored counters grew (per site: /api/loss).", m.EdgeHits.Load())
	counter(p+"edge_events_total", "Events the edges accepted for delivery, as their stored counters grew; set against inserted_total and edge_duplicates_total, the difference is loss or events on their way.", m.EdgeEvents.Load())
	counter(p+"edge_duplicates_total", "Events the edges accepted that were a client's retry of an event stored once (same event_id or Idempotency-Key), counted under edge_events_total each time, not a loss (per site: /api/loss).", m.EdgeDuplicates.Load())
	counter(p+"deduped_total", "Events not stored because they were stored before (retries, duplicates).", m.Deduped.Load())
	counter(p+"requeued_total", "Events moved to the end of the spool because another live aggregator held their claim (it is storing them, or cannot); they are claimed again later.", m.Requeued.Load())
	counter(p+"inserted_total", "Rows inserted into the event store.", m.Inserted.Load())
	counter(p+"loads_total", "Successful inserts into the event store.", m.Loads.Load())
	counter(p+"dedupe_errors_total", "Failed calls to the dedupe store (Redis); the loader retries.", m.DedupeErrors.Load())
	counter(p+"store_errors_total", "Failed calls to the event store (ClickHouse); the loader retries.", m.StoreErrors.Load())
	fmt.Fprintf(cw, "# HELP %sdedupe_duration_seconds Time spent in dedupe calls (Redis claim and mark-done pipelines).\n# TYPE %sdedupe_duration_seconds summary\n%sdedupe_duration_seconds_sum %.6f\n%sdedupe_duration_seconds_count %d\n",
		p, p, p, float64(m.DedupeNanos.Load())/1e9, p, m.DedupeCalls.Load())
	counter(p+"spool_corrupt_total", "Spool records that could not be decoded and were skipped.", m.SpoolCorrupt.Load())
	gauge(p+"failing", "1 once a component failed (the reason is on /healthz and in the log); the process exits to be restarted.", m.Failing.Load())
	if m.SpoolBytes != nil {
		gauge(p+"spool_bytes", "Bytes spooled but not yet stored.", m.SpoolBytes())
	}
	if m.LoaderLag != nil {
		gauge(p+"loader_lag_seconds", "How long the loader has had unstored records (0 when caught up).", m.LoaderLag())
	}
	if m.LoaderPaused != nil {
		gauge(p+"loader_paused", "1 while loading waits for Redis or the store to answer (ingest keeps spooling).", m.LoaderPaused())
	}
	if m.SpoolNoRoom != nil {
		gauge(p+"spool_no_room", "1 from a batch the spool's disk had no room for until one is written (ingest answers 503 spool_error meanwhile; the process goes on and takes batches once the disk has room).", m.SpoolNoRoom())
	}
	counter(p+"connections_total", "HTTP connections admitted (not refused by the connection caps).", m.AcceptedConns.Load())
	counter(p+"accept_errors_total", "Connections that could not be accepted for lack of file descriptors.", m.AcceptErrors.Load())
	counter(p+"idle_timeouts_total", "Keep-alive connections closed after --idle-timeout without a new request.", m.IdleTimeouts.Load())
	counter(p+"framing_closes_total", "Answers followed by closing the connection because the request was framed by Transfer-Encoding or was HTTP/1.0 (RFC 9112 section 6.3).", m.FramingCloses.Load())
	if m.OpenConns != nil {
		gauge(p+"open_connections", "Open HTTP connections (WebSockets included).", m.OpenConns())
	}
	if m.BodyMemory != nil {
		gauge(p+"body_memory_bytes", "Memory held by request bodies being read or decoded (bounded by --max-body-memory).", m.BodyMemory())
	}
	counter(p+"live_dropped_clients_total", "Live WebSocket clients dropped because they did not take their updates in time (queue full).", m.LiveDropped.Load())
	counter(p+"live_visitors_capped_total", "Visitor ids the live view's 5-minute visitor count could not keep because it held --live-max-visitors of them: while some are in the window the count is a lower bound.", m.LiveVisitorsCapped.Load())
	counter(p+"live_other_events_total", "Stored events the live counts and /api/counts sum up as other: their site is beyond --max-sites or not on --sites.", m.LiveOtherEvents.Load())
	if m.LiveSites != nil {
		gauge(p+"live_sites", "Sites the live counts list one by one (at most --max-sites, or the --sites list).", m.LiveSites())
	}
	if m.LiveClients != nil {
		gauge(p+"live_clients", "Connected live-count WebSocket clients.", m.LiveClients())
	}
	buildinfo.WriteMetric(cw, p+"build_info")
	return cw.n, cw.err
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}

// DropCounts returns the ingest drops by reason and the bad rows by
// reason counted since the process started.
func (m *Metrics) DropCounts() (dropped, badRows map[string]uint64) {
	m.dropMu.Lock()
	defer m.dropMu.Unlock()
	dropped, badRows = map[string]uint64{}, map[string]uint64{}
	for k, c := range m.dropped {
		dropped[k] = c.Load()
	}
	for k, c := range m.bad {
		badRows[k] = c.Load()
	}
	return dropped, badRows
}
