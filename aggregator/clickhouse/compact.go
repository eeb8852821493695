package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// compactTables are the rollups a month's view reads a row per key and
// part from (the hour and day grains, the per-dimension rollups,
// PropsTable, PropsDimsTable, OpensDaysTable, PageDimsTable). Each row carries a
// uniqCombined state, and merging states at read time costs per row,
// not per visitor: a key spread over many parts (history inserted in
// blocks that each span the whole month, as an import or a generator
// does) costs that many merges on every read, where one merge at write
// time would do.
var compactTables = []string{Grains[1].Table, Grains[2].Table, DimTable, DimDayTable, BotDimHoursTable, BotDimDaysTable, PropsTable, PropsDimsTable, OpensDaysTable, PageDimsTable}

// CompactRollups merges every partition of compactTables that has more than one active part and none modified in
// the last quiet into one part (OPTIMIZE ... PARTITION ID ... FINAL),
// which merges each key's rows into one, as ClickHouse's background
// merges do in time. A partition still being written (the current
// month under live traffic) is left to them: rewriting it would cost a
// month of rows per insert. Reads answer the same before and after: an
// AggregatingMergeTree's merge merges states as a read does. It returns
// the partitions compacted.
//
// In the cluster layout it does nothing and returns 0: the client
// reaches one server, and each shard's local tables would need their own
// OPTIMIZE.
func (c *Client) CompactRollups(ctx context.Context, quiet time.Duration) (int, error) {
	if c.layout.Clustered() {
		return 0, nil
	}
	tables := make([]string, len(compactTables))
	for i, t := range compactTables {
		tables[i] = quote(t)
	}
	rows, err := c.Query(ctx, fmt.Sprintf(`SELECT table, partition_id FROM system.parts WHERE database = %s AND table IN (%s) AND active
	GROUP BY table, partition_id HAVING count() > 1 AND max(modification_time) <= toDateTime(%d) ORDER BY table, partition_id`,
		quote(c.db), strings.Join(tables, ", "), time.Now().Add(-quiet).Unix()))
	if err != nil {
		return 0, fmt.Errorf("compact the rollups: list their partitions: %w", err)
	}
	n := 0
	for _, r := range rows {
		if len(r) != 2 {
			return n, fmt.Errorf("clickhouse: partition row %q", r)
		}
		if err := c.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s PARTITION ID %s FINAL", c.db, r[0], quote(r[1]))); err != nil {
			return n, fmt.Errorf("compact partition %s of %s: %w", r[1], r[0], err)
		}
		n++
	}
	return n, nil
}
