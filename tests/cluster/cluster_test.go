// Package cluster tests the ClickHouse cluster layout with real processes:
// a ZooKeeper, 2 shards x 2 replicas of clickhouse-server, a Redis and two
// edgepixel-aggregator binaries, one inserting into each shard, under a
// steady stream of signed batches with repeats and resends, while
// ClickHouse replicas are killed with SIGKILL and ZooKeeper is stopped.
// After each fault every acknowledged event must be stored exactly once,
// and the dashboard's count must equal the stored rows.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/feed"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
)

var zkDown = flag.Duration("zk-down", 30*time.Second, "how long TestCluster keeps ZooKeeper stopped")

var aggBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("cluster: -short: skipping the cluster tests")
		os.Exit(0)
	}
	root, err := build.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
	if missing := deps.Missing(root, []deps.Program{deps.Redis, deps.ClickHouse, deps.ZooKeeper}); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "cluster: %s\n", deps.Advice(missing))
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "edgepixel-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
	aggBin = filepath.Join(dir, "edgepixel-aggregator")
	cmd := exec.Command("go", "build", "-o", aggBin, "./aggregator/cmd/edgepixel-aggregator")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: build the aggregator:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const clusterName = "edgepixel"

// fleet is what TestCluster runs.
type fleet struct {
	t      *testing.T
	dir    string
	zk     *localsrv.ZooKeeper
	ch     *localsrv.ClickHouseCluster
	redis  *localsrv.Redis
	secret []byte
	token  string // the dashboard's
	aggs   []*aggregator
}

type aggregator struct {
	args      []string
	url, dash string
	p         *proc.Proc
	log       string
}

