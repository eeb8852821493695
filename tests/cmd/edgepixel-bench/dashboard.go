package main

// The dashboard section: ingest throughput of the real aggregator with
// 1,000 dashboards following /live (at one update a second) against the
// same run without them, the update latency, the aggregator's CPU and
// memory; then the history API (package query) on generated events, each
// question read from the rollups and from the raw events table.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/stack"
)

type dashOptions struct {
	binDir   string
	duration time.Duration
	senders  int
	clients  int
	events   int // generated events for the history figures
	queries  int // questions asked per figure
}

func runDashboard(o dashOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgepixel-bench-dash-")
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(os.Stderr, "bench: dashboard: starting redis-server, clickhouse-server and the aggregator in %s ...\n", dir)
	s, err := stack.Start(ctx, stack.Options{Dir: dir, Bin: stack.InDir(o.binDir), NoPop: true,
		AggregatorArgs: []string{"--live-interval", "1s", "--max-conns-per-client", "-1", "--max-conns", "-1"}})
	if err != nil {
		return err
	}
	defer s.Stop()
	if err := waitFor(30*time.Second, func() bool { _, err := chCount(s.ClickHouse.HTTPURL); return err == nil }); err != nil {
		return errors.New("the events table never appeared")
	}
	gen := newBatchGen(500)
	if _, err := load(s.AggregatorURL, s.Secret, gen, o.senders, 2*time.Second); err != nil { // warm-up
		return err
	}
	pid := s.Aggregator.Pid()
	measure := func(what string) (eps float64, cpu float64, rss int64, err error) {
		if _, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), 2*time.Minute); err != nil {
			return 0, 0, 0, err
		}
		fmt.Fprintf(os.Stderr, "bench: dashboard: ingest %s (%v, %d senders) ...\n", what, o.duration, o.senders)
		c0 := procCPU(pid)
		before := gen.sent.Load()
		start := time.Now()
		if _, err := load(s.AggregatorURL, s.Secret, gen, o.senders, o.duration); err != nil {
			return 0, 0, 0, err
		}
		el := time.Since(start)
		c1 := procCPU(pid)
		rss, _ = procRSS(pid)
		return float64(gen.sent.Load()-before) / el.Seconds(), (c1 - c0).Seconds() / el.Seconds(), rss, nil
	}
	base, baseCPU, baseRSS, err := measure("without dashboards")
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: dashboard: connecting %d WebSocket clients ...\n", o.clients)
	var mu sync.Mutex
	var lat latencies
	var msgs atomic.Int64
	var conns []*websocket.Conn
	u := "ws" + strings.TrimPrefix(s.DashboardURL, "http") + "/live"
	hdr := http.Header{"Authorization": {"Bearer " + s.DashboardToken}}
	var wg sync.WaitGroup
	for range o.clients {
		c, _, err := websocket.DefaultDialer.Dial(u, hdr)
		if err != nil {
			return fmt.Errorf("client %d: %w", len(conns), err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					return
				}
				var m struct {
					Type string `json:"type"`
					TS   int64  `json:"ts"`
				}
				if json.Unmarshal(b, &m) == nil && m.Type == "delta" {
					msgs.Add(1)
					mu.Lock()
					lat.ms = append(lat.ms, float64(time.Now().UnixMicro()-m.TS*1000)/1000)
					mu.Unlock()
				}
			}
		})
	}
	connected := time.Now()
	with, withCPU, withRSS, err := measure(fmt.Sprintf("with %d dashboards", o.clients))
	followed := time.Since(connected)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	if err != nil {
		return err
	}
	// Without again: the machine's load drifts, so the baseline is the
	// mean of a run before and a run after.
	base2, baseCPU2, _, err := measure("without dashboards, again")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: dashboard: without dashboards %.0f then %.0f events/s\n", base, base2)
	base, baseCPU = (base+base2)/2, (baseCPU+baseCPU2)/2

	fmt.Println()
	fmt.Println("## dashboard: live updates")
	fmt.Printf("ingest events/s    %12s without dashboards (mean of a run before and after)   %12s with %d dashboards   ratio %.3f (goal >= 0.95)\n",
		fmtNum(base, ""), fmtNum(with, ""), o.clients, with/base)
	fmt.Printf("aggregator CPU     %11.0f%% without              %11.0f%% with\n", 100*baseCPU, 100*withCPU)
	fmt.Printf("aggregator RSS     %10.0f MB without            %10.0f MB with\n", float64(baseRSS)/1e6, float64(withRSS)/1e6)
	fmt.Printf("updates received   %12d (%.2f per client per second)   latency from publish p50 %.1f ms, p99 %.1f ms\n",
		msgs.Load(), float64(msgs.Load())/float64(o.clients)/followed.Seconds(), lat.pct(50), lat.pct(99))

	if o.events <= 0 {
		return nil
	}
	return historyFigures(s, o)
}

