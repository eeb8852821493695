package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/shared/buildinfo"
	"github.com/edgepixel/edgepixel/shared/event"
)

// Migration is one numbered step of the schema. A step runs its SQL, then
// adds the events columns of the event fields it introduced (those of
// event.Fields whose Since is its Version), then changes in place the
// columns whose type or kind it changed (CHChanged), then is recorded in
// the database's schema_migrations table.
//
// Steps are idempotent and safe to run concurrently, because ClickHouse has
// no transactions and two aggregators may start at once: SQL creates with
// IF NOT EXISTS, columns are added only when system.columns lacks them (and
// "already exists" from a racing aggregator counts as done), and the record
// is kept once per version however often it is inserted. A step never drops
// or rewrites data. Once released, a step is never changed: a new change
// is a new step.
//
// SQL returns the step's statements for a layout (nil SQL: none), with
// {db} for the database. Every table a step creates is made with
// Layout.CreateTable and every materialized view with Layout.CreateView
// (or CreateFilteredView), reading Layout.ViewSource and writing
// Layout.Local tables, so that the step works on one server and on a
// cluster alike.
type Migration struct {
	Version int
	Name    string // what it does, for the log and the migrations table
	SQL     func(Layout) []string
	// Run, if set, is the step's work that SQL alone cannot say, after
	// SQL; idempotent like it, and for the layout c has (c.layout). It
	// runs again, after SQL, whenever the steps' statements are run
	// again (ensureEventsInput), so views it makes follow the same rules
	// as SQL's and it must keep what it chose the first time.
	Run func(c *Client, ctx context.Context) error
}

// Migrations are every step from an empty database to the schema this
// version of the aggregator uses, in order. Version 1 is the schema the
// aggregator created before it had migrations, so a database made then is
// recognised as version 1 without any change to it.
var Migrations = []Migration{
	{Version: 1, Name: "events, events_per_minute and its view, bad_rows", SQL: schemaV1},
	{Version: 2, Name: "events.method"},
	{Version: 3, Name: "edge_counters", SQL: schemaV3},
	{Version: 4, Name: "dashboard rollups: site_minutes, site_hours, site_days, dim_hours and their views", SQL: schemaV4},
	{Version: 5, Name: "events: user agent, bot, referrer, campaign, path, geography, visitor ids, consent, client time, screen, signature and mail-open columns"},
	{Version: event.VersionStorage, Name: "events storage: path an ALIAS of url"},
	{Version: VersionRollups, Name: "rollups with visitors and visits: rollup_minutes, rollup_hours, rollup_days, rollup_dims, rollup_visits, visit_hours, the views from a cut-off; step 4's views dropped",
		SQL: schemaV7, Run: (*Client).createRollupViews},
	{Version: VersionVisitDims, Name: "visit_dims: visits per dimension value and entry and exit pages, per hour", SQL: visitDimsSchema},
	{Version: event.VersionLowCardinality, Name: "events storage: user_agent and pop LowCardinality"},
	{Version: VersionDimDays, Name: "rollup_dim_days: rollup_dims per day, its view from a cut-off; the hours before it merged in by the backfill",
		SQL: dimDaysSchema, Run: (*Client).createDimDaysView},
	{Version: VersionMinuteDims, Name: "rollup_minute_dims: events per minute, visitor and value of the visitor-level dimensions, page and event, its view from a cut-off; the events before it rolled up by the backfill",
		SQL: minuteDimsSchema, Run: (*Client).createMinuteDimsView},
	{Version: VersionProps, Name: "rollup_props: events, pageviews and visitors per day, event name and property, its view from a cut-off; the events before it rolled up by the backfill",
		SQL: propsSchema, Run: (*Client).createPropsView},
	{Version: VersionPropsDims, Name: "rollup_props_dims: rollup_props per value of each filtering dimension but the event name, its view from a cut-off; the events before it rolled up by the backfill",
		SQL: propsDimsSchema, Run: (*Client).createPropsDimsView},
	{Version: VersionMinutes, Name: "rollup_minute_audience and rollup_minute_sources: rollup_minute_dims with the referrer, channel and UTM dimensions, sorted by the visitor's dimensions and by the sources, the event and the page, their views from a cut-off; the events before it rolled up by the backfill; rollup_minute_dims' view dropped",
		SQL: minutesSchema, Run: (*Client).createMinutesViews},
	{Version: VersionErased, Name: "erased_events: the ids and times of the events erasures deleted, which the loss figures count as stored", SQL: erasedSchema},
	{Version: VersionHumans, Name: "rollup_human_hours and rollup_human_days: rollup_hours and rollup_days of the events that are not a bot's, their views from a cut-off; the events before it rolled up by the backfill (and visit_dims' builds gain the visits without bots)",
		SQL: humansSchema, Run: (*Client).createHumansViews},
	{Version: VersionBotDims, Name: "rollup_dims_bot and rollup_dim_days_bot: rollup_dims and rollup_dim_days with the bot verdict in their key, their views from a cut-off; the events before it rolled up by the backfill; rollup_dims' and rollup_dim_days' views dropped",
		SQL: botDimsSchema, Run: (*Client).createBotDimsViews},
	{Version: VersionMix, Name: "rollup_mix_hours: events per hour, consent tier and bot verdict, its view from a cut-off; the events before it rolled up by the backfill",
		SQL: mixSchema, Run: (*Client).createMixView},
	{Version: VersionOpens, Name: "rollup_opens_hours and rollup_opens_days: events, pageviews and visitors per hour and day, mail open, signature and bot verdict, their views from a cut-off; the events before it rolled up by the backfill",
		SQL: opensSchema, Run: (*Client).createOpensViews},
	{Version: VersionPageDims, Name: "rollup_page_dims: events, pageviews and visitors per day, page and value of each other dimension that filters but the region and city, and bot verdict, its view from a cut-off; the events before it rolled up by the backfill",
		SQL: pageDimsSchema, Run: (*Client).createPageDimsView},
}

