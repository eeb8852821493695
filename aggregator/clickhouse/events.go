package clickhouse

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
)

// nativeRevision is the protocol revision of ClickHouse 18.16, the oldest
// server supported; the Native format of the columns used here is the same
// in every later version.
const nativeRevision = 54412

// EnsureSchema brings the database to the schema this version uses (see
// Migrate). It is idempotent and runs at every start.
func (c *Client) EnsureSchema(ctx context.Context) error {
	_, err := c.Migrate(ctx)
	return err
}

// Init implements store.Store.
func (c *Client) Init(ctx context.Context) error { return c.EnsureSchema(ctx) }

// uuidCol is a UUID column encoded straight from event IDs. ClickHouse
// keeps a UUID as two little-endian 64-bit halves, so each half of the
// RFC 9562 bytes is reversed. (ch-go's ColUUID does the same through
// google/uuid; this avoids a copy per row.)
type uuidCol []event.ID

func (c uuidCol) Type() proto.ColumnType { return proto.ColumnTypeUUID }
func (c uuidCol) Rows() int              { return len(c) }
func (c uuidCol) EncodeColumn(b *proto.Buffer) {
	for _, id := range c {
		for i := 7; i >= 0; i-- {
			b.Buf = append(b.Buf, id[i])
		}
		for i := 15; i >= 8; i-- {
			b.Buf = append(b.Buf, id[i])
		}
	}
}
func (c uuidCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// strCol is a String column encoded straight from one field of events.
// ch-go's ColStr would first copy every value into its own buffer (grown
// by appends) and then again into the block: twice the copying and about
// a tenth of the aggregator's CPU under load. Each value is written as
// ColStr.EncodeColumn writes it: its length as a varint, then its bytes.
type strCol struct {
	evs []event.Event
	get func(*event.Event) *string
}

func (c strCol) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c strCol) Rows() int              { return len(c.evs) }
func (c strCol) EncodeColumn(b *proto.Buffer) {
	n := 0
	for i := range c.evs {
		l := len(*c.get(&c.evs[i]))
		n += l + uvarintLen(uint64(l))
	}
	b.Buf = slices.Grow(b.Buf, n) // one growth per column at most
	for i := range c.evs {
		v := c.get(&c.evs[i])
		b.Buf = binary.AppendUvarint(b.Buf, uint64(len(*v)))
		b.Buf = append(b.Buf, *v...)
	}
}
func (c strCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// lcCol is a LowCardinality(String) column encoded straight from one
// field of events, as ch-go's ColLowCardinality encodes one (the Native
// format of ClickHouse's SerializationLowCardinality, which 18.16 reads):
// the key serialization version as the column's state, then the
// dictionary of distinct values in the order they first appear and one
// key per row, of the narrowest unsigned width that indexes the
// dictionary.
type lcCol struct {
	evs []event.Event
	get func(*event.Event) *string
}

func (c lcCol) Type() proto.ColumnType {
	return proto.ColumnTypeLowCardinality.Sub(proto.ColumnTypeString)
}
func (c lcCol) Rows() int { return len(c.evs) }

// EncodeState writes the key serialization version
// (SharedDictionariesWithAdditionalKeys).
func (c lcCol) EncodeState(b *proto.Buffer) { b.PutInt64(1) }

// Flags of the column's index: it carries its own dictionary ("additional
// keys") that replaces any before it.
const (
	lcHasAdditionalKeys = 1 << 9
	lcNeedUpdateDict    = 1 << 10
)

func (c lcCol) EncodeColumn(b *proto.Buffer) {
	if len(c.evs) == 0 {
		return
	}
	dict := make(map[string]uint32, 16)
	keys := make([]uint32, len(c.evs))
	var order []string
	for i := range c.evs {
		v := *c.get(&c.evs[i])
		k, ok := dict[v]
		if !ok {
			k = uint32(len(order))
			dict[v] = k
			order = append(order, v)
		}
		keys[i] = k
	}
	width, keyType := 1, int64(0) // UInt8, UInt16, UInt32
	switch n := len(order); {
	case n > 1<<16:
		width, keyType = 4, 2
	case n > 1<<8:
		width, keyType = 2, 1
	}
	b.PutInt64(lcHasAdditionalKeys | lcNeedUpdateDict | keyType)
	b.PutInt64(int64(len(order)))
	for _, v := range order {
		b.Buf = binary.AppendUvarint(b.Buf, uint64(len(v)))
		b.Buf = append(b.Buf, v...)
	}
	b.PutInt64(int64(len(keys)))
	b.Buf = slices.Grow(b.Buf, width*len(keys))
	for _, k := range keys {
		switch width {
		case 1:
			b.Buf = append(b.Buf, byte(k))
		case 2:
			b.Buf = binary.LittleEndian.AppendUint16(b.Buf, uint16(k))
		default:
			b.Buf = binary.LittleEndian.AppendUint32(b.Buf, k)
		}
	}
}
func (c lcCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// uintCol is a UInt8/16/32/64 column encoded straight from one field of
// events: each value little-endian in bits/8 bytes.
type uintCol struct {
	evs  []event.Event
	get  func(*event.Event) uint64
	bits int
}

func (c uintCol) Type() proto.ColumnType {
	return proto.ColumnType("UInt" + strconv.Itoa(c.bits))
}
func (c uintCol) Rows() int { return len(c.evs) }
func (c uintCol) EncodeColumn(b *proto.Buffer) {
	b.Buf = slices.Grow(b.Buf, c.bits/8*len(c.evs))
	for i := range c.evs {
		v := c.get(&c.evs[i])
		switch c.bits {
		case 8:
			b.Buf = append(b.Buf, byte(v))
		case 16:
			b.Buf = binary.LittleEndian.AppendUint16(b.Buf, uint16(v))
		case 32:
			b.Buf = binary.LittleEndian.AppendUint32(b.Buf, uint32(v))
		default:
			b.Buf = binary.LittleEndian.AppendUint64(b.Buf, v)
		}
	}
}
func (c uintCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// tsCol is the DateTime column ts (UInt32 seconds, little-endian, as
// proto.ColDateTime encodes it) and, with ms set, the UInt64 column ts_ms,
// both from Event.Time.
type tsCol struct {
	evs []event.Event
	ms  bool
}

func (c tsCol) Type() proto.ColumnType {
	if c.ms {
		return proto.ColumnTypeUInt64
	}
	return proto.ColumnTypeDateTime
}
func (c tsCol) Rows() int { return len(c.evs) }
func (c tsCol) EncodeColumn(b *proto.Buffer) {
	if c.ms {
		b.Buf = slices.Grow(b.Buf, 8*len(c.evs))
		for i := range c.evs {
			b.Buf = binary.LittleEndian.AppendUint64(b.Buf, uint64(c.evs[i].Time))
		}
		return
	}
	b.Buf = slices.Grow(b.Buf, 4*len(c.evs))
	for i := range c.evs {
		b.Buf = binary.LittleEndian.AppendUint32(b.Buf, uint32(time.UnixMilli(c.evs[i].Time).Unix()))
	}
}
func (c tsCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// eventsInput holds evs as the columns of the events table, one for each
// of event.Fields but the ALIAS and Transit ones and ts, the DateTime the table is partitioned by, derived
// from the event time. The columns read evs when encoded; nothing is
// copied before.
func eventsInput(evs []event.Event) proto.Input {
	input := make(proto.Input, 0, len(event.Fields)+1)
	for i := range event.Fields {
		f := &event.Fields[i]
		if f.CHAlias != "" || f.Transit { // computed by ClickHouse; not stored
			continue
		}
		switch f.Kind {
		case event.KindID:
			ids := make(uuidCol, len(evs))
			for i := range evs {
				ids[i] = evs[i].ID
			}
			input = append(input, proto.InputColumn{Name: f.JSON, Data: ids})
		case event.KindTime:
			input = append(input, proto.InputColumn{Name: "ts", Data: tsCol{evs: evs}},
				proto.InputColumn{Name: f.JSON, Data: tsCol{evs: evs, ms: true}})
		case event.KindString:
			if f.CHType == string(lcCol{}.Type()) {
				input = append(input, proto.InputColumn{Name: f.JSON, Data: lcCol{evs: evs, get: f.Str}})
				break
			}
			input = append(input, proto.InputColumn{Name: f.JSON, Data: strCol{evs: evs, get: f.Str}})
		case event.KindUint:
			input = append(input, proto.InputColumn{Name: f.JSON, Data: uintCol{evs: evs, get: f.Uint, bits: f.Bits}})
		default:
			panic("clickhouse: no column type for kind of event field " + f.Name)
		}
	}
	return input
}

// EncodeNative encodes evs as one Native-format block for the events table.
func EncodeNative(evs []event.Event) ([]byte, error) {
	return appendNative(nil, len(evs), eventsInput(evs))
}

// appendNative appends input, rows rows, as one Native-format block to dst.
func appendNative(dst []byte, rows int, input proto.Input) ([]byte, error) {
	buf := proto.Buffer{Buf: dst}
	blk := proto.Block{Columns: len(input), Rows: rows}
	if err := blk.EncodeRawBlock(&buf, nativeRevision, input); err != nil {
		return dst, err
	}
	return buf.Buf, nil
}

// InsertEvents inserts evs in one request. ClickHouse writes one part per
// partition (day) touched, so a failed request may have stored the events
// of some days and not others, never part of an event.
//
// In a cluster the events go into EventsInput, whose views fill the
// rollups and events_local (see Layout.CreateView): an error means the
// call is to be retried with the same events in the same order, which
// stores the block once in each table.
func (c *Client) InsertEvents(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	table := c.layout.LocalName("events")
	if c.layout.Clustered() {
		table = EventsInput
	}
	if err := c.insertInto(ctx, table, len(evs), eventsInput(evs)); err != nil {
		return fmt.Errorf("insert %d events: %w", len(evs), err)
	}
	return nil
}

// maxLookupBytes bounds the IN lists of one ExistingIDs query (an id
// takes 39 bytes, a site its quoted form and a comma), keeping the query
// well inside the server's default 256 KiB max_query_size whatever the
// sites: bounded by the number of ids alone, a load of 5,000 events of
// as many sites passed it (Code 62) and was retried for ever, every later
// load behind it (a tester's).
const maxLookupBytes = 160 << 10

// ExistingIDs returns which of evs' ids are stored. The ids are looked up
// within the sites and the day range of evs, which prunes partitions; it is
// only called for events a crashed attempt may have stored, so rarely.
// On one server it first waits for the inserts into the events table
// that are running (settleInserts).
func (c *Client) ExistingIDs(ctx context.Context, evs []event.Event) (map[event.ID]bool, error) {
	if err := c.settleInserts(ctx); err != nil {
		return nil, err
	}
	found := map[event.ID]bool{}
	for rest := evs; len(rest) > 0; {
		part, sites := lookupPart(rest)
		rest = rest[len(part):]
		from, to := store.Bounds(part)
		var q strings.Builder
		// No time below 0, which 18.16 refuses for a DateTime.
		fmt.Fprintf(&q, "SELECT toString(event_id) FROM %s.events WHERE ts >= %d AND ts <= %d AND site IN (%s",
			c.db, max(from.Unix()-1, 0), to.Unix()+1, strings.Join(sites, ","))
		q.WriteString(") AND event_id IN (")
		for i, e := range part {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("'" + e.ID.String() + "'")
		}
		q.WriteString(")")
		rows, err := c.Query(ctx, q.String())
		if err != nil {
			return nil, fmt.Errorf("look up stored ids: %w", err)
		}
		for _, r := range rows {
			id, err := event.ParseID(r[0])
			if err != nil {
				return nil, fmt.Errorf("clickhouse: bad id %q", r[0])
			}
			found[id] = true
		}
	}
	return found, nil
}

// lookupPart returns the longest start of evs (one event at least) whose
// ids and distinct sites, quoted, fit maxLookupBytes, and those sites.
func lookupPart(evs []event.Event) (part []event.Event, sites []string) {
	seen := map[string]bool{}
	n := 0
	for i, e := range evs {
		cost, q, isNew := len("'00000000-0000-0000-0000-000000000000',"), "", !seen[e.Site]
		if isNew {
			q = quote(e.Site)
			cost += len(q) + 1
		}
		if i > 0 && n+cost > maxLookupBytes {
			return evs[:i], sites
		}
		n += cost
		if isNew {
			seen[e.Site] = true
			sites = append(sites, q)
		}
	}
	return evs, sites
}

// settleInserts waits until the inserts into the events table that the
// server runs now have ended, if the events go to one server. An insert
// whose client went away (its loader gave up at the drain timeout, or
// the aggregator was killed) still commits once the server has read its
// block, and a restarted aggregator asking which of the load's events
// are stored before it commits would insert them again: the whole load
// twice (a reviewer's finding). A cluster keeps a block inserted again
// once (DeduplicatesBlocks), so there it does not wait. Inserts begun
// after the call are not waited for: they are not the earlier attempt.
// It gives up after settleMax with an error that names them (the loader
// logs it and retries), so an insert that never ends, or someone's long
// INSERT ... SELECT, is seen rather than holding the loader unsaid.
func (c *Client) settleInserts(ctx context.Context) error {
	if c.layout.Clustered() {
		return nil
	}
	// Both the HTTP path's "INSERT INTO db.events FORMAT Native" and the
	// native one's "INSERT INTO db.events (columns) VALUES".
	running := "SELECT query_id FROM system.processes WHERE query LIKE " + quote("INSERT INTO "+c.db+".events %")
	rows, err := c.Query(ctx, running)
	if err != nil {
		return fmt.Errorf("look up running inserts: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = quote(r[0])
	}
	still := running + " AND query_id IN (" + strings.Join(ids, ",") + ")"
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	give := time.NewTimer(settleMax)
	defer give.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d running inserts into %s.events to end before looking up stored ids: %w", len(rows), c.db, ctx.Err())
		case <-give.C:
			return fmt.Errorf("%d inserts into %s.events still run after %v (query_id %s in system.processes); the stored ids are looked up once they end (KILL QUERY one that never will)",
				len(rows), c.db, settleMax, strings.Join(ids, ", "))
		case <-t.C:
		}
		var err error
		if rows, err = c.Query(ctx, still); err != nil {
			return fmt.Errorf("look up running inserts: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		ids = ids[:0]
		for _, r := range rows {
			ids = append(ids, quote(r[0]))
		}
	}
}

// settlePoll is how often settleInserts asks whether the inserts it
// waits for have ended, and settleMax how long it waits.
const (
	settlePoll = 100 * time.Millisecond
	settleMax  = 2 * time.Minute
)

// Counts returns the distinct events stored per site (see store.Store):
// the total and the selected sites are two queries, so that only the
// selected sites come back, however many the table holds.
func (c *Client) Counts(ctx context.Context, sites []string, max int) (map[string]uint64, uint64, error) {
	rows, err := c.Query(ctx, "SELECT sum(n) FROM (SELECT uniqExact(event_id) AS n FROM "+c.db+".events GROUP BY site)")
	if err != nil {
		return nil, 0, fmt.Errorf("count events: %w", err)
	}
	var total uint64
	if len(rows) == 1 && len(rows[0]) == 1 {
		if total, err = parseUint(rows[0][0]); err != nil {
			return nil, 0, err
		}
	}
	q := "SELECT site, uniqExact(event_id) AS n FROM " + c.db + ".events"
	switch {
	case len(sites) > 0:
		quoted := make([]string, len(sites))
		for i, s := range sites {
			quoted[i] = quote(s)
		}
		q += " WHERE site IN (" + strings.Join(quoted, ", ") + ") GROUP BY site"
	case max > 0:
		q += fmt.Sprintf(" GROUP BY site ORDER BY n DESC, site LIMIT %d", max)
	default:
		q += " GROUP BY site"
	}
	if rows, err = c.Query(ctx, q); err != nil {
		return nil, 0, fmt.Errorf("count events: %w", err)
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return nil, 0, fmt.Errorf("clickhouse: count row %q", r)
		}
		n, err := parseUint(r[1])
		if err != nil {
			return nil, 0, err
		}
		out[r[0]] = n
	}
	return out, total, nil
}

// History reads per-minute counts for site from the rollup. sum() is
// needed because SummingMergeTree collapses rows only when it merges.
// Recent reads events by the sort key's ts; a row that a retry stored
// twice and no merge has folded yet is read once (LIMIT 1 BY event_id).
func (c *Client) Recent(ctx context.Context, since time.Time, max int) ([]event.Event, error) {
	limit := ""
	if max > 0 {
		limit = fmt.Sprintf(" LIMIT %d", max)
	}
	rows, err := c.Query(ctx, fmt.Sprintf(
		"SELECT site, name, url, visitor_id, ts_ms FROM %s.events WHERE ts >= toDateTime(%d) AND ts_ms >= %d ORDER BY ts_ms DESC LIMIT 1 BY event_id%s",
		c.db, since.Unix(), since.UnixMilli(), limit))
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	evs := make([]event.Event, 0, len(rows))
	for _, r := range rows {
		if len(r) != 5 {
			return nil, fmt.Errorf("clickhouse: recent events row %q", r)
		}
		vid, err := parseUint(r[3])
		if err != nil {
			return nil, err
		}
		ms, err := parseUint(r[4])
		if err != nil {
			return nil, err
		}
		evs = append(evs, event.Event{Site: r[0], Name: r[1], URL: r[2], VisitorID: vid, Time: int64(ms)})
	}
	return evs, nil
}

func (c *Client) History(ctx context.Context, site string, from, to time.Time) ([]store.Point, error) {
	rows, err := c.Query(ctx, fmt.Sprintf(
		"SELECT toUInt32(minute) AS t, sum(n) FROM %s.events_per_minute WHERE site = %s AND minute >= %d AND minute <= %d GROUP BY t ORDER BY t",
		c.db, quote(site), from.Unix(), to.Unix()))
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	pts := make([]store.Point, 0, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("clickhouse: history row %q", r)
		}
		t, err := parseUint(r[0])
		if err != nil {
			return nil, err
		}
		n, err := parseUint(r[1])
		if err != nil {
			return nil, err
		}
		pts = append(pts, store.Point{T: int64(t), N: n})
	}
	return pts, nil
}

var _ store.Store = (*Client)(nil)
