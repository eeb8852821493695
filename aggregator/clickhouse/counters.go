package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// InsertCounters implements store.CounterStore: rows go to edge_counters
// in one block.
func (c *Client) InsertCounters(ctx context.Context, rows []store.CounterRow) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make(uuidCol, 0, len(rows))
	var ts proto.ColDateTime
	var ms, value proto.ColUInt64
	strs := make([]proto.ColStr, 4)
	for i := range rows {
		r := &rows[i]
		ids = append(ids, r.Instance)
		ts.Append(time.UnixMilli(r.Time))
		ms.Append(uint64(r.Time))
		value.Append(r.Value)
		for j, s := range [...]string{r.Pop, r.Site, r.Counter, r.Reason} {
			strs[j].Append(s)
		}
	}
	input := proto.Input{{Name: "instance", Data: ids}, {Name: "ts", Data: &ts}, {Name: "ts_ms", Data: &ms}}
	for j, name := range [...]string{"pop", "site", "counter", "reason"} {
		input = append(input, proto.InputColumn{Name: name, Data: &strs[j]})
	}
	input = append(input, proto.InputColumn{Name: "value", Data: &value})
	if err := c.insert(ctx, "edge_counters", len(rows), input); err != nil {
		return fmt.Errorf("insert %d edge counter rows: %w", len(rows), err)
	}
	return nil
}

// Loss implements store.CounterStore with two queries: the counters (per
// instance and key, the largest value before to minus the largest before
// from, as store.CountersInRange) and the distinct events stored, in the
// events table or, since deleted by an erasure, in ErasedTable.
func (c *Client) Loss(ctx context.Context, site string, all bool, from, to time.Time) (store.Loss, error) {
	l := store.Loss{Site: site, From: from.UnixMilli(), To: to.UnixMilli(), Dropped: map[string]uint64{}, Noted: map[string]uint64{}}
	back := from.Add(-wire.MaxInstanceLife)
	if back.Before(DateTimeMin) { // wrapped around, ClickHouse refuses it
		back = DateTimeMin
	}
	siteCond := ""
	if !all {
		siteCond = " AND site = " + quote(site)
	}
	rows, err := c.Query(ctx, fmt.Sprintf(`SELECT counter, reason, sum(hi - lo) FROM (
		SELECT counter, reason, max(value) AS hi, maxIf(value, ts_ms < %d) AS lo
		FROM %s.edge_counters
		WHERE ts >= %d AND ts < %d AND ts_ms >= %d AND ts_ms < %d%s
		GROUP BY instance, site, counter, reason
	) GROUP BY counter, reason`,
		l.From, c.db, back.Unix(), to.Unix()+1, back.UnixMilli(), l.To, siteCond))
	if err != nil {
		return l, fmt.Errorf("edge counters: %w", err)
	}
	for _, r := range rows {
		if len(r) != 3 {
			return l, fmt.Errorf("clickhouse: counters row %q", r)
		}
		n, err := parseUint(r[2])
		if err != nil {
			return l, err
		}
		switch r[0] {
		case wire.CounterHits:
			l.Hits += n
		case wire.CounterEvents:
			l.Events += n
		case wire.CounterDropped:
			if n > 0 {
				l.Dropped[r[1]] += n
			}
		case wire.CounterNoted:
			if n > 0 {
				l.Noted[r[1]] += n
			}
		case wire.CounterDuplicates:
			l.Duplicates += n
		}
	}
	// The events an erasure deleted were stored: ErasedTable keeps
	// their ids (an event erased and stored again, from a spool,
	// counts once).
	span := fmt.Sprintf("ts >= %d AND ts < %d AND ts_ms >= %d AND ts_ms < %d%s", from.Unix(), to.Unix()+1, l.From, l.To, siteCond)
	rows, err = c.Query(ctx, fmt.Sprintf(`SELECT uniqExact(event_id), uniqExactIf(event_id, erased) FROM (
	SELECT event_id, 0 AS erased FROM %[1]s.events WHERE %[2]s UNION ALL SELECT event_id, 1 AS erased FROM %[1]s.%[3]s WHERE %[2]s)`, c.db, span, ErasedTable))
	if err != nil {
		return l, fmt.Errorf("stored events: %w", err)
	}
	if len(rows) == 1 && len(rows[0]) == 2 {
		if l.Stored, err = parseUint(rows[0][0]); err != nil {
			return l, err
		}
		if l.Erased, err = parseUint(rows[0][1]); err != nil {
			return l, err
		}
	}
	l.Finish()
	return l, nil
}

// LatestCounters implements store.CounterStore.
func (c *Client) LatestCounters(ctx context.Context, since time.Time) ([]store.CounterRow, error) {
	rows, err := c.Query(ctx, fmt.Sprintf(`SELECT toString(instance), site, counter, reason, max(value), argMax(ts_ms, value), any(pop)
		FROM %s.edge_counters WHERE ts >= %d AND ts_ms >= %d GROUP BY instance, site, counter, reason`,
		c.db, since.Unix(), since.UnixMilli()))
	if err != nil {
		return nil, fmt.Errorf("latest edge counters: %w", err)
	}
	out := make([]store.CounterRow, 0, len(rows))
	for _, r := range rows {
		if len(r) != 7 {
			return nil, fmt.Errorf("clickhouse: counters row %q", r)
		}
		id, err := event.ParseID(r[0])
		if err != nil {
			return nil, fmt.Errorf("clickhouse: bad instance %q", r[0])
		}
		v, err := parseUint(r[4])
		if err != nil {
			return nil, err
		}
		t, err := parseUint(r[5])
		if err != nil {
			return nil, err
		}
		out = append(out, store.CounterRow{Instance: id, Site: r[1], Counter: r[2], Reason: r[3], Value: v, Time: int64(t), Pop: r[6]})
	}
	return out, nil
}

var _ store.CounterStore = (*Client)(nil)
