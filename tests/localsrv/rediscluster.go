package localsrv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/deps"
)

// RedisCluster is a running private Redis Cluster: masters with replicas,
// each node a redis-server child process on its own loopback port with its
// own directory, built with `redis-cli --cluster create`.
type RedisCluster struct {
	Nodes []*Redis // every node, in creation order (masters first, as redis-cli assigns them)
	Dir   string
}

// ClusterNodeTimeout is the cluster-node-timeout the nodes run with: a
// master unreachable this long is failed over to its replica (a few
// seconds in all). Redis's default, 15 s, would make failover tests slow.
const ClusterNodeTimeout = 2000 * time.Millisecond

// StartRedisCluster starts masters*(1+replicas) redis-server nodes in
// cluster mode under dir (one subdirectory per node, append-only file on)
// and joins them with redis-cli, each master with replicas replicas. It
// returns once every node reports cluster_state:ok and every replica's
// link to its master is up, so that a failover test may kill a master at
// once.
func StartRedisCluster(ctx context.Context, dir string, masters, replicas int) (*RedisCluster, error) {
	if masters < 3 {
		return nil, errors.New("localsrv: Redis Cluster needs at least 3 masters")
	}
	cli, ok := deps.RedisCLI.Path("")
	if !ok {
		return nil, fmt.Errorf("redis-cli not found; %s", deps.Advice([]deps.Program{deps.RedisCLI}))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{Dir: dir}
	ok = false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	for i := 0; i < masters*(1+replicas); i++ {
		n, err := startClusterNode(ctx, filepath.Join(dir, "node-"+strconv.Itoa(i)))
		if err != nil {
			return nil, fmt.Errorf("cluster node %d: %w", i, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.waitHealthy(wctx, nil); err != nil {
		return nil, fmt.Errorf("redis cluster did not come up: %w", err)
	}
	ok = true
	return c, nil
}

// startClusterNode starts one cluster-mode redis-server in dir on free
// ports. A port found free can be taken by another process before the
// server binds it (tests run in parallel): the start is tried again on
// new ports, up to 3 times, when the server could not bind.
func startClusterNode(ctx context.Context, dir string) (*Redis, error) {
	for attempt := 1; ; attempt++ {
		port, err := portOr(0)
		if err != nil {
			return nil, err
		}
		// The bus port is given rather than left at port+10000, which can
		// pass 65535 for a kernel-chosen port.
		bus, err := portOr(0)
		if err != nil {
			return nil, err
		}
		n, err := startRedis(ctx, dir, port,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)))
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return n, err
		}
		// Its nodes.conf may name the ports it could not have.
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
}

// Addrs are every node's host:port, the seed list for a cluster client.
func (c *RedisCluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// ClusterNode is one line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr string
	Master   bool
	Failed   bool   // flagged fail (or fail? by the asking node)
	MasterID string // for a replica: its master's ID
	Slots    int    // number of hash slots served (masters)
}

// Topology asks a live node for the cluster's nodes (CLUSTER NODES).
func (c *RedisCluster) Topology(ctx context.Context) ([]ClusterNode, error) {
	var last error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		v, err := Command(ctx, n.Addr, "CLUSTER", "NODES")
		if err != nil {
			last = err
			continue
		}
		s, _ := v.(string)
		return parseClusterNodes(s), nil
	}
	if last == nil {
		last = errors.New("no node is running")
	}
	return nil, last
}

func parseClusterNodes(s string) []ClusterNode {
	var out []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		flags := "," + f[2] + ","
		n := ClusterNode{ID: f[0], Addr: addr, Master: strings.Contains(flags, ",master,"),
			Failed: strings.Contains(flags, ",fail,") || strings.Contains(flags, ",fail?,")}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a slot being migrated
				continue
			}
			lo, hi, found := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if found {
				b, _ = strconv.Atoi(hi)
			}
			n.Slots += b - a + 1
		}
		out = append(out, n)
	}
	return out
}

