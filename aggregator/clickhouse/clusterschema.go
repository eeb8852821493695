package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// ClusterSchemaProblems reads, in a cluster, the schema of every server
// of the cluster (system.clusters, each through the remote table function
// over its TCP port) and lists what is wrong with the tables and views the
// migrations make (schemaNames; others, such as an operator's own, are
// not looked at), one line each; none on one server or when all is well:
//
//   - a table or view that some server has and another lacks, or has
//     with another engine;
//   - a per-server table (name ending in LocalSuffix) that is not
//     replicated, or has no Distributed table of its name without the
//     suffix; any other table that is not Distributed, except EventsInput
//     (Null);
//   - EventsInput whose columns differ from events_local's.
//
// Distributed DDL (ON CLUSTER) runs a statement on each server on its
// own, and one can fail on one server only (two replicas of a shard
// creating a table's ZooKeeper nodes at once, say); migrate checks with
// this and repairs what it finds. A server that does not answer is left
// out (a replica may be down for a while; its schema arrives with the
// Distributed DDL queue when it is back); an error means the server c
// talks to did not answer.
func (c *Client) ClusterSchemaProblems(ctx context.Context) ([]string, error) {
	l := c.layout
	if !l.Clustered() {
		return nil, nil
	}
	addrs, err := c.clusterServers(ctx)
	if err != nil {
		return nil, err
	}
	type server struct {
		addr    string
		engines map[string]string   // table or view: engine
		columns map[string][]string // events tables: "name type kind"
	}
	var servers []server
	all := map[string]bool{}
	known := c.schemaNames()
	for _, addr := range addrs {
		s := server{addr: addr, engines: map[string]string{}, columns: map[string][]string{}}
		tables, err := c.Query(ctx, "SELECT name, engine FROM "+c.remoteSystem(addr, "tables")+" WHERE database = "+quote(c.db))
		var columns [][]string
		if err == nil {
			columns, err = c.Query(ctx, "SELECT table, concat(name, ' ', type, ' ', default_kind) FROM "+c.remoteSystem(addr, "columns")+
				" WHERE database = "+quote(c.db)+" AND table IN ("+quote(l.LocalName("events"))+", "+quote(EventsInput)+") ORDER BY table, name")
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		for _, r := range tables {
			if len(r) == 2 && known[r[0]] {
				s.engines[r[0]] = r[1]
				all[r[0]] = true
			}
		}
		for _, r := range columns {
			if len(r) == 2 {
				s.columns[r[0]] = append(s.columns[r[0]], r[1])
			}
		}
		servers = append(servers, s)
	}
	var out []string
	names := slices.Sorted(maps.Keys(all))
	for _, s := range servers {
		for _, name := range names {
			engine, ok := s.engines[name]
			if !ok {
				out = append(out, fmt.Sprintf("server %s lacks %s.%s", s.addr, c.db, name))
				continue
			}
			for _, o := range servers {
				if e, ok := o.engines[name]; ok && e != engine {
					out = append(out, fmt.Sprintf("server %s has %s.%s as %s, server %s as %s", s.addr, c.db, name, engine, o.addr, e))
					break
				}
			}
			local, isLocal := strings.CutSuffix(name, LocalSuffix)
			switch {
			case engine == "MaterializedView":
			case name == EventsInput:
				if engine != "Null" {
					out = append(out, fmt.Sprintf("server %s: %s is %s, not Null", s.addr, name, engine))
				}
			case isLocal && !strings.HasPrefix(engine, "Replicated"):
				out = append(out, fmt.Sprintf("server %s: %s is %s, not replicated", s.addr, name, engine))
			case isLocal && s.engines[local] != "Distributed":
				out = append(out, fmt.Sprintf("server %s: %s has no Distributed table %s", s.addr, name, local))
			case !isLocal && engine != "Distributed":
				out = append(out, fmt.Sprintf("server %s: %s is %s, neither local nor Distributed", s.addr, name, engine))
			}
		}
		local := strings.Join(s.columns[l.LocalName("events")], ", ")
		if _, ok := s.engines[EventsInput]; ok && strings.Join(s.columns[EventsInput], ", ") != local {
			out = append(out, fmt.Sprintf("server %s: the columns of %s are not those of %s", s.addr, EventsInput, l.LocalName("events")))
		}
	}
	return out, nil
}

// userOrDefault is the user c logs in as: ClickHouse's "default" unless
// the URL named one.
// clusterServers returns the addresses (host:port) of every server of
// the client's cluster, by shard and replica, as the server the client
// talks to lists them.
func (c *Client) clusterServers(ctx context.Context) ([]string, error) {
	hosts, err := c.Query(ctx, "SELECT host_address, toString(port) FROM system.clusters WHERE cluster = "+quote(c.layout.Cluster)+" ORDER BY shard_num, replica_num")
	if err != nil {
		return nil, fmt.Errorf("read the cluster's servers: %w", err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: cluster %q is not in the server's remote_servers", ErrClusterConfig, c.layout.Cluster)
	}
	var addrs []string
	for _, h := range hosts {
		if len(h) == 2 {
			addrs = append(addrs, h[0]+":"+h[1])
		}
	}
	return addrs, nil
}

// remoteSystem is system table name on the server at addr, through the
// remote() table function with the client's credentials.
func (c *Client) remoteSystem(addr, name string) string {
	return "remote(" + quote(addr) + ", system." + name + ", " + quote(c.userOrDefault()) + ", " + quote(c.password) + ")"
}

func (c *Client) userOrDefault() string {
	if c.user == "" {
		return "default"
	}
	return c.user
}

// createdName finds the name of what a migration statement creates.
var createdName = regexp.MustCompile(`CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS \{db\}\.(\w+)`)

// schemaNames are the tables and views every step of Migrations creates
// in c's layout (their statements, the rollups' views that a step's Run
// makes, EventsInput and EventsView), by name.
func (c *Client) schemaNames() map[string]bool {
	l := c.layout
	stmts := append(migrationsTable(l), l.createEventsInputTable(), l.createEventsView())
	for _, m := range Migrations {
		if m.SQL != nil {
			stmts = append(stmts, m.SQL(l)...)
		}
	}
	for _, r := range viewRollups() {
		stmts = append(stmts, r.view(l, 0))
	}
	names := map[string]bool{}
	for _, st := range stmts {
		for _, m := range createdName.FindAllStringSubmatch(st, -1) {
			names[m[1]] = true
		}
	}
	return names
}
