package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/store"
)

// InsertBadRows implements store.BadRowStore: rows go to the bad_rows
// table in one block.
func (c *Client) InsertBadRows(ctx context.Context, rows []record.BadRow) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make(uuidCol, 0, len(rows))
	var received proto.ColDateTime
	var receivedMS proto.ColUInt64
	strs := make([]proto.ColStr, 5)
	for i := range rows {
		r := &rows[i]
		ids = append(ids, r.ID)
		received.Append(time.UnixMilli(r.Received))
		receivedMS.Append(uint64(r.Received))
		for j, s := range [...]string{r.Source, r.Site, r.Reason, r.Error, r.Raw} {
			strs[j].Append(s)
		}
	}
	input := proto.Input{{Name: "row_id", Data: ids}, {Name: "received", Data: &received}, {Name: "received_ms", Data: &receivedMS}}
	for j, name := range [...]string{"source", "site", "reason", "error", "raw"} {
		input = append(input, proto.InputColumn{Name: name, Data: &strs[j]})
	}
	if err := c.insert(ctx, "bad_rows", len(rows), input); err != nil {
		return fmt.Errorf("insert %d bad rows: %w", len(rows), err)
	}
	return nil
}

// retentionTables are the tables partitioned by day (toYYYYMMDD, or
// (toYYYYMMDD, src) for VisitsTable and MinuteDimsTable) that retention
// trims. Those two hold visitor ids, so they go with the events they
// came from. The other
// rollups (monthly partitions, counts and visitor estimates, no ids) are
// kept. edge_counters holds nothing about visitors either, but is trimmed
// with events so that the loss it measures is over the same days.
var retentionTables = []string{"events", "bad_rows", "edge_counters", VisitsTable, MinuteDimsTable}

// Partition names one partition of a table.
type Partition struct {
	Table string `json:"table"`
	ID    string `json:"partition"` // YYYYMMDD, or YYYYMMDD-src (ClickHouse's partition ID)
}

// DropPartitionsBefore drops every day partition of retentionTables (their
// local tables, ON CLUSTER in a cluster)
// whose day is before cutoff's day. Days are those of the server's time
// zone, the one toYYYYMMDD partitions by, so the server computes the cutoff
// day too. Dropping a partition is immediate and cheap (a metadata
// operation), unlike a DELETE mutation. It returns what it dropped; on
// error, what it dropped before the error.
func (c *Client) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]Partition, error) {
	tables := make([]string, len(retentionTables))
	for i, t := range retentionTables {
		tables[i] = c.layout.LocalName(t)
	}
	rows, err := c.Query(ctx, fmt.Sprintf(
		"SELECT DISTINCT table, partition_id FROM %s WHERE database = %s AND table IN ('%s') AND active "+
			"AND match(partition_id, '^[0-9]{8}(-[0-9]+)?$') AND toUInt32OrZero(substring(partition_id, 1, 8)) < toYYYYMMDD(toDateTime(%d)) ORDER BY table, partition_id",
		c.system("parts"), quote(c.db), strings.Join(tables, "','"), cutoff.Unix()))
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var dropped []Partition
	for _, r := range rows {
		if len(r) != 2 || !digits(strings.ReplaceAll(r[1], "-", "")) {
			return dropped, fmt.Errorf("clickhouse: unexpected partition row %q", r)
		}
		if err := c.dropPartition(ctx, r[0], r[1]); err != nil {
			return dropped, fmt.Errorf("drop partition %s of %s: %w", r[1], r[0], err)
		}
		dropped = append(dropped, Partition{Table: r[0], ID: r[1]})
	}
	return dropped, nil
}

