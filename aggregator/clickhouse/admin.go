package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/shared/event"
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

// lookupChunk bounds the ids of one StoredBadRows query, well under the
// server's max_query_size.
const lookupChunk = 1000

// StoredBadRows implements store.BadRowLookup: the ids among rows' that
// bad_rows holds, received since since (its day partitions from then on
// are read).
func (c *Client) StoredBadRows(ctx context.Context, rows []record.BadRow, since time.Time) (map[event.ID]bool, error) {
	out := map[event.ID]bool{}
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), lookupChunk)]
		rows = rows[len(chunk):]
		byID := make(map[string]event.ID, len(chunk))
		var ids, reasons []string
		for _, r := range chunk {
			s := r.ID.String()
			if _, ok := byID[s]; !ok {
				byID[s] = r.ID
				ids = append(ids, quote(s))
			}
			if q := quote(r.Reason); !slices.Contains(reasons, q) {
				reasons = append(reasons, q)
			}
		}
		// reason first: the table's sort key.
		got, err := c.Query(ctx, fmt.Sprintf("SELECT DISTINCT toString(row_id) FROM %s.bad_rows WHERE received >= toDateTime(%d) AND reason IN (%s) AND toString(row_id) IN (%s)",
			c.db, since.Unix(), strings.Join(reasons, ", "), strings.Join(ids, ", ")))
		if err != nil {
			return nil, fmt.Errorf("look up %d bad rows: %w", len(chunk), err)
		}
		for _, r := range got {
			if len(r) == 1 {
				if id, ok := byID[r[0]]; ok {
					out[id] = true
				}
			}
		}
	}
	return out, nil
}

// retentionTables are the tables partitioned by day (toYYYYMMDD, or
// (toYYYYMMDD, src) for visitorTables) that retention trims. Those hold
// visitor ids, so they go with the events they came from. The other
// rollups (monthly partitions, counts and visitor estimates, no ids) are
// kept. edge_counters and ErasedTable hold nothing about visitors
// either, but are trimmed with events so that the loss they measure is
// over the same days.
var retentionTables = append([]string{"events", "bad_rows", "edge_counters", ErasedTable}, visitorTables...)

// DateTimeMin and DateTimeMax bound the times ClickHouse's DateTime holds
// (a UInt32 of seconds since 1970-01-01 UTC, to 2106-02-07 06:28:15; the
// upper bound with a margin): a time outside them wraps around silently.
var (
	DateTimeMin = time.Unix(0, 0).UTC()
	DateTimeMax = time.UnixMilli(event.MaxTime).UTC()
)

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
// error, what the statements before the failed one dropped (the failed
// one may have dropped some of its partitions: a second run drops the
// rest).
func (c *Client) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]Partition, error) {
	// No partition is older than ClickHouse's DateTime (a day's margin
	// for the server's time zone); a cut-off before it would wrap around
	// to the 2060s there and drop every day.
	if cutoff.Before(DateTimeMin.AddDate(0, 0, 1)) {
		return nil, nil
	}
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
	// A statement per table (its rows are in order) and up to
	// dropChunk partitions: in a cluster each is a task of distributed
	// DDL that every server runs in turn, and a month of day partitions
	// one at a time was some thirty of them; the first run over years of
	// them in one statement could outlast the task's timeout.
	var (
		dropped []Partition
		table   string
		ids     []string
	)
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		if err := c.dropPartitions(ctx, table, ids...); err != nil {
			return fmt.Errorf("drop partitions %s of %s: %w", strings.Join(ids, ", "), table, err)
		}
		for _, id := range ids {
			dropped = append(dropped, Partition{Table: table, ID: id})
		}
		ids = nil
		return nil
	}
	for _, r := range rows {
		if len(r) != 2 || !digits(strings.ReplaceAll(r[1], "-", "")) {
			if err := flush(); err != nil {
				return dropped, err
			}
			return dropped, fmt.Errorf("clickhouse: unexpected partition row %q", r)
		}
		if r[0] != table || len(ids) == dropChunk {
			if err := flush(); err != nil {
				return dropped, err
			}
			table = r[0]
		}
		ids = append(ids, r[1])
	}
	return dropped, flush()
}

