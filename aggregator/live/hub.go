// Package live pushes the stored event counts to dashboards over a
// WebSocket.
//
// Counts are rows committed to the store: initialized from the store's
// exact per-site counts at start, then increased by the loader after each
// insert, so the number on the dashboard reconciles with ClickHouse.
//
// # Protocol
//
// A client that connects gets one "snapshot" message (every readable
// site's count, its events per second over the last RecentSeconds, the
// pages stored in the last PagesWindow and its visitors in the last
// VisitorsWindow), then "delta" messages: the sites whose counts changed
// since the previous message, with their new count and what was added,
// and the sites whose visitor count changed (also when visitors leave the
// window: the hub looks once a second). Messages carry a sequence number that grows by one
// per message to that client, so a client can tell it missed nothing.
// Deltas are published at most once per Interval; when nothing changed,
// one a second anyway (with no sites), so a client can tell that it is
// still connected and up to date, and show it.
//
// # Slow clients
//
// Each client has a queue of QueueLen messages. Publishing never waits for
// a client: a client whose queue is full is dropped with close code 1008
// and the reason CloseSlow; it reconnects and gets a fresh snapshot.
// Ingest and loading only ever take the hub's lock to add counts, so slow
// clients never slow them.
//
// # Credentials
//
// A client is let in by the credential it connected with (Reader), and
// stays only as long as that still grants access: when told that
// credentials changed (Recheck, e.g. a share link revoked, a session
// logged out, the viewer tokens reloaded), the hub asks each client's
// Reader.Recheck again, off its lock, and closes a client whose
// credential no longer grants anything with close code 1008 and the
// reason CloseRevoked; one whose sites changed gets a new snapshot of
// what it may read now. A session's end (Reader.Until) is looked at once
// a second, and closes the client with CloseExpired. Nothing of this is
// done per message.
//
// # Bounds
//
// The sites listed one by one are bounded, since anyone can make up site
// names through the pixel: with a site list (Options.Sites), only those;
// else the first MaxSites (at start, those with the most events). Events
// of the others are summed up in Message.Other and counted in
// edgepixel_aggregator_live_other_events_total, so Total still reconciles
// with the store.
//
// Visitors are counted exactly (see VisitorsWindow) but the ids kept at
// once over all sites are bounded by Options.MaxVisitors: an id that finds
// the hub full is not counted (edgepixel_aggregator_live_visitors_capped_total)
// and the messages flag the counts as lower bounds (VisitorsCapped) until
// it would have left the window.
package live

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/metrics"
	"github.com/edgepixel/edgepixel/aggregator/reply"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// Message types.
const (
	TypeSnapshot = "snapshot"
	TypeDelta    = "delta"
)

// CloseSlow is the close reason sent to a client dropped because its
// queue was full.
const CloseSlow = "too slow: update queue full"

// CloseRevoked and CloseExpired are the close reasons (code 1008, policy
// violation) sent to a client whose credential no longer grants access:
// revoked (a share link revoked, a token removed, a session logged out)
// or its session expired. Either way, connecting again is refused until
// the user logs in again.
const (
	CloseRevoked = "credentials revoked"
	CloseExpired = "session expired"
)

// RecentSeconds is how many seconds of events per second a snapshot
// carries per site.
const RecentSeconds = 60

// PagesWindow is how far back "pages viewed now" and the pageviews of
// RecentPageviews look.
const PagesWindow = 5 * time.Minute

// pagesSeconds is PagesWindow in seconds. pageBucket is the seconds one
// bucket of a site's pages covers: "pages viewed now" sums the buckets
// wholly within the window, so it looks back between PagesWindow less a
// bucket and PagesWindow (whole minutes looked back up to a minute more,
// so a pageview stayed after its visitor left VisitorsWindow: found by a
// new-user tester). The pageviews RecentPageviews counts are kept per
// second, exactly as long as the visitors.
const (
	pagesSeconds = int64(PagesWindow / time.Second)
	pageBucket   = 10
)

// maxPages bounds the pages listed per site in a message; maxPaths the
// distinct paths kept per site and bucket (the rest count as "(other)").
const (
	maxPages = 10
	maxPaths = 1000
)

// Page is a path and its pageviews stored in the last PagesWindow.
type Page struct {
	Path string `json:"path"`
	N    uint64 `json:"n"`
}

