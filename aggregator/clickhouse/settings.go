package clickhouse

import (
	"context"
	"fmt"
	"strconv"
)

// MaxOldPartsLifetime is the longest old_parts_lifetime, in seconds, the
// aggregator takes without a warning. ClickHouse 18.16 keeps the parts a
// merge replaced for that long and loads them again at a restart unless
// an active part covers them (ClickHouse issue 15742), so a restart within
// it after retention dropped a partition, or after a backfill's REPLACE
// PARTITION, brings those rows back. A minute outlasts the kernel's
// writeback of the merged part (README, Schema, "Removed parts"; the
// servers tests/localsrv starts use it, which TestSettingsProblems checks).
const MaxOldPartsLifetime = 60

// SettingsProblems says which server settings the stored events rely on
// the server the client talks to lacks, one sentence each saying what to
// set; none, nil. It reads system.merge_tree_settings (ClickHouse 18.16
// has it); the compression a server uses is not readable there and is
// not checked. An error is the query's.
func (c *Client) SettingsProblems(ctx context.Context) ([]string, error) {
	rows, err := c.Query(ctx, "SELECT value FROM system.merge_tree_settings WHERE name = 'old_parts_lifetime'")
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, nil
	}
	if p := oldPartsProblem(rows[0][0]); p != "" {
		return []string{p}, nil
	}
	return nil, nil
}

// oldPartsProblem is SettingsProblems' sentence for an old_parts_lifetime
// of value (seconds, as system.merge_tree_settings writes it), or "".
func oldPartsProblem(value string) string {
	s, err := strconv.ParseUint(value, 10, 64)
	if err != nil || s <= MaxOldPartsLifetime {
		return ""
	}
	return fmt.Sprintf("ClickHouse keeps the parts a merge replaced for %d s (merge_tree's old_parts_lifetime): a restart of it within that time after retention dropped a month, or after a backfill, brings those rows back; set <merge_tree><old_parts_lifetime>%d</old_parts_lifetime><cleanup_delay_period>10</cleanup_delay_period></merge_tree> in its config.xml (or a file in config.d) and restart it (README: Schema, Removed parts)", s, MaxOldPartsLifetime)
}
