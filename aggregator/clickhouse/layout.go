package clickhouse

import (
	"strconv"
	"strings"
)

// Layout is where the schema's tables live. The zero Layout is one server:
// every table is what its migration step names, with the engine it names.
//
// A Layout with a Cluster spreads the tables over that cluster (a
// remote_servers entry in the servers' configuration): shards of replicas
// coordinated by ZooKeeper, as in ClickHouse's documentation on data
// replication and the Distributed engine. Each table then is two:
//
//   - NAME_local on every server, with the replicated form of its engine
//     (ReplacingMergeTree becomes ReplicatedReplacingMergeTree) whose
//     ZooKeeper path names the {shard} macro, so that the replicas of a
//     shard hold the same rows; inserts go here, to one shard, and
//     materialized views read and write these;
//   - NAME, a Distributed table over every shard's NAME_local: readers
//     (the dashboard, queries, counts) use it unchanged.
//
// Statements for a cluster run ON CLUSTER (distributed DDL through
// ZooKeeper, on every server of the cluster), so one aggregator migrates
// the whole cluster. Statements keep {db} for the database, filled in when
// they run.
type Layout struct {
	Cluster string // a remote_servers cluster name; "" for one server
}

// Clustered reports whether l spreads tables over a cluster.
func (l Layout) Clustered() bool { return l.Cluster != "" }

// LocalSuffix ends the name of a table's per-server part in a cluster.
const LocalSuffix = "_local"

// Local returns the table that rows of table are inserted into and that
// materialized views read and write: {db}.table on one server,
// {db}.table_local in a cluster.
func (l Layout) Local(table string) string { return "{db}." + l.LocalName(table) }

// LocalName is Local without the database.
func (l Layout) LocalName(table string) string {
	if l.Clustered() {
		return table + LocalSuffix
	}
	return table
}

// OnCluster returns " ON CLUSTER name" in a cluster, else "": the clause
// that makes a DDL statement run on every server.
func (l Layout) OnCluster() string {
	if l.Clustered() {
		return " ON CLUSTER " + l.Cluster
	}
	return ""
}

// ZooKeeperPath is where a replicated table keeps its replicas' shared
// state: one path per shard (the {shard} macro) and table. Replicas of a
// shard have the same path and differ by the {replica} macro.
func ZooKeeperPath(table string) string { return "/clickhouse/tables/{shard}/{db}." + table }

// Engine returns the ENGINE of table, given as on one server: an engine of
// the MergeTree family with its parameters, if any ("ReplacingMergeTree",
// "SummingMergeTree(n)"). On one server it is engine itself; in a cluster
// its replicated form, whose first parameters are ZooKeeperPath(table) and
// the {replica} macro:
// ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{db}.t', '{replica}', n).
//
// Every table a migration step creates takes its engine from here (through
// CreateTable), so that one choice makes the whole schema replicated.
func (l Layout) Engine(table, engine string) string {
	if !l.Clustered() {
		return engine
	}
	name, params, _ := strings.Cut(engine, "(")
	params = strings.TrimSuffix(strings.TrimSpace(params), ")")
	out := "Replicated" + strings.TrimSpace(name) + "('" + ZooKeeperPath(table) + "', '{replica}'"
	if strings.TrimSpace(params) != "" {
		out += ", " + params
	}
	return out + ")"
}

// CreateTable returns the statements that create table: columns is the
// text inside the parentheses of the column list, engine the engine as on
// one server (see Engine), keys what follows it (PARTITION BY, ORDER BY,
// SETTINGS). On one server that is one statement,
//
//	CREATE TABLE IF NOT EXISTS {db}.table (columns) ENGINE = engine
//		keys
//
// and in a cluster two, on every server: table_local with the replicated
// engine, and table as a Distributed table over it (see Distributed).
//
// A table whose engine sums or aggregates (SummingMergeTree,
// AggregatingMergeTree) is a rollup that materialized views fill. In a
// cluster it gets one more column, LoadColumn, which its views fill (see
// CreateView), and keeps the ids of its last RollupDedupWindow blocks.
func (l Layout) CreateTable(table, columns, engine, keys string) []string {
	if l.Clustered() && (strings.HasPrefix(engine, "SummingMergeTree") || strings.HasPrefix(engine, "AggregatingMergeTree")) {
		columns = strings.TrimRight(columns, " \t\n") + ",\n\t\t" + LoadColumn + " String\n\t"
		window := "replicated_deduplication_window = " + strconv.Itoa(RollupDedupWindow)
		if strings.Contains(keys, "SETTINGS ") {
			keys += ", " + window
		} else {
			keys += "\n\tSETTINGS " + window
		}
	}
	out := []string{`CREATE TABLE IF NOT EXISTS ` + l.Local(table) + l.OnCluster() + ` (` + columns + `) ENGINE = ` + l.Engine(table, engine) + "\n\t" + keys}
	if l.Clustered() {
		out = append(out, l.Distributed(table))
	}
	return out
}