func startFleet(t *testing.T) *fleet {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := &fleet{t: t, dir: t.TempDir(), secret: []byte("cluster-test-secret-0123456789"), token: "cluster-test-dashboard-token"}
	var err error
	if f.zk, err = localsrv.StartZooKeeper(ctx, filepath.Join(f.dir, "zk"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.zk.Kill() })
	if f.ch, err = localsrv.StartClickHouseCluster(ctx, filepath.Join(f.dir, "ch"), f.zk, clusterName, 2, 2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.ch.Kill)
	if f.redis, err = localsrv.StartRedis(ctx, filepath.Join(f.dir, "redis"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.redis.Kill() })
	for _, name := range []string{"secret", "dashboard-token"} {
		v := string(f.secret)
		if name != "secret" {
			v = f.token
		}
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// One aggregator per shard, each talking to the shard's first
	// replica; both start at once, so both migrate the cluster at once.
	for i := range f.ch.Shards {
		addr, _ := proc.FreeAddr()
		dash, _ := proc.FreeAddr()
		a := &aggregator{url: "http://" + addr, dash: "http://" + dash, log: filepath.Join(f.dir, fmt.Sprintf("aggregator%d.log", i))}
		a.args = []string{"--addr", addr, "--dashboard-addr", dash,
			"--data-dir", filepath.Join(f.dir, fmt.Sprintf("agg%d", i)),
			"--secret-file", filepath.Join(f.dir, "secret"), "--dashboard-token-file", filepath.Join(f.dir, "dashboard-token"),
			"--redis", f.redis.URL, "--clickhouse", f.ch.Shards[i][0].HTTPURL,
			"--clickhouse-cluster", clusterName, "--clickhouse-quorum-timeout", "10s", "--log-level", "warn"}
		f.aggs = append(f.aggs, a)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(f.aggs))
	for i, a := range f.aggs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = a.start(ctx) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, a := range f.aggs {
			a.p.Kill()
		}
		if t.Failed() {
			for _, a := range f.aggs {
				t.Logf("%s:\n%s", a.log, proc.Tail(a.log, 40))
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (a *aggregator) start(ctx context.Context) (err error) {
	if a.p, err = proc.Start("edgepixel-aggregator", proc.Options{Log: a.log}, aggBin, a.args...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return a.p.WaitReady(ctx, proc.HTTPOK(a.url+"/healthz"))
}

// query runs sql on server (database edgepixel) and returns the answer.
func query(t *testing.T, server *localsrv.ClickHouse, sql string) string {
	t.Helper()
	resp, err := http.Post(server.HTTPURL+"/?database=edgepixel", "text/plain", strings.NewReader(sql))
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("clickhouse %s: %s: %s", server.HTTPURL, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

func TestCluster(t *testing.T) {
	f := startFleet(t)

	t.Run("schema on every server", func(t *testing.T) {
		for _, s := range f.ch.Servers() {
			got := query(t, s, "SELECT name, engine FROM system.tables WHERE database = 'edgepixel' AND engine NOT IN ('MaterializedView') ORDER BY name")
			tables := map[string]string{}
			for _, line := range strings.Split(got, "\n") {
				name, engine, _ := strings.Cut(line, "\t")
				tables[name] = engine
			}
			for name, engine := range tables {
				local, isLocal := strings.CutSuffix(name, "_local")
				switch {
				case isLocal && !strings.HasPrefix(engine, "Replicated"):
					t.Errorf("%s: %s is %s, not replicated", s.HTTPURL, name, engine)
				case isLocal && tables[local] != "Distributed":
					t.Errorf("%s: %s has no Distributed table %s (%q)", s.HTTPURL, name, local, tables[local])
				case !isLocal && engine != "Distributed":
					t.Errorf("%s: %s is %s, neither local nor Distributed", s.HTTPURL, name, engine)
				}
			}
			if len(tables) < 2*8 {
				t.Errorf("%s: tables %v", s.HTTPURL, tables)
			}
			if v := query(t, s, "SELECT groupArray(version) FROM (SELECT DISTINCT version FROM schema_migrations ORDER BY version)"); !strings.HasPrefix(v, "[1,2,3,4,5") {
				t.Errorf("%s: schema_migrations versions %s", s.HTTPURL, v)
			}
			if d, l := query(t, s, "SELECT count() FROM system.columns WHERE database = 'edgepixel' AND table = 'events'"),
				query(t, s, "SELECT count() FROM system.columns WHERE database = 'edgepixel' AND table = 'events_local'"); d != l {
				t.Errorf("%s: events has %s columns, events_local %s", s.HTTPURL, d, l)
			}
		}
	})

	t.Run("configuration errors", func(t *testing.T) {
		for _, c := range []struct {
			cc   clickhouse.ClusterConfig
			want string
		}{
			{clickhouse.ClusterConfig{Name: "absent"}, "not in this server's remote_servers"},
			{clickhouse.ClusterConfig{Name: clusterName, InsertQuorum: 3}, "fewer than the insert quorum 3"},
		} {
			cl, err := clickhouse.New(f.ch.Shards[0][0].HTTPURL, "unused")
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.SetCluster(c.cc); err != nil {
				t.Fatal(err)
			}
			_, err = cl.Migrate(context.Background())
			if !errors.Is(err, clickhouse.ErrClusterConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: %v, want %q", c.cc, err, c.want)
			}
			cl.Close()
		}
	})

	// Read through the Distributed tables of a server of the second shard
	// that no aggregator talks to.
	reader := f.ch.Shards[1][1]
	fd := feed.Start(feed.Options{
		T: t, Secret: f.secret, Lanes: len(f.aggs), URL: func(i int) string { return f.aggs[i].url },
		Site: "cluster", ResendOneIn: 10,
		Query:    func(t *testing.T, sql string) string { return query(t, reader, sql) },
		Spooled:  f.spooled,
		Wait:     3 * time.Minute,
		Poll:     200 * time.Millisecond,
		ShortWhy: "a server killed mid-insert",
		After:    f.dashboardsAddUp,
	}, 4)
	defer fd.Stop()
	time.Sleep(2 * time.Second)
	fd.CheckExact(t, "steady stream")

	for _, c := range []struct {
		name        string
		shard, repl int
	}{
		{"replica beside the aggregator's killed", 0, 1},
		{"the aggregator's own replica killed", 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := f.ch.Shards[c.shard][c.repl]
			before := fd.Batches.Load()
			s.Kill()
			time.Sleep(3 * time.Second)
			if n := fd.Batches.Load() - before; n == 0 {
				t.Error("no batch acknowledged while a replica was down")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			fd.CheckExact(t, "after a SIGKILL of shard "+strconv.Itoa(c.shard+1)+" replica "+strconv.Itoa(c.repl+1))
		})
	}

	t.Run("zookeeper stopped", func(t *testing.T) {
		before := fd.Batches.Load()
		if err := f.zk.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(*zkDown)
		if n := fd.Batches.Load() - before; n == 0 {
			t.Error("no batch acknowledged while ZooKeeper was down")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.zk.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		fd.CheckExact(t, fmt.Sprintf("after ZooKeeper was stopped for %v", *zkDown))
	})

	fd.Stop()
	fd.CheckExact(t, "after the senders stopped")
	fd.CheckIDs(t)
	checkReplicas(t, f, fd)
}

// spooled is the bytes both aggregators hold in their spools, not yet
// stored.
func (f *fleet) spooled(t *testing.T) float64 {
	var n float64
	for _, a := range f.aggs {
		req, _ := http.NewRequest("GET", a.dash+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "edgepixel_aggregator_spool_bytes "); ok {
				x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				n += x
				found = true
			}
		}
		if !found {
			t.Fatalf("no edgepixel_aggregator_spool_bytes in %s/metrics", a.dash)
		}
	}
	return n
}

// dashboardTotal is each aggregator's /api/counts total.
func (f *fleet) dashboardTotal(t *testing.T, a *aggregator) int {
	req, _ := http.NewRequest("GET", a.dash+"/api/counts", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c.Total
}

// dashboardsAddUp: each aggregator's live count is what it read from the
// store at start (nothing: the cluster was empty) plus the rows it stored
// since; neither is restarted here, so the two dashboards' totals add up
// to the stored rows.
func (f *fleet) dashboardsAddUp(t *testing.T, what string, rows int) {
	total := 0
	for _, a := range f.aggs {
		total += f.dashboardTotal(t, a)
	}
	if total != rows {
		t.Errorf("%s: the dashboards' totals add up to %d, the events table holds %d rows", what, total, rows)
	}
}

// checkReplicas waits for each shard's replicas to catch up and compares
// their rows: the replicas of a shard hold the same events, and the
// shards' rows add up to the Distributed table's.
func checkReplicas(t *testing.T, f *fleet, fd *feed.Feeder) {
	total := 0
	for s, reps := range f.ch.Shards {
		var counts []string
		for _, r := range reps {
			query(t, r, "SYSTEM SYNC REPLICA events_local")
			counts = append(counts, query(t, r, "SELECT count() FROM events_local"))
		}
		t.Logf("shard %d: rows per replica %v", s+1, counts)
		for _, c := range counts[1:] {
			if c != counts[0] {
				t.Errorf("shard %d: replicas hold %v rows", s+1, counts)
			}
		}
		n, _ := strconv.Atoi(counts[0])
		total += n
	}
	if rows, _, _ := fd.Counts(t); rows != total {
		t.Errorf("shards hold %d rows, the Distributed table reads %d", total, rows)
	}
}
