package clickhouse

import (
	"strings"
	"testing"
)

func TestLayoutEngine(t *testing.T) {
	for _, c := range []struct{ cluster, engine, want string }{
		{"", "ReplacingMergeTree", "ReplacingMergeTree"},
		{"", "SummingMergeTree(n)", "SummingMergeTree(n)"},
		{"c", "ReplacingMergeTree", "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}.t', '{replica}')"},
		{"c", "SummingMergeTree(n)", "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{db}.t', '{replica}', n)"},
		{"c", "SummingMergeTree()", "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{db}.t', '{replica}')"},
		{"c", "MergeTree", "ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}.t', '{replica}')"},
	} {
		if got := (Layout{Cluster: c.cluster}).Engine("t", c.engine); got != c.want {
			t.Errorf("cluster %q engine %q: %s, want %s", c.cluster, c.engine, got, c.want)
		}
	}
}

// In a cluster every table of every step is replicated, has a Distributed
// table over it, and runs on the whole cluster, but for EventsInput, a
// Null table on every server made after events_local and before any view;
// every view reads EventsInput and writes a local table with its
// LoadColumn, which keeps its recent blocks; and EventsView, which fills
// events_local, sorts after every other view (ClickHouse runs them in
// the order of their names). Step VersionRollups makes its views in its
// Run, with a cut-off (rollup.view), which are checked with its SQL.
func TestLayoutClusterSteps(t *testing.T) {
	l := Layout{Cluster: "c"}
	for _, m := range Migrations {
		if m.SQL == nil {
			continue
		}
		stmts := m.SQL(l)
		if m.Version == VersionRollups {
			for _, r := range rollups() {
				stmts = append(stmts, r.view(l, 1700000000))
			}
		}
		tables := map[string]bool{}
		for _, s := range stmts {
			if !strings.Contains(s, " ON CLUSTER c") {
				t.Errorf("step %d: not on the cluster: %s", m.Version, s)
			}
			switch {
			case strings.HasPrefix(s, "CREATE TABLE"):
				name := strings.Fields(s)[5]
				if name == "{db}."+EventsInput {
					if !strings.HasSuffix(s, " AS {db}.events_local ENGINE = Null") || !tables["{db}.events"] {
						t.Errorf("step %d: %s is not a Null table like events_local, made after it: %s", m.Version, name, s)
					}
					tables[name] = true
					continue
				}
				if (strings.Contains(s, "SummingMergeTree") || strings.Contains(s, "AggregatingMergeTree")) && (!strings.Contains(s, LoadColumn+" String") || !strings.Contains(s, "replicated_deduplication_window = 1000")) {
					t.Errorf("step %d: rollup %s without %s or deduplication: %s", m.Version, name, LoadColumn, s)
				}
				if strings.HasSuffix(name, LocalSuffix) {
					if !strings.Contains(s, "ENGINE = Replicated") {
						t.Errorf("step %d: %s is not replicated: %s", m.Version, name, s)
					}
					tables[strings.TrimSuffix(name, LocalSuffix)] = true
				} else if !strings.Contains(s, "ENGINE = Distributed(c, {db}, ") {
					t.Errorf("step %d: %s is neither local nor Distributed: %s", m.Version, name, s)
				} else if !tables[name] {
					t.Errorf("step %d: Distributed %s before its local table", m.Version, name)
				}
			case strings.HasPrefix(s, "CREATE MATERIALIZED VIEW"):
				view := strings.TrimPrefix(strings.Fields(s)[6], "{db}.")
				if m.Version == 1 && !tables["{db}."+EventsInput] {
					t.Errorf("step 1: view %s before %s", view, EventsInput)
				}
				if view == EventsView {
					if !strings.HasSuffix(s, " TO {db}.events_local AS SELECT * FROM {db}."+EventsInput) {
						t.Errorf("step %d: %s does not store %s in events_local: %s", m.Version, view, EventsInput, s)
					}
					continue
				}
				if view >= EventsView {
					t.Errorf("step %d: view %s does not sort before %s: ClickHouse would fill events_local before it", m.Version, view, EventsView)
				}
				if !strings.Contains(s, "FROM {db}."+EventsInput+" ") || !strings.Contains(s, " AS "+LoadColumn+"\n") {
					t.Errorf("step %d: view does not read %s or fill %s: %s", m.Version, EventsInput, LoadColumn, s)
				}
				for _, f := range strings.Fields(s) {
					if f == "{db}."+EventsInput {
						continue
					}
					if strings.HasPrefix(f, "{db}.") && !strings.HasSuffix(f, LocalSuffix) && !strings.HasSuffix(f, "_mv") {
						t.Errorf("step %d: view names a table that is not local (%s): %s", m.Version, f, s)
					}
				}
			}
		}
	}
}