// Message is what clients receive.
type Message struct {
	Type string `json:"type"` // TypeSnapshot or TypeDelta
	// Seq is 1 for the first snapshot, +1 per message. A snapshot can
	// come again (the counts were read from the store again); it replaces
	// what the client held.
	Seq uint64 `json:"seq"`
	// Total is the stored events of every site the client may read
	// (and Other, for a client that may read all).
	Total uint64 `json:"total"`
	// Sites holds each site's stored events: all readable sites in a
	// snapshot, the changed ones in a delta.
	Sites map[string]uint64 `json:"sites"`
	// Add is what each changed site gained since the previous message
	// (deltas only).
	Add map[string]uint64 `json:"add,omitempty"`
	// Other is the events of the sites not listed one by one (beyond
	// MaxSites, or not on the site list); only for clients that may read
	// all sites. Total is Other plus the sum of all sites.
	Other uint64 `json:"other"`
	// Recent is, per site, the events stored in each of the last
	// RecentSeconds seconds, oldest first, the last one being the second
	// of TS (snapshot only).
	Recent map[string][]uint64 `json:"recent,omitempty"`
	// Pages is, per site, the most viewed paths stored in the last
	// PagesWindow (snapshot: every site that has some; delta: the sites
	// whose pages changed).
	Pages map[string][]Page `json:"pages,omitempty"`
	// Visitors is, per site, the distinct non-zero visitor ids among the
	// events stored in the last VisitorsWindow seconds (snapshot: every
	// readable site; delta: the sites whose count changed). Events
	// without a visitor id (the aggregate consent tier) are not visitors;
	// bots are, as they are in the other live figures.
	Visitors map[string]uint64 `json:"visitors,omitempty"`
	// VisitorsTotal is the sum of Visitors over every site the client may
	// read (and, for a client that may read all, the visitors of the sites
	// summed up in Other), in every message. Visitor ids are keyed by
	// site, so one person on two sites counts twice.
	VisitorsTotal uint64 `json:"visitors_total"`
	// VisitorsCapped is true while some ids were not counted because the
	// hub held Options.MaxVisitors: the visitor counts are lower bounds.
	VisitorsCapped bool  `json:"visitors_capped,omitempty"`
	TS             int64 `json:"ts"` // unix milliseconds when it was built
}

// Reader decides what one client may read.
type Reader struct {
	All  bool                   // every site, and Other
	Read func(site string) bool // the sites it may read when not All
	// Recheck, if set, checks the client's credential again: ok false
	// closes the client (CloseRevoked); changed true replaces the
	// Reader with next, which should carry Recheck and Until too, and
	// sends the client a new snapshot. The hub calls it when the client
	// connects and after each Hub.Recheck, never with its lock held.
	Recheck func() (next Reader, changed, ok bool)
	// Until, if not zero, is when the credential ends (a session's
	// expiry): the client is closed then (CloseExpired), within a second.
	Until time.Time
}

func (r Reader) can(site string) bool { return r.All || (r.Read != nil && r.Read(site)) }

// Options tune a Hub. Zero values take the defaults.
type Options struct {
	Interval     time.Duration // minimum time between messages; default 100 ms
	PingInterval time.Duration // default 20 s; a client without messages is pinged at 1.5 times it
	PongWait     time.Duration // drop a client silent this long; default 60 s (over 1.5 PingInterval)
	WriteTimeout time.Duration // drop a client that takes longer to write; default 5 s
	QueueLen     int           // messages queued per client before it is dropped; default 64
	// Sites, if not empty, are the only sites listed one by one; MaxSites
	// bounds them otherwise (default 1000).
	Sites    []string
	MaxSites int
	// MaxVisitors bounds the visitor ids kept at once over all sites;
	// default DefaultMaxVisitors.
	MaxVisitors int
	Metrics     *metrics.Metrics
	Logger      *slog.Logger
	// CheckOrigin decides which origins may connect. Default (nil): the
	// same origin as the dashboard, or clients that send no Origin (scripts,
	// tests). Traffic figures are the site owner's business, so another
	// site's page must not read them through a visitor's browser.
	CheckOrigin func(*http.Request) bool
	Now         func() time.Time // for tests
}