// dropChunk bounds the partitions DropPartitionsBefore drops in one
// statement.
const dropChunk = 100

// dropPartitions drops the partitions whose IDs are ids of table (a local
// table's name) in one statement, ON CLUSTER in a cluster: one task of
// distributed DDL, which every server runs in turn, however many
// partitions (a month of a table partitioned by day is some thirty).
// ClickHouse 18.16 runs a replicated table's DROP PARTITION on the
// shard's leader replica; after replicas restart or ZooKeeper comes back,
// one may forward it to a replica that has just lost the lead (code 292,
// "Leader was suddenly changed") until the election settles, so a server
// error is retried for a few seconds, and a server timeout once (see
// retryServerErrors).
// Dropping a partition already gone changes nothing.
func (c *Client) dropPartitions(ctx context.Context, table string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	drops := make([]string, len(ids))
	for i, id := range ids {
		drops[i] = "DROP PARTITION ID " + quote(id)
	}
	return c.retryServer(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s %s", c.db, table, c.layout.OnCluster(), strings.Join(drops, ", ")))
}

// retryServer runs a partition command (DROP, REPLACE PARTITION), retrying
// a server error for a few seconds (see dropPartitions).
func (c *Client) retryServer(ctx context.Context, sql string) error {
	return retryServerErrors(ctx, 7, 100*time.Millisecond, func() error { return c.Exec(ctx, sql) })
}

// retryServerErrors calls f up to attempts times while it fails with an
// error of the server's (*Error), waiting first wait and then twice as
// long each time; it returns f's last error, or ctx's once that ends.
// Errors of the connection are returned at once: the caller's own retries
// deal with a server that does not answer. A timeout of the server's
// (TIMEOUT_EXCEEDED, e.g. a statement ON CLUSTER that outlasted
// distributed_ddl_task_timeout) is tried again once, without a wait: the
// statement stays queued on the server that had not run it, which a lost
// and restored ZooKeeper session can hold past the timeout, and the
// partition commands f runs are idempotent, so a second one queues behind
// the first and returns once both have run. More would only wait as long
// again while a server stays away.
func retryServerErrors(ctx context.Context, attempts int, wait time.Duration, f func() error) error {
	timedOut := false
	for attempt := 1; ; attempt++ {
		err := f()
		var se *Error
		if err == nil || attempt >= attempts || !errors.As(err, &se) {
			return err
		}
		if se.TimedOut() {
			if timedOut || ctx.Err() != nil {
				return err
			}
			timedOut = true
			continue
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

// Erasure selects the events of one person to delete. VisitorID is the
// edge's visitor id, the events' visitor_id column: a keyed hash of the
// day's salt, site, address and user agent, an unsigned 64-bit integer
// written in decimal wherever events are shown (their JSON, the NDJSON
// the aggregator takes, the events table), given as a JSON number or a
// string of digits. A site that knows who a visitor is may also say so in
// the event's props ({"user_id": ...} or {"visitor_id": ...}): VisitorID
// matches props.visitor_id too (any string), UserID props.user_id.
// ClientIP is a client's address, or its network as the events'
// client_ip column holds it: none by default; the network (the address's
// /24, IPv4, or /48, IPv6, e.g. 192.0.2.0, event.TruncateIP) on a site
// with ip=prefix. Events are matched by that network, whichever was
// given, and by the address itself (NDJSON stored before 2026-12-05 kept
// it), so erasing by an address erases every event of its network; bad
// rows' raw input is searched for the address and the network. An event
// matching any of the given identifiers
// is deleted, on the one site Site names, or on every site with AllSites
// set: one of the two must be given, so that an Erasure whose Site was
// left empty by mistake (a zero value, an unset variable) is refused
// (ErrNoSite) rather than run on every site.
type Erasure struct {
	VisitorID VisitorID `json:"visitor_id,omitempty"` // the visitor_id column (decimal), or props.visitor_id
	UserID    string    `json:"user_id,omitempty"`    // props.user_id
	ClientIP  string    `json:"client_ip,omitempty"`  // an IP address, or its network as the client_ip column holds it
	Site      string    `json:"site,omitempty"`
	// AllSites erases on every site; Site must then be empty. Not read
	// from JSON: the admin endpoint sets it when "site" is left out.
	AllSites bool `json:"-"`
}

// VisitorID is an erasure's visitor id as given: a JSON string, or a JSON
// number (the form events show the visitor_id column in), kept as its
// digits so that ids above 2^53 stay exact.
type VisitorID string

// UnmarshalJSON takes a string or a number.
func (v *VisitorID) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] != '"' {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("visitor_id must be a string or a number: %w", err)
		}
		// A number is the column's: an unsigned 64-bit integer. (A
		// string may be a props.visitor_id, anything.)
		if _, err := strconv.ParseUint(n.String(), 10, 64); err != nil {
			return fmt.Errorf("visitor_id %s: a number must be the visitor_id column's, an unsigned 64-bit integer (give props' ids as strings)", n)
		}
		s = n.String()
	} else if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*v = VisitorID(s)
	return nil
}

// column returns the visitor_id column's value v names, if v is one: a
// non-zero decimal unsigned 64-bit integer (0 is an event without an id).
func (v VisitorID) column() (uint64, bool) {
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil && n != 0
}

// ErasureError is why an Erasure cannot be carried out as given.
type ErasureError struct{ msg string }

func (e *ErasureError) Error() string { return e.msg }

// ErrNoIdentifier means an Erasure named nothing to erase by.
var ErrNoIdentifier = &ErasureError{"erasure needs visitor_id, user_id or client_ip"}

// ErrNoSite means an Erasure named no site and did not set AllSites.
var ErrNoSite = &ErasureError{"erasure needs a site, or AllSites to erase on every site"}

// ErrSiteAndAllSites means an Erasure named a site and set AllSites too.
var ErrSiteAndAllSites = &ErasureError{"erasure names a site and AllSites: give one of them"}

// minBadRowMatch is the shortest identifier that bad rows are searched for:
// bad rows are matched by substring of the raw input (it may not even
// parse), and a very short value would match unrelated rows.
const minBadRowMatch = 6

// visitorTables are the tables besides events that hold visitor ids as a
// column (per visitor rollups): an erasure by the visitor_id column
// deletes that id's rows there too. Those of the other rollups are inside
// uniqCombined states (ErasureKept).
var visitorTables = []string{VisitsTable, MinuteDimsTable, MinuteAudienceTable, MinuteSourcesTable}

// propsTables are the rollups that hold props' members as text: an
// erasure by a props identifier (user_id, or a visitor_id that is not the
// column's number) deletes the rows of that member there too.
var propsTables = []string{PropsTable, PropsDimsTable}

// erasureTables are the tables an erasure's mutations change, whose
// mutations WaitMutations waits for.
var erasureTables = slices.Concat([]string{"events", "bad_rows"}, visitorTables, propsTables)

// ErasureKept says what an erasure cannot delete.
const ErasureKept = "rollup_minutes, rollup_hours, rollup_days, rollup_dims, rollup_dim_days, rollup_dims_bot, rollup_dim_days_bot, rollup_human_hours, rollup_human_days, rollup_opens_hours, rollup_opens_days and rollup_page_dims keep the erased visitor ids " +
	"inside their visitors states (uniqCombined: hashes of the ids merged into an estimate), which cannot be edited; " +
	"they keep counting the erased events and visitors. visit_hours, visit_dims, rollup_mix_hours and events_per_minute hold counts, no ids. " +
	"Erasure by user_id or client_ip deletes events and bad rows, not the rows of their visitor ids in rollup_visits, " +
	"rollup_minute_dims, rollup_minute_audience and rollup_minute_sources: erase those by visitor_id. rollup_props and rollup_props_dims lose the rows of the member " +
	"user_id or visitor_id erased, and keep counting the erased events under their other members."

// ErasureResult says what an erasure did.
type ErasureResult struct {
	// Statements are the mutations submitted.
	Statements []string `json:"statements"`
	// Matched is, per table an erasure's mutation changes, the rows that
	// matched when it was submitted (counted just before): 0 everywhere
	// means nothing of that person was stored, whatever Done says.
	Matched map[string]uint64 `json:"matched"`
	// Done is true once the server reports the mutations finished; the
	// rows are gone from queries only then.
	Done bool `json:"done"`
	// ClientIPNetwork is the network the events were matched by when the
	// erasure named a client_ip: the /24 or /48 the client_ip column
	// holds (README, Erasure).
	ClientIPNetwork string `json:"client_ip_network,omitempty"`
	// BadRowsSkipped explains why bad_rows was not searched, if it was not.
	BadRowsSkipped string `json:"bad_rows_skipped,omitempty"`
	// Kept is ErasureKept.
	Kept string `json:"kept"`
}

// Checked returns e with white space around its identifiers dropped, or
// why it cannot be carried out (an *ErasureError), with no server asked:
// no site and no AllSites, or both (ErrNoSite, ErrSiteAndAllSites); a
// visitor_id of 0 (events without one store 0) or of digits past the
// column's range (digits are the column's id, as a number is: a typo
// would match nothing and read as "nothing stored"); a client_ip that is
// not an address; no identifier left (ErrNoIdentifier: one of white
// space only names nobody).
func (e Erasure) Checked() (Erasure, error) {
	switch {
	case e.Site == "" && !e.AllSites:
		return e, ErrNoSite
	case e.Site != "" && e.AllSites:
		return e, ErrSiteAndAllSites
	}
	e.VisitorID = VisitorID(strings.TrimSpace(string(e.VisitorID)))
	e.UserID, e.ClientIP = strings.TrimSpace(e.UserID), strings.TrimSpace(e.ClientIP)
	if v := string(e.VisitorID); v != "" && strings.Trim(v, "0123456789") == "" {
		if n, err := strconv.ParseUint(v, 10, 64); err != nil {
			return e, &ErasureError{"visitor_id " + strconv.Quote(v) + ": digits must be the visitor_id column's, an unsigned 64-bit integer (at most 18446744073709551615)"}
		} else if n == 0 {
			return e, &ErasureError{"visitor_id 0 is no visitor: events without a visitor id store 0"}
		}
	}
	if e.ClientIP != "" {
		if _, err := netip.ParseAddr(e.ClientIP); err != nil {
			return e, &ErasureError{"client_ip " + strconv.Quote(e.ClientIP) + " is not an IP address (give the client's address, e.g. 192.0.2.17, or the /24 or /48 network events store, e.g. 192.0.2.0)"}
		}
	}
	if e.VisitorID == "" && e.UserID == "" && e.ClientIP == "" {
		return e, ErrNoIdentifier
	}
	return e, nil
}

// Erase deletes every event matching e (keeping its id, time and site in
// ErasedTable, for Loss), the rows of e's visitor id in
// visitorTables, and the bad rows whose raw input contains one of its
// identifiers, with ALTER TABLE ... DELETE mutations, after counting the
// rows that match in each. Mutations run in the background; Erase waits
// up to wait for them to finish (wait 0: not at all) and reports whether
// they did. An Erasure without Site or AllSites, or with both, is refused
// (ErrNoSite, ErrSiteAndAllSites) before anything runs, as is what else
// Checked refuses.
//
// Not covered: what ErasureKept says, and events still in the spool, not
// yet loaded, which the loader stores afterwards.
func (c *Client) Erase(ctx context.Context, e Erasure, wait time.Duration) (ErasureResult, error) {
	res := ErasureResult{Matched: map[string]uint64{}, Kept: ErasureKept}
	e, err := e.Checked()
	if err != nil {
		return res, err
	}
	var conds, badConds []string
	id, byColumn := e.VisitorID.column()
	if byColumn {
		conds = append(conds, fmt.Sprintf("visitor_id = %d", id))
	}
	// Events hold a client's network, not its address (ApplyPrivacy
	// cuts what the aggregator ingests), but NDJSON lines ingested before
	// 2026-12-05 kept the address as sent; a bad row's raw input holds
	// what was sent. So the address (as given and in its usual
	// spelling) and its network.
	var ips []string
	if e.ClientIP != "" {
		a, _ := netip.ParseAddr(e.ClientIP) // Checked parsed it
		res.ClientIPNetwork = event.TruncateIP(e.ClientIP)
		ips = slices.Compact([]string{e.ClientIP, a.Unmap().String(), res.ClientIPNetwork})
		quoted := make([]string, len(ips))
		for i, ip := range ips {
			quoted[i] = quote(ip)
		}
		conds = append(conds, "client_ip IN ("+strings.Join(quoted, ", ")+")")
	}
	for _, f := range []struct {
		value, cond string
		raw         []string
	}{
		{string(e.VisitorID), "visitParamExtractString(props, 'visitor_id') = %s", []string{string(e.VisitorID)}},
		{e.UserID, "visitParamExtractString(props, 'user_id') = %s", []string{e.UserID}},
		{e.ClientIP, "", ips},
	} {
		if f.value == "" {
			continue
		}
		if f.cond != "" {
			conds = append(conds, fmt.Sprintf(f.cond, quote(f.value)))
		}
		for _, v := range f.raw {
			if len(v) >= minBadRowMatch {
				badConds = append(badConds, fmt.Sprintf("position(raw, %s) > 0", quote(v)))
			} else {
				res.BadRowsSkipped = fmt.Sprintf("identifiers shorter than %d bytes are not searched for in bad rows' raw input", minBadRowMatch)
			}
		}
	}
	site := ""
	if !e.AllSites {
		site = " AND site = " + quote(e.Site)
	}
	type target struct{ table, where string }
	targets := []target{{"events", "(" + strings.Join(conds, " OR ") + ")" + site}}
	if byColumn {
		for _, t := range visitorTables {
			targets = append(targets, target{t, fmt.Sprintf("visitor_id = %d%s", id, site)})
		}
	}
	var members []string
	for _, m := range []struct{ key, value string }{{"visitor_id", string(e.VisitorID)}, {"user_id", e.UserID}} {
		if m.value != "" {
			members = append(members, fmt.Sprintf("key = %s AND value = %s", quote(m.key), quote(m.value)))
		}
	}
	if len(members) > 0 {
		for _, t := range propsTables {
			targets = append(targets, target{t, "(" + strings.Join(members, " OR ") + ")" + site})
		}
	}
	if len(badConds) > 0 {
		bw := "(" + strings.Join(badConds, " OR ") + ")"
		if !e.AllSites {
			bw += " AND site IN (" + quote(e.Site) + ", '')"
		}
		targets = append(targets, target{"bad_rows", bw})
	}
	for _, t := range targets {
		// Read through the table's Distributed form in a cluster: every
		// shard's rows.
		rows, err := c.Query(ctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", c.db, t.table, t.where))
		if err != nil {
			return res, fmt.Errorf("erase: count the rows of %s: %w", t.table, err)
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			return res, fmt.Errorf("erase: count of %s: unexpected rows %q", t.table, rows)
		}
		n, err := parseUint(rows[0][0])
		if err != nil {
			return res, fmt.Errorf("erase: count of %s: %w", t.table, err)
		}
		res.Matched[t.table] = n
		// Submitted whatever the count: in a cluster the count reads one
		// replica of each shard, which may not have every row yet.
		res.Statements = append(res.Statements, fmt.Sprintf("ALTER TABLE %s.%s%s DELETE WHERE %s", c.db, c.layout.LocalName(t.table), c.layout.OnCluster(), t.where))
	}
	if byColumn {
		// The same visitor's first events after midnight carry the erased
		// id as prev_visitor_id beside the next day's id: unlinked, not
		// deleted, as they are stored under that other id, whose
		// per-visitor rollups stay.
		res.Statements = append(res.Statements, fmt.Sprintf("ALTER TABLE %s.%s%s UPDATE prev_visitor_id = 0 WHERE prev_visitor_id = %d%s",
			c.db, c.layout.LocalName("events"), c.layout.OnCluster(), id, site))
	}
	// The erased events' ids and times first, so that the loss figures
	// (Loss) still count them as stored.
	if err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s.%[2]s (event_id, ts, ts_ms, site) SELECT event_id, ts, ts_ms, site FROM %[1]s.events WHERE %[3]s",
		c.db, ErasedTable, targets[0].where)); err != nil {
		return res, fmt.Errorf("erase: keep the erased events' ids: %w", err)
	}
	for _, s := range res.Statements {
		if err := c.Exec(ctx, s); err != nil {
			return res, fmt.Errorf("erase: %w", err)
		}
	}
	if wait <= 0 {
		return res, nil
	}
	res.Done, err = c.WaitMutations(ctx, wait)
	return res, err
}

