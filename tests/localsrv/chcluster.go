package localsrv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClickHouseCluster is a running set of private clickhouse-servers forming
// one cluster: shards of replicas, coordinated by a ZooKeeper. Every
// server knows the cluster under Name in its remote_servers, and has the
// macros {shard} (the shard's number from 1) and {replica} (unique in the
// cluster), which replicated tables name their ZooKeeper paths with.
type ClickHouseCluster struct {
	Name   string
	Shards [][]*ClickHouse // [shard][replica]
}

// ClusterMember is where one server sits in a cluster.
type ClusterMember struct {
	Shard   int    // from 1
	Replica string // the {replica} macro
}

// StartClickHouseCluster starts shards x replicas clickhouse-servers, each
// under dir/sS-rR on free loopback ports, all using zk, and waits until
// each answers. On error, the servers that did start are killed.
//
// The ports are chosen before any server starts (every server's
// remote_servers names them all), so another process can take one in
// between on a busy machine: then the cluster is started again on other
// ports, up to three times.
func StartClickHouseCluster(ctx context.Context, dir string, zk *ZooKeeper, name string, shards, replicas int) (*ClickHouseCluster, error) {
	if !validName(name) {
		return nil, fmt.Errorf("cluster name %q: letters, digits and _ only", name)
	}
	if shards < 1 || replicas < 1 {
		return nil, fmt.Errorf("cluster of %d shards x %d replicas", shards, replicas)
	}
	for attempt := 1; ; attempt++ {
		c, err := startClickHouseCluster(ctx, dir, zk, name, shards, replicas)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "already in use") {
			return c, err
		}
	}
}

func startClickHouseCluster(ctx context.Context, dir string, zk *ZooKeeper, name string, shards, replicas int) (*ClickHouseCluster, error) {
	type ports struct{ http, tcp, inter int }
	ps := make([][]ports, shards)
	for s := range ps {
		ps[s] = make([]ports, replicas)
		for r := range ps[s] {
			for _, p := range []*int{&ps[s][r].http, &ps[s][r].tcp, &ps[s][r].inter} {
				var err error
				if *p, err = portOr(0); err != nil {
					return nil, err
				}
			}
		}
	}
	var remote strings.Builder
	fmt.Fprintf(&remote, "\n    <remote_servers>\n        <%s>", name)
	for s := range ps {
		// Replicated tables copy between replicas themselves: a
		// Distributed table writes each row to one replica of its shard.
		remote.WriteString("\n            <shard>\n                <internal_replication>true</internal_replication>")
		for r := range ps[s] {
			fmt.Fprintf(&remote, "\n                <replica><host>127.0.0.1</host><port>%d</port></replica>", ps[s][r].tcp)
		}
		remote.WriteString("\n            </shard>")
	}
	fmt.Fprintf(&remote, "\n        </%s>\n    </remote_servers>", name)
	zkConf := fmt.Sprintf("\n    <zookeeper>\n        <node><host>127.0.0.1</host><port>%d</port></node>\n    </zookeeper>", zk.Port())

	c := &ClickHouseCluster{Name: name, Shards: make([][]*ClickHouse, shards)}
	for s := range c.Shards {
		c.Shards[s] = make([]*ClickHouse, replicas)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for s := range ps {
		for r := range ps[s] {
			m := ClusterMember{Shard: s + 1, Replica: replicaName(s+1, r+1)}
			extra := remote.String() + zkConf +
				fmt.Sprintf("\n    <macros><shard>%d</shard><replica>%s</replica></macros>", m.Shard, m.Replica) +
				fmt.Sprintf("\n    <interserver_http_host>127.0.0.1</interserver_http_host>\n    <interserver_http_port>%d</interserver_http_port>", ps[s][r].inter)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := startClickHouse(ctx, filepath.Join(dir, m.Replica), ps[s][r].http, ps[s][r].tcp, extra, Compression)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("clickhouse shard %d replica %s: %w", m.Shard, m.Replica, err))
					return
				}
				c.Shards[s][r] = ch
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		c.Kill()
		return nil, errs[0]
	}
	// A server answers before its ZooKeeper session is up, and 18.16 can
	// crash creating a replicated table without one: wait until each
	// reads ZooKeeper.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, s := range c.Servers() {
		if err := s.p.WaitReady(ctx, func() error {
			_, err := s.query("SELECT count() FROM system.zookeeper WHERE path = '/'")
			return err
		}); err != nil {
			c.Kill()
			return nil, fmt.Errorf("clickhouse %s never reached zookeeper %s: %w", s.HTTPURL, zk.Addr, err)
		}
	}
	return c, nil
}

