package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/feed"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestFaults streams signed batches straight to the aggregator — with
// events repeated across batches and whole batches sent again, the way the
// edge retries — while the aggregator is killed with SIGKILL, Redis is
// stopped, Redis loses its data, and ClickHouse is stopped. Every batch is
// retried until it gets a 200, as the edge does. After each fault, once
// the loader has caught up, ClickHouse must hold exactly the distinct
// acknowledged events: none lost, and none inserted twice. "Inserted" is
// counted by the events_per_minute rollup, whose materialized view adds
// every row ever inserted into events (copies included, whatever
// ReplacingMergeTree merges later collapse), so a double cannot hide
// behind a merge.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	s := startStack(t, stack.Options{Dir: dir, NoPop: true})
	f := feed.Start(feed.Options{
		T: t, Secret: s.Secret, Lanes: 1, URL: func(int) string { return s.AggregatorURL },
		Site: "fault", ResendOneIn: 20,
		Query:    func(t *testing.T, sql string) string { return chQuery(t, s.ClickHouse.HTTPURL, sql) },
		Spooled:  func(t *testing.T) float64 { return metricsOf(t, s)["edgepixel_aggregator_spool_bytes"] },
		Wait:     90 * time.Second,
		Poll:     100 * time.Millisecond,
		ShortWhy: "ClickHouse stopped mid-insert",
	}, 3)
	defer f.Stop()

	run := func(d time.Duration) { time.Sleep(d) }
	run(2 * time.Second)
	f.CheckExact(t, "steady stream")

	t.Run("aggregator killed", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			run(time.Duration(800+300*i) * time.Millisecond)
			s.Aggregator.Kill() // SIGKILL: no drain, no graceful anything
			if err := s.StartAggregator(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		run(time.Second)
		f.CheckExact(t, "after 3 SIGKILLs of the aggregator")
	})

	t.Run("redis stopped", func(t *testing.T) {
		before := f.Batches.Load()
		if err := s.Redis.Stop(); err != nil {
			t.Fatal(err)
		}
		run(3 * time.Second)
		// Ingest keeps accepting into the spool while Redis is down...
		if n := f.Batches.Load() - before; n == 0 {
			t.Error("no batch acknowledged while Redis was down")
		} else {
			t.Logf("%d batches acknowledged while Redis was down", n)
		}
		// ...readiness says so, and loading is reported paused.
		code, ready := readyz(t, s.AggregatorURL, "")
		// (The public listener's: the check failing, its error left out.)
		if code != 200 || ready.Loading.Ready || ready.Loading.Paused == nil || ready.Checks["redis"] != "failing" {
			t.Errorf("readyz during the Redis outage: %d %+v", code, ready)
		}
		if code, _ := readyz(t, s.AggregatorURL, "?loading=1"); code != 503 {
			t.Errorf("readyz?loading=1 during the Redis outage: %d, want 503", code)
		}
		m := metricsOf(t, s)
		if m["edgepixel_aggregator_dedupe_errors_total"] == 0 || m["edgepixel_aggregator_loader_paused"] != 1 {
			t.Errorf("metrics during the Redis outage: dedupe errors %v, paused %v",
				m["edgepixel_aggregator_dedupe_errors_total"], m["edgepixel_aggregator_loader_paused"])
		}
		if err := s.Redis.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		run(time.Second)
		f.CheckExact(t, "after Redis was stopped and started again (append-only file kept)")
	})

	t.Run("redis lost its data", func(t *testing.T) {
		// A crash of a Redis without persistence: everything it
		// remembered is gone. The aggregator must notice, and check ids
		// that may be stored against ClickHouse instead of inserting them.
		s.Redis.Kill()
		if err := os.RemoveAll(filepath.Join(s.Redis.Dir, "appendonlydir")); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(s.Redis.Dir, "dump.rdb"))
		if err := s.Redis.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		// The edge retrying batches that are stored already: only
		// ClickHouse can tell now.
		f.ResendOld(20)
		run(2 * time.Second)
		f.CheckExact(t, "after Redis lost its data")
	})

	t.Run("clickhouse stopped", func(t *testing.T) {
		before := f.Batches.Load()
		if err := s.ClickHouse.Stop(); err != nil {
			t.Fatal(err)
		}
		run(3 * time.Second)
		if n := f.Batches.Load() - before; n == 0 {
			t.Error("no batch acknowledged while ClickHouse was down")
		}
		if m := metricsOf(t, s); m["edgepixel_aggregator_store_errors_total"] == 0 {
			t.Error("no store errors counted while ClickHouse was down")
		}
		if err := s.ClickHouse.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		run(time.Second)
		f.CheckExact(t, "after ClickHouse was stopped and started again")
	})

	f.Stop()
	// Batches acknowledged after the last phase's check may still be in the
	// spool; comparing ids before they are loaded would report them lost.
	f.CheckExact(t, "after the senders stopped")
	f.CheckIDs(t)
}

type readiness struct {
	Ready   bool              `json:"ready"`
	Checks  map[string]string `json:"checks"`
	Loading struct {
		Ready  bool `json:"ready"`
		Paused *struct {
			What  string `json:"what"`
			Error string `json:"error"`
		} `json:"paused"`
	} `json:"loading"`
}

func readyz(t *testing.T, agg, query string) (int, readiness) {
	resp, err := http.Get(agg + "/readyz" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("readyz: %v: %s", err, b)
	}
	return resp.StatusCode, r
}

// metricsOf reads the aggregator's unlabelled metrics.
func metricsOf(t *testing.T, s *stack.Stack) map[string]float64 {
	resp, err := s.DashboardGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = n
		}
	}
	return out
}