// Distributed returns the statement that creates table, in a cluster, as
// a Distributed table over table_local on every shard, with its columns
// (empty on one server, where there is nothing to create). Inserts do not
// go through it, so its sharding key only matters to someone inserting by
// hand: rand() spreads such rows evenly.
func (l Layout) Distributed(table string) string {
	if !l.Clustered() {
		return ""
	}
	return `CREATE TABLE IF NOT EXISTS {db}.` + table + l.OnCluster() + ` AS ` + l.Local(table) +
		` ENGINE = Distributed(` + l.Cluster + `, {db}, ` + l.LocalName(table) + `, rand())`
}

// CreateView returns the statement that creates the materialized view
// name, on every server in a cluster, storing into the table to (its Local
// form: each server's view fills its own replica, whose inserts replicate
// like any other) the rows of
//
//	SELECT columns FROM source GROUP BY groupBy
//
// where source is ViewSource: on one server the events table; in a
// cluster EventsInput, and the select list gains LoadColumn.
//
// Why EventsInput in a cluster: an insert whose outcome is unknown (its
// quorum wait timed out, ZooKeeper was lost mid-commit, one view's insert
// failed after others had written) is retried as the same block, and
// every table must keep that block once. A replicated table drops a block
// it already holds, and skips its own views for it, so views on
// events_local would never count a block whose first insert wrote the
// events and then failed. And ClickHouse 18.16 deduplicates what views
// write into their (replicated) tables only when the table they read
// deduplicates nothing itself: a Null table does that. So the loader
// inserts each block once, into EventsInput, whose views fill every
// rollup and, last (EventsView), events_local: a retried block then
// fills exactly the tables its first attempt did not. LoadColumn makes
// the rollup blocks of two different loads differ even when their counts
// are the same (one pageview of a site in a minute), so deduplication
// drops only true repeats.
func (l Layout) CreateView(name, to, columns, groupBy string) string {
	return l.CreateFilteredView(name, to, columns, "", groupBy)
}

// CreateFilteredView is CreateView whose SELECT has clauses between its
// FROM and its GROUP BY: an ARRAY JOIN, a WHERE, or both, in that order.
//
//	SELECT columns FROM source clauses GROUP BY groupBy
func (l Layout) CreateFilteredView(name, to, columns, clauses, groupBy string) string {
	if l.Clustered() {
		columns += ", " + loadExpr + " AS " + LoadColumn
	}
	from := "\n\tFROM " + l.ViewSource() + " "
	if clauses != "" {
		from += clauses + " "
	}
	return `CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.` + name + l.OnCluster() + ` TO ` + l.Local(to) + ` AS` + "\n\tSELECT " + columns +
		from + "GROUP BY " + groupBy
}

// EventsInput is the table, in a cluster, that the loader inserts events
// into (see CreateView): a Null table (it keeps nothing) on every server,
// with the columns of events_local.
const EventsInput = "events_input"

// EventsView is the view, in a cluster, that stores what is inserted into
// EventsInput in events_local. ClickHouse 18.16 runs a table's views one
// after another in the order of their names (parallel_view_processing=0,
// which a cluster's inserts send: see SetCluster) and stops at the first
// one that fails, so its name sorts after every rollup view's: a block that
// events_local holds has been counted by every rollup, and the loader's
// check of a crashed attempt against the events table holds for the
// rollups too.
const EventsView = "zz_events_local_mv"

// LoadColumn is the rollup tables' column, in a cluster, that tells two
// loads' rollup rows apart: the smallest event id of the rows summed.
const LoadColumn = "load"

const loadExpr = "toString(min(event_id))"

// RollupDedupWindow is how many recent blocks a rollup table remembers, in
// a cluster, to drop a retried one: each load writes one block per view
// (dim_hours has one view per dimension).
const RollupDedupWindow = 1000

// ViewSource is the table the rollup views read: events on one server,
// EventsInput in a cluster.
func (l Layout) ViewSource() string {
	if l.Clustered() {
		return "{db}." + EventsInput
	}
	return l.Local("events")
}

// CreateEventsInput returns, in a cluster, the statements that create
// EventsInput on every server with the columns events_local has then, and
// EventsView; nothing on one server. Columns added to events_local later
// reach EventsInput when it is made again (Client.Migrate does).
func (l Layout) CreateEventsInput() []string {
	if !l.Clustered() {
		return nil
	}
	return []string{l.createEventsInputTable(), l.createEventsView()}
}

func (l Layout) createEventsInputTable() string {
	return `CREATE TABLE IF NOT EXISTS {db}.` + EventsInput + l.OnCluster() + ` AS ` + l.Local("events") + ` ENGINE = Null`
}

func (l Layout) createEventsView() string {
	return `CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.` + EventsView + l.OnCluster() + ` TO ` + l.Local("events") +
		` AS SELECT * FROM {db}.` + EventsInput
}

// CreateDatabase returns the statement that creates the database, on every
// server in a cluster.
func (l Layout) CreateDatabase() string {
	return "CREATE DATABASE IF NOT EXISTS {db}" + l.OnCluster()
}