// siteLive is one site's recent activity.
type siteLive struct {
	sec    int64                 // unix second of recent's last slot
	recent [RecentSeconds]uint64 // ring: events per second, index sec % RecentSeconds
	// pages by bucket (unix second / pageBucket): path -> pageviews.
	pages map[int64]map[string]uint64
	// pv is a ring of pageviews per second, index sec % pagesSeconds,
	// its last slot pvSec.
	pv           [pagesSeconds]uint64
	pvSec        int64
	pagesChanged bool
	vis          *visitors // nil until an event with a visitor id
}

type client struct {
	reader  Reader
	queue   chan []byte
	seq     uint64
	dropped chan string // closed-over reason, buffered 1
}

// Hub holds the counts and the connected clients.
type Hub struct {
	opts     Options
	log      *slog.Logger
	upgrader websocket.Upgrader

	allowed map[string]bool // nil: any site, up to MaxSites

	mu     sync.Mutex
	counts map[string]uint64
	other  uint64 // events of the sites not in counts
	ready  bool   // counts initialized from the store
	added  map[string]uint64
	live   map[string]*siteLive
	// otherVis counts the visitors of the sites not listed one by one;
	// tracked is the visitor ids kept over all sites (at most
	// MaxVisitors), sweptAt the second all sites were last swept for room.
	otherVis *visitors
	tracked  int
	sweptAt  int64
	restore  []event.Event // given to Restore before the first Set
	dirty    chan struct{} // capacity 1: counts changed since the last message
	recheck  chan struct{} // capacity 1: credentials changed (Recheck)
	clients  map[*client]struct{}
	closed   chan struct{}
	once     sync.Once
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
	if opts.QueueLen <= 0 {
		opts.QueueLen = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxSites <= 0 {
		opts.MaxSites = 1000
	}
	if opts.MaxVisitors <= 0 {
		opts.MaxVisitors = DefaultMaxVisitors
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Now == nil {
		opts.Now = time.Now
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
		upgrader: websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 4096, CheckOrigin: opts.CheckOrigin, Error: handshakeError},
		counts:   map[string]uint64{}, added: map[string]uint64{}, live: map[string]*siteLive{},
		dirty: make(chan struct{}, 1), recheck: make(chan struct{}, 1), clients: map[*client]struct{}{},
		closed: make(chan struct{}),
	}
}

// Set replaces the counts with the store's: the per-site counts of at
// least the sites to list, and the total over all sites. At start, and
// again when stored events were removed (an erasure, retention), which
// only a count read from the store shows; then every client gets a new
// snapshot, as counts may have gone down.
func (h *Hub) Set(counts map[string]uint64, total uint64) {
	kept, _ := store.TopCounts(counts, h.opts.Sites, h.opts.MaxSites)
	var sum uint64
	for _, n := range kept {
		sum += n
	}
	h.mu.Lock()
	again := h.ready
	h.counts = kept
	h.other = total - min(sum, total)
	h.ready = true
	clear(h.added)
	if h.restore != nil {
		h.restoreLocked(h.restore)
		h.restore = nil
	}
	// Clients connected before the store answered get their snapshot
	// now; after a recount, every client does.
	for c := range h.clients {
		if c.seq == 0 || again {
			h.sendLocked(c, h.snapshotLocked(c.reader, h.opts.Now()))
		}
	}
	h.mu.Unlock()
}

// Add adds per-site deltas (rows just stored).
func (h *Hub) Add(delta map[string]uint64) {
	if len(delta) == 0 {
		return
	}
	var other uint64
	sec := h.opts.Now().Unix()
	h.mu.Lock()
	for k, v := range delta {
		if _, ok := h.counts[k]; ok || h.admit(k) {
			h.counts[k] += v
			h.added[k] += v
			h.siteLocked(k, sec).recent[sec%RecentSeconds] += v
		} else {
			other += v
		}
	}
	h.other += other
	h.mu.Unlock()
	h.opts.Metrics.LiveOtherEvents.Add(other)
	h.markDirty()
}

// Observe records the pageviews among evs (rows just stored) for "pages
// viewed now" and their visitor ids for the visitors in the last
// VisitorsWindow, at the second they are stored; an event whose own time
// is older than that window is not one of now (a spool's delivery after
// an outage, an event a client backdated by its id: a tester's
// yesterday's pageview was a page viewed now), and is left out, as
// Restore leaves it out. Counts come from Add.
func (h *Hub) Observe(evs []event.Event) {
	sec := h.opts.Now().Unix()
	h.mu.Lock()
	for i := range evs {
		if !ofNow(evs[i].Time/1000, sec) {
			continue
		}
		h.observeLocked(&evs[i], sec)
	}
	h.mu.Unlock()
	h.markDirty()
}

// RestoreWindow is how far back Restore wants stored events: the longest
// of the live windows.
const RestoreWindow = VisitorsWindow * time.Second

// RestoreMax bounds the stored events Restore is given (the newest): their
// URLs are held at once while the windows are rebuilt. Past it, the
// oldest seconds of the windows are short of events.
const RestoreMax = 1 << 18

// Restore fills the live windows (events per second, pages viewed now,
// visitors in the last VisitorsWindow) from events already stored, so an
// aggregator that restarts does not show them empty until they refill.
// evs are the events stored in the last RestoreWindow, in any order, as
// store.Store.Recent returns them; each counts at the second of its time
// (the edge's clock, clamped to now), where live traffic counts at the
// second it is stored. Call it once, before the first Add, so no event
// counts twice: before the first Set, it keeps evs and applies them in
// Set, so the first snapshot a client gets already has them. It does not
// change the counts, which Set takes from the store.
func (h *Hub) Restore(evs []event.Event) {
	h.mu.Lock()
	if !h.ready {
		h.restore = evs
		h.mu.Unlock()
		return
	}
	h.restoreLocked(evs)
	h.mu.Unlock()
	h.markDirty()
}

func (h *Hub) restoreLocked(evs []event.Event) {
	now := h.opts.Now().Unix()
	slices.SortStableFunc(evs, func(a, b event.Event) int { return cmp.Compare(a.Time, b.Time) })
	for i := range evs {
		e := &evs[i]
		sec := min(e.Time/1000, now)
		if !ofNow(sec, now) {
			continue
		}
		if _, ok := h.counts[e.Site]; ok && sec > now-RecentSeconds {
			h.siteLocked(e.Site, sec).recent[sec%RecentSeconds]++
		}
		h.observeLocked(e, sec)
	}
}

// ofNow reports whether an event of unix second sec is within the live
// windows that end at now: Observe and Restore leave the others out.
func ofNow(sec, now int64) bool { return sec > now-VisitorsWindow }

// observeLocked records e, stored at unix second sec (never before the
// previous call's): its visitor id and, for a pageview, its page.
func (h *Hub) observeLocked(e *event.Event, sec int64) {
	if _, ok := h.counts[e.Site]; !ok { // not listed one by one
		if e.VisitorID != 0 {
			if h.otherVis == nil {
				h.otherVis = newVisitors(sec)
			}
			h.addVisitorLocked(h.otherVis, e.VisitorID, sec)
		}
		return
	}
	if e.VisitorID == 0 && e.Name != event.KindPageview {
		return
	}
	sl := h.siteLocked(e.Site, sec)
	if e.VisitorID != 0 {
		if sl.vis == nil {
			sl.vis = newVisitors(sec)
		}
		h.addVisitorLocked(sl.vis, e.VisitorID, sec)
	}
	if e.Name != event.KindPageview {
		return
	}
	if sec > sl.pvSec {
		for s := max(sl.pvSec+1, sec-pagesSeconds+1); s <= sec; s++ {
			sl.pv[s%pagesSeconds] = 0
		}
		sl.pvSec = sec
	}
	if sec > sl.pvSec-pagesSeconds {
		sl.pv[sec%pagesSeconds]++
	}
	b := sec / pageBucket
	m := sl.pages[b]
	if m == nil {
		m = map[string]uint64{}
		sl.pages[b] = m
		for k := range sl.pages {
			if k*pageBucket <= sec-pagesSeconds-pageBucket {
				delete(sl.pages, k)
			}
		}
	}
	p := Path(e.URL)
	if _, ok := m[p]; !ok && len(m) >= maxPaths {
		p = "(other)"
	}
	m[p]++
	sl.pagesChanged = true
}

// addVisitorLocked counts id, seen at sec, in v, keeping the hub's ids
// within MaxVisitors: when full, it first sweeps every site's ids that
// left the window (at most once a second), then drops the id if still
// full.
func (h *Hub) addVisitorLocked(v *visitors, id uint64, sec int64) {
	v.advance(sec)
	room := h.tracked < h.opts.MaxVisitors
	if !room && h.sweptAt != sec {
		h.sweptAt = sec
		for _, sl := range h.live {
			if sl.vis != nil {
				sl.vis.advance(sec)
				h.tracked -= sl.vis.sweep()
			}
		}
		if h.otherVis != nil {
			h.otherVis.advance(sec)
			h.tracked -= h.otherVis.sweep()
		}
		room = h.tracked < h.opts.MaxVisitors
	}
	switch v.add(id, room) {
	case 1:
		h.tracked++
	case -1:
		h.opts.Metrics.LiveVisitorsCapped.Add(1)
	}
	if st := v.stale(); st >= 1024 && st >= v.n {
		h.tracked -= v.sweep()
	}
}

// Path is the path of a page URL, "" when it has none, as ClickHouse's
// path() gives the history's pages: a pageview without a URL is "(none)"
// on both (the live list said "/"). Unparsable URLs are kept whole.
func Path(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Path
}

// siteLocked returns site's activity with recent advanced to sec.
func (h *Hub) siteLocked(site string, sec int64) *siteLive {
	sl := h.live[site]
	if sl == nil {
		sl = &siteLive{sec: sec, pages: map[int64]map[string]uint64{}}
		h.live[site] = sl
	}
	if sec > sl.sec {
		for s := sl.sec + 1; s <= sec && s <= sl.sec+RecentSeconds; s++ {
			sl.recent[s%RecentSeconds] = 0
		}
		sl.sec = sec
	}
	return sl
}

func (sl *siteLive) recentSeries(sec int64) []uint64 {
	out := make([]uint64, RecentSeconds)
	for i := range out {
		s := sec - RecentSeconds + 1 + int64(i)
		if s <= sl.sec && s > sl.sec-RecentSeconds {
			out[i] = sl.recent[s%RecentSeconds]
		}
	}
	return out
}

func (sl *siteLive) topPages(now time.Time) []Page {
	from := now.Unix() - pagesSeconds // buckets starting after it
	sum := map[string]uint64{}
	for b, paths := range sl.pages {
		if b*pageBucket <= from {
			continue
		}
		for p, n := range paths {
			sum[p] += n
		}
	}
	out := make([]Page, 0, len(sum))
	for p, n := range sum {
		out = append(out, Page{p, n})
	}
	slices.SortFunc(out, func(a, b Page) int {
		if a.N != b.N {
			return cmp.Compare(b.N, a.N)
		}
		return cmp.Compare(a.Path, b.Path)
	})
	return out[:min(len(out), maxPages)]
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
	return len(h.clients)
}

// Run publishes changed counts, at most once per Interval, until ctx ends.
// It also publishes once a second, since visitors leave the window with
// no event to say so, and a client shows how fresh its figures are.
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var beat bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.recheck:
			h.recheckClients(true)
			continue
		case <-h.dirty:
			beat = false
		case <-tick.C:
			beat = true
			h.recheckClients(false)
		}
		// A revocation waiting beside the publish goes first: the
		// revoked client gets nothing more.
		select {
		case <-h.recheck:
			h.recheckClients(true)
		default:
		}
		start := time.Now()
		h.publish(beat)
		// The interval runs from the start of a publish, not its end,
		// so that messages keep to it; but a publish holds the lock
		// that loading needs, so a quarter of the interval at least is
		// left free after one that took the whole interval. Revocations
		// are not held up by it (the interval has no upper bound); the
		// tick, expiries' check, waits for the next round, as the beat
		// it also brings must not be lost.
		wait := time.NewTimer(max(h.opts.Interval-time.Since(start), h.opts.Interval/4))
	waiting:
		for {
			select {
			case <-ctx.Done():
				wait.Stop()
				return
			case <-h.recheck:
				h.recheckClients(true)
			case <-wait.C:
				break waiting
			}
		}
	}
}

