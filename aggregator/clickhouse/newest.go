package clickhouse

import (
	"context"
	"fmt"
	"time"
)

// NewestEventTime returns the newest stored ts_ms among events with ts at
// or after since (0 if there are none); the bound prunes partitions. The
// Redis deduper asks it when Redis lost its memory: ids up to this time
// may be stored already and are checked, newer ones cannot be.
func (c *Client) NewestEventTime(ctx context.Context, since time.Time) (int64, error) {
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT max(ts_ms) FROM %s.events WHERE ts >= %d", c.db, since.Unix()))
	if err != nil {
		return 0, fmt.Errorf("newest event: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("clickhouse: newest event: %q", rows)
	}
	n, err := parseUint(rows[0][0])
	return int64(n), err
}
