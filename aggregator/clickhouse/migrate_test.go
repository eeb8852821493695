package clickhouse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
)

// v1Schema reads testdata/v1-schema.sql: the DDL of git main before
// migrations (clickhouse.Schema at 5fbb671), as a database made then has it.
func v1Schema(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("testdata/v1-schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for _, s := range strings.Split(strings.Join(lines, "\n"), "\n;\n") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Step 1 is exactly the schema main created, so that a database made by it
// is version 1 as it is, and the steps are numbered 1, 2, ... in order.
func TestMigrationsList(t *testing.T) {
	if got, want := Migrations[0].SQL(Layout{}), v1Schema(t); strings.Join(got, "\n;\n") != strings.Join(want, "\n;\n") {
		t.Fatalf("step 1 differs from main's schema:\n%s\nwant\n%s", strings.Join(got, "\n;\n"), strings.Join(want, "\n;\n"))
	}
	versions := map[int]bool{}
	for i, m := range Migrations {
		if m.Version != i+1 || m.Name == "" {
			t.Errorf("step %d: version %d, name %q", i, m.Version, m.Name)
		}
		versions[m.Version] = true
		var stmts []string
		if m.SQL != nil {
			stmts = append(m.SQL(Layout{}), m.SQL(Layout{Cluster: "c"})...)
		}
		for _, s := range stmts {
			if up := strings.ToUpper(s); strings.Contains(up, "DROP") || strings.Contains(up, "DELETE") {
				t.Errorf("step %d drops or deletes: %s", m.Version, s)
			}
		}
	}
	events := Migrations[0].SQL(Layout{})[1]
	for _, f := range event.Fields {
		if !versions[f.Since] {
			t.Errorf("field %s is of schema version %d, which no migration has", f.JSON, f.Since)
		}
		typ := f.CHType
		if f.CHChanged != 0 { // created as String, changed later
			typ = "String"
		}
		if f.Since == 1 && !strings.Contains(events, "\t"+f.JSON+" "+typ+",") && !strings.Contains(events, "\t"+f.JSON+" "+typ+"\n") {
			t.Errorf("field %s (%s) of version 1 is not in step 1's events table", f.JSON, typ)
		}
		if f.CHChanged != 0 && (!versions[f.CHChanged] || f.CHChanged <= f.Since) {
			t.Errorf("field %s is changed by schema version %d, which no migration after its own has", f.JSON, f.CHChanged)
		}
	}
}

// wantEventsColumns is the events table this version needs: event.Fields,
// with ts after the id, and the ALIAS columns last (a column changed to
// an ALIAS moves to the end). Each is "name type default", the default
// an ALIAS's expression.
func wantEventsColumns() []string {
	var out, aliases []string
	for _, f := range event.Fields {
		if f.Kind == event.KindTime {
			out = append(out, "ts DateTime ")
		}
		if f.Transit {
			continue
		}
		if f.CHAlias != "" {
			aliases = append(aliases, f.JSON+" "+f.CHType+" "+f.CHAlias)
			continue
		}
		out = append(out, f.JSON+" "+f.CHType+" "+f.CHDefault)
	}
	return append(out, aliases...)
}

func fieldByJSON(name string) *event.Field {
	for i := range event.Fields {
		if event.Fields[i].JSON == name {
			return &event.Fields[i]
		}
	}
	return nil
}

func (c *Client) eventsColumns(t *testing.T) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), fmt.Sprintf(
		"SELECT name, type, default_expression FROM system.columns WHERE database = %s AND table = 'events'", quote(c.db)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		// The server writes a default of another type than the column's
		// as a CAST to it: DEFAULT 0 of a UInt32 reads CAST(0, 'UInt32').
		if len(r) == 3 {
			r[2] = strings.TrimSuffix(strings.TrimPrefix(r[2], "CAST("), ", '"+r[1]+"')")
		}
		out = append(out, strings.Join(r, " "))
	}
	return out
}