// schemaV3 adds edge_counters, the edges' counts (shared/wire,
// counters.go): one row per instance, site, counter (hits, events,
// dropped) and drop reason, each time an instance reported it, with the
// cumulative value then. Readers take, per instance and key, the largest
// value (before a time), so a row stored twice changes nothing; the
// ReplacingMergeTree merely collapses exact copies. Day partitions let
// retention drop it with events. ClickHouse 18.16 has no LowCardinality
// without a setting, so the short repeated strings are plain String.
func schemaV3(l Layout) []string {
	return l.CreateTable("edge_counters", `
		instance UUID,
		ts DateTime,
		ts_ms UInt64,
		pop String,
		site String,
		counter String,
		reason String,
		value UInt64
	`, "ReplacingMergeTree", `PARTITION BY toYYYYMMDD(ts)
	ORDER BY (site, instance, counter, reason, ts_ms)`)
}

// schemaV1 is the schema before migrations, exactly as it was created then
// (testdata/v1-schema.sql keeps a copy to test upgrades against).
//
// events is a ReplacingMergeTree whose sorting key ends in event_id: the
// loader already stores each event once, and should an event ever be
// inserted twice (two aggregators racing on one id), merges collapse the
// copies; exact counts use uniqExact(event_id), which is right before
// merges too. events_per_minute is the rollup the dashboard's history
// reads, kept by a materialized view so it costs nothing at query time.
//
// bad_rows keeps what ingest could not turn into events (see package
// record). row_id is derived from the source and the raw input, so a bad
// input delivered twice collapses at merges (count with uniqExact(row_id)).
// Day partitions let retention drop it like events.
func schemaV1(l Layout) []string {
	out := []string{l.CreateDatabase()}
	out = append(out, l.CreateTable("events", `
		event_id UUID,
		ts DateTime,
		ts_ms UInt64,
		site String,
		name String,
		url String,
		referrer String,
		user_agent String,
		client_ip String,
		country String,
		utm_source String,
		utm_medium String,
		utm_campaign String,
		pop String,
		props String
	`, "ReplacingMergeTree", `PARTITION BY toYYYYMMDD(ts)
	ORDER BY (site, ts, event_id)`)...)
	out = append(out, l.CreateEventsInput()...)
	out = append(out, l.CreateTable("events_per_minute", `
		site String,
		minute DateTime,
		n UInt64
	`, "SummingMergeTree(n)", `PARTITION BY toYYYYMM(minute)
	ORDER BY (site, minute)`)...)
	out = append(out, l.CreateView("events_per_minute_mv", "events_per_minute", `site, toStartOfMinute(ts) AS minute, count() AS n`, `site, minute`))
	return append(out, l.CreateTable("bad_rows", `
		row_id UUID,
		received DateTime,
		received_ms UInt64,
		source String,
		site String,
		reason String,
		error String,
		raw String
	`, "ReplacingMergeTree", `PARTITION BY toYYYYMMDD(received)
	ORDER BY (reason, row_id)`)...)
}

