package dedupe

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/shared/event"
)

// BenchmarkRedisLoad claims and marks loads of 50,000 ids created at
// 300,000 a second, as the loader does under the aggregator benchmark,
// and reports the Redis server's CPU per id beside the wall time.
func BenchmarkRedisLoad(b *testing.B) {
	if redisURL == "" {
		b.Skip("redis-server not installed")
	}
	r, err := NewRedis(redisURL, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	r.UseStore(emptyStore)
	defer r.Close()
	benchLoads(b, r)
}

// BenchmarkRedisClusterLoad is BenchmarkRedisLoad on a Redis Cluster of
// 3 masters with a replica each (CPU summed over the masters). Run both
// in one go for the ratio:
//
//	go test -run - -bench 'Redis(Cluster)?Load$' ./aggregator/dedupe/
func BenchmarkRedisClusterLoad(b *testing.B) {
	c := startCluster(b)
	r, err := NewRedisCluster(c.Addrs(), "", "", 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	r.UseStore(emptyStore)
	defer r.Close()
	benchLoads(b, r)
}

func benchLoads(b *testing.B, r *Redis) {
	ctx := context.Background()
	const n, perSec = 50000, 300000
	loads := make([][]event.ID, b.N)
	start := time.Now().Add(-time.Duration(b.N) * time.Second)
	for l := range loads {
		loads[l] = make([]event.ID, n)
		for i := range loads[l] {
			ms := start.Add(time.Duration(l*n+i) * time.Second / perSec).UnixMilli()
			loads[l][i], _ = event.NewID(ms, rand.Reader)
		}
	}
	cpu0 := redisCPU(b, r)
	var claim, mark time.Duration
	var claimCPU, markCPU float64
	b.ResetTimer()
	for _, ids := range loads {
		t0 := time.Now()
		if _, err := r.Claim(ctx, ids); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cpu1 := redisCPU(b, r)
		claimCPU += cpu1 - cpu0
		if err := r.MarkDone(ctx, ids); err != nil {
			b.Fatal(err)
		}
		mark += time.Since(t1)
		claim += t1.Sub(t0)
		cpu0 = redisCPU(b, r)
		markCPU += cpu0 - cpu1
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/claim.Seconds(), "claims/s")
	b.ReportMetric(float64(b.N*n)/mark.Seconds(), "marks/s")
	b.ReportMetric(float64(claim.Milliseconds())/float64(b.N), "claim-ms/load")
	b.ReportMetric(float64(mark.Milliseconds())/float64(b.N), "mark-ms/load")
	b.ReportMetric(claimCPU*1e6/float64(b.N*n), "claim-redis-cpu-us/id")
	b.ReportMetric(markCPU*1e6/float64(b.N*n), "mark-redis-cpu-us/id")
}

// redisCPU is the server's CPU time so far, in seconds: in a cluster,
// the masters' sum.
func redisCPU(t testing.TB, r *Redis) float64 {
	ctx := context.Background()
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var sum float64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			info, err := c.Info(ctx, "cpu").Result()
			mu.Lock()
			sum += cpuOf(info)
			mu.Unlock()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	info, err := r.c.Info(ctx, "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	return cpuOf(info)
}

func cpuOf(info string) float64 {
	var s float64
	for _, line := range strings.Split(info, "\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				s += f
			}
		}
	}
	return s
}
