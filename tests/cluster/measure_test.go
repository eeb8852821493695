package cluster

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
	"github.com/edgepixel/edgepixel/tests/proc"
)

var measure = flag.Int("measure", 0, "TestThroughput: events to load into each layout (0: skip the test)")

// TestThroughput measures events/s end to end (signed batches posted until
// every event is stored) into one ClickHouse server and into the 2x2
// cluster with one and with two aggregators, in the same run. It fails
// only when events are lost or doubled; the figures are logged.
func TestThroughput(t *testing.T) {
	if *measure <= 0 {
		t.Skip("-measure N not given")
	}
	f := startFleet(t, false) // the cluster and its two aggregators
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	single, err := localsrv.StartClickHouse(ctx, filepath.Join(f.dir, "single"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { single.Kill() })
	addr, _ := proc.FreeAddr()
	dash, _ := proc.FreeAddr()
	one := &aggregator{addr: addr, url: "http://" + addr, dash: "http://" + dash, log: filepath.Join(f.dir, "aggregator-single.log"),
		dataDir: filepath.Join(f.dir, "agg-single"),
		args: []string{"--addr", addr, "--dashboard-addr", dash,
			"--secret-file", filepath.Join(f.dir, "secret"), "--dashboard-token-file", filepath.Join(f.dir, "dashboard-token"),
			"--redis-cluster", strings.Join(f.redis.Addrs(), ","), "--clickhouse", single.HTTPURL, "--log-level", "warn"}}
	if err := one.start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { one.p.Kill() })

	count := func(s *localsrv.ClickHouse, db string) int {
		n, _ := strconv.Atoi(query(t, s, "SELECT count() FROM "+db+".events"))
		return n
	}
	// Rows are readable on the server written to before the insert's
	// quorum is reached and its load acknowledged, and a Distributed read
	// may take a shard's other replica, which has not fetched them yet:
	// the loads are over when the spools are empty, and the counts are
	// taken with every replica caught up.
	synced := func() {
		for _, r := range f.ch.Servers() {
			query(t, r, "SYSTEM SYNC REPLICA events_local")
		}
	}
	run := func(name string, aggs []*aggregator, stored func() int) {
		synced()
		base := stored()
		n := *measure
		start := time.Now()
		post(t, f.secret, aggs, n)
		posted := time.Since(start)
		for stored()-base < n || f.spooledIn(t, aggs) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		d := time.Since(start)
		synced()
		got := stored() - base
		t.Logf("%-32s %d events: posted in %v, stored in %v: %.0f events/s", name, n, posted.Round(time.Millisecond), d.Round(time.Millisecond), float64(n)/d.Seconds())
		if got != n {
			t.Errorf("%s: %d stored, want %d", name, got, n)
		}
	}
	clusterRows := func() int { return count(f.ch.Shards[1][1], "edgepixel") }
	run("one server, 1 aggregator", []*aggregator{one}, func() int { return count(single, "edgepixel") })
	run("2x2 cluster, 1 aggregator", f.aggs[:1], clusterRows)
	run("2x2 cluster, 2 aggregators", f.aggs, clusterRows)
}

// post sends n new events in signed batches of 500 from 4 senders per
// aggregator, each batch retried until acknowledged.
func post(t *testing.T, secret []byte, aggs []*aggregator, n int) {
	const batch = 500
	batches := make(chan []byte, 64)
	go func() {
		defer close(batches)
		for sent := 0; sent < n; sent += batch {
			evs := make([]event.Event, min(batch, n-sent))
			for i := range evs {
				now := time.Now().UnixMilli()
				id, _ := event.NewID(now, rand.Reader)
				evs[i] = event.Event{ID: id, Time: now, Site: "bench" + strconv.Itoa(i%5), Name: "pageview",
					URL: "https://example.com/page/" + strconv.Itoa(i%100), Pop: "bench"}
			}
			batches <- wire.Append(nil, evs)
		}
	}()
	var wg sync.WaitGroup
	for _, a := range aggs {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 30 * time.Second}
				for body := range batches {
					for attempt := 0; ; attempt++ {
						ts := time.Now().Unix()
						req, _ := http.NewRequest("POST", a.url+"/ingest", strings.NewReader(string(body)))
						req.Header.Set("Content-Type", wire.ContentType)
						req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
						req.Header.Set(wire.HeaderSignature, wire.Sign(secret, ts, body))
						resp, err := client.Do(req)
						if err == nil {
							resp.Body.Close()
							if resp.StatusCode == 200 {
								break
							}
							err = fmt.Errorf("%s", resp.Status)
						}
						if attempt > 300 {
							t.Errorf("batch not acknowledged: %v", err)
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
}
