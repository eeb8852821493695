// Package live pushes the stored event counts to dashboards over a
// WebSocket.
//
// Counts are rows committed to the store: initialized from the store's
// exact per-site counts at start, then increased by the loader after each
// insert, so the number on the dashboard reconciles with ClickHouse.
//
// Updates are coalesced: the hub publishes at most one message per
// Interval, and every client is sent the newest message when it is ready
// for one, never a queue of stale ones. A client that cannot take a message
// within WriteTimeout is dropped.
//
// The sites listed one by one are bounded, since anyone can make up site
// names through the pixel: with a site list (Options.Sites), only those;
// else the first MaxSites (at start, those with the most events). Events
// of the others are summed up in Message.Other and counted in
// edgepixel_aggregator_live_other_events_total, so Total still reconciles
// with the store.
package live

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/store"
)

// Message is what clients receive.
type Message struct {
	Type  string            `json:"type"` // "counts"
	Total uint64            `json:"total"`
	Sites map[string]uint64 `json:"sites"`
	// Other is the events of the sites not in Sites (beyond MaxSites, or
	// not on the site list): Total is Other plus the sum of Sites.
	Other uint64 `json:"other"`
	TS    int64  `json:"ts"` // unix milliseconds when it was built
}

// Options tune a Hub. Zero values take the defaults.
type Options struct {
	Interval     time.Duration // minimum time between messages; default 100 ms
	PingInterval time.Duration // default 20 s
	PongWait     time.Duration // drop a client silent this long; default 60 s
	WriteTimeout time.Duration // drop a client that takes longer to write; default 5 s
	// Sites, if not empty, are the only sites listed one by one; MaxSites
	// bounds them otherwise (default 1000).
	Sites    []string
	MaxSites int
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// CheckOrigin decides which origins may connect. Default (nil): the
	// same origin as the dashboard, or clients that send no Origin (scripts,
	// tests). Traffic figures are the site owner's business, so another
	// site's page must not read them through a visitor's browser.
	CheckOrigin func(*http.Request) bool
}

// Hub holds the counts and the connected clients.
type Hub struct {
	opts     Options
	log      *slog.Logger
	upgrader websocket.Upgrader

	allowed map[string]bool // nil: any site, up to MaxSites

	mu      sync.Mutex
	counts  map[string]uint64
	other   uint64        // events of the sites not in counts
	ready   bool          // counts initialized from the store
	dirty   chan struct{} // capacity 1: counts changed since the last message
	msg     []byte        // newest message, nil until ready
	version uint64        // increases with every new msg
	changed chan struct{} // closed and replaced when msg changes
	clients int
	closed  chan struct{}
	once    sync.Once
}

// NewHub returns a hub with no counts. It sends nothing until Set is
// called, so a client never sees a number that is not from the store.
func NewHub(opts Options) *Hub {
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 20 * time.Second
	}
	if opts.PongWait <= 0 {
		opts.PongWait = 60 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxSites <= 0 {
		opts.MaxSites = 1000
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	var allowed map[string]bool
	if len(opts.Sites) > 0 {
		allowed = map[string]bool{}
		for _, s := range opts.Sites {
			allowed[s] = true
		}
	}
	return &Hub{
		allowed: allowed,
		opts:    opts, log: opts.Logger.With("component", "live"),
		upgrader: websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 4096, CheckOrigin: opts.CheckOrigin},
		counts:   map[string]uint64{}, dirty: make(chan struct{}, 1), changed: make(chan struct{}),
		closed: make(chan struct{}),
	}
}

// Set replaces the counts with the store's (at start): the per-site
// counts of at least the sites to list, and the total over all sites.
func (h *Hub) Set(counts map[string]uint64, total uint64) {
	kept, _ := store.TopCounts(counts, h.opts.Sites, h.opts.MaxSites)
	var sum uint64
	for _, n := range kept {
		sum += n
	}
	h.mu.Lock()
	h.counts = kept
	h.other = total - min(sum, total)
	h.ready = true
	h.mu.Unlock()
	h.markDirty()
}

// Add adds per-site deltas (rows just stored).
func (h *Hub) Add(delta map[string]uint64) {
	if len(delta) == 0 {
		return
	}
	var other uint64
	h.mu.Lock()
	for k, v := range delta {
		if _, ok := h.counts[k]; ok || h.admit(k) {
			h.counts[k] += v
		} else {
			other += v
		}
	}
	h.other += other
	h.mu.Unlock()
	h.opts.Metrics.LiveOtherEvents.Add(other)
	h.markDirty()
}

// admit reports whether a site not listed yet may be.
func (h *Hub) admit(site string) bool {
	if h.allowed != nil {
		return h.allowed[site]
	}
	return len(h.counts) < h.opts.MaxSites
}

func (h *Hub) markDirty() {
	select {
	case h.dirty <- struct{}{}:
	default:
	}
}

// Snapshot returns the current counts: the sites listed one by one, the
// events of the others, the total, and whether they are initialized.
func (h *Hub) Snapshot() (sites map[string]uint64, other, total uint64, ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	total = h.other
	for _, v := range h.counts {
		total += v
	}
	return maps.Clone(h.counts), h.other, total, h.ready
}

// Sites returns the number of sites listed one by one.
func (h *Hub) Sites() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.counts)
}

// Clients returns the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients
}

// Run publishes changed counts, at most once per Interval, until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.dirty:
		}
		h.publish()
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.opts.Interval):
		}
	}
}

func (h *Hub) publish() {
	sites, other, total, ready := h.Snapshot()
	if !ready {
		return
	}
	b, err := json.Marshal(Message{Type: "counts", Total: total, Sites: sites, Other: other, TS: time.Now().UnixMilli()})
	if err != nil {
		h.log.Error("encode counts", "err", err)
		return
	}
	h.mu.Lock()
	h.msg = b
	h.version++
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// latest returns the newest message and a channel closed when it is
// replaced.
func (h *Hub) latest() ([]byte, uint64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg, h.version, h.changed
}

// Close disconnects every client (with a "going away" close frame). The
// HTTP server's Shutdown does not, as WebSocket connections are hijacked.
func (h *Hub) Close() {
	h.once.Do(func() { close(h.closed) })
}

// ServeHTTP upgrades GET /live to a WebSocket and streams counts: the
// current counts at once, then every change.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an error status
	}
	h.mu.Lock()
	h.clients++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.clients--
		h.mu.Unlock()
		conn.Close()
	}()

	// The reader goroutine handles pongs and notices the client going away;
	// clients send nothing else we care about.
	gone := make(chan struct{})
	conn.SetReadLimit(4096)
	conn.SetReadDeadline(time.Now().Add(h.opts.PongWait))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(h.opts.PongWait))
	})
	go func() {
		defer close(gone)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()

	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	var sent uint64
	for {
		msg, version, changed := h.latest()
		if msg != nil && version != sent {
			conn.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				h.log.Debug("dropping live client", "remote", r.RemoteAddr, "err", err)
				return
			}
			sent = version
			continue // a newer message may have come while writing
		}
		select {
		case <-changed:
		case <-ping.C:
			conn.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
			if err := conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		case <-gone:
			return
		case <-h.closed:
			conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"),
				time.Now().Add(time.Second))
			return
		}
	}
}