// ensureEventsInput makes sure, in a cluster, that every insert reaches
// events_local and every rollup through EventsInput (see
// Layout.CreateView). It runs on every start, after the steps, without a
// step of its own (one would make older aggregators refuse a single
// server's database for a change that is not for it):
//
//   - EventsInput is made again when its columns are not events_local's
//     (a step added or changed one): inserts fail meanwhile ("Expected
//     column", or no such table) and the loader retries them, so nothing
//     is lost. Its views are kept: ClickHouse finds a view's source by
//     name.
//   - A database an earlier cluster layout made has its rollup views on
//     rollup_input (a Null table the loader inserted into after
//     events_local) or on events_local: they are dropped and made again
//     by running the steps' statements and Run, which create what is
//     missing (views a Run makes with a cut-off keep it), and
//     rollup_input is dropped, so that an older aggregator still inserting
//     there fails loudly rather than filling nothing. Rows inserted by
//     older aggregators during the switch may miss the rollups: stop them
//     first.
//   - EventsView is made last, once every rollup view reads EventsInput.
func (c *Client) ensureEventsInput(ctx context.Context, steps []Migration) error {
	l := c.layout
	if !l.Clustered() {
		return nil
	}
	const legacyInput = "rollup_input"
	rows, err := c.Query(ctx, "SELECT arrayJoin(dependencies_table) FROM system.tables WHERE database = "+quote(c.db)+
		" AND name IN ("+quote(legacyInput)+", "+quote(l.LocalName("events"))+")")
	if err != nil {
		return fmt.Errorf("migrate: look for views of an earlier cluster layout: %w", err)
	}
	// The rollups' views are made by their step's Run with a cut-off
	// their SQL keeps (see createRollupViews): it is read before they
	// are dropped, and they are made again with it.
	var cuts map[string]int64
	if len(rows) > 0 {
		if cuts, err = c.viewCutoffs(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	dropped := map[string]bool{}
	for _, r := range rows {
		if len(r) == 1 && r[0] != EventsView {
			if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+r[0]+l.OnCluster()); err != nil {
				return fmt.Errorf("migrate: drop view %s to make it again on %s: %w", r[0], EventsInput, err)
			}
			dropped[r[0]] = true
		}
	}
	if err := c.syncEventsInput(ctx); err != nil {
		return err
	}
	if len(rows) > 0 {
		for _, r := range rollups() {
			if cut, ok := cuts[r.table]; ok && dropped[r.table+"_mv"] {
				if err := c.execDDL(ctx, r.view(l, cut)); err != nil {
					return fmt.Errorf("migrate: make view %s_mv again on %s: %w", r.table, EventsInput, err)
				}
			}
		}
		if err := c.rerunSteps(ctx, steps); err != nil {
			return fmt.Errorf("migrate: make the steps' tables and views again on %s: %w", EventsInput, err)
		}
		if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+legacyInput+l.OnCluster()); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if err := c.execDDL(ctx, l.createEventsView()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// syncEventsInput makes EventsInput, in a cluster, with the columns
// events_local has now, unless it has them already; nothing before step 1
// has made events_local (step 1 makes both) or on one server. It runs
// before a step's statements too, whose views read EventsInput and may
// name a column an earlier step added to events_local.
func (c *Client) syncEventsInput(ctx context.Context) error {
	l := c.layout
	if !l.Clustered() {
		return nil
	}
	rows, err := c.Query(ctx, "SELECT count() FROM system.tables WHERE database = "+quote(c.db)+" AND name = "+quote(l.LocalName("events")))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == "0" {
		return nil
	}
	if err := c.execDDL(ctx, l.createEventsInputTable()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	local, err := c.columns(ctx, l.LocalName("events"))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	input, err := c.columns(ctx, EventsInput)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !maps.Equal(local, input) {
		for _, s := range []string{"DROP TABLE IF EXISTS {db}." + EventsInput + l.OnCluster(), l.createEventsInputTable()} {
			if err := c.execDDL(ctx, s); err != nil {
				return fmt.Errorf("migrate: make %s again with the columns of %s: %w", EventsInput, l.LocalName("events"), err)
			}
		}
	}
	return nil
}

// migrationsTable records the applied steps. A ReplacingMergeTree keyed by
// version keeps one row per version at merges; reads group by version, so
// a step recorded twice by two aggregators starting at once reads once
// before merges too. In a cluster each aggregator records into its own
// shard and reads every shard's records through the Distributed table.
func migrationsTable(l Layout) []string {
	return l.CreateTable("schema_migrations", `
	version UInt32,
	name String,
	applied_at DateTime,
	by String
`, "ReplacingMergeTree", `ORDER BY version`)
}

// ErrSchemaTooNew is returned (wrapped in a *SchemaTooNewError) by Migrate
// for a database that a newer aggregator has migrated past the steps this
// one knows.
var ErrSchemaTooNew = errors.New("clickhouse schema newer than this aggregator")

// SchemaTooNewError says which versions disagree and what to do.
type SchemaTooNewError struct {
	DB      string
	Version int    // the database's newest step
	Name    string // its name, as recorded
	Known   int    // the newest step this binary knows
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("clickhouse database %s is at schema version %d (%q), newer than this edgepixel-aggregator, which knows versions up to %d: "+
		"a newer aggregator has migrated it. Run that newer edgepixel-aggregator (or a later one) against it, or give this one another database (--clickhouse-db); "+
		"migrations are never undone, so an older aggregator must not write to a newer schema. Nothing was changed",
		e.DB, e.Version, e.Name, e.Known)
}

func (e *SchemaTooNewError) Unwrap() error { return ErrSchemaTooNew }

// runSQL runs the statements of step m.
func (c *Client) runSQL(ctx context.Context, m Migration) error {
	if m.SQL == nil {
		return nil
	}
	for _, s := range m.SQL(c.layout) {
		if err := c.execDDL(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// ErrSchemaConflict means the database has a column this version needs
// with another type: someone changed the schema by hand. Migrate does not
// guess how to fix that.
var ErrSchemaConflict = errors.New("clickhouse schema conflict")

// MigrateResult says what Migrate found and did.
type MigrateResult struct {
	From, To int         // schema version before and after
	Applied  []Migration // the steps run
	// Problems are, in a cluster, what ClusterSchemaProblems still found
	// after a repair ran every step again: what the steps cannot mend
	// (a table changed by hand on one server, say), for the operator.
	Problems []string
}

// Migrate brings the database to the newest schema version in Migrations,
// creating it if need be, and returns what it did. It refuses, with a
// *SchemaTooNewError and no change, a database a newer aggregator has
// migrated further.
func (c *Client) Migrate(ctx context.Context) (MigrateResult, error) {
	return c.migrate(ctx, Migrations, migrator())
}

// MigrateTo is Migrate up to schema version (inclusive) only: for
// benchmarks and tests that set a layout against an earlier one. An
// aggregator uses Migrate.
func (c *Client) MigrateTo(ctx context.Context, version int) (MigrateResult, error) {
	n := 0
	for n < len(Migrations) && Migrations[n].Version <= version {
		n++
	}
	if n == 0 {
		return MigrateResult{}, fmt.Errorf("migrate: no schema version %d", version)
	}
	return c.migrate(ctx, Migrations[:n], migrator())
}

// migrate applies steps. On one server it runs them once (see
// migrateOnce). In a cluster, aggregators starting at once migrate it
// together, and one's Distributed DDL can fail while another's is under
// way (EventsInput made again between a view's check and its CREATE, say),
// or succeed on some servers only: so it runs the steps again, after a
// pause, until they pass and repairCluster has made every server's schema
// whole as far as the steps can (what they cannot is left in
// MigrateResult.Problems), for up to clusterMigrateRetries or until ctx
// ends; it then returns the last error. Errors that a retry cannot mend
// (ErrSchemaTooNew, ErrSchemaConflict, ErrClusterConfig) end it at once.
func (c *Client) migrate(ctx context.Context, steps []Migration, by string) (MigrateResult, error) {
	if !c.layout.Clustered() {
		return c.migrateOnce(ctx, steps, by)
	}
	var applied []Migration
	wait := 500 * time.Millisecond
	for deadline := time.Now().Add(clusterMigrateRetries); ; {
		res, err := c.migrateOnce(ctx, steps, by)
		applied = append(applied, res.Applied...)
		if err == nil {
			res.Problems, err = c.repairCluster(ctx, steps)
		}
		res.Applied = applied
		if err == nil || errors.Is(err, ErrSchemaTooNew) || errors.Is(err, ErrSchemaConflict) || errors.Is(err, ErrClusterConfig) || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// clusterMigrateRetries is how long migrate tries again in a cluster: a
// fresh cluster's migration, which a racing aggregator's must outlast,
// takes a minute or so of Distributed DDL.
const clusterMigrateRetries = 3 * time.Minute

// rerunSteps runs each step's statements, then its Run, again, as when it
// was applied: each creates only what is missing, and a later step's Run
// drops again what an earlier step's statements bring back (step 4's
// views, which VersionRollups dropped).
func (c *Client) rerunSteps(ctx context.Context, steps []Migration) error {
	for _, m := range steps {
		err := c.runSQL(ctx, m)
		if err == nil && m.Run != nil {
			err = m.Run(c, ctx)
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", m.Version, err)
		}
	}
	return nil
}

// repairCluster checks that every server of the cluster has the whole
// schema (ClusterSchemaProblems) and, if one lacks part of it, runs every
// step's statements and Run again (each creates only what is missing) and
// EventsView last, as ensureEventsInput does, then checks again. It
// returns what is still wrong then; an error only when a statement or
// the check failed.
func (c *Client) repairCluster(ctx context.Context, steps []Migration) ([]string, error) {
	problems, err := c.ClusterSchemaProblems(ctx)
	if err != nil || len(problems) == 0 {
		return nil, err
	}
	if err := c.rerunSteps(ctx, steps); err != nil {
		return nil, fmt.Errorf("migrate: repair %s: %w", strings.Join(problems, "; "), err)
	}
	if err := c.execDDL(ctx, c.layout.createEventsView()); err != nil {
		return nil, fmt.Errorf("migrate: repair %s: %w", strings.Join(problems, "; "), err)
	}
	return c.ClusterSchemaProblems(ctx)
}

// migrateOnce runs the steps not yet applied, once, then (in a cluster)
// ensureEventsInput.
func (c *Client) migrateOnce(ctx context.Context, steps []Migration, by string) (MigrateResult, error) {
	var res MigrateResult
	if err := c.checkCluster(ctx); err != nil {
		return res, err
	}
	for _, s := range append([]string{c.layout.CreateDatabase()}, migrationsTable(c.layout)...) {
		if err := c.execDDL(ctx, s); err != nil {
			return res, fmt.Errorf("migrate: %w", err)
		}
	}
	applied, err := c.appliedMigrations(ctx)
	if err != nil {
		return res, err
	}
	known := steps[len(steps)-1].Version
	for v := range applied {
		res.From = max(res.From, v)
	}
	if res.From > known {
		return res, &SchemaTooNewError{DB: c.db, Version: res.From, Name: applied[res.From], Known: known}
	}
	if name, ok := applied[VersionRollups]; ok && name == revertedStep7 {
		return res, fmt.Errorf("%w: clickhouse database %s was migrated to schema version %d (%q) by a development build whose step %d was reverted; "+
			"this aggregator's step %d is the rollups, which that database lacks. Give this aggregator a new database (--clickhouse-db) and copy the events over; nothing was changed",
			ErrSchemaConflict, c.db, VersionRollups, name, VersionRollups, VersionRollups)
	}
	for _, m := range steps {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		if err := c.apply(ctx, m, by); err != nil {
			return res, fmt.Errorf("migrate to schema version %d (%s): %w", m.Version, m.Name, err)
		}
		res.Applied = append(res.Applied, m)
	}
	if err := c.ensureEventsInput(ctx, steps); err != nil {
		return res, err
	}
	res.To = max(res.From, known)
	return res, nil
}

// ErrClusterConfig means the server's configuration does not fit the
// cluster layout asked for.
var ErrClusterConfig = errors.New("clickhouse cluster configuration")

// checkCluster checks, in a cluster, what the layout needs of the server
// before anything is created: the cluster in its remote_servers, the
// {shard} and {replica} macros, and enough replicas in every shard for the
// insert quorum (else every insert would fail).
func (c *Client) checkCluster(ctx context.Context) error {
	if !c.layout.Clustered() {
		return nil
	}
	rows, err := c.Query(ctx, "SELECT shard_num, count() FROM system.clusters WHERE cluster = "+quote(c.layout.Cluster)+" GROUP BY shard_num ORDER BY shard_num")
	if err != nil {
		return fmt.Errorf("read the clusters: %w", err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("%w: cluster %q is not in this server's remote_servers: add it to the configuration of every server, or name one that is (--clickhouse-cluster)", ErrClusterConfig, c.layout.Cluster)
	}
	for _, r := range rows {
		if len(r) == 2 && c.quorum > 1 {
			if n, err := parseUint(r[1]); err == nil && int(n) < c.quorum {
				return fmt.Errorf("%w: shard %s of cluster %q has %d replicas, fewer than the insert quorum %d: every insert would fail; lower --clickhouse-insert-quorum or add replicas", ErrClusterConfig, r[0], c.layout.Cluster, n, c.quorum)
			}
		}
	}
	macros, err := c.Query(ctx, "SELECT macro FROM system.macros WHERE macro IN ('shard', 'replica')")
	if err != nil {
		return fmt.Errorf("read the macros: %w", err)
	}
	if len(macros) != 2 {
		return fmt.Errorf("%w: this server lacks the macros shard and replica (it has %q): replicated tables name their ZooKeeper path and replica with them; add <macros><shard>…</shard><replica>…</replica></macros> to every server", ErrClusterConfig, macros)
	}
	return nil
}

// appliedMigrations returns the recorded steps by version.
func (c *Client) appliedMigrations(ctx context.Context) (map[int]string, error) {
	rows, err := c.Query(ctx, "SELECT version, any(name) FROM "+c.db+".schema_migrations GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	applied := make(map[int]string, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("clickhouse: schema_migrations row %q", r)
		}
		v, err := parseUint(r[0])
		if err != nil {
			return nil, err
		}
		applied[int(v)] = r[1]
	}
	return applied, nil
}

// revertedStep7 is the name a development build recorded for its step 7
// (the column events.load_attempt, c199d3d), reverted before release.
const revertedStep7 = "events.load_attempt"

// apply runs one step and records it. In a cluster the views it makes
// read EventsInput, which first gets the columns events_local has (a
// database an earlier cluster layout made has no EventsInput yet, and an
// earlier step may have added a column the views name).
func (c *Client) apply(ctx context.Context, m Migration, by string) error {
	if m.SQL != nil || m.Run != nil {
		if err := c.syncEventsInput(ctx); err != nil {
			return err
		}
	}
	if err := c.runSQL(ctx, m); err != nil {
		return err
	}
	if err := c.addColumns(ctx, "events", m.Version); err != nil {
		return err
	}
	if err := c.modifyColumns(ctx, "events", m.Version); err != nil {
		return err
	}
	if m.Run != nil {
		if err := m.Run(c, ctx); err != nil {
			return err
		}
	}
	return c.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s (version, name, applied_at, by) VALUES (%d, %s, now(), %s)",
		c.db, c.layout.LocalName("schema_migrations"), m.Version, quote(m.Name), quote(by)))
}

// addColumns adds to table the columns of the event fields that schema
// version introduced, and checks the type of those it has. ClickHouse 18.16
// has no ADD COLUMN IF NOT EXISTS, so the columns are looked up first; an
// aggregator racing this one may add a column in between, and its "already
// exists" is taken as done once the column is seen.
//
// In a cluster the columns are added to the local tables on every server
// (ON CLUSTER; a replicated table's ALTER reaches its other replicas
// through ZooKeeper), and the Distributed table is made again over them
// (remakeDistributed).
func (c *Client) addColumns(ctx context.Context, table string, version int) error {
	var want []*event.Field
	for i := range event.Fields {
		if f := &event.Fields[i]; f.Since == version && !f.Transit {
			want = append(want, f)
		}
	}
	if len(want) == 0 {
		return nil
	}
	local := c.layout.LocalName(table)
	have, err := c.columns(ctx, local)
	if err != nil {
		return err
	}
	// The missing columns are added by one ALTER: in a cluster each
	// statement is a Distributed DDL task every replica runs in turn, and
	// a step adds tens of columns.
	var adds []string
	for _, f := range want {
		if col, ok := have[f.JSON]; ok {
			typ := col.typ
			// A later step changes the type of a column it has: any
			// type is this step's (modifyColumns checks the later one).
			if typ != f.CHType && f.CHChanged <= version {
				return fmt.Errorf("%w: %s.%s.%s is %s, this version needs %s; change it back or migrate by hand", ErrSchemaConflict, c.db, local, f.JSON, typ, f.CHType)
			}
			continue
		}
		def := ""
		if f.CHDefault != "" {
			def = " DEFAULT " + f.CHDefault
		}
		adds = append(adds, fmt.Sprintf("ADD COLUMN %s %s%s", f.JSON, f.CHType, def))
	}
	if len(adds) > 0 {
		// LowCardinality columns need this setting on 18.16; later
		// versions accept and ignore it.
		err := c.execSettings(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s %s", c.db, local, c.layout.OnCluster(), strings.Join(adds, ", ")),
			map[string]string{"allow_experimental_low_cardinality_type": "1"})
		if err != nil {
			// Another aggregator may have added them meanwhile (then
			// this ALTER failed on the first it found): all there is
			// success; otherwise the next migration adds what is
			// still missing.
			have, cerr := c.columns(ctx, local)
			if cerr != nil {
				return fmt.Errorf("add columns to %s: %w", local, err)
			}
			for _, f := range want {
				if have[f.JSON].typ != f.CHType {
					return fmt.Errorf("add column %s.%s: %w", local, f.JSON, err)
				}
			}
		}
	}
	return c.remakeDistributed(ctx, table, func(cols map[string]column) bool {
		for _, f := range want {
			if cols[f.JSON].typ != f.CHType {
				return false
			}
		}
		return true
	})
}

// remakeDistributed makes a cluster's Distributed table again over its
// local tables after their columns changed, unless its columns are already
// as current says. Its columns are fixed when it is made, and 18.16
// refuses ALTER ON CLUSTER of a table that is not replicated on a cluster
// whose shards are. A Distributed table holds no rows, so nothing is lost;
// readers see it missing for that moment. One server: nothing to do.
func (c *Client) remakeDistributed(ctx context.Context, table string, current func(map[string]column) bool) error {
	if !c.layout.Clustered() {
		return nil
	}
	if cols, err := c.columns(ctx, table); err == nil && current(cols) {
		return nil
	}
	if err := c.execDDL(ctx, "DROP TABLE IF EXISTS {db}."+table+c.layout.OnCluster()); err != nil {
		return fmt.Errorf("make the Distributed table %s again with the new columns: %w", table, err)
	}
	if err := c.execDDL(ctx, c.layout.Distributed(table)); err != nil {
		return fmt.Errorf("make the Distributed table %s again with the new columns: %w", table, err)
	}
	return nil
}

// modifyColumns changes in place the columns of table whose type or kind
// schema version changed (event.Field.CHChanged): to LowCardinality, or to
// an ALIAS. ClickHouse rewrites a column whose type changes, keeping its
// values (18.16 does it within the ALTER); an ALIAS keeps nothing, so a
// field becomes one only when its values are its expression's (the edge's
// path is url's, see event.PathOfURL). A column already as wanted is left
// alone, so a step run twice, or by two aggregators at once, changes it
// once.
func (c *Client) modifyColumns(ctx context.Context, table string, version int) error {
	var want []*event.Field
	for i := range event.Fields {
		if f := &event.Fields[i]; f.CHChanged == version {
			want = append(want, f)
		}
	}
	if len(want) == 0 {
		return nil
	}
	done := func(f *event.Field, cols map[string]column) bool {
		col, ok := cols[f.JSON]
		return ok && col.typ == f.CHType && (col.kind == "ALIAS") == (f.CHAlias != "")
	}
	local := c.layout.LocalName(table)
	cols, err := c.columns(ctx, local)
	if err != nil {
		return err
	}
	for _, f := range want {
		if done(f, cols) {
			continue
		}
		if _, ok := cols[f.JSON]; !ok {
			return fmt.Errorf("%w: %s.%s has no column %s to change", ErrSchemaConflict, c.db, local, f.JSON)
		}
		def := ""
		switch {
		case f.CHAlias != "":
			def = " ALIAS " + f.CHAlias
		case f.CHDefault != "":
			def = " DEFAULT " + f.CHDefault
		}
		err := c.execSettings(ctx, fmt.Sprintf("ALTER TABLE %s.%s%s MODIFY COLUMN %s %s%s", c.db, local, c.layout.OnCluster(), f.JSON, f.CHType, def),
			map[string]string{"allow_experimental_low_cardinality_type": "1"})
		if err == nil {
			continue
		}
		if now, cerr := c.columns(ctx, local); cerr == nil && done(f, now) {
			continue // changed meanwhile by another aggregator
		}
		return fmt.Errorf("change column %s.%s: %w", local, f.JSON, err)
	}
	return c.remakeDistributed(ctx, table, func(cols map[string]column) bool {
		for _, f := range want {
			if !done(f, cols) {
				return false
			}
		}
		return true
	})
}

// column is a column's type and kind ("", DEFAULT, MATERIALIZED or
// ALIAS) in system.columns.
type column struct{ typ, kind string }

// columns returns the columns of table.
func (c *Client) columns(ctx context.Context, table string) (map[string]column, error) {
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT name, type, default_kind FROM system.columns WHERE database = %s AND table = %s", quote(c.db), quote(table)))
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("table %s.%s does not exist", c.db, table)
	}
	cols := make(map[string]column, len(rows))
	for _, r := range rows {
		if len(r) == 3 {
			cols[r[0]] = column{r[1], r[2]}
		}
	}
	return cols, nil
}

// execDDL runs an idempotent statement, with {db} for the database. A
// server error is retried a few times: 18.16 may refuse a CREATE while a
// racing aggregator creates the same table, and the retry then finds it
// there.
func (c *Client) execDDL(ctx context.Context, sql string) error {
	sql = strings.ReplaceAll(sql, "{db}", c.db)
	return retryServerErrors(ctx, 4, 50*time.Millisecond, func() error {
		if c.nat == nil {
			// Over HTTP the server answers 200 before a statement ON
			// CLUSTER has finished on every server, and reports one
			// that then fails (or outlasts distributed_ddl_task_timeout)
			// only inside the body: buffering the whole answer makes
			// its status say how it ended.
			return c.execWith(ctx, sql, map[string]string{"wait_end_of_query": "1"}, true)
		}
		return c.Exec(ctx, sql)
	})
}

// migrator identifies this process in schema_migrations.by.
func migrator() string {
	host, _ := os.Hostname()
	by := "edgepixel-aggregator pid " + strconv.Itoa(os.Getpid()) + " on " + host
	if rev := buildinfo.Revision(); rev != "" {
		by += " rev " + rev
	}
	return by
}

// SchemaVersion is the schema step this aggregator migrates a database to.
func SchemaVersion() int { return Migrations[len(Migrations)-1].Version }