// Recheck has every client's credential checked again (Reader.Recheck)
// by Run, soon: call it after a credential was revoked or changed. It
// never blocks.
func (h *Hub) Recheck() {
	select {
	case h.recheck <- struct{}{}:
	default:
	}
}

// recheckClients closes the clients whose Reader.Until has passed and,
// with all, asks every other client's Reader.Recheck (the credential
// checks run without the hub's lock, which ingest needs).
func (h *Hub) recheckClients(all bool) {
	now := h.opts.Now()
	var cs []*client
	h.mu.Lock()
	for c := range h.clients {
		switch {
		case !c.reader.Until.IsZero() && !now.Before(c.reader.Until):
			h.dropLocked(c, CloseExpired)
		case all && c.reader.Recheck != nil:
			cs = append(cs, c)
		}
	}
	h.mu.Unlock()
	for _, c := range cs {
		h.recheckClient(c)
	}
}

// recheckClient asks c's Reader.Recheck whether its credential still
// grants access, and closes c or gives it a new snapshot accordingly.
func (h *Hub) recheckClient(c *client) {
	h.mu.Lock()
	check := c.reader.Recheck
	h.mu.Unlock()
	if check == nil {
		return
	}
	next, changed, ok := check()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := h.clients[c]; !in {
		return // gone meanwhile
	}
	switch {
	case !ok:
		h.dropLocked(c, CloseRevoked)
	case changed:
		c.reader = next
		if c.seq > 0 { // else its first snapshot is still to come (Set)
			h.sendLocked(c, h.snapshotLocked(next, h.opts.Now()))
		}
	}
}

