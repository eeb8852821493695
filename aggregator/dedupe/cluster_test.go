package dedupe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

func startCluster(t testing.TB) *localsrv.RedisCluster {
	if _, ok := localsrv.RedisAvailable(); !ok {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := localsrv.StartRedisCluster(ctx, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

func newClusterDeduper(t testing.TB, c *localsrv.RedisCluster) *Redis {
	r, err := NewRedisCluster(c.Addrs(), "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.UseStore(emptyStore)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestKeySlot(t *testing.T) {
	// The Redis Cluster specification's check value, and its example.
	if got := keySlot("123456789"); got != 0x31C3%16384 {
		t.Fatalf("keySlot(123456789) = %#x", got)
	}
}

// TestRedisCluster runs the protocol on a Redis Cluster, checks that each
// group's keys hash where the layout says (asking the cluster), that the
// groups are spread evenly over the masters, and that a load larger than
// one script call comes back whole.
func TestRedisCluster(t *testing.T) {
	c := startCluster(t)
	r := newClusterDeduper(t, c)
	ctx := context.Background()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	protocol(t, r)
	if r.Name() != "redis-cluster" {
		t.Errorf("Name %q", r.Name())
	}
	perMaster := map[string]int{}
	for g, gr := range r.groups {
		lo, hi := g*16384/len(r.groups), (g+1)*16384/len(r.groups)
		for _, key := range []string{gr.epochKey(), gr.bucketKey(123, 4, 5), gr.layoutKey(77)} {
			v, err := localsrv.Command(ctx, c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", key)
			if err != nil {
				t.Fatal(err)
			}
			if s := int(v.(int64)); s < lo || s >= hi || s != int(keySlot(strings.TrimSuffix(strings.TrimPrefix(gr.prefix, "ep:{"), "}"))) {
				t.Fatalf("group %d key %q in slot %d, want [%d,%d)", g, key, s, lo, hi)
			}
		}
		m, err := c.MasterForKey(ctx, gr.epochKey())
		if err != nil {
			t.Fatal(err)
		}
		perMaster[m.Addr]++
	}
	if len(perMaster) != 3 {
		t.Fatalf("groups on %d masters: %v", len(perMaster), perMaster)
	}
	for a, n := range perMaster {
		if n != ClusterGroups/3 {
			t.Errorf("master %s holds %d groups, want %d", a, n, ClusterGroups/3)
		}
	}
	a := ids(t, 25000)
	st, err := r.Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != New {
			t.Fatalf("id %d: %v", i, s)
		}
	}
	if err := r.MarkDone(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Another aggregator sees the same memory.
	st, err = newClusterDeduper(t, c).Claim(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != Duplicate {
			t.Fatalf("id %d: %v after MarkDone", i, s)
		}
	}
}

// store is the event store of the failover test: how many times each id
// was stored.
type store struct {
	mu     sync.Mutex
	n      map[event.ID]int
	newest int64
}

func (s *store) Newest(context.Context, time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newest, nil
}

// load runs the loader's protocol for one batch until it is done: Claim,
// store New ids and Uncertain ids the store lacks, MarkDone; any error
// starts over from Claim, as the loader does. It returns how many
// attempts failed.
func (s *store) load(ctx context.Context, t *testing.T, d Deduper, batch []event.ID) (failures int) {
	for {
		if ctx.Err() != nil {
			t.Errorf("batch not loaded: %v", ctx.Err())
			return failures
		}
		st, err := d.Claim(ctx, batch)
		if err == nil && slices.Contains(st, Busy) {
			// A grace period after a new epoch (or another's claim): claim
			// again later, as the loader does.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err == nil {
			s.mu.Lock()
			for i, id := range batch {
				if st[i] == New || (st[i] == Uncertain && s.n[id] == 0) {
					s.n[id]++
					s.newest = max(s.newest, idMS(id))
				}
			}
			s.mu.Unlock()
			err = d.MarkDone(ctx, batch)
		}
		if err == nil {
			return failures
		}
		if !errors.Is(err, ErrMemoryLost) {
			time.Sleep(20 * time.Millisecond)
		}
		if failures%20 == 0 {
			t.Logf("load retried: %v", err)
		}
		failures++
	}
}

// TestRedisClusterFailover kills a Redis master whose replica had not
// received the last writes, and replays every batch through another
// aggregator: no event may be stored twice or not at all. The writes are
// made to be lost for certain: the replica is stopped (SIGSTOP) while a
// large value fills the replication link, aggregator A loads batches,
// then the master is killed (SIGKILL) and the replica resumed; the test
// checks that the promoted replica's offset is behind the killed master's.
// Aggregator B, which wrote nothing in that window (its own sequence
// numbers did not go back), then retries A's batches, as the edge does
// when A's answers were lost.
//
// With the fence off (the control run) the same steps store some events
// twice, which shows the test can see a double; a run whose interleaving
// lets the older sequence check catch the loss instead skips the control.
func TestRedisClusterFailover(t *testing.T) {
	for _, fence := range []bool{true, false} {
		t.Run("fence="+strconv.FormatBool(fence), func(t *testing.T) {
			doubled, lost, checked := clusterFailover(t, fence)
			t.Logf("fence %v: %d doubled, %d lost, %d ids checked against the store", fence, doubled, lost, checked)
			if fence && (doubled != 0 || lost != 0) {
				t.Fatalf("%d events stored twice, %d acknowledged events not stored", doubled, lost)
			}
			if !fence && doubled == 0 {
				// The interleaving is the machine's: when the sequence check
				// sees the loss first, the control has nothing to show. That
				// is a control that did not run, not a failure of dedupe.
				t.Skip("control: without the fence no event was stored twice this run (the sequence check caught the lost writes first), so this run does not show the test can see a double")
			}
		})
	}
}

// countingStore counts the store lookups (Uncertain answers) a deduper causes.
type countingDeduper struct {
	Deduper
	mu        sync.Mutex
	uncertain int
}

func (c *countingDeduper) Claim(ctx context.Context, ids []event.ID) ([]Status, error) {
	st, err := c.Deduper.Claim(ctx, ids)
	c.mu.Lock()
	for _, s := range st {
		if s == Uncertain {
			c.uncertain++
		}
	}
	c.mu.Unlock()
	return st, err
}

func clusterFailover(t *testing.T, fence bool) (doubled, lost, checked int) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := &store{n: map[event.ID]int{}}
	mk := func() *countingDeduper {
		r := newClusterDeduper(t, c)
		r.UseStore(s.Newest)
		r.fence = fence
		return &countingDeduper{Deduper: r}
	}
	a, b := mk(), mk()
	const batch = 2000
	var batches [][]event.ID
	next := func() []event.ID {
		x := ids(t, batch)
		batches = append(batches, x)
		return x
	}
	// Both aggregators load, replicated normally.
	for i := 0; i < 10; i++ {
		s.load(ctx, t, a, next())
		s.load(ctx, t, b, next())
	}
	// A third aggregator streams throughout, through the kill: new
	// batches, each retried once right away (a lost answer).
	streamer := mk()
	var (
		smu      sync.Mutex
		streamed [][]event.ID
	)
	stop := make(chan struct{})
	streamDone := make(chan int)
	go func() {
		failures := 0
		for {
			select {
			case <-stop:
				streamDone <- failures
				return
			default:
			}
			x := ids(t, batch)
			smu.Lock()
			streamed = append(streamed, x)
			smu.Unlock()
			failures += s.load(ctx, t, streamer, x)
			failures += s.load(ctx, t, streamer, x)
		}
	}()
	defer func() {
		if stop != nil {
			close(stop)
			<-streamDone
		}
	}()
	ga := a.Deduper.(*Redis).groups[0]
	m, err := c.MasterForKey(ctx, ga.epochKey())
	if err != nil {
		t.Fatal(err)
	}
	var replica *localsrv.Redis
	topo, err := c.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mid string
	for _, n := range topo {
		if n.Addr == m.Addr {
			mid = n.ID
		}
	}
	for _, n := range topo {
		if n.MasterID == mid {
			replica = c.Node(n.Addr)
		}
	}
	if replica == nil {
		t.Fatalf("no replica of %s", m.Addr)
	}
	// Stop the replica and have the master drop its link: what A writes
	// next reaches the master alone (and its backlog, which the stopped
	// replica cannot ask for).
	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			replica.Signal(syscall.SIGCONT)
		}
	}()
	if _, err := localsrv.Command(ctx, m.Addr, "CLIENT", "KILL", "TYPE", "replica"); err != nil {
		t.Fatal(err)
	}
	var window [][]event.ID
	for i := 0; i < 3; i++ {
		x := next()
		if f := s.load(ctx, t, a, x); f != 0 {
			t.Fatalf("A's load failed %d times before the kill", f)
		}
		window = append(window, x)
	}
	info, err := localsrv.Command(ctx, m.Addr, "INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	masterOffset := infoInt(info.(string), "master_repl_offset")
	// Kill the master, resume the replica, wait for its takeover.
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	replica.Signal(syscall.SIGCONT)
	resumed = true
	nm, took, err := c.KillMaster(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if nm != replica {
		t.Fatalf("%s took over, not the replica %s", nm.Addr, replica.Addr)
	}
	info, err = localsrv.Command(ctx, nm.Addr, "INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	promotedAt := infoInt(info.(string), "second_repl_offset") - 1
	t.Logf("replica %s took over in %v at offset %d; the killed master had reached %d", nm.Addr, took, promotedAt, masterOffset)
	if promotedAt >= masterOffset {
		t.Fatalf("the replica had every write (offset %d of %d): nothing was lost to test", promotedAt, masterOffset)
	}
	// B retries A's batches from the lost window, then everything; A
	// carries on with new batches and retries too.
	for _, x := range window {
		s.load(ctx, t, b, x)
	}
	for i := 0; i < 5; i++ {
		s.load(ctx, t, a, next())
		s.load(ctx, t, b, next())
	}
	close(stop)
	sf := <-streamDone
	stop = nil
	batches = append(batches, streamed...)
	t.Logf("the streaming aggregator loaded %d batches; %d attempts failed", len(streamed), sf)
	for _, x := range batches {
		s.load(ctx, t, a, x)
		s.load(ctx, t, b, x)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range batches {
		for _, id := range x {
			switch n := s.n[id]; {
			case n > 1:
				doubled += n - 1
			case n == 0:
				lost++
			}
		}
	}
	return doubled, lost, a.uncertain + b.uncertain
}

func infoInt(info, key string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	panic(fmt.Sprintf("INFO has no %s", key))
}
