package localsrv

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func chExec(t *testing.T, c *ClickHouse, sql string) string {
	t.Helper()
	resp, err := http.Post(c.HTTPURL+"/", "text/plain", strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s: %s", sql, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

// A cluster of one shard of two replicas: distributed DDL reaches both,
// a row inserted on one replica is read on the other, the macros and
// the cluster are each server's own, the same block inserted on the
// other replica is kept once, and ProbeDDL and UnfinishedDDL name a
// replica that was down when a task was queued until it has run it.
func TestClickHouseCluster(t *testing.T) {
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
	defer zk.Kill()
	c, err := StartClickHouseCluster(ctx, dir+"/ch", zk, "test_cluster", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	a, b := c.Shards[0][0], c.Shards[0][1]
	if m, _ := c.Member(b); m.Shard != 1 || m.Replica != "s1r2" {
		t.Errorf("member %+v", m)
	}
	if got := chExec(t, b, "SELECT substitution FROM system.macros ORDER BY macro"); got != "s1r2\n1" {
		t.Errorf("macros of the second replica: %q", got)
	}
	if got := chExec(t, a, "SELECT count() FROM system.clusters WHERE cluster = 'test_cluster'"); got != "2" {
		t.Errorf("cluster members: %s", got)
	}
	chExec(t, a, "CREATE TABLE default.r ON CLUSTER test_cluster (k UInt64, lc LowCardinality(String)) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/r', '{replica}') ORDER BY k")
	for range 2 {
		chExec(t, a, "INSERT INTO default.r VALUES (1, 'a'), (2, 'b')")
		chExec(t, b, "INSERT INTO default.r VALUES (1, 'a'), (2, 'b')")
	}
	chExec(t, b, "SYSTEM SYNC REPLICA default.r")
	if got := chExec(t, b, "SELECT count(), sum(k) FROM default.r"); got != "2\t3" {
		t.Errorf("on the second replica: %q, want the block once", got)
	}

	// ProbeDDL and UnfinishedDDL name the server that has not run a task:
	// nobody while both run, b while it is down, and nobody once it is
	// back and has run it.
	if task, left, err := c.ProbeDDL(a, time.Minute); err != nil || len(left) != 0 || task == "" {
		t.Errorf("probe with both up: task %q, %v unfinished, %v", task, left, err)
	}
	b.Kill()
	tk, left, err := c.ProbeDDL(a, 3*time.Second)
	if err != nil || len(left) != 1 || left[0] != b {
		t.Errorf("probe with the second replica down: %v unfinished, %v; want it alone", left, err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// b, restarted, loads its tables and works through the queue (a
	// minute is for a loaded machine).
	deadline := time.Now().Add(time.Minute)
	for {
		if left, err = c.UnfinishedDDL(a, tk); err != nil || len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(left) != 0 {
		t.Errorf("after the second replica restarted: %v unfinished, %v", left, err)
	}
	if _, err := c.UnfinishedDDL(a, "/clickhouse/task_queue/ddl/query-1' OR 1"); err == nil {
		t.Error("a task path with a quote was taken")
	}
	if l := b.DDLWorkerEnded(); l != "" {
		t.Errorf("the second replica's DDLWorker ended: %s", l)
	}
	if !zk.Running() {
		t.Error("zookeeper stopped")
	}
}

// DDLWorkerEnded reads the error log from the server's start on: a line
// of an earlier run (before a restart) does not count.
func TestDDLWorkerEnded(t *testing.T) {
	dir := t.TempDir()
	logf := ClickHouseErrLog(dir)
	os.MkdirAll(filepath.Dir(logf), 0o755)
	old := "2026.12.05 21:33:36 [ 3 ] {x} <Error> DDLWorker: Unexpected ZooKeeper error: Code: 999, Node exists\n"
	os.WriteFile(logf, []byte(old), 0o644)
	c := &ClickHouse{Dir: dir, errFrom: int64(len(old))}
	if l := c.DDLWorkerEnded(); l != "" {
		t.Errorf("an earlier run's line counted: %q", l)
	}
	f, _ := os.OpenFile(logf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("2026.12.05 21:40:00 [ 5 ] {} <Error> executeQuery: Code: 60\n" + old)
	f.Close()
	if l := c.DDLWorkerEnded(); !strings.Contains(l, "DDLWorker: Unexpected ZooKeeper error") {
		t.Errorf("this run's line not found: %q", l)
	}
	// The thread's other ends: any other error of a task, and its queue's
	// node not made.
	// Each error line is followed by its stack trace, and "Terminating."
	// by then.
	for _, l := range []string{
		"2026.12.07 07:27:01 [ 9 ] {} <Error> DDLWorker: Unexpected error: Code: 49, e.displayText() = DB::Exception: Server expects that DDL task query-0000000337 should be processed, but it was already processed according to ZK, Stack trace:",
		"2026.12.07 07:27:01 [ 9 ] {} <Error> DDLWorker: Terminating. Cannot initialize DDL queue.: Code: 999, e.displayText() = Coordination::Exception: Session expired, Stack trace:",
	} {
		os.WriteFile(logf, []byte(old), 0o644)
		f, _ := os.OpenFile(logf, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("2026.12.07 07:27:00 [ 9 ] {} <Warning> DDLWorker: An error occurred while processing task query-0000000337\n" + l + "\n\n0. clickhouse-server(StackTrace::StackTrace()+0x16) [0x7b6e2c6]\n. Terminating.\n")
		f.Close()
		if got := c.DDLWorkerEnded(); got != l {
			t.Errorf("DDLWorkerEnded = %q, want %q", got, l)
		}
		if got := c.DDLWorkerLog(); len(got) != 2 {
			t.Errorf("DDLWorkerLog = %q, want this run's two lines", got)
		}
	}
}