// snapshotLocked builds the snapshot r may read.
func (h *Hub) snapshotLocked(r Reader, now time.Time) Message {
	m := Message{Type: TypeSnapshot, Sites: map[string]uint64{}, Recent: map[string][]uint64{},
		Pages: map[string][]Page{}, Visitors: map[string]uint64{}, TS: now.UnixMilli()}
	for s, n := range h.counts {
		if !r.can(s) {
			continue
		}
		m.Sites[s] = n
		m.Total += n
		m.Visitors[s] = 0
		if sl := h.live[s]; sl != nil {
			m.Recent[s] = sl.recentSeries(now.Unix())
			if p := sl.topPages(now); len(p) > 0 {
				m.Pages[s] = p
			}
			if sl.vis != nil {
				n, capped := sl.vis.count(now.Unix())
				m.Visitors[s] = n
				m.VisitorsTotal += n
				m.VisitorsCapped = m.VisitorsCapped || capped
			}
		}
	}
	if r.All {
		m.Other = h.other
		m.Total += h.other
		if h.otherVis != nil {
			n, capped := h.otherVis.count(now.Unix())
			m.VisitorsTotal += n
			m.VisitorsCapped = m.VisitorsCapped || capped
		}
	}
	return m
}

// publish sends one delta of what changed to every client that may read
// some of it; with beat, to every client, also when nothing changed.
func (h *Hub) publish(beat bool) {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ready {
		return
	}
	pages := map[string][]Page{}
	// vis is every site's visitors now, visChanged those that changed
	// since the last message; capped the sites whose count is a lower
	// bound.
	vis, visChanged, capped := map[string]uint64{}, map[string]uint64{}, map[string]bool{}
	var visTotal uint64
	var visCapped bool
	for s, sl := range h.live {
		if sl.pagesChanged {
			sl.pagesChanged = false
			pages[s] = sl.topPages(now)
		}
		if sl.vis != nil {
			n, c := sl.vis.count(now.Unix())
			vis[s], capped[s] = n, c
			visTotal += n
			visCapped = visCapped || c
			if int(n) != sl.vis.published {
				sl.vis.published = int(n)
				visChanged[s] = n
			}
		}
	}
	otherVisChanged := false
	if h.otherVis != nil {
		n, c := h.otherVis.count(now.Unix())
		visTotal += n
		visCapped = visCapped || c
		if int(n) != h.otherVis.published {
			h.otherVis.published = int(n)
			otherVisChanged = true
		}
	}
	if len(h.added) == 0 && len(pages) == 0 && len(visChanged) == 0 && !otherVisChanged && !beat {
		return
	}
	full := Message{Type: TypeDelta, Sites: map[string]uint64{}, Add: maps.Clone(h.added), Pages: pages,
		Other: h.other, Visitors: visChanged, VisitorsTotal: visTotal, VisitorsCapped: visCapped, TS: now.UnixMilli()}
	for s := range h.added {
		full.Sites[s] = h.counts[s]
	}
	var total uint64
	for _, n := range h.counts {
		total += n
	}
	full.Total = total + h.other
	clear(h.added)
	// Clients that may read every site get the same message but for its
	// sequence number: encode it once, not once per client.
	// On an error it is empty, and each client's is encoded (and the
	// error logged) by sendLocked.
	shared, _ := encodeMessage(full)
	for c := range h.clients {
		if c.seq == 0 {
			continue // still waiting for its snapshot
		}
		if c.reader.All {
			if shared.pre == nil {
				h.sendLocked(c, full)
				continue
			}
			c.seq++
			h.queueLocked(c, shared.with(c.seq))
			continue
		}
		m := Message{Type: TypeDelta, Sites: map[string]uint64{}, Add: map[string]uint64{}, Pages: map[string][]Page{},
			Visitors: map[string]uint64{}, TS: full.TS}
		for s, n := range h.counts {
			if c.reader.can(s) {
				m.Total += n
				m.VisitorsTotal += vis[s]
				m.VisitorsCapped = m.VisitorsCapped || capped[s]
			}
		}
		for s, n := range visChanged {
			if c.reader.can(s) {
				m.Visitors[s] = n
			}
		}
		for s, n := range full.Add {
			if c.reader.can(s) {
				m.Add[s], m.Sites[s] = n, full.Sites[s]
			}
		}
		for s, p := range pages {
			if c.reader.can(s) {
				m.Pages[s] = p
			}
		}
		if len(m.Add) == 0 && len(m.Pages) == 0 && len(m.Visitors) == 0 && !beat {
			continue
		}
		h.sendLocked(c, m)
	}
}