// dropPartition drops the partition whose ID is id of table (a local
// table's name), ON CLUSTER in a cluster. ClickHouse 18.16 runs a
// replicated table's DROP PARTITION on the shard's leader replica; after
// replicas restart or ZooKeeper comes back, one may forward it to a
// replica that has just lost the lead (code 292, "Leader was suddenly
// changed") until the election settles, so a server error is retried for
// a few seconds. Dropping a partition already gone changes nothing.
func (c *Client) dropPartition(ctx context.Context, table, id string) error {
	return c.retryServer(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s DROP PARTITION ID %s", c.db, table, c.layout.OnCluster(), quote(id)))
}

// retryServer runs a partition command (DROP, REPLACE PARTITION), retrying
// a server error for a few seconds (see dropPartition).
func (c *Client) retryServer(ctx context.Context, sql string) error {
	return retryServerErrors(ctx, 7, 100*time.Millisecond, func() error { return c.Exec(ctx, sql) })
}

// retryServerErrors calls f up to attempts times while it fails with an
// error of the server's (*Error), waiting first wait and then twice as
// long each time; it returns f's last error, or ctx's once that ends.
// Errors of the connection are returned at once: the caller's own retries
// deal with a server that does not answer. So is a timeout of the server's
// (TIMEOUT_EXCEEDED, e.g. a statement ON CLUSTER that outlasted
// distributed_ddl_task_timeout): the statement stays queued or running,
// and another attempt would only wait as long again.
func retryServerErrors(ctx context.Context, attempts int, wait time.Duration, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		var se *Error
		if err == nil || attempt == attempts || !errors.As(err, &se) || se.TimedOut() {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// system returns the system table name as seen from every shard: the
// table itself on one server, the cluster() table function over one
// replica of each shard in a cluster.
func (c *Client) system(name string) string {
	if c.layout.Clustered() {
		return "cluster(" + c.layout.Cluster + ", system, " + name + ")"
	}
	return "system." + name
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Erasure selects the events of one person to delete. Events have no
// visitor or user column: a site that knows who a visitor is says so in the
// event's props ({"user_id": ...} or {"visitor_id": ...}), and client_ip is
// the address truncated at the edge. An event matching any of the given
// identifiers is deleted; Site, if set, narrows that to one site.
type Erasure struct {
	VisitorID string `json:"visitor_id,omitempty"` // props.visitor_id
	UserID    string `json:"user_id,omitempty"`    // props.user_id
	ClientIP  string `json:"client_ip,omitempty"`  // the client_ip column, exactly
	Site      string `json:"site,omitempty"`
}

// ErrNoIdentifier means an Erasure named nothing to erase by.
var ErrNoIdentifier = errors.New("erasure needs visitor_id, user_id or client_ip")

// minBadRowMatch is the shortest identifier that bad rows are searched for:
// bad rows are matched by substring of the raw input (it may not even
// parse), and a very short value would match unrelated rows.
const minBadRowMatch = 6

// ErasureResult says what an erasure did.
type ErasureResult struct {
	// Statements are the mutations submitted.
	Statements []string `json:"statements"`
	// Done is true once the server reports the mutations finished; the
	// rows are gone from queries only then.
	Done bool `json:"done"`
	// BadRowsSkipped explains why bad_rows was not searched, if it was not.
	BadRowsSkipped string `json:"bad_rows_skipped,omitempty"`
}

// Erase deletes every event matching e, and the bad rows whose raw input
// contains one of its identifiers, with ALTER TABLE ... DELETE mutations.
// Mutations run in the background; Erase waits up to wait for them to
// finish (wait 0: not at all) and reports whether they did.
//
// Not covered: the per-minute rollup (counts, no identifiers), and events
// still in the spool, not yet loaded, which the loader stores afterwards.
func (c *Client) Erase(ctx context.Context, e Erasure, wait time.Duration) (ErasureResult, error) {
	var res ErasureResult
	var conds, badConds []string
	for _, f := range []struct{ value, cond string }{
		{e.VisitorID, "visitParamExtractString(props, 'visitor_id') = %s"},
		{e.UserID, "visitParamExtractString(props, 'user_id') = %s"},
		{e.ClientIP, "client_ip = %s"},
	} {
		if f.value == "" {
			continue
		}
		conds = append(conds, fmt.Sprintf(f.cond, quote(f.value)))
		if len(f.value) >= minBadRowMatch {
			badConds = append(badConds, fmt.Sprintf("position(raw, %s) > 0", quote(f.value)))
		} else {
			res.BadRowsSkipped = fmt.Sprintf("identifiers shorter than %d bytes are not searched for in bad rows' raw input", minBadRowMatch)
		}
	}
	if len(conds) == 0 {
		return res, ErrNoIdentifier
	}
	where := "(" + strings.Join(conds, " OR ") + ")"
	if e.Site != "" {
		where += " AND site = " + quote(e.Site)
	}
	res.Statements = append(res.Statements, fmt.Sprintf("ALTER TABLE %s.%s%s DELETE WHERE %s", c.db, c.layout.LocalName("events"), c.layout.OnCluster(), where))
	if len(badConds) > 0 {
		bw := "(" + strings.Join(badConds, " OR ") + ")"
		if e.Site != "" {
			bw += " AND site IN (" + quote(e.Site) + ", '')"
		}
		res.Statements = append(res.Statements, fmt.Sprintf("ALTER TABLE %s.%s%s DELETE WHERE %s", c.db, c.layout.LocalName("bad_rows"), c.layout.OnCluster(), bw))
	}
	for _, s := range res.Statements {
		if err := c.Exec(ctx, s); err != nil {
			return res, fmt.Errorf("erase: %w", err)
		}
	}
	if wait <= 0 {
		return res, nil
	}
	var err error
	res.Done, err = c.WaitMutations(ctx, wait)
	return res, err
}

// WaitMutations waits up to wait (until ctx ends at the latest) for the
// mutations of events and bad_rows, an erasure's, to finish, and reports
// whether they did.
func (c *Client) WaitMutations(ctx context.Context, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		rows, err := c.Query(ctx, fmt.Sprintf(
			"SELECT count() FROM %s WHERE database = %s AND table IN ('%s', '%s') AND is_done = 0",
			c.system("mutations"), quote(c.db), c.layout.LocalName("events"), c.layout.LocalName("bad_rows")))
		if err != nil {
			return false, fmt.Errorf("erase: check mutations: %w", err)
		}
		if len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] == "0" {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var _ store.BadRowStore = (*Client)(nil)
