package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
)

// DefaultReadOnlyRestart is how long a replica of one of the client's
// tables may stay read-only while its ZooKeeper session is alive before
// the client restarts it (see ClusterConfig.ReadOnlyRestart).
//
// ClickHouse 18.16 leaves a replica in that state for as long as its new
// session lives when re-initializing it, after its previous session
// expired (a ZooKeeper restart, a network cut), fails once: its
// ReplicatedMergeTreeRestartingThread retries only while the session is
// expired or on the replica's first start. The table then refuses every
// insert (code 242) until its server restarts. SYSTEM RESTART REPLICA
// re-attaches the table, which initializes it as on a first start,
// retrying until it succeeds.
//
// A healthy server leaves that state within milliseconds of getting a new
// session, or retries on its own every 10 s while another live session
// still holds the replica's is_active node (a server restarted after a
// crash, until its old session times out: 30 s by default in
// ClickHouse): restarting such a replica is harmless, and this wait keeps
// the client from doing it needlessly.
const DefaultReadOnlyRestart = 30 * time.Second

// readOnly reports whether err is ClickHouse's TABLE_IS_READ_ONLY (code
// 242): a replicated table whose replica is not (yet) coordinated through
// ZooKeeper refuses writes.
func readOnly(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return strings.Contains(e.Message, "Code: 242,")
	}
	return ch.IsErr(err, proto.ErrTableIsReadOnly)
}

// restartStuckReplicas restarts (SYSTEM RESTART REPLICA) each replicated
// table of the client's database on its server that has been read-only
// with a live ZooKeeper session (system.replicas: is_readonly, not
// is_session_expired) on every call for at least c.readOnlyRestart, and
// returns their names. See DefaultReadOnlyRestart for why.
func (c *Client) restartStuckReplicas(ctx context.Context) ([]string, error) {
	rows, err := c.Query(ctx, "SELECT table FROM system.replicas WHERE database = "+quote(c.db)+" AND is_readonly AND NOT is_session_expired")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var due []string
	c.stuckMu.Lock()
	if c.stuckSince == nil {
		c.stuckSince = map[string]time.Time{}
	}
	seen := map[string]bool{}
	for _, r := range rows {
		t := r[0]
		if !validIdent(t) {
			continue
		}
		seen[t] = true
		since, ok := c.stuckSince[t]
		switch {
		case !ok:
			c.stuckSince[t] = now
		case now.Sub(since) >= c.readOnlyRestart:
			due = append(due, t)
			c.stuckSince[t] = now // once per period at most
		}
	}
	for t := range c.stuckSince {
		if !seen[t] {
			delete(c.stuckSince, t)
		}
	}
	c.stuckMu.Unlock()
	var restarted []string
	for _, t := range due {
		if err := c.Exec(ctx, "SYSTEM RESTART REPLICA "+c.db+"."+t); err != nil {
			return restarted, fmt.Errorf("restart replica %s.%s: %w", c.db, t, err)
		}
		restarted = append(restarted, t)
	}
	return restarted, nil
}
