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
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	eq "github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/feed"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

var (
	zkDown  = flag.Duration("zk-down", 30*time.Second, "how long TestCluster keeps ZooKeeper stopped")
	zkFault = flag.Bool("zk-fault", true, "run TestCluster's ZooKeeper fault (-zk-fault=false skips it)")
)

var (
	bin          stack.Binaries
	compileCache string // the POPs' compiled edge module
)

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
	// The POPs run the edge module edgepixel ships (TinyGo), from the wasm
	// cache when its sources did not change since the last build; the
	// compile cache is filled once for every POP of the run.
	start := time.Now()
	err = build.BuildInDir(context.Background(), build.TinyGo, root, dir, nil, stack.Artifacts...)
	if err == nil {
		bin = stack.InDir(dir)
		compileCache = filepath.Join(dir, "wazero-cache")
		err = stack.Precompile(context.Background(), bin, compileCache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("cluster: built and compiled the edge module, POP and aggregator in %v\n", time.Since(start).Round(time.Second))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const clusterName = "edgepixel"

// fleet is what TestCluster runs: ZooKeeper, 2 shards x 2 replicas of
// clickhouse-server, a Redis Cluster of 3 masters with a replica each,
// two aggregators (aggregator i inserts into shard i's first replica and
// reads every shard) and two POPs running the edge module, POP i
// delivering to aggregator i, then to the other: POP 1 signed batches,
// POP 2 through its journal log endpoint.
type fleet struct {
	t        *testing.T
	dir      string
	zk       *localsrv.ZooKeeper
	ch       *localsrv.ClickHouseCluster
	redis    *localsrv.RedisCluster
	secret   []byte
	token    string // the dashboard's
	logToken string // the aggregators' --log-token, which the POPs' log endpoints send
	aggs     []*aggregator
	pops     []*stack.Stack
}

type aggregator struct {
	args      []string
	addr      string
	url, dash string
	dataDir   string
	p         *proc.Proc
	log       string
}

// startFleet starts the fleet; withPops false leaves out the POPs.
func startFleet(t *testing.T, withPops bool) *fleet {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := &fleet{t: t, dir: t.TempDir(), secret: []byte("cluster-test-secret-0123456789"), token: "cluster-test-dashboard-token", logToken: "cluster-test-log-token"}
	var err error
	if f.zk, err = localsrv.StartZooKeeper(ctx, filepath.Join(f.dir, "zk"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.zk.Kill() })
	if f.ch, err = localsrv.StartClickHouseCluster(ctx, filepath.Join(f.dir, "ch"), f.zk, clusterName, 2, 2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.ch.Kill)
	if f.redis, err = localsrv.StartRedisCluster(ctx, filepath.Join(f.dir, "redis"), 3, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.redis.Stop() })
	for name, v := range map[string]string{"secret": string(f.secret), "dashboard-token": f.token} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// One aggregator per shard, each talking to the shard's first
	// replica; both start at once, so both migrate the cluster at once.
	for i := range f.ch.Shards {
		addr, _ := proc.FreeAddr()
		dash, _ := proc.FreeAddr()
		a := &aggregator{addr: addr, url: "http://" + addr, dash: "http://" + dash,
			dataDir: filepath.Join(f.dir, fmt.Sprintf("agg%d", i)),
			log:     filepath.Join(f.dir, fmt.Sprintf("aggregator%d.log", i))}
		a.args = []string{"--addr", addr, "--dashboard-addr", dash,
			"--secret-file", filepath.Join(f.dir, "secret"), "--dashboard-token-file", filepath.Join(f.dir, "dashboard-token"),
			"--log-token", f.logToken,
			"--redis-cluster", strings.Join(f.redis.Addrs(), ","), "--clickhouse", f.ch.Shards[i][0].HTTPURL,
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
				t.Logf("%s:\n%s", a.log, proc.Tail(a.log, 3000))
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !withPops {
		return f
	}
	for i, a := range f.aggs {
		dir := filepath.Join(f.dir, fmt.Sprintf("pop%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secret"), f.secret, 0o600); err != nil {
			t.Fatal(err)
		}
		// POP 1 delivers signed batches (Fastly's way), POP 2 journals
		// each hit to its log endpoint before it answers: both paths
		// fail over to the other aggregator.
		delivery := stack.DeliveryBatches
		if i == 1 {
			delivery = stack.DeliveryJournal
		}
		var peers []string
		for j, b := range f.aggs {
			if j != i {
				peers = append(peers, b.url)
			}
		}
		s, err := stack.Start(ctx, stack.Options{
			Dir: dir, Bin: bin, CompileCache: compileCache,
			NoAggregator: true, AggregatorAddr: a.addr, PeerAggregators: peers,
			AggregatorArgs: []string{"--log-token", f.logToken},
			NoRedis:        true, NoClickHouse: true,
			Delivery: delivery,
		})
		if err != nil {
			t.Fatal(err)
		}
		f.pops = append(f.pops, s)
		t.Cleanup(func() {
			s.Pop.Kill()
			if t.Failed() {
				t.Logf("pop %d:\n%s", i, proc.Tail(filepath.Join(dir, "logs", "pop.log"), 3000))
			}
		})
	}
	return f
}

func (a *aggregator) start(ctx context.Context) (err error) {
	args := append([]string{"--data-dir", a.dataDir}, a.args...)
	if a.p, err = proc.Start("edgepixel-aggregator", proc.Options{Log: a.log}, bin.Aggregator, args...); err != nil {
		return err
	}
	// It migrates before it listens: distributed DDL, each statement
	// waiting for all four servers; step 7 alone adds 27 (its tables,
	// views and the drops of step 4's views), and a loaded machine took
	// over 3 minutes. A guard against a hang, not a measure.
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	return a.p.WaitReady(ctx, proc.HTTPOK(a.url+"/healthz"))
}

// run runs sql on server (database edgepixel) and returns its error.
func run(server *localsrv.ClickHouse, sql string) error {
	resp, err := http.Post(server.HTTPURL+"/?database=edgepixel", "text/plain", strings.NewReader(sql))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("clickhouse %s: %s: %s", server.HTTPURL, resp.Status, b)
	}
	return nil
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

// TestCluster runs the fleet under a steady stream of events through both
// POPs (unique markers, deliberate client retries) and applies, in turn:
// (1) a SIGKILL of aggregator 2 for good, its spool removed with it (a
// new aggregator 2 with an empty data directory takes its address);
// (2) a SIGKILL of a Redis master, whose replica takes over; (3) a
// SIGKILL of a ClickHouse replica, brought back after, once beside an
// aggregator's replica and once the replica an aggregator inserts into,
// then a replica hung (SIGSTOP) past the quorum timeout;
// (4) ZooKeeper stopped for -zk-down. After each: nothing doubled, the
// only answered events lost are those (1)'s aggregator had in its spool
// and no one stored, and every dashboard counts what the events table
// holds.
func TestCluster(t *testing.T) {
	f := startFleet(t, true)

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
				case name == clickhouse.EventsInput:
					if engine != "Null" {
						t.Errorf("%s: %s is %s, not Null", s.HTTPURL, name, engine)
					}
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

	s := startStream(t, []string{f.pops[0].PopURL, f.pops[1].PopURL}, "fleet", 6)
	defer s.stop()
	time.Sleep(3 * time.Second)
	s.check(t, f, "steady stream", nil)

	// (1) Aggregator 2 killed for good: what its spool held that its
	// loader had not stored is the window of acknowledged events lost.
	window := map[string]bool{}
	t.Run("aggregator killed for good", func(t *testing.T) {
		a := f.aggs[1]
		before := s.answeredCount()
		time.Sleep(2 * time.Second)
		if err := a.p.Kill(); err != nil {
			t.Fatal(err)
		}
		evs, err := feed.Unloaded(filepath.Join(a.dataDir, "spool"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if strings.HasPrefix(e.URL, "https://fleet.example/") {
				window[e.URL] = true
			}
		}
		if err := os.RemoveAll(a.dataDir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if n := s.answeredCount() - before; n == 0 {
			t.Error("no event answered while an aggregator was dead")
		}
		// A new machine at the same address, with an empty disk.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		a.dataDir += "-new"
		if err := a.start(ctx); err != nil {
			t.Fatal(err)
		}
		lost := s.check(t, f, "after aggregator 2 was killed for good", window)
		t.Logf("window of (1): %d events in the killed aggregator's spool past its checkpoint, %d acknowledged events lost", len(window), len(lost))
	})

	// (2) A Redis master killed; its replica takes over.
	t.Run("redis master killed", func(t *testing.T) {
		time.Sleep(2 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		masters, err := f.redis.Masters(ctx)
		if err != nil || len(masters) == 0 {
			t.Fatalf("redis masters: %v %v", masters, err)
		}
		nm, took, err := f.redis.KillMaster(ctx, masters[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("redis master %s killed; replica %s took over in %v", masters[0].Addr, nm.Addr, took.Round(time.Millisecond))
		time.Sleep(2 * time.Second)
		if err := f.redis.Restart(ctx, masters[0]); err != nil {
			t.Fatal(err)
		}
		s.check(t, f, "after a Redis master was killed", window)
	})

	// (3) A ClickHouse replica killed, then brought back.
	for _, c := range []struct {
		name        string
		shard, repl int
		down        time.Duration
	}{
		{"replica beside the aggregator's killed", 0, 1, 3 * time.Second},
		{"the aggregator's own replica killed", 1, 0, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := f.ch.Shards[c.shard][c.repl]
			before := s.answeredCount()
			srv.Kill()
			time.Sleep(c.down)
			if n := s.answeredCount() - before; n == 0 {
				t.Error("no event answered while a replica was down")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			s.check(t, f, "after a SIGKILL of shard "+strconv.Itoa(c.shard+1)+" replica "+strconv.Itoa(c.repl+1), window)
		})
	}

	// (3b) The replica beside aggregator 1's hangs (SIGSTOP) past the
	// quorum timeout: it is still a live replica to ZooKeeper, so an
	// insert is written and then fails its quorum wait ("unknown status,
	// client must retry"), and is retried when the replica is back. Beside
	// the stream, a loader's insert of one block is made to take exactly
	// that path, and its rollups must count the block once.
	t.Run("replica beside the aggregator's hangs past the quorum timeout", func(t *testing.T) {
		srv := f.ch.Shards[0][1]
		if err := srv.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		cont := sync.OnceFunc(func() {
			if err := srv.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		})
		defer cont()
		cl, err := clickhouse.New(f.ch.Shards[0][0].HTTPURL, "edgepixel")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.SetCluster(clickhouse.ClusterConfig{Name: clusterName, InsertQuorum: 2, QuorumTimeout: 3 * time.Second}); err != nil {
			t.Fatal(err)
		}
		evs := make([]event.Event, 50)
		for i := range evs {
			now := time.Now().UnixMilli()
			id, _ := event.NewID(now, rand.Reader)
			evs[i] = event.Event{ID: id, Time: now, Site: "quorum-probe", Name: "pageview", URL: "https://probe.example/" + strconv.Itoa(i), Pop: "test", VisitorID: uint64(i%5 + 1)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err = cl.InsertEvents(ctx, evs)
		t.Logf("an insert with a replica hung: %v", err)
		if err == nil {
			t.Error("an insert with insert_quorum 2 succeeded with one of the shard's 2 replicas hung")
		}
		time.Sleep(15 * time.Second)
		cont()
		for attempt := 1; ; attempt++ {
			if err = cl.InsertEvents(ctx, evs); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the retried insert: %v", err)
			}
			time.Sleep(time.Second)
		}
		s.check(t, f, "after shard 1 replica 2 hung for 15 s", window)
		reader := f.ch.Shards[1][1]
		got := query(t, reader, "SELECT (SELECT count() FROM events WHERE site = 'quorum-probe'), (SELECT sum(n) FROM events_per_minute WHERE site = 'quorum-probe'), "+
			"(SELECT sumMerge(events) FROM rollup_minutes WHERE site = 'quorum-probe'), (SELECT sumMerge(events) FROM rollup_hours WHERE site = 'quorum-probe'), "+
			"(SELECT sumMerge(events) FROM rollup_days WHERE site = 'quorum-probe'), (SELECT sumMerge(events) FROM rollup_dims_bot WHERE site = 'quorum-probe' AND dim = 'page'), "+
			"(SELECT sumMerge(events) FROM rollup_visits WHERE site = 'quorum-probe')")
		if want := strings.Repeat("50\t", 6) + "50"; got != want {
			t.Errorf("a block retried after its quorum wait failed: events, events_per_minute, rollup_minutes, rollup_hours, rollup_days, rollup_dims_bot (page), rollup_visits hold %q, want 50 each", got)
		} else {
			t.Logf("a block retried after its quorum wait failed: events and each rollup hold its 50 rows once")
		}
	})

	// (4) ZooKeeper stopped.
	t.Run("zookeeper stopped", func(t *testing.T) {
		if !*zkFault {
			t.Skip("-zk-fault=false")
		}
		// ClickHouse 18.16 can leave a replica read-only after its
		// session is renewed (see clickhouse.DefaultReadOnlyRestart):
		// what its servers said about starting replicas, if this fails.
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			for _, srv := range f.ch.Servers() {
				b, _ := os.ReadFile(localsrv.ClickHouseErrLog(srv.Dir))
				var lines []string
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "RestartingThread") {
						lines = append(lines, l)
					}
				}
				t.Logf("%s: %d restarting-thread errors, the last:\n%s", srv.Dir, len(lines), strings.Join(lines[max(0, len(lines)-5):], "\n"))
			}
		})
		before := s.answeredCount()
		if err := f.zk.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(*zkDown)
		if n := s.answeredCount() - before; n == 0 {
			t.Error("no event answered while ZooKeeper was down")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.zk.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		s.check(t, f, fmt.Sprintf("after ZooKeeper was stopped for %v", *zkDown), window)
	})

	s.stop()
	s.check(t, f, "after the senders stopped", window)
	settleReplicas(t, f)
	checkReplicas(t, f)
	t.Run("rollups, their backfill and retention", func(t *testing.T) { checkRollups(t, f) })
}

// checkRollups checks schema step 7 in the cluster layout, once the
// senders stopped: its views fed the rollups on every shard (the schema
// was made on an empty database, so the cut-off is 0 and the views hold
// every insert, as events_per_minute's does); the backfill, given a
// cut-off after every event and rollups emptied of the views' rows, rolls
// every event up from all shards once, and again changes nothing; and
// retention drops the local tables' day partitions on every shard.
func checkRollups(t *testing.T, f *fleet) {
	s0, s1 := f.ch.Shards[0][0], f.ch.Shards[1][1]
	// Step 7's tables whose views it made (step 17 replaced rollup_dims'
	// by rollup_dims_bot's, which has a cut-off of its own).
	tables := []string{"rollup_minutes", "rollup_hours", "rollup_days", "rollup_visits"}
	// Every replica has fetched what the others hold (replication is
	// asynchronous), so that a read on any of them sees every row.
	sync := func(tables ...string) {
		for _, reps := range f.ch.Shards {
			for _, r := range reps {
				for _, tbl := range tables {
					query(t, r, "SYSTEM SYNC REPLICA "+tbl+"_local")
				}
			}
		}
	}
	sync(append(tables, "events_per_minute", "events")...)
	inserted := query(t, s0, "SELECT sum(n) FROM events_per_minute")
	for _, tbl := range []string{"rollup_minutes", "rollup_hours", "rollup_days"} {
		if got := query(t, s1, "SELECT sumMerge(events) FROM "+tbl); got != inserted {
			t.Errorf("%s holds %s events, events_per_minute %s", tbl, got, inserted)
		}
	}
	sync("rollup_dims_bot")
	if got := query(t, s1, "SELECT sumMerge(events) FROM rollup_dims_bot WHERE dim = 'event'"); got != inserted {
		t.Errorf("rollup_dims_bot holds %s events, events_per_minute %s", got, inserted)
	}

	// A cut-off an hour ahead: every stored event is before it, as after
	// an upgrade of a database with events. The views are made again
	// with it on every server and their rows (src = 0) dropped.
	cutoff := time.Now().Add(time.Hour).Unix()
	for _, tbl := range tables {
		create := query(t, s0, "SELECT create_table_query FROM system.tables WHERE database = 'edgepixel' AND name = '"+tbl+"_mv' FORMAT TabSeparatedRaw")
		if !strings.Contains(create, "ts >= toDateTime(0)") || !strings.Contains(create, "edgepixel."+tbl+"_local") {
			t.Fatalf("view of %s: %s", tbl, create)
		}
		create = strings.Replace(create, "ts >= toDateTime(0)", fmt.Sprintf("ts >= toDateTime(%d)", cutoff), 1)
		create = strings.Replace(create, "edgepixel."+tbl+"_mv", "edgepixel."+tbl+"_mv ON CLUSTER "+clusterName, 1)
		query(t, s0, "DROP TABLE edgepixel."+tbl+"_mv ON CLUSTER "+clusterName)
		query(t, s0, create)
		for _, id := range strings.Fields(query(t, s0, "SELECT DISTINCT partition_id FROM cluster("+clusterName+", system, parts) WHERE database = 'edgepixel' AND table = '"+tbl+"_local' AND active")) {
			// 18.16 may answer 292 (leader changed) while the
			// shards' leader elections settle after the faults above,
			// and 159 when a server's DDLWorker is stuck, which
			// retryDDL restarts it for (ci150: seven 60 s timeouts in a
			// row on a loaded machine).
			drop := func() error {
				return run(s0, "ALTER TABLE "+tbl+"_local ON CLUSTER "+clusterName+" DROP PARTITION ID '"+id+"'")
			}
			for attempt, err := 1, error(nil); ; attempt++ {
				if err = retryDDL(t, f, "dropping partition "+id+" of "+tbl+"_local", drop); err == nil {
					break
				} else if attempt == 7 {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
			}
		}
	}
	cl, err := clickhouse.New(s0.HTTPURL, "edgepixel")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.SetCluster(clickhouse.ClusterConfig{Name: clusterName}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if c, ok, err := cl.RollupCutoff(ctx); err != nil || !ok || c.Unix() != cutoff {
		t.Fatalf("cut-off %v %v %v, want %d", c, ok, err, cutoff)
	}
	stored := query(t, s0, "SELECT uniqExact(event_id) FROM events")
	for run := 1; run <= 2; run++ {
		var res clickhouse.BackfillResult
		err := retryDDL(t, f, fmt.Sprintf("backfill run %d", run), func() (err error) {
			res, err = cl.BackfillRollups(ctx)
			return err
		})
		if err != nil {
			t.Fatalf("backfill run %d: %v", run, err)
		}
		if run == 1 && len(res.Rebuilt) == 0 || run == 2 && len(res.Rebuilt) != 0 {
			t.Errorf("backfill run %d rebuilt %q", run, res.Rebuilt)
		}
		sync(tables...)
		for _, tbl := range tables[:3] {
			for _, s := range []*localsrv.ClickHouse{s0, s1} {
				if got := query(t, s, "SELECT sumMerge(events) FROM "+tbl+" WHERE src = 1"); got != stored {
					t.Errorf("run %d: %s holds %s events read on %s, events %s", run, tbl, got, s.HTTPURL, stored)
				}
			}
		}
	}

	if n := query(t, s0, "SELECT count() FROM system.tables WHERE database = 'edgepixel' AND position(name, '"+clickhouse.StagingInfix+"') > 0"); n != "0" {
		t.Errorf("%s backfill staging tables left", n)
	}

	// The visit hours, stored through the Distributed table, give the
	// visits that the same question over the events of every shard does.
	if _, err := cl.BuildVisitHours(ctx, time.Now().Add(-clickhouse.SegmentSeconds*time.Second)); err != nil {
		t.Fatalf("visit hours: %v", err)
	}
	sync("visit_hours")
	for _, site := range strings.Fields(query(t, s0, "SELECT DISTINCT site FROM events")) {
		req, err := eq.ParseRequest(url.Values{"site": {site}, "range": {"7d"}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		metrics := func(raw bool) string {
			st, err := (&eq.Engine{Src: cl, Raw: raw}).Stats(ctx, req)
			if err != nil {
				t.Fatalf("stats of %s (raw %v): %v", site, raw, err)
			}
			var out []string
			for _, m := range st.Metrics {
				out = append(out, fmt.Sprintf("%s %v", m.Name, *m.Value))
			}
			return strings.Join(out, ", ")
		}
		if got, want := metrics(false), metrics(true); got != want {
			t.Errorf("%s from the rollups: %s\nfrom the events: %s", site, got, want)
		}
	}

	var dropped []clickhouse.Partition
	err = retryDDL(t, f, "retention", func() (err error) {
		dropped, err = cl.DropPartitionsBefore(ctx, time.Now().Add(48*time.Hour))
		return err
	})
	if err != nil {
		t.Fatalf("retention: %v (dropped %v)", err, dropped)
	}
	sync("events", "rollup_visits")
	for _, s := range []*localsrv.ClickHouse{s0, s1} {
		if got := query(t, s, "SELECT count() FROM events"); got != "0" {
			t.Errorf("after retention, %s events left read on %s", got, s.HTTPURL)
		}
	}
}

// spooled is the bytes the live aggregators hold in their spools, not yet
// stored.
func (f *fleet) spooled(t *testing.T) float64 { return f.spooledIn(t, f.aggs) }

// spooledIn is spooled for aggs.
func (f *fleet) spooledIn(t *testing.T, aggs []*aggregator) float64 {
	var n float64
	for _, a := range aggs {
		if a.p.Exited() {
			continue
		}
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

// settleReplicas brings every server back to where ON CLUSTER statements
// and SYSTEM SYNC REPLICA can finish, after the faults above, as an
// operator would (README, The cluster layout). ClickHouse 18.16 can leave
// a replica read-only after a ZooKeeper restart (see
// clickhouse.DefaultReadOnlyRestart); an aggregator restarts that only on
// the server it inserts into, so a stuck replica of another server stays
// so, and a distributed DDL task then waits on it until it times out (code
// 159, "0 of them active": seen once in CI). It can also end a server's
// DDL thread, or leave it stuck. Each server's replicas get 30 s to become
// writable, then a SYSTEM RESTART REPLICA and 60 s more; a server still
// stuck, whose error log says its DDLWorker ended, or that does not run
// a probe's ON CLUSTER statement (localsrv's ProbeDDL), is restarted.
// What was done is logged: the data checks after it still hold the
// servers to every row.
func settleReplicas(t *testing.T, f *fleet) {
	t.Helper()
	stuck := func(s *localsrv.ClickHouse) []string {
		if err := run(s, "SELECT 1"); err != nil {
			return []string{err.Error()}
		}
		return strings.Fields(query(t, s, "SELECT table FROM system.replicas WHERE database = 'edgepixel' AND (is_readonly OR is_session_expired) ORDER BY table"))
	}
	waitWritable := func(s *localsrv.ClickHouse, d time.Duration) []string {
		deadline := time.Now().Add(d)
		for {
			tables := stuck(s)
			if len(tables) == 0 || time.Now().After(deadline) {
				return tables
			}
			time.Sleep(time.Second)
		}
	}
	for _, s := range f.ch.Servers() {
		m, _ := f.ch.Member(s)
		restart := ""
		if tables := waitWritable(s, 30*time.Second); len(tables) > 0 {
			t.Logf("replica %s: %v still read-only 30 s after the faults; SYSTEM RESTART REPLICA", m.Replica, tables)
			for _, tbl := range tables {
				if err := run(s, "SYSTEM RESTART REPLICA edgepixel."+tbl); err != nil {
					t.Logf("replica %s: %v", m.Replica, err)
				}
			}
			if tables := waitWritable(s, time.Minute); len(tables) > 0 {
				restart = fmt.Sprintf("%v read-only a minute after SYSTEM RESTART REPLICA", tables)
			}
		}
		if l := s.DDLWorkerEnded(); l != "" {
			restart = "its DDLWorker ended: " + l
		}
		if restart == "" {
			continue
		}
		restartServer(t, f, s, restart)
		if tables := waitWritable(s, time.Minute); len(tables) > 0 {
			t.Fatalf("replica %s: %v read-only a minute after its server restarted", m.Replica, tables)
		}
	}
	// A DDLWorker can also be stuck without a word in its log, with every
	// replica writable (ci134, ci137): a server that does not run an ON
	// CLUSTER statement that changes nothing within a minute is restarted
	// too, and the probe asked again.
	for try := 1; ; try++ {
		task, left, err := f.ch.ProbeDDL(f.ch.Shards[0][0], time.Minute)
		if err != nil {
			t.Fatalf("probe distributed DDL: %v", err)
		}
		if len(left) == 0 {
			return
		}
		if try == 3 {
			t.Fatalf("%d servers did not run %s after two restarts", len(left), task)
		}
		for _, s := range left {
			lines := s.DDLWorkerLog()
			restartServer(t, f, s, fmt.Sprintf("did not run %s, an ON CLUSTER statement that changes nothing, in a minute (its DDLWorker's last lines:\n%s\n)", task, strings.Join(lines[max(0, len(lines)-10):], "\n")))
			if tables := waitWritable(s, time.Minute); len(tables) > 0 {
				t.Fatalf("%v read-only a minute after its server restarted", tables)
			}
		}
	}
}

// retryDDL runs do, ON CLUSTER statements that may run again (the
// rollups' backfill, retention), and again after each code 159: after the
// faults above, on a loaded machine, a server may not take an ON CLUSTER
// statement within distributed_ddl_task_timeout (it runs it later, or, if
// its DDLWorker is stuck or ended, never: ci69, ci134 and ci137). The
// lease holder's backfill and retention are tried again at their next
// interval; so is this, once a server that still has not run the task is
// restarted.
func retryDDL(t *testing.T, f *fleet, what string, do func() error) error {
	t.Helper()
	err := do()
	for attempt := 1; ddlTimedOut(err) && attempt < 5; attempt++ {
		t.Logf("%s, attempt %d: %v; again", what, attempt, err)
		time.Sleep(time.Duration(attempt) * 5 * time.Second)
		restartUnfinishedDDL(t, f, err)
		err = do()
	}
	return err
}

// ddlTimedOut reports whether err is ClickHouse's code 159, which an ON
// CLUSTER statement ends with when a server has not run it within
// distributed_ddl_task_timeout.
func ddlTimedOut(err error) bool {
	var ce *clickhouse.Error
	return errors.As(err, &ce) && ce.TimedOut()
}

// ddlTask finds the task a distributed DDL timeout names.
var ddlTask = regexp.MustCompile(`/clickhouse/task_queue/ddl/query-[0-9]+`)

// restartUnfinishedDDL restarts each server that still has not run the
// task a code-159 timeout, err, names, as an operator would (README, A
// ClickHouse cluster), and logs what its DDLWorker said since it started:
// 18.16's thread runs one task at a time and ends on errors of its own
// bookkeeping, so a server that has not run a statement in over a minute
// may never run it or any after it. The task is read through the first
// server that answers.
func restartUnfinishedDDL(t *testing.T, f *fleet, err error) {
	t.Helper()
	task := ddlTask.FindString(err.Error())
	if task == "" {
		return
	}
	var left []*localsrv.ClickHouse
	var qerr error
	for _, s := range f.ch.Servers() {
		if left, qerr = f.ch.UnfinishedDDL(s, task); qerr == nil {
			break
		}
	}
	if qerr != nil {
		t.Logf("task %s: %v", task, qerr)
		return
	}
	for _, s := range left {
		lines := s.DDLWorkerLog()
		restartServer(t, f, s, fmt.Sprintf("has not run %s (its DDLWorker's last lines:\n%s\n)", task, strings.Join(lines[max(0, len(lines)-10):], "\n")))
	}
	if len(left) > 0 {
		settleReplicas(t, f)
	}
}

// restartServer restarts s, saying why. A server that does not stop
// within localsrv's grace is killed, and started again.
func restartServer(t *testing.T, f *fleet, s *localsrv.ClickHouse, why string) {
	t.Helper()
	m, _ := f.ch.Member(s)
	t.Logf("replica %s: %s; restarting its server", m.Replica, why)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := s.Restart(ctx)
	if err != nil && !s.Running() {
		t.Logf("replica %s: %v; starting it again", m.Replica, err)
		err = s.Restart(ctx)
	}
	if err != nil {
		t.Fatalf("restart replica %s: %v", m.Replica, err)
	}
}

// checkReplicas waits for each shard's replicas to catch up and compares
// their rows: the replicas of a shard hold the same events, and the
// shards' rows add up to the Distributed table's.
func checkReplicas(t *testing.T, f *fleet) {
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
	if rows, _ := strconv.Atoi(query(t, f.ch.Shards[1][1], "SELECT count() FROM events")); rows != total {
		t.Errorf("shards hold %d rows, the Distributed table reads %d", total, rows)
	}
}