// sendLocked queues m for c, numbering it, or drops c when its queue is
// full. It never blocks.
func (h *Hub) sendLocked(c *client, m Message) {
	c.seq++
	m.Seq = c.seq
	b, err := json.Marshal(m)
	if err != nil {
		h.log.Error("encode live message", "err", err)
		return
	}
	h.queueLocked(c, b)
}

// encodedMessage is a Message in JSON with its sequence number left out:
// the bytes before the number and after it.
type encodedMessage struct{ pre, post []byte }

// encodeMessage encodes m (its Seq ignored) for encodedMessage.with.
func encodeMessage(m Message) (encodedMessage, error) {
	m.Seq = 0
	b, err := json.Marshal(m)
	if err != nil {
		return encodedMessage{}, err
	}
	// Type and Seq are the first fields, and Type is one of this
	// package's constants, so the first "seq":0 is the field.
	const field = `"seq":0`
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return encodedMessage{}, fmt.Errorf("no %s in %.40s", field, b)
	}
	cut := i + len(field) - 1
	return encodedMessage{pre: b[:cut], post: b[cut+1:]}, nil
}

// with is the message with sequence number seq, in a slice of its own.
func (e encodedMessage) with(seq uint64) []byte {
	b := make([]byte, 0, len(e.pre)+20+len(e.post))
	b = append(b, e.pre...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, e.post...)
}

