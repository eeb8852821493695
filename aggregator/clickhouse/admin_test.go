package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
)

func (c *Client) count(t *testing.T, q string) string {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, strings.Join(r, "\t"))
	}
	return strings.Join(out, "\n")
}

func TestBadRowsTable(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	rows := []record.BadRow{
		record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_json", "unexpected EOF", []byte("{\"site\":\"demo\"\t'x'\\")),
		record.NewBadRow(now, record.SourceWire, "", "invalid_event", "missing site", []byte(`{"site":""}`)),
	}
	if err := c.InsertBadRows(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// A retried insert of the same rows collapses by row id.
	if err := c.InsertBadRows(ctx, rows[:1]); err != nil {
		t.Fatal(err)
	}
	got := c.count(t, "SELECT toString(row_id), received_ms, toUInt32(received), source, site, reason, error, raw FROM "+c.db+".bad_rows FINAL ORDER BY reason")
	var want []string
	for _, r := range rows {
		want = append(want, strings.Join([]string{r.ID.String(), fmt.Sprint(r.Received), fmt.Sprint(r.Received / 1000), r.Source, r.Site, r.Reason, r.Error, r.Raw}, "\t"))
	}
	if got != strings.Join(want, "\n") {
		t.Fatalf("bad_rows\n got %q\nwant %q", got, strings.Join(want, "\n"))
	}
	// The loader asks which rows are stored already: those two, received
	// since the time asked about, not a row never stored.
	never := record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_json", "x", []byte("never stored"))
	held, err := c.StoredBadRows(ctx, append(rows, never), time.UnixMilli(now).Add(-time.Hour))
	if err != nil || len(held) != 2 || !held[rows[0].ID] || !held[rows[1].ID] {
		t.Fatalf("stored %v %v", held, err)
	}
	if held, err := c.StoredBadRows(ctx, rows, time.UnixMilli(now).Add(time.Hour)); err != nil || len(held) != 0 {
		t.Fatalf("stored since after they were received: %v %v", held, err)
	}
}

