package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestFleet runs two aggregators behind one POP, sharing a Redis Cluster
// for dedupe and one ClickHouse, with the edge module delivering signed
// batches (Fastly's way) to both backends. Under a steady stream of hits
// with unique markers, the second aggregator is killed with SIGKILL for
// good and its data directory removed (its spool is lost with it); then a
// Redis master is killed with SIGKILL and its replica takes over. Then:
//
//   - the hits lost are exactly the events its spool held that no one had
//     stored: what its loader had not loaded yet (read from the spool
//     before it is removed). None is lost anywhere else: batches it did
//     not answer went to the other aggregator.
//   - every other answered hit is stored exactly once (no double from a
//     batch both aggregators took), and nothing is stored that was not
//     sent.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	s := startStack(t, stack.Options{Delivery: stack.DeliveryBatches, Aggregators: 2, RedisCluster: true})
	m := s.More[0]
	l := startLoad(t, s, "fleet", 4)
	defer l.stop()
	l.run(4 * time.Second)
	a1, a2 := acceptedBatches(t, s.DashboardURL, s.DashboardToken), acceptedBatches(t, m.DashURL, s.DashboardToken)
	t.Logf("batches accepted before the kill: aggregator %d, aggregator2 %d", a1, a2)
	if a1 == 0 || a2 == 0 {
		t.Errorf("the POP did not spread batches over both aggregators (%d, %d)", a1, a2)
	}

	done := make(chan struct{})
	go func() { l.run(6 * time.Second); close(done) }()
	time.Sleep(2 * time.Second)
	if err := m.Proc.Kill(); err != nil {
		t.Fatal(err)
	}
	spooled := spoolURLs(t, filepath.Join(m.DataDir, "spool"))
	if err := os.RemoveAll(m.DataDir); err != nil {
		t.Fatal(err)
	}
	<-done

	// Then a Redis master is killed under the same stream and its replica
	// takes over: the surviving aggregator's dedupe goes on with nothing
	// doubled (the fence of aggregator/dedupe) and nothing lost.
	done = make(chan struct{})
	go func() { l.run(8 * time.Second); close(done) }()
	time.Sleep(2 * time.Second)
	masters, err := s.RedisCluster.Masters(context.Background())
	if err != nil || len(masters) == 0 {
		t.Fatalf("redis masters: %v %v", masters, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	nm, took, err := s.RedisCluster.KillMaster(ctx, masters[0])
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redis master %s killed; replica %s took over in %v", masters[0].Addr, nm.Addr, took)
	<-done
	l.stop()

	l.mu.Lock()
	answered := len(l.answered)
	l.mu.Unlock()
	ch := s.ClickHouse.HTTPURL
	q := func(sql string) string { return chQuery(t, ch, strings.ReplaceAll(sql, "SITE", "'"+l.site+"'")) }
	var stored map[string]int
	var missing, window []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		stored = map[string]int{}
		for _, u := range strings.Split(q("SELECT url FROM events WHERE site = SITE"), "\n") {
			if u != "" {
				stored[u]++
			}
		}
		l.mu.Lock()
		missing = missing[:0]
		for u := range l.answered {
			if stored[u] == 0 {
				missing = append(missing, u)
			}
		}
		l.mu.Unlock()
		window = window[:0]
		for u := range spooled {
			if stored[u] == 0 {
				window = append(window, u)
			}
		}
		if len(missing) <= len(window) && metricsOf(t, s)["edgepixel_aggregator_spool_bytes"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second) // a double would land now
	f := strings.Fields(q("SELECT count(), uniqExact(url), (SELECT sum(n) FROM events_per_minute WHERE site = SITE) FROM events WHERE site = SITE"))
	rows, uniq, inserted := atoi(t, f[0]), atoi(t, f[1]), atoi(t, f[2])
	t.Logf("%d hits answered; stored %d rows (%d distinct, %d inserted); %d answered hits not stored; aggregator2's spool held %d events, %d of them not stored by anyone",
		answered, rows, uniq, inserted, len(missing), len(spooled), len(window))
	if rows != uniq || inserted != rows {
		t.Errorf("%d rows, %d distinct urls, %d inserted: a hit stored twice", rows, uniq, inserted)
	}
	inWindow := map[string]bool{}
	for _, u := range window {
		inWindow[u] = true
	}
	lostElsewhere := 0
	for _, u := range missing {
		if !inWindow[u] {
			lostElsewhere++
		}
	}
	if lostElsewhere > 0 || len(missing) != len(window) {
		t.Errorf("%d answered hits lost, %d of them outside the killed aggregator's unloaded spool (%d events)", len(missing), lostElsewhere, len(window))
	}
	l.mu.Lock()
	strangers := 0
	for u := range stored {
		if !l.sent[u] {
			strangers++
		}
	}
	l.mu.Unlock()
	if strangers > 0 {
		t.Errorf("%d stored hits never sent", strangers)
	}
}

// spoolURLs reads a (dead) aggregator's spool from its checkpoint on and
// returns the URLs of the events it holds.
func spoolURLs(t *testing.T, dir string) map[string]bool {
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	out := map[string]bool{}
	pos := sp.Checkpoint()
	for {
		recs, err := sp.Read(pos, 100, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			var d record.Decoded
			if err := record.Decode(&d, r.Data); err != nil {
				t.Fatal(err)
			}
			for _, e := range d.Events {
				out[e.URL] = true
			}
			pos = r.Next
		}
	}
}

// acceptedBatches reads an aggregator's count of accepted batches from
// its /metrics.
func acceptedBatches(t *testing.T, dashURL, token string) int {
	req, _ := http.NewRequest("GET", dashURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "edgepixel_aggregator_accepted_batches_total "); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}