// queueLocked queues the encoded message b for c, or drops c when its
// queue is full. It never blocks.
func (h *Hub) queueLocked(c *client, b []byte) {
	select {
	case c.queue <- b:
	default:
		h.dropLocked(c, CloseSlow)
		h.opts.Metrics.LiveDropped.Add(1)
	}
}

// dropLocked removes c from the clients and has its connection closed
// with code 1008 and reason. It never blocks.
func (h *Hub) dropLocked(c *client, reason string) {
	delete(h.clients, c)
	select {
	case c.dropped <- reason:
	default:
	}
}

// Close disconnects every client (with a "going away" close frame). The
// HTTP server's Shutdown does not, as WebSocket connections are hijacked.
func (h *Hub) Close() {
	h.once.Do(func() { close(h.closed) })
}

// ServeHTTP upgrades GET /live to a WebSocket for a client that may read
// every site (see Serve).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Serve(w, r, Reader{All: true})
}

// handshakeError answers a request the upgrader refused in the JSON form
// of the dashboard's other errors, with the status the upgrader chose:
// 400 for a request that is no WebSocket handshake (a plain GET, RFC 6455
// section 4.2.1), 403 for an origin not allowed, 405 for a method other
// than GET. The upgrader's own answer was a bare "Bad Request" or
// "Forbidden".
func handshakeError(w http.ResponseWriter, r *http.Request, status int, err error) {
	reason := "bad_request"
	msg := r.URL.Path + " is a WebSocket: open it with a WebSocket client (ws:// or wss://), which sends Connection: Upgrade and Upgrade: websocket (" + err.Error() + ")"
	switch status {
	case http.StatusForbidden:
		reason = "origin_not_allowed"
		msg = "a page from origin " + r.Header.Get("Origin") + " may not open " + r.URL.Path + " (" + err.Error() + ")"
	case http.StatusMethodNotAllowed:
		reason = "method_not_allowed"
		w.Header().Set("Allow", http.MethodGet)
	case http.StatusInternalServerError:
		reason = "internal_error"
		msg = err.Error()
	}
	w.Header().Set("Sec-WebSocket-Version", "13") // the version served, as the upgrader says
	reply.JSON(w, status, map[string]string{"error": msg, "reason": reason})
}

