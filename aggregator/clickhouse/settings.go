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

// oldPartsQuery reads old_parts_lifetime from a merge_tree_settings
// table (%s: system's, or a server's through remote()).
const oldPartsQuery = "SELECT value FROM %s WHERE name = 'old_parts_lifetime'"

// SettingsProblems says which server settings the stored events rely on
// the servers lack, one sentence each saying what to set; none, nil. It
// reads merge_tree_settings (ClickHouse 18.16 has it) of the server the
// client talks to, or of every server of its cluster (one that does not
// answer is left out, as ClusterSchemaProblems leaves it). The
// compression a server uses is not readable there and is not checked.
// An error is the query's on the server the client talks to.
func (c *Client) SettingsProblems(ctx context.Context) ([]string, error) {
	if !c.layout.Clustered() {
		rows, err := c.Query(ctx, fmt.Sprintf(oldPartsQuery, "system.merge_tree_settings"))
		if err != nil || len(rows) == 0 || len(rows[0]) == 0 {
			return nil, err
		}
		return nonEmpty(oldPartsProblem(rows[0][0], "")), nil
	}
	addrs, err := c.clusterServers(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, addr := range addrs {
		rows, err := c.Query(ctx, fmt.Sprintf(oldPartsQuery, c.remoteSystem(addr, "merge_tree_settings")))
		if ctx.Err() != nil {
			return problems, ctx.Err()
		}
		if err == nil && len(rows) > 0 && len(rows[0]) > 0 {
			problems = append(problems, nonEmpty(oldPartsProblem(rows[0][0], addr))...)
		}
	}
	return problems, nil
}

// nonEmpty is s as a list: none for "".
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// oldPartsProblem is SettingsProblems' sentence for an old_parts_lifetime
// of value (seconds, as merge_tree_settings writes it) on the server at
// addr ("": the one the client talks to), or "".
func oldPartsProblem(value, addr string) string {
	server := "ClickHouse"
	if addr != "" {
		server = "ClickHouse at " + addr
	}
	s, err := strconv.ParseUint(value, 10, 64)
	switch {
	case err != nil:
		return fmt.Sprintf("%s's old_parts_lifetime reads %q, not a number of seconds: check its <merge_tree> settings (README: Schema, Removed parts)", server, value)
	case s <= MaxOldPartsLifetime:
		return ""
	}
	return fmt.Sprintf("%s keeps the parts a merge replaced for %d s (merge_tree's old_parts_lifetime): a restart of it within that time after retention dropped a month, or after a backfill, brings those rows back; set <merge_tree><old_parts_lifetime>%d</old_parts_lifetime><cleanup_delay_period>10</cleanup_delay_period><cleanup_delay_period_random_add>0</cleanup_delay_period_random_add></merge_tree> in its config.xml (or a file in config.d) and restart it (README: Schema, Removed parts)", server, s, MaxOldPartsLifetime)
}