// Node returns the process serving addr, or nil.
func (c *RedisCluster) Node(addr string) *Redis {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Masters returns the nodes currently serving slots, as the cluster sees
// them.
func (c *RedisCluster) Masters(ctx context.Context) ([]*Redis, error) {
	t, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Redis
	for _, n := range t {
		if n.Master && !n.Failed && n.Slots > 0 {
			if r := c.Node(n.Addr); r != nil {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// MasterForSlot returns the node that serves hash slot slot (0..16383).
func (c *RedisCluster) MasterForSlot(ctx context.Context, slot int) (*Redis, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		v, err := Command(ctx, n.Addr, "CLUSTER", "SLOTS")
		if err != nil {
			continue
		}
		rows, _ := v.([]any)
		for _, row := range rows {
			r, _ := row.([]any)
			if len(r) < 3 {
				continue
			}
			lo, _ := r[0].(int64)
			hi, _ := r[1].(int64)
			m, _ := r[2].([]any)
			if int64(slot) < lo || int64(slot) > hi || len(m) < 2 {
				continue
			}
			host, _ := m[0].(string)
			port, _ := m[1].(int64)
			if node := c.Node(net.JoinHostPort(host, strconv.FormatInt(port, 10))); node != nil {
				return node, nil
			}
		}
		return nil, fmt.Errorf("no master serves slot %d", slot)
	}
	return nil, errors.New("no node is running")
}

// MasterForKey returns the node that serves key's hash slot (CLUSTER
// KEYSLOT asks the cluster to hash it, hash tags included).
func (c *RedisCluster) MasterForKey(ctx context.Context, key string) (*Redis, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		v, err := Command(ctx, n.Addr, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		slot, _ := v.(int64)
		return c.MasterForSlot(ctx, int(slot))
	}
	return nil, errors.New("no node is running")
}

// KillMaster ends master with SIGKILL, as a crash would, and waits for
// one of its replicas to take over its slots and for every other node to
// report cluster_state:ok again. It returns the new master and how long
// the takeover took from the kill. The killed node's directory is kept;
// Restart brings it back (it rejoins as a replica).
func (c *RedisCluster) KillMaster(ctx context.Context, master *Redis) (*Redis, time.Duration, error) {
	t, err := c.Topology(ctx)
	if err != nil {
		return nil, 0, err
	}
	var id string
	for _, n := range t {
		if n.Addr == master.Addr && n.Master {
			id = n.ID
		}
	}
	if id == "" {
		return nil, 0, fmt.Errorf("%s is not a master", master.Addr)
	}
	start := time.Now()
	if err := master.Kill(); err != nil {
		return nil, 0, err
	}
	var promoted *Redis
	err = c.waitHealthy(ctx, func(t []ClusterNode) error {
		for _, n := range t {
			if n.ID == id {
				if n.Master && !n.Failed {
					return fmt.Errorf("%s not yet flagged as failed", master.Addr)
				}
				continue
			}
		}
		for _, n := range t {
			// The promoted replica is a master now; a takeover does not
			// rewrite the other replicas' lines at once, so look for a
			// master that was one of the killed master's replicas.
			if n.Master && !n.Failed && n.Slots > 0 && n.Addr != master.Addr {
				if r := c.Node(n.Addr); r != nil && c.wasReplicaOf(r, id) {
					promoted = r
					return nil
				}
			}
		}
		return fmt.Errorf("no replica of %s has taken over yet", master.Addr)
	})
	if err != nil {
		return nil, time.Since(start), err
	}
	return promoted, time.Since(start), nil
}

// wasReplicaOf reports whether r was a replica of the node id when the
// cluster was last seen healthy (a promoted replica no longer names its
// old master anywhere).
func (c *RedisCluster) wasReplicaOf(r *Redis, id string) bool {
	return r.replicaOf == id
}

// waitHealthy waits until every running node reports cluster_state:ok,
// every node knows the same number of slots served (16384), every running
// replica's link to its master is up, and extra (if not nil) accepts the
// topology. It records each replica's master for KillMaster.
func (c *RedisCluster) waitHealthy(ctx context.Context, extra func([]ClusterNode) error) error {
	var last error
	for {
		last = c.healthy(ctx, extra)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *RedisCluster) healthy(ctx context.Context, extra func([]ClusterNode) error) error {
	var topo []ClusterNode
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		v, err := Command(ctx, n.Addr, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if s, _ := v.(string); !strings.Contains(s, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr)
		}
		v, err = Command(ctx, n.Addr, "CLUSTER", "NODES")
		if err != nil {
			return err
		}
		s, _ := v.(string)
		t := parseClusterNodes(s)
		slots := 0
		for _, x := range t {
			if x.Master && !x.Failed {
				slots += x.Slots
			}
		}
		if slots != 16384 {
			return fmt.Errorf("%s sees %d of 16384 slots served", n.Addr, slots)
		}
		for _, x := range t {
			if x.Addr == n.Addr && !x.Master {
				v, err := Command(ctx, n.Addr, "INFO", "replication")
				if err != nil {
					return err
				}
				if s, _ := v.(string); !strings.Contains(s, "master_link_status:up") {
					return fmt.Errorf("replica %s: link to its master not up", n.Addr)
				}
				if n.replicaOf == "" {
					n.replicaOf = x.MasterID
				}
			}
		}
		topo = t
	}
	if topo == nil {
		return errors.New("no node is running")
	}
	if extra != nil {
		return extra(topo)
	}
	return nil
}

// Restart starts a stopped or killed node again on its port and
// directory and waits until the cluster is healthy with it: a killed
// master whose replica took over rejoins as that replica's replica.
func (c *RedisCluster) Restart(ctx context.Context, node *Redis) error {
	if err := node.Restart(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return c.waitHealthy(ctx, nil)
}

// Stop stops every node (SIGTERM, then SIGKILL after a grace period).
func (c *RedisCluster) Stop() error {
	if c == nil {
		return nil
	}
	var first error
	for _, n := range c.Nodes {
		if err := n.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Remove stops the cluster and deletes its directory.
func (c *RedisCluster) Remove() error {
	err := c.Stop()
	if c != nil && c.Dir != "" {
		if rerr := os.RemoveAll(c.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// Command sends one command to the Redis at addr over a fresh connection
// (within ctx's deadline, or 5 s without one) and returns its reply: string (simple or bulk), int64, []any, or nil;
// an error reply is returned as an error. localsrv has no Redis client
// dependency, so that anything can import it.
func Command(ctx context.Context, addr string, args ...string) (any, error) {
	r, err := Commands(ctx, addr, args)
	if err != nil {
		return nil, err
	}
	return r[0], nil
}

// Commands sends cmds in order over one fresh connection, as Command does
// one, and returns their replies; the first error reply ends it. One
// connection matters to commands about the connection's own writes, such
// as WAIT, which waits for the replicas to acknowledge the writes of the
// client that sends it (https://redis.io/docs/latest/commands/wait/).
func Commands(ctx context.Context, addr string, cmds ...[]string) ([]any, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	conn.SetDeadline(deadline)
	br := bufio.NewReader(conn)
	var replies []any
	for _, args := range cmds {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return nil, err
		}
		r, err := readReply(br)
		if err != nil {
			return nil, err
		}
		replies = append(replies, r)
	}
	return replies, nil
}

func readReply(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redis: empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > 64<<20 {
			return nil, fmt.Errorf("redis: bad bulk length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > 1<<20 {
			return nil, fmt.Errorf("redis: bad array length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(br); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unexpected reply %q", line)
}