func TestRetention(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now()
	day := func(d int) int64 { return now.Add(-time.Duration(d) * 24 * time.Hour).UnixMilli() }
	evs := []event.Event{mkEvent(t, "demo", day(0)), mkEvent(t, "demo", day(1)), mkEvent(t, "demo", day(29)),
		mkEvent(t, "demo", day(31)), mkEvent(t, "demo", day(45)), mkEvent(t, "other", day(45))}
	for i := range evs {
		evs[i].VisitorID = uint64(i + 1) // rollup_visits has their ids, by day
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertBadRows(ctx, []record.BadRow{
		record.NewBadRow(day(40), record.SourceNDJSON, "", "bad_json", "x", []byte("old")),
		record.NewBadRow(day(0), record.SourceNDJSON, "", "bad_json", "x", []byte("new")),
	}); err != nil {
		t.Fatal(err)
	}
	dropped, err := c.DropPartitionsBefore(ctx, now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Days 31, 45 of events and of each table of visitor ids, and day
	// 40 of bad_rows; the order is by table.
	// (MinuteDimsTable, no longer written, has no rows to drop.)
	want := []string{"bad_rows", "events", "events"}
	for _, table := range slices.Sorted(slices.Values(visitorTables)) {
		if table != MinuteDimsTable {
			want = append(want, table, table)
		}
	}
	var got []string
	for _, d := range dropped {
		got = append(got, d.Table)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dropped %+v, want the tables %v", dropped, want)
	}
	for _, table := range visitorTables {
		if table == MinuteDimsTable {
			continue
		}
		if got := c.count(t, "SELECT uniqExact(visitor_id) FROM "+c.db+"."+table); got != "3" {
			t.Fatalf("%s visitor ids left in %s, want 3", got, table)
		}
	}
	if got := c.count(t, "SELECT count() FROM "+c.db+".events"); got != "3" {
		t.Fatalf("%s events left, want 3", got)
	}
	if got := c.count(t, "SELECT raw FROM "+c.db+".bad_rows"); got != "new" {
		t.Fatalf("bad rows left: %q", got)
	}
	// Idempotent: nothing more to drop.
	if dropped, err := c.DropPartitionsBefore(ctx, now.Add(-30*24*time.Hour)); err != nil || len(dropped) != 0 {
		t.Fatalf("second run dropped %v: %v", dropped, err)
	}
	// A cut-off before ClickHouse's DateTime (a retention of a century)
	// drops nothing: the server wrapped it around to the 2060s, before
	// which every day is.
	for _, cut := range []time.Time{now.AddDate(-100, 0, 0), time.Unix(-1, 0), time.Date(1970, 1, 1, 12, 0, 0, 0, time.UTC)} {
		if dropped, err := c.DropPartitionsBefore(ctx, cut); err != nil || len(dropped) != 0 {
			t.Fatalf("a cut-off at %v dropped %v: %v", cut, dropped, err)
		}
	}
	if got := c.count(t, "SELECT count() FROM "+c.db+".events"); got != "3" {
		t.Fatalf("%s events left, want 3", got)
	}
}

func TestErase(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	mk := func(site, props, ip string) event.Event {
		e := mkEvent(t, site, now)
		e.Props, e.ClientIP = props, ip
		return e
	}
	evs := []event.Event{
		mk("demo", `{"user_id":"user-12345"}`, "10.0.0.0"),
		mk("demo", `{"plan":"pro","user_id":"user-12345"}`, "10.0.1.0"),
		mk("shop", `{"user_id":"user-12345"}`, "10.0.2.0"),
		mk("demo", `{"user_id":"user-99999"}`, "10.0.0.0"),
		mk("demo", `{"visitor_id":"v-abcdef"}`, "10.0.3.0"),
		mk("demo", `{}`, "192.0.2.0"),
		// As NDJSON lines were stored before the aggregator cut them.
		mk("demo", `{}`, "192.0.2.17"),
	}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertBadRows(ctx, []record.BadRow{
		record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_time", "x", []byte(`{"site":"demo","props":{"user_id":"user-12345"}}`)),
		record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_json", "x", []byte(`{"site":"demo"`)),
		record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_tier", "x", []byte(`{"site":"demo","client_ip":"192.0.2.17","tier":"none"}`)),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Erase(ctx, Erasure{Site: "demo"}, 0); !errors.Is(err, ErrNoIdentifier) {
		t.Fatalf("no identifier: %v", err)
	}
	// Every site only when asked for: a zero Site (a field left unset)
	// is refused, not taken as every site, and so is a site named with
	// AllSites. Neither submits anything.
	for _, c2 := range []struct {
		e    Erasure
		want error
	}{
		{Erasure{UserID: "user-12345"}, ErrNoSite},
		{Erasure{VisitorID: "v-abcdef", ClientIP: "192.0.2.0"}, ErrNoSite},
		{Erasure{UserID: "user-12345", Site: "demo", AllSites: true}, ErrSiteAndAllSites},
	} {
		res, err := c.Erase(ctx, c2.e, 0)
		if !errors.Is(err, c2.want) || len(res.Statements) != 0 || len(res.Matched) != 0 {
			t.Errorf("%+v: %+v %v, want %v and nothing submitted", c2.e, res, err, c2.want)
		}
	}
	if got := c.count(t, "SELECT count() FROM system.mutations WHERE database = '"+c.db+"'"); got != "0" {
		t.Fatalf("%s mutations after refused erasures", got)
	}
	// An identifier that names nothing it could be is refused, not
	// answered "nothing matched": a client_ip that is no address, a
	// number that is no visitor_id column's.
	var ee *ErasureError
	if _, err := c.Erase(ctx, Erasure{ClientIP: "not-an-ip", Site: "demo"}, 0); !errors.As(err, &ee) {
		t.Fatalf("client_ip not-an-ip: %v", err)
	}
	for _, n := range []string{"-5", "1.5", "1e23", "18446744073709551616"} {
		var req Erasure
		if err := json.Unmarshal([]byte(`{"visitor_id":`+n+`}`), &req); err == nil {
			t.Errorf("visitor_id %s taken as %q", n, req.VisitorID)
		}
	}
	// user_id narrowed to one site: the shop event stays.
	res, err := c.Erase(ctx, Erasure{UserID: "user-12345", Site: "demo"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Done || len(res.Statements) != 4 {
		t.Fatalf("%+v", res)
	}
	// The props rollups lose the erased member's rows, on the site named
	// only, and keep the event's other members.
	for _, table := range propsTables {
		one := "" // of rollup_props_dims, one dimension's rows
		if table == PropsDimsTable {
			one = " AND dim = 'country'"
		}
		if got := c.count(t, "SELECT site, value, sumMerge(events) FROM "+c.db+"."+table+" WHERE key = 'user_id'"+one+" GROUP BY site, value ORDER BY site, value"); got != "demo\tuser-99999\t1\nshop\tuser-12345\t1" {
			t.Errorf("%s: user_id rows left:\n%s", table, got)
		}
		if got := c.count(t, "SELECT count() FROM "+c.db+"."+table+" WHERE key = 'plan'"); got == "0" {
			t.Errorf("%s: the erased event's other member went too", table)
		}
	}
	left := func() string {
		return c.count(t, "SELECT site, props, client_ip FROM "+c.db+".events ORDER BY site, client_ip")
	}
	if got := left(); got != "demo\t{\"user_id\":\"user-99999\"}\t10.0.0.0\ndemo\t{\"visitor_id\":\"v-abcdef\"}\t10.0.3.0\ndemo\t{}\t192.0.2.0\ndemo\t{}\t192.0.2.17\nshop\t{\"user_id\":\"user-12345\"}\t10.0.2.0" {
		t.Fatalf("events left:\n%s", got)
	}
	if got := c.count(t, "SELECT reason FROM "+c.db+".bad_rows ORDER BY reason"); got != "bad_json\nbad_tier" {
		t.Fatalf("bad rows left: %q", got)
	}
	// visitor_id, any site; a quote in a value is only a value (a client_ip must be an address).
	res, err = c.Erase(ctx, Erasure{VisitorID: "v-abcdef", UserID: "nobody' OR '1'='1", AllSites: true}, time.Minute)
	if err != nil || !res.Done {
		t.Fatalf("%+v %v", res, err)
	}
	// A client's address (here IPv4-mapped) finds its network's events
	// (events hold the /24), an event stored with the address itself, and
	// the bad rows sent with it.
	res, err = c.Erase(ctx, Erasure{ClientIP: "::ffff:192.0.2.17", AllSites: true}, time.Minute)
	if err != nil || !res.Done || res.ClientIPNetwork != "192.0.2.0" || res.Matched["events"] != 2 || res.Matched["bad_rows"] != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if got := c.count(t, "SELECT reason FROM "+c.db+".bad_rows"); got != "bad_json" {
		t.Fatalf("bad rows left: %q", got)
	}
	if got := left(); got != "demo\t{\"user_id\":\"user-99999\"}\t10.0.0.0\nshop\t{\"user_id\":\"user-12345\"}\t10.0.2.0" {
		t.Fatalf("events left:\n%s", got)
	}
	// Short identifiers are not searched for in bad rows.
	res, err = c.Erase(ctx, Erasure{UserID: "42", AllSites: true}, 0)
	if err != nil || res.BadRowsSkipped == "" || len(res.Statements) != 1+len(propsTables) {
		t.Fatalf("%+v %v", res, err)
	}
	if n, ok := res.Matched["events"]; !ok || n != 0 {
		t.Fatalf("matched %v, want 0 events", res.Matched)
	}
}

// TestEraseVisitorID: the edge's visitor id, in the decimal form events
// show it (a JSON number; above 2^53 too), deletes that visitor's events
// and its rows of the per-visitor rollups, only those, and the answer
// counts what matched.
func TestEraseVisitorID(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	const id, other = uint64(18446744073709551557), uint64(18446744073709551556) // differ in the last digit: exact beyond 2^53
	var evs []event.Event
	for i, v := range []uint64{id, id, other, id} {
		e := mkEvent(t, "demo", now+int64(i))
		if i == 3 {
			e.Site = "shop"
		}
		e.VisitorID = v
		evs = append(evs, e)
	}
	// The same person's first event after midnight, under the next day's
	// id, carries the erased id as prev_visitor_id: it stays, unlinked.
	next := mkEvent(t, "demo", now+10)
	next.VisitorID, next.PrevVisitorID = 4242, id
	evs = append(evs, next)
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tables := []string{"events", VisitsTable, MinuteAudienceTable, MinuteSourcesTable}
	rowsOf := func(v uint64, site string) map[string]uint64 {
		out := map[string]uint64{}
		for _, table := range tables {
			n, err := parseUint(c.count(t, fmt.Sprintf("SELECT count() FROM %s.%s WHERE visitor_id = %d AND site = %s", c.db, table, v, quote(site))))
			if err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	before := rowsOf(id, "demo")
	for _, table := range tables {
		if before[table] == 0 {
			t.Fatalf("no rows of the visitor in %s to erase: %v", table, before)
		}
	}
	var req Erasure
	if err := json.Unmarshal([]byte(fmt.Sprintf(`{"visitor_id":%d,"site":"demo"}`, id)), &req); err != nil {
		t.Fatal(err)
	}
	res, err := c.Erase(ctx, req, time.Minute)
	if err != nil || !res.Done {
		t.Fatalf("%+v %v", res, err)
	}
	for _, table := range tables {
		if res.Matched[table] != before[table] {
			t.Errorf("matched %v, want %v", res.Matched, before)
		}
	}
	if n, err := parseUint(c.count(t, fmt.Sprintf("SELECT count() FROM %s.events WHERE prev_visitor_id = %d", c.db, id))); err != nil || n != 0 {
		t.Errorf("%d events still carry the erased id as prev_visitor_id (%v)", n, err)
	}
	if n, err := parseUint(c.count(t, fmt.Sprintf("SELECT count() FROM %s.events WHERE visitor_id = 4242 AND prev_visitor_id = 0", c.db))); err != nil || n != 1 {
		t.Errorf("the next day's event: %d left unlinked, want 1 (%v)", n, err)
	}
	if res.Kept == "" {
		t.Error("the answer does not say what stays")
	}
	for _, table := range tables {
		if n := rowsOf(id, "demo")[table]; n != 0 {
			t.Errorf("%d rows of the erased visitor left in %s", n, table)
		}
		// The other visitor, and the same id on a site not named, stay.
		if rowsOf(other, "demo")[table] == 0 || rowsOf(id, "shop")[table] == 0 {
			t.Errorf("%s lost rows not erased", table)
		}
	}
	// Erasing it again finds nothing, and says so; as a string too.
	res, err = c.Erase(ctx, Erasure{VisitorID: VisitorID(fmt.Sprint(id)), Site: "demo"}, time.Minute)
	if err != nil || !res.Done || len(res.Matched) != 2+len(visitorTables)+len(propsTables) {
		t.Fatalf("%+v %v", res, err)
	}
	for table, n := range res.Matched {
		if n != 0 {
			t.Errorf("second erasure matched %d rows of %s", n, table)
		}
	}
	// Not a number: props.visitor_id only, no statements for the
	// per-visitor rollups.
	res, err = c.Erase(ctx, Erasure{VisitorID: "v-abcdef", AllSites: true}, 0)
	if err != nil || len(res.Statements) != 2+len(propsTables) || res.Matched["events"] != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestNativeRefusesOld: the native TCP client checks the server's revision
// at connect. Against the 18.16 server the tests run (revision 54412) it
// must refuse, with a message that says to use the HTTP URL; on 19.x and
// later this test would see a working native client instead and checks
// that it round-trips events.
func TestNativeRefusesOld(t *testing.T) {
	if chTCP == "" {
		t.Skip("clickhouse-server not installed")
	}
	c, err := New("native://"+chTCP, fmt.Sprintf("test%d", dbSeq.Add(1)))
	var old *TooOldError
	if errors.As(err, &old) {
		if !errors.Is(err, ErrServerTooOld) || old.Server.Revision >= MinNativeRevision {
			t.Fatalf("%v (revision %d)", err, old.Server.Revision)
		}
		msg := err.Error()
		for _, want := range []string{"native TCP protocol needs ClickHouse 19.x", "use its HTTP interface instead", "--clickhouse http://127.0.0.1:8123", fmt.Sprint(old.Server.Revision)} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q: %s", want, msg)
			}
		}
		t.Logf("refused as expected: %v", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	// A server new enough: the native path must work end to end.
	defer c.Close()
	ctx := context.Background()
	if err := c.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	evs := []event.Event{mkEvent(t, "demo", time.Now().UnixMilli())}
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if counts, _, err := c.Counts(ctx, nil, 0); err != nil || counts["demo"] != 1 {
		t.Fatalf("%v %v", counts, err)
	}
}

func TestNativeURL(t *testing.T) {
	// Unreachable is not an error at New (the loader retries); the first
	// use fails with a connection error, not ErrServerTooOld.
	c, err := New("native://127.0.0.1:1", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); err == nil || errors.Is(err, ErrServerTooOld) {
		t.Fatalf("ping of nothing: %v", err)
	}
	c.Close()
	if _, err := New("native://", "x"); err == nil {
		t.Error("native URL without host accepted")
	}
}

// TestRetryServerErrors: a server error is tried again, up to the
// attempts; a server timeout once more; a connection error not at all.
func TestRetryServerErrors(t *testing.T) {
	timeout := &Error{Status: 500, Message: "Code: 159, e.displayText() = DB::Exception: Watching task /clickhouse/task_queue/ddl/query-0000000003 is executing longer than distributed_ddl_task_timeout (=60) seconds."}
	exists := &Error{Status: 500, Message: "Code: 57, e.displayText() = DB::Exception: Table edgepixel.x already exists."}
	for _, tc := range []struct {
		name  string
		err   error
		calls int
	}{
		{"server error", exists, 3},
		{"server timeout", timeout, 2},
		{"wrapped server timeout", fmt.Errorf("drop: %w", timeout), 2},
		{"connection error", errors.New("connection refused"), 1},
		{"no error", nil, 1},
	} {
		calls := 0
		err := retryServerErrors(context.Background(), 3, time.Millisecond, func() error { calls++; return tc.err })
		if calls != tc.calls || !errors.Is(err, tc.err) {
			t.Errorf("%s: %d calls, error %v; want %d calls and the error", tc.name, calls, err, tc.calls)
		}
	}
}

// An erasure's answer names every rollup that keeps visitor ids inside
// its visitors states, which an erasure cannot edit, or deletes its rows
// (the per-visitor rollups): a step that adds one must say which.
func TestErasureKeptNamesEveryRollup(t *testing.T) {
	// Those no longer written keep what they hold too.
	for _, r := range append(viewRollups(), dimRollup(DimTable, Grains[1].Start), dimDays()) {
		if !strings.Contains(r.cols, "visitors") && !strings.Contains(r.cols, "visitor_id") {
			continue
		}
		if !slices.Contains(visitorTables, r.table) && !strings.Contains(ErasureKept, r.table) {
			t.Errorf("%s holds visitor ids, and an erasure neither deletes its rows nor says it keeps them", r.table)
		}
	}
}