func replicaName(shard, replica int) string {
	return "s" + strconv.Itoa(shard) + "r" + strconv.Itoa(replica)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// Servers returns every server, shard by shard.
func (c *ClickHouseCluster) Servers() []*ClickHouse {
	var out []*ClickHouse
	for _, s := range c.Shards {
		for _, r := range s {
			if r != nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// Member returns where server sits in the cluster.
func (c *ClickHouseCluster) Member(server *ClickHouse) (ClusterMember, bool) {
	for s, rs := range c.Shards {
		for r, x := range rs {
			if x == server {
				return ClusterMember{Shard: s + 1, Replica: replicaName(s+1, r+1)}, true
			}
		}
	}
	return ClusterMember{}, false
}

// Kill ends every server at once. A cluster's servers take about 10 s each
// to stop gracefully (tables' background work); tests that throw the
// data away do not need that.
func (c *ClickHouseCluster) Kill() {
	if c == nil {
		return
	}
	for _, s := range c.Servers() {
		s.Kill()
	}
}

// Stop stops every server gracefully, all at once, and returns the first
// error.
func (c *ClickHouseCluster) Stop() error {
	if c == nil {
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(c.Servers()))
	for _, s := range c.Servers() {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.Stop() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// DDLWorkerEnded returns the line of the server's error log, since it
// started, that says its distributed DDL thread ended, or "". ClickHouse
// 18.16's DDLWorker thread (Interpreters/DDLWorker.cpp, run) returns and
// leaves the server up on a ZooKeeper error it does not expect, such as
// "Node exists" for a task's executed node when two replicas of a shard
// both ran an ALTER ... ON CLUSTER ("Unexpected ZooKeeper error"), on
// another error of its own bookkeeping ("Unexpected error", such as its
// check that a task it had not run was already finished; a statement
// that fails is reported to its initiator, and does not end it), and
// when it cannot make its queue's node ("Cannot initialize DDL queue");
// later releases fixed the first. Every later ON CLUSTER statement then
// times out (code 159) waiting for the server, until it restarts: what an
// operator does (README, A ClickHouse cluster).
func (c *ClickHouse) DDLWorkerEnded() string {
	for _, l := range c.DDLWorkerLog() {
		for _, end := range []string{"DDLWorker: Unexpected ZooKeeper error", "DDLWorker: Unexpected error", "Cannot initialize DDL queue"} {
			if strings.Contains(l, end) {
				return l
			}
		}
	}
	return ""
}

// DDLWorkerLog returns the lines of the server's error log, since it
// started, that its distributed DDL thread wrote: what a test prints when
// an ON CLUSTER statement waits on the server.
func (c *ClickHouse) DDLWorkerLog() []string {
	f, err := os.Open(ClickHouseErrLog(c.Dir))
	if err != nil {
		return nil
	}
	defer f.Close()
	f.Seek(c.errFrom, io.SeekStart)
	b, _ := io.ReadAll(f)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "DDLWorker") {
			out = append(out, l)
		}
	}
	return out
}

// UnfinishedDDL returns the servers that have not finished the
// distributed DDL task at task (a ZooKeeper path such as
// /clickhouse/task_queue/ddl/query-0000000347, as a code-159 timeout
// names it): each server's DDLWorker writes a node named host:port under
// the task's finished/ when it has run it. The task's node is read
// through ask, a server that answers.
func (c *ClickHouseCluster) UnfinishedDDL(ask *ClickHouse, task string) ([]*ClickHouse, error) {
	if !strings.HasPrefix(task, "/clickhouse/task_queue/ddl/query-") || strings.ContainsAny(task, "'\\") {
		return nil, fmt.Errorf("not a distributed DDL task: %q", task)
	}
	out, err := ask.query("SELECT name FROM system.zookeeper WHERE path = '" + task + "/finished'")
	if err != nil {
		return nil, err
	}
	finished := strings.Fields(out)
	var left []*ClickHouse
	for _, s := range c.Servers() {
		port := ":" + strconv.Itoa(portOf(s.TCPAddr))
		done := false
		for _, h := range finished {
			// The host part is escaped for a file name (127%2E0%2E0%2E1);
			// every server here is on 127.0.0.1, at its own port.
			done = done || strings.HasSuffix(h, port)
		}
		if !done {
			left = append(left, s)
		}
	}
	return left, nil
}

// ProbeDDL finds the servers that do not run distributed DDL: it queues,
// through ask, an ON CLUSTER statement that changes nothing (DROP TABLE IF
// EXISTS of a table no one has) without waiting for it, and returns its
// task and the servers that have not run it within wait. A server whose
// DDLWorker ended (DDLWorkerEnded) or is stuck without a word in its log
// (two CI runs, after ZooKeeper was stopped) is one; so is a server that
// is down.
func (c *ClickHouseCluster) ProbeDDL(ask *ClickHouse, wait time.Duration) (task string, left []*ClickHouse, err error) {
	table := fmt.Sprintf("ddl_probe_%d", time.Now().UnixNano())
	if _, err := ask.queryWith("distributed_ddl_task_timeout=0", "DROP TABLE IF EXISTS default."+table+" ON CLUSTER "+c.Name); err != nil {
		return "", nil, err
	}
	const queue = "/clickhouse/task_queue/ddl"
	name, err := ask.query("SELECT name FROM system.zookeeper WHERE path = '" + queue + "' AND position(value, '" + table + "') > 0")
	if name = strings.TrimSpace(name); err != nil || name == "" {
		return "", nil, fmt.Errorf("the task of DROP TABLE IF EXISTS default.%s ON CLUSTER is not in %s: %v", table, queue, err)
	}
	task = queue + "/" + name
	deadline := time.Now().Add(wait)
	for {
		left, err = c.UnfinishedDDL(ask, task)
		if err != nil || len(left) == 0 || time.Now().After(deadline) {
			return task, left, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// RestartEndedDDLWorkers restarts every server of the cluster whose
// DDLWorker ended (DDLWorkerEnded), and returns each one's directory and
// the line that said so.
func (c *ClickHouseCluster) RestartEndedDDLWorkers(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range c.Servers() {
		if l := s.DDLWorkerEnded(); l != "" {
			out[s.Dir] = l
			if err := s.Restart(ctx); err != nil {
				return out, fmt.Errorf("restart %s: %w", s.Dir, err)
			}
		}
	}
	return out, nil
}

// StartTestCluster starts ZooKeeper and a ClickHouse cluster name of shards
// x replicas for a test, under its temporary directory, killing both when
// it ends. It skips the test with -short or when either server is not
// installed, and fails it if they do not start.
func StartTestCluster(t testing.TB, name string, shards, replicas int) (*ZooKeeper, *ClickHouseCluster) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts ZooKeeper and clickhouse-servers")
	}
	if _, ok := ZooKeeperAvailable(); !ok {
		t.Skip("zookeeper not installed")
	}
	if _, ok := ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	zk, err := StartZooKeeper(ctx, dir+"/zk", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zk.Kill() })
	cl, err := StartClickHouseCluster(ctx, dir+"/ch", zk, name, shards, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Kill)
	t.Cleanup(func() { // runs before the kill: the servers' own account of a failure
		if !t.Failed() {
			return
		}
		for _, shard := range cl.Shards {
			for _, ch := range shard {
				t.Logf("%s: the end of its error log:\n%s", ch.Dir, tail(ClickHouseErrLog(ch.Dir), 4<<10))
			}
		}
	})
	return zk, cl
}

// tail returns the last n bytes of the file at path, or why it cannot.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// SkipWithoutRedisAndClickHouse skips t under -short or when redis-server
// or clickhouse-server is not installed: the preamble of every test that
// starts both.
func SkipWithoutRedisAndClickHouse(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts redis-server and clickhouse-server")
	}
	if _, ok := ClickHouseAvailable(); !ok {
		t.Skip("clickhouse-server not installed")
	}
	if _, ok := RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
}