// Serve upgrades a request to a WebSocket and streams what rd may read:
// a snapshot, then deltas.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, rd Reader) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an error status
	}
	defer conn.Close()
	c := &client{reader: rd, queue: make(chan []byte, h.opts.QueueLen), dropped: make(chan string, 1)}
	h.mu.Lock()
	h.clients[c] = struct{}{}
	if h.ready {
		h.sendLocked(c, h.snapshotLocked(rd, h.opts.Now()))
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
	}()
	// The credential was checked before the client was listed: a
	// revocation in between found no client to recheck, so check it once
	// now; one after it rechecks every listed client.
	h.recheckClient(c)

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

	closeWith := func(code int, reason string) {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	// drop closes the connection of a client the hub dropped (slow,
	// revoked, expired), with the reason.
	drop := func(reason string) {
		h.log.Debug("dropping live client", "remote", r.RemoteAddr, "reason", reason)
		closeWith(websocket.ClosePolicyViolation, reason)
	}
	// A ping goes right after a message once PingInterval has passed
	// since the last, so that it rides on the publish's burst of writes:
	// a ticker of its own per client woke 1000 clients' goroutines
	// apart, and each ping then cost several times a message's CPU (a
	// profile of 1000 idle dashboards: a quarter of the hub's CPU for 5 %
	// of its writes). The ticker is the fallback for a client getting no
	// messages, half an interval later.
	fallback := h.opts.PingInterval * 3 / 2
	ping := time.NewTicker(fallback)
	defer ping.Stop()
	lastPing := time.Now()
	sendPing := func() error {
		conn.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
		lastPing = time.Now()
		ping.Reset(fallback)
		return conn.WriteMessage(websocket.PingMessage, nil)
	}
	for {
		select {
		case b := <-c.queue:
			select {
			case reason := <-c.dropped: // nothing more once dropped (revoked)
				drop(reason)
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				h.log.Debug("dropping live client", "remote", r.RemoteAddr, "err", err)
				return
			}
			if time.Since(lastPing) >= h.opts.PingInterval {
				if err := sendPing(); err != nil {
					return
				}
			}
		case reason := <-c.dropped:
			drop(reason)
			return
		case <-ping.C:
			if err := sendPing(); err != nil {
				return
			}
		case <-gone:
			return
		case <-h.closed:
			closeWith(websocket.CloseGoingAway, "server shutting down")
			return
		}
	}
}

// RecentPageviews returns site's pageviews stored in the last
// PagesWindow, and whether the site is listed one by one.
func (h *Hub) RecentPageviews(site string) (uint64, bool) {
	now := h.opts.Now().Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.counts[site]; !ok {
		return 0, false
	}
	var n uint64
	if sl := h.live[site]; sl != nil {
		// The seconds of (now-PagesWindow, now] that the ring holds.
		for s := max(now-pagesSeconds+1, sl.pvSec-pagesSeconds+1); s <= min(now, sl.pvSec); s++ {
			n += sl.pv[s%pagesSeconds]
		}
	}
	return n, true
}

// RecentVisitors returns site's visitors in the last VisitorsWindow (see
// Message.Visitors), whether that is a lower bound (the hub held
// MaxVisitors ids), and whether the site is listed one by one.
func (h *Hub) RecentVisitors(site string) (n uint64, capped, listed bool) {
	sec := h.opts.Now().Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.counts[site]; !ok {
		return 0, false, false
	}
	if sl := h.live[site]; sl != nil && sl.vis != nil {
		n, capped = sl.vis.count(sec)
	}
	return n, capped, true
}
