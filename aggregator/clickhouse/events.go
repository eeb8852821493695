package clickhouse

import (
	"context"
	"fmt"
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

// Schema is the DDL EnsureSchema runs, with {db} for the database.
//
// events is a ReplacingMergeTree whose sorting key ends in event_id: the
// loader already stores each event once, and should an event ever be
// inserted twice (two aggregators racing on one id), merges collapse the
// copies; exact counts use uniqExact(event_id), which is right before
// merges too. events_per_minute is the rollup the dashboard's history
// reads, kept by a materialized view so it costs nothing at query time.
var Schema = []string{
	`CREATE DATABASE IF NOT EXISTS {db}`,
	`CREATE TABLE IF NOT EXISTS {db}.events (
		event_id UUID,
		ts DateTime,
		ts_ms UInt64,
		site String,
		name String,
		url String,
		referrer String,
		user_agent String,
		client_ip String,
		country String,
		utm_source String,
		utm_medium String,
		utm_campaign String,
		pop String,
		props String
	) ENGINE = ReplacingMergeTree
	PARTITION BY toYYYYMMDD(ts)
	ORDER BY (site, ts, event_id)`,
	`CREATE TABLE IF NOT EXISTS {db}.events_per_minute (
		site String,
		minute DateTime,
		n UInt64
	) ENGINE = SummingMergeTree(n)
	PARTITION BY toYYYYMM(minute)
	ORDER BY (site, minute)`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_per_minute_mv TO {db}.events_per_minute AS
	SELECT site, toStartOfMinute(ts) AS minute, count() AS n
	FROM {db}.events GROUP BY site, minute`,
	// bad_rows keeps what ingest could not turn into events (see package
	// record). row_id is derived from the source and the raw input, so a
	// bad input delivered twice collapses at merges (count with
	// uniqExact(row_id)). Day partitions let retention drop it like events.
	`CREATE TABLE IF NOT EXISTS {db}.bad_rows (
		row_id UUID,
		received DateTime,
		received_ms UInt64,
		source String,
		site String,
		reason String,
		error String,
		raw String
	) ENGINE = ReplacingMergeTree
	PARTITION BY toYYYYMMDD(received)
	ORDER BY (reason, row_id)`,
}

// EnsureSchema creates the database, tables and view if they are missing.
// It is idempotent and runs at every start.
func (c *Client) EnsureSchema(ctx context.Context) error {
	for _, s := range Schema {
		if err := c.Exec(ctx, strings.ReplaceAll(s, "{db}", c.db)); err != nil {
			return fmt.Errorf("ensure schema: %w", err)
		}
	}
	return nil
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

// eventsInput holds evs as the columns of the events table.
func eventsInput(evs []event.Event) proto.Input {
	ids := make(uuidCol, 0, len(evs))
	var ts proto.ColDateTime
	var tsMS proto.ColUInt64
	strs := make([]proto.ColStr, 12)
	for i := range evs {
		e := &evs[i]
		ids = append(ids, e.ID)
		ts.Append(time.UnixMilli(e.Time))
		tsMS.Append(uint64(e.Time))
		for j, s := range [...]string{e.Site, e.Name, e.URL, e.Referrer, e.UserAgent, e.ClientIP,
			e.Country, e.UTMSource, e.UTMMedium, e.UTMCampaign, e.Pop, e.Props} {
			strs[j].Append(s)
		}
	}
	input := proto.Input{{Name: "event_id", Data: ids}, {Name: "ts", Data: &ts}, {Name: "ts_ms", Data: &tsMS}}
	for j, name := range [...]string{"site", "name", "url", "referrer", "user_agent", "client_ip",
		"country", "utm_source", "utm_medium", "utm_campaign", "pop", "props"} {
		input = append(input, proto.InputColumn{Name: name, Data: &strs[j]})
	}
	return input
}

// EncodeNative encodes evs as one Native-format block for the events table.
func EncodeNative(evs []event.Event) ([]byte, error) {
	input := eventsInput(evs)
	var buf proto.Buffer
	blk := proto.Block{Columns: len(input), Rows: len(evs)}
	if err := blk.EncodeRawBlock(&buf, nativeRevision, input); err != nil {
		return nil, err
	}
	return buf.Buf, nil
}

// InsertEvents inserts evs in one request. ClickHouse writes one part per
// partition (day) touched, so a failed request may have stored the events
// of some days and not others, never part of an event.
func (c *Client) InsertEvents(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if err := c.insert(ctx, "events", len(evs), eventsInput(evs)); err != nil {
		return fmt.Errorf("insert %d events: %w", len(evs), err)
	}
	return nil
}

// maxIDsPerQuery keeps the IN list (37 bytes an id) well inside the
// server's default 256 KiB max_query_size.
const maxIDsPerQuery = 5000

// ExistingIDs returns which of evs' ids are stored. The ids are looked up
// within the sites and the day range of evs, which prunes partitions; it is
// only called for events a crashed attempt may have stored, so rarely.
func (c *Client) ExistingIDs(ctx context.Context, evs []event.Event) (map[event.ID]bool, error) {
	found := map[event.ID]bool{}
	for lo := 0; lo < len(evs); lo += maxIDsPerQuery {
		part := evs[lo:min(lo+maxIDsPerQuery, len(evs))]
		from, to := store.Bounds(part)
		sites := map[string]bool{}
		var q strings.Builder
		fmt.Fprintf(&q, "SELECT toString(event_id) FROM %s.events WHERE ts >= %d AND ts <= %d AND site IN (",
			c.db, from.Unix()-1, to.Unix()+1)
		first := true
		for _, e := range part {
			if !sites[e.Site] {
				sites[e.Site] = true
				if !first {
					q.WriteByte(',')
				}
				first = false
				q.WriteString(quote(e.Site))
			}
		}
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

// Counts returns the distinct events stored per site.
func (c *Client) Counts(ctx context.Context) (map[string]uint64, error) {
	rows, err := c.Query(ctx, "SELECT site, uniqExact(event_id) FROM "+c.db+".events GROUP BY site")
	if err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("clickhouse: count row %q", r)
		}
		n, err := parseUint(r[1])
		if err != nil {
			return nil, err
		}
		out[r[0]] = n
	}
	return out, nil
}

// History reads per-minute counts for site from the rollup. sum() is
// needed because SummingMergeTree collapses rows only when it merges.
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
