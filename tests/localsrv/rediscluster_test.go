package localsrv

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestRedisCluster builds a 3-master cluster with a replica each, writes a
// key, kills the key's master and checks that its replica took over with
// the key, and that the killed node rejoins.
func TestRedisCluster(t *testing.T) {
	if _, ok := RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartRedisCluster(ctx, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v %v", masters, err)
	}
	m, err := c.MasterForKey(ctx, "{k}x")
	if err != nil {
		t.Fatal(err)
	}
	// The replica must have the write before the kill for it to survive.
	// WAIT counts the acknowledgements of its own connection's writes, so
	// it goes over the connection that wrote.
	r, err := Commands(ctx, m.Addr, []string{"SET", "{k}x", "1"}, []string{"WAIT", "1", "2000"})
	if err != nil || r[1].(int64) != 1 {
		t.Fatalf("SET, WAIT: %v %v", r, err)
	}
	nm, took, err := c.KillMaster(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replica %s took over from %s in %v", nm.Addr, m.Addr, took)
	if nm == m || nm.replicaOf == "" {
		t.Fatalf("new master %s", nm.Addr)
	}
	if got, err := c.MasterForKey(ctx, "{k}x"); err != nil || got != nm {
		t.Fatalf("key served by %v (%v), want %s", got, err, nm.Addr)
	}
	if v, err := Command(ctx, nm.Addr, "GET", "{k}x"); err != nil || v != "1" {
		// The logs of both nodes say whether the replica resynced or
		// another failover happened.
		logNodes(t, ctx, c, m, nm)
		t.Fatalf("GET after failover: %v %v", v, err)
	}
	if err := c.Restart(ctx, m); err != nil {
		t.Fatal(err)
	}
	topo, err := c.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range topo {
		if n.Addr == m.Addr && n.Master {
			t.Errorf("restarted %s is a master again", m.Addr)
		}
	}
}

// logNodes logs the cluster as every running node sees it and the server
// logs of the nodes named, for a failure that needs explaining.
func logNodes(t *testing.T, ctx context.Context, c *RedisCluster, named ...*Redis) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		nodes, _ := Command(ctx, n.Addr, "CLUSTER", "NODES")
		repl, _ := Command(ctx, n.Addr, "INFO", "replication")
		size, _ := Command(ctx, n.Addr, "DBSIZE")
		t.Logf("%s: dbsize %v\n%v\n%v", n.Addr, size, nodes, repl)
	}
	for _, n := range named {
		b, _ := os.ReadFile(RedisLog(n.Dir))
		t.Logf("%s log:\n%s", n.Addr, b)
	}
}