// WaitMutations waits up to wait (until ctx ends at the latest) for the
// mutations of erasureTables, an erasure's, to finish, and reports
// whether they did.
func (c *Client) WaitMutations(ctx context.Context, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	tables := make([]string, len(erasureTables))
	for i, t := range erasureTables {
		tables[i] = quote(c.layout.LocalName(t))
	}
	for {
		rows, err := c.Query(ctx, fmt.Sprintf(
			"SELECT count() FROM %s WHERE database = %s AND table IN (%s) AND is_done = 0",
			c.system("mutations"), quote(c.db), strings.Join(tables, ", ")))
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

var (
	_ store.BadRowStore  = (*Client)(nil)
	_ store.BadRowLookup = (*Client)(nil)
)

// ErasedTable keeps the id, time and site of every event an erasure
// deleted, nothing else of it (an event id is random but for its time),
// so that the loss figures (Loss) count an erased event as stored: the
// edges counted it, and it was stored until someone asked for it to go.
const ErasedTable = "erased_events"

// ErasedIn reports whether an erasure deleted any of site's events in
// [from, to) (ErasedTable). Over such a range the rollups an erasure
// edits (the per-visitor ones) and those it cannot (ErasureKept) no
// longer agree, and a question that reads both for one answer would
// contradict itself.
func ErasedIn(ctx context.Context, q Querier, db, site string, from, to time.Time) (bool, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE site = %s AND ts >= toDateTime(%d) AND ts < toDateTime(%d)",
		db, ErasedTable, quote(site), from.Unix(), to.Unix()))
	if err != nil {
		return false, fmt.Errorf("erased events of %s: %w", site, err)
	}
	return len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] != "0", nil
}

// VersionErased is the schema step that creates ErasedTable.
const VersionErased = 15

// erasedSchema is step VersionErased's table. A ReplacingMergeTree: an
// event erased twice (stored again from a spool in between) collapses at
// merges; readers count distinct ids anyway. Day partitions, as the
// events', for retention.
func erasedSchema(l Layout) []string {
	return l.CreateTable(ErasedTable, `
		event_id UUID,
		ts DateTime,
		ts_ms UInt64,
		site String
	`, "ReplacingMergeTree", `PARTITION BY toYYYYMMDD(ts)
	ORDER BY (site, ts, event_id)`)
}