// historyFigures inserts generated events for one site over the last 30
// days and times each question of the page from the rollups and from the
// raw events table.
func historyFigures(s *stack.Stack, o dashOptions) error {
	ctx := context.Background()
	c, err := clickhouse.New(s.ClickHouse.HTTPURL, "edgepixel")
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "bench: dashboard: inserting %d generated events for one site ...\n", o.events)
	now := time.Now().UTC()
	r := mrand.New(mrand.NewPCG(1, 2))
	pages := make([]string, 200)
	for i := range pages {
		pages[i] = "https://bench.example/p/" + strconv.Itoa(i)
	}
	countries := []string{"DE", "US", "FR", "GB", "NL", "SE", "JP", "BR", ""}
	refs := []string{"", "https://news.ycombinator.com/", "https://www.google.com/", "https://t.co/x", "https://duckduckgo.com/"}
	evs := make([]event.Event, 0, 100_000)
	start := time.Now()
	for i := 0; i < o.events; i++ {
		at := now.Add(-time.Duration(r.Int64N(int64(30 * 24 * time.Hour))))
		id, _ := event.NewID(at.UnixMilli(), rand.Reader)
		name := event.KindPageview
		if r.IntN(10) == 0 {
			name = "signup"
		}
		evs = append(evs, event.Event{ID: id, Time: at.UnixMilli(), Site: "bench.example", Name: name,
			URL: pages[r.IntN(len(pages))], Referrer: refs[r.IntN(len(refs))], Country: countries[r.IntN(len(countries))]})
		if len(evs) == cap(evs) || i == o.events-1 {
			if err := c.InsertEvents(ctx, evs); err != nil {
				return err
			}
			evs = evs[:0]
		}
	}
	fmt.Fprintf(os.Stderr, "bench: dashboard: inserted in %v; waiting for the rollups ...\n", time.Since(start).Round(time.Millisecond))
	if err := waitFor(2*time.Minute, func() bool {
		rows, err := c.Query(ctx, "SELECT sum(events) FROM edgepixel.site_days WHERE site = 'bench.example'")
		return err == nil && len(rows) == 1 && rows[0][0] == strconv.Itoa(o.events)
	}); err != nil {
		return errors.New("the rollups never caught up")
	}
	questions := []struct {
		name string
		q    string
		dim  string
	}{
		{"tiles + chart, 30 days", "range=30d", ""},
		{"tiles + chart, 30 days, country=DE", "range=30d&country=DE", ""},
		{"top pages, 30 days", "range=30d", "page"},
		{"top countries, this month", "range=month", "country"},
	}
	fmt.Println()
	fmt.Printf("## dashboard: history API on %d events of one site over 30 days (%d questions each)\n", o.events, o.queries)
	for _, qq := range questions {
		var res [2]latencies
		for i, e := range []*query.Engine{{Src: c}, {Src: c, Raw: true}} {
			vals, _ := url.ParseQuery("site=bench.example&" + qq.q)
			req, err := query.ParseRequest(vals, time.Now())
			if err != nil {
				return err
			}
			for range o.queries {
				t0 := time.Now()
				if qq.dim == "" {
					_, err = e.Stats(ctx, req)
				} else {
					_, err = e.Top(ctx, req, qq.dim, 10)
				}
				if err != nil {
					return err
				}
				res[i].add(time.Since(t0))
			}
		}
		fmt.Printf("%-38s rollup p50 %7.1f ms p99 %7.1f ms   raw events p50 %7.1f ms p99 %7.1f ms   raw/rollup p99 %.1fx (goal: rollup p99 < 300 ms)\n",
			qq.name, res[0].pct(50), res[0].pct(99), res[1].pct(50), res[1].pct(99), res[1].pct(99)/res[0].pct(99))
	}
	return nil
}

// procRSS returns the process's resident memory in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}