// The columns written are the table's: names and types of event.Fields.
func TestEventsInputColumns(t *testing.T) {
	var got []string
	for _, c := range eventsInput(nil) {
		got = append(got, c.Name+" "+string(c.Data.Type()))
	}
	var want []string
	for _, c := range wantEventsColumns() {
		if f := fieldByJSON(c[:strings.IndexByte(c, ' ')]); f != nil && f.CHAlias != "" {
			continue // not written
		}
		want = append(want, strings.Join(strings.Fields(c)[:2], " "))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("columns written\n%q\nwant\n%q", got, want)
	}
}

func newDB(t *testing.T) *Client {
	t.Helper()
	if chURL == "" {
		t.Skip("clickhouse-server not installed")
	}
	c, err := New(chURL, fmt.Sprintf("test%d", dbSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (c *Client) versions(t *testing.T) string {
	t.Helper()
	return c.count(t, "SELECT version, name FROM "+c.db+".schema_migrations FINAL ORDER BY version")
}

func wantVersions() string {
	var out []string
	for _, m := range Migrations {
		out = append(out, fmt.Sprintf("%d\t%s", m.Version, m.Name))
	}
	return strings.Join(out, "\n")
}

// A fresh database gets every step; the table then holds every field of
// the event, with its type and default; a second run changes nothing.
func TestMigrateFresh(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	res, err := c.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 0 || res.To != lastVersion() || len(res.Applied) != len(Migrations) {
		t.Fatalf("%+v", res)
	}
	if got, want := c.eventsColumns(t), wantEventsColumns(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events columns\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := c.versions(t); got != wantVersions() {
		t.Fatalf("schema_migrations:\n%s", got)
	}
	if by := c.count(t, "SELECT DISTINCT by FROM "+c.db+".schema_migrations"); !strings.Contains(by, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("by = %q", by)
	}
	res, err = c.Migrate(ctx)
	if err != nil || res.From != lastVersion() || res.To != lastVersion() || len(res.Applied) != 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

// Every field of the table goes into ClickHouse and comes back.
func TestStoresEveryField(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	e := mkEvent(t, "demo", time.Now().UnixMilli())
	var cols, want []string
	for i, f := range event.Fields {
		if f.Transit {
			continue
		}
		switch f.Kind {
		case event.KindString:
			*f.Str(&e) = "v'" + f.JSON
			if f.JSON == "url" {
				e.URL = "https://h.example/v'url?q"
			}
			cols = append(cols, f.JSON)
			want = append(want, *f.Str(&e))
			if f.CHAlias != "" { // read from the stored columns
				want[len(want)-1] = aliasValue(t, f, &e)
			}
		case event.KindUint:
			f.SetUint(&e, f.MaxUint()-uint64(i))
			cols = append(cols, f.JSON)
			want = append(want, strconv.FormatUint(f.Uint(&e), 10))
		}
	}
	if err := c.InsertEvents(ctx, []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	if got := c.count(t, "SELECT "+strings.Join(cols, ", ")+" FROM "+c.db+".events"); got != strings.Join(want, "\t") {
		t.Fatalf("stored %q, want %q", got, strings.Join(want, "\t"))
	}
}

// aliasValue is what ClickHouse reads for f, an ALIAS column, of e: the
// path of its url (event.PathOfURL, evaluated by Go's RE2).
func aliasValue(t *testing.T, f event.Field, e *event.Event) string {
	t.Helper()
	if f.CHAlias != event.PathOfURL {
		t.Fatalf("no Go reading of the ALIAS %s", f.CHAlias)
	}
	expr := event.PathOfURL
	re := regexp.MustCompile(expr[strings.IndexByte(expr, '\'')+1 : strings.LastIndexByte(expr, '\'')])
	if m := re.FindStringSubmatch(e.URL); m != nil {
		return m[1]
	}
	return ""
}

// v1Event is a row as main's aggregator stored it: every column it had.
type v1Event struct {
	id                                                                          event.ID
	ms                                                                          int64
	site, name, url, ref, ua, ip, country, source, medium, campaign, pop, props string
}

func (e v1Event) values() string {
	s := []string{e.site, e.name, e.url, e.ref, e.ua, e.ip, e.country, e.source, e.medium, e.campaign, e.pop, e.props}
	for i := range s {
		s[i] = quote(s[i])
	}
	return fmt.Sprintf("('%s', %d, %d, %s)", e.id, e.ms/1000, e.ms, strings.Join(s, ", "))
}

// v1Native is a Native block of the version 1 columns, as main's
// aggregator inserts (one may still run while a newer one has migrated).
func v1Native(evs []v1Event) proto.Input {
	ids := make(uuidCol, 0, len(evs))
	var ts proto.ColDateTime
	var ms proto.ColUInt64
	strs := make([]proto.ColStr, 12)
	for _, e := range evs {
		ids = append(ids, e.id)
		ts.Append(time.UnixMilli(e.ms))
		ms.Append(uint64(e.ms))
		for j, s := range []string{e.site, e.name, e.url, e.ref, e.ua, e.ip, e.country, e.source, e.medium, e.campaign, e.pop, e.props} {
			strs[j].Append(s)
		}
	}
	in := proto.Input{{Name: "event_id", Data: ids}, {Name: "ts", Data: &ts}, {Name: "ts_ms", Data: &ms}}
	for j, n := range v1Columns[3:] {
		in = append(in, proto.InputColumn{Name: n, Data: &strs[j]})
	}
	return in
}

var v1Columns = []string{"event_id", "ts", "ts_ms", "site", "name", "url", "referrer", "user_agent", "client_ip",
	"country", "utm_source", "utm_medium", "utm_campaign", "pop", "props"}

func mkV1(t *testing.T, i int, ms int64) v1Event {
	id, err := event.NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return v1Event{id: id, ms: ms, site: []string{"a", "b'c"}[i%2], name: "pageview", url: fmt.Sprintf("https://example.com/%d\t", i),
		ref: "r", ua: "Mozilla/5.0", ip: "192.0.2.0", country: "NL", source: "s", medium: "m", campaign: "c", pop: "AMS", props: `{"i":` + fmt.Sprint(i) + `}`}
}

// mkV1Database makes c's database as main's aggregator left it: its DDL and
// rows inserted with its columns, over three days.
func mkV1Database(t *testing.T, c *Client) []v1Event {
	t.Helper()
	ctx := context.Background()
	for _, s := range v1Schema(t) {
		if err := c.Exec(ctx, strings.ReplaceAll(s, "{db}", c.db)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	var old []v1Event
	var vals []string
	for i := 0; i < 30; i++ {
		e := mkV1(t, i, now-int64(i)*7_200_000) // every two hours: three days
		old = append(old, e)
		vals = append(vals, e.values())
	}
	if err := c.Exec(ctx, "INSERT INTO "+c.db+".events ("+strings.Join(v1Columns, ", ")+") VALUES "+strings.Join(vals, ", ")); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertBadRows(ctx, []record.BadRow{record.NewBadRow(now, record.SourceNDJSON, "a", "bad_json", "x", []byte("{"))}); err != nil {
		t.Fatal(err)
	}
	return old
}

// oldRows reads back the version 1 columns of old's rows, and the
// columns added since, as a line each.
func (c *Client) oldRows(t *testing.T, old []v1Event) (got, want string) {
	t.Helper()
	var added []string
	var addedFields []event.Field
	for _, f := range event.Fields {
		if f.Since > 1 && !f.Transit {
			added = append(added, f.JSON)
			addedFields = append(addedFields, f)
		}
	}
	// defaults are what an old row reads in the columns added since: a
	// string column '', a number 0, an ALIAS its expression's value.
	defaults := func(e v1Event) []string {
		var out []string
		for _, f := range addedFields {
			switch {
			case f.CHAlias != "":
				out = append(out, aliasValue(t, f, &event.Event{URL: e.url}))
			case f.Kind == event.KindUint:
				out = append(out, "0")
			default:
				out = append(out, "")
			}
		}
		return out
	}
	q := "SELECT toString(event_id), toUInt32(ts), " + strings.Join(v1Columns[2:], ", ")
	if len(added) > 0 {
		q += ", " + strings.Join(added, ", ")
	}
	var ids []string
	var w []string
	for _, e := range old {
		ids = append(ids, "'"+e.id.String()+"'")
		w = append(w, strings.Join(append([]string{e.id.String(), fmt.Sprint(e.ms / 1000), fmt.Sprint(e.ms), e.site, e.name, e.url, e.ref, e.ua, e.ip,
			e.country, e.source, e.medium, e.campaign, e.pop, e.props}, defaults(e)...), "\t"))
	}
	got = c.count(t, q+" FROM "+c.db+".events WHERE event_id IN ("+strings.Join(ids, ",")+") ORDER BY ts_ms DESC")
	return got, strings.Join(w, "\n")
}

// The upgrade: a database as main left it is migrated; every old row is
// there as it was, with the new columns at their defaults, the rollup and
// bad rows are untouched, and both this version and an old aggregator
// still running can insert.
func TestMigrateFromVersion1(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	old := mkV1Database(t, c)
	rollup := func() string {
		return c.count(t, "SELECT site, minute, sum(n) FROM "+c.db+".events_per_minute GROUP BY site, minute ORDER BY site, minute")
	}
	rollupBefore := rollup()
	countsBefore, _, err := c.Counts(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	partsBefore := c.count(t, "SELECT table, partition, name FROM system.parts WHERE active AND database = "+quote(c.db)+" ORDER BY table, name")

	res, err := c.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 0 || res.To != lastVersion() {
		t.Fatalf("%+v", res)
	}
	if got, want := c.eventsColumns(t), wantEventsColumns(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events columns after the upgrade\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := c.oldRows(t, old); got != want {
		t.Fatalf("old rows after the upgrade\n got %q\nwant %q", got, want)
	}
	if got := rollup(); got != rollupBefore {
		t.Fatalf("rollup changed:\n%s\nwas\n%s", got, rollupBefore)
	}
	if counts, _, err := c.Counts(ctx, nil, 0); err != nil || fmt.Sprint(counts) != fmt.Sprint(countsBefore) {
		t.Fatalf("counts %v, were %v (%v)", counts, countsBefore, err)
	}
	// Adding a column rewrote no data part.
	if got := c.count(t, "SELECT table, partition, name FROM system.parts WHERE active AND database = "+quote(c.db)+" AND table != 'schema_migrations' ORDER BY table, name"); got != partsBefore {
		t.Errorf("parts changed:\n%s\nwere\n%s", got, partsBefore)
	}
	if got := c.count(t, "SELECT count() FROM "+c.db+".bad_rows"); got != "1" {
		t.Errorf("bad rows: %s", got)
	}

	// This version inserts with method. main's aggregator, still running
	// during a rolling upgrade, inserts user_agent and pop as String,
	// which step event.VersionLowCardinality made LowCardinality: its
	// insert fails whole (it keeps the events to retry) and stores
	// nothing.
	now := time.Now().UnixMilli()
	e := mkEvent(t, "a", now)
	e.Method = "HEAD"
	if err := c.InsertEvents(ctx, []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	late := []v1Event{mkV1(t, 100, now), mkV1(t, 101, now)}
	if err := c.insert(ctx, "events", len(late), v1Native(late)); err == nil {
		t.Fatal("an insert by a version 1 aggregator after the upgrade was taken")
	}
	if got := c.count(t, "SELECT method FROM "+c.db+".events WHERE event_id = '"+e.ID.String()+"'"); got != "HEAD" {
		t.Fatalf("method %q", got)
	}
	if counts, _, _ := c.Counts(ctx, nil, 0); counts["a"] != countsBefore["a"]+1 || counts["b'c"] != countsBefore["b'c"] {
		t.Fatalf("counts %v, were %v", counts, countsBefore)
	}
}

// A database that a newer aggregator migrated is refused with no change,
// naming both versions.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	before := c.versions(t)
	cols := c.eventsColumns(t)
	// This binary as an older one that knows only step 1.
	_, err := c.migrate(ctx, Migrations[:1], "old")
	var tooNew *SchemaTooNewError
	if !errors.As(err, &tooNew) || !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("older binary on a newer schema: %v", err)
	}
	last := Migrations[len(Migrations)-1]
	if tooNew.Version != last.Version || tooNew.Known != 1 || tooNew.Name != last.Name {
		t.Fatalf("%+v", tooNew)
	}
	for _, want := range []string{fmt.Sprintf("schema version %d", last.Version), "knows versions up to 1", "Run that newer edgepixel-aggregator", "database " + c.db} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	// And this binary, when a later one has recorded a step it lacks.
	next := lastVersion() + 1
	if err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, applied_at, by) VALUES (%d, 'events.future', now(), 'later')", c.db, next)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Migrate(ctx)
	if !errors.As(err, &tooNew) || tooNew.Version != next || tooNew.Known != lastVersion() || !strings.Contains(err.Error(), "events.future") {
		t.Fatalf("%v", err)
	}
	if got := c.versions(t); got != before+fmt.Sprintf("\n%d\tevents.future", next) {
		t.Errorf("schema_migrations changed: %s", got)
	}
	if got := c.eventsColumns(t); strings.Join(got, ",") != strings.Join(cols, ",") {
		t.Errorf("columns changed: %v", got)
	}
}

// A column changed by hand is reported, not overwritten.
func TestMigrateConflict(t *testing.T) {
	c := newDB(t)
	ctx := context.Background()
	mkV1Database(t, c)
	if err := c.Exec(ctx, "ALTER TABLE "+c.db+".events ADD COLUMN method UInt8"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Migrate(ctx)
	if !errors.Is(err, ErrSchemaConflict) || !strings.Contains(err.Error(), "method is UInt8, this version needs String") {
		t.Fatalf("%v", err)
	}
}

// Aggregators starting at once against one database each migrate it
// without breaking the other: on a fresh database and on one of version 1.
func TestMigrateConcurrently(t *testing.T) {
	const migrators = 4
	for round := 0; round < 6; round++ {
		c := newDB(t)
		var old []v1Event
		if round%2 == 1 {
			old = mkV1Database(t, c)
		}
		var wg sync.WaitGroup
		errs := make([]error, migrators)
		start := make(chan struct{})
		for i := range errs {
			other, err := New(chURL, c.db) // a client of its own, as another process has
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = other.migrate(context.Background(), Migrations, fmt.Sprintf("migrator %d", i))
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, migrator %d: %v", round, i, err)
			}
		}
		if got, want := c.eventsColumns(t), wantEventsColumns(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("round %d: columns\n%s", round, strings.Join(got, "\n"))
		}
		if got := c.versions(t); got != wantVersions() {
			t.Fatalf("round %d: schema_migrations read with FINAL:\n%s", round, got)
		}
		if applied, err := c.appliedMigrations(context.Background()); err != nil || len(applied) != len(Migrations) {
			t.Fatalf("round %d: %v %v", round, applied, err)
		}
		if old != nil {
			if got, want := c.oldRows(t, old); got != want {
				t.Fatalf("round %d: old rows\n got %q\nwant %q", round, got, want)
			}
		}
	}
}

// lastVersion is the newest step's version.
func lastVersion() int { return Migrations[len(Migrations)-1].Version }
