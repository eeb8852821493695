package main

// The dashboard section: ingest throughput of the real aggregator with
// 1,000 dashboards following /live (at one update a second) against the
// same run without them, the update latency, the aggregator's CPU and
// memory; then the history API (package query) on generated events, each
// question read from the rollups and from the raw events table.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/aggregator/query"
	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/stack"
)

type dashOptions struct {
	binDir   string
	duration time.Duration
	senders  int
	clients  int
	// clientsInBench runs the clients in this process, beside the
	// senders, rather than in a child process.
	clientsInBench bool
	rounds         int // alternating rounds without and with the clients
	events         int // generated events for the history figures
	queries        int // questions asked per figure
	// rawQueries are those asked of the raw events table, which take
	// seconds to minutes each on 10 million events, within rawBudget per
	// question.
	rawQueries int
	rawBudget  time.Duration
	// clickhouse, if set, is a server holding a previous run's events
	// (BENCH_KEEP): the history figures are measured on it alone.
	clickhouse string
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
	if o.clickhouse != "" {
		return historyFigures(o.clickhouse, o, true)
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
	if o.clients <= 0 { // history figures only
		return historyFigures(s.ClickHouse.HTTPURL, o, false)
	}
	gen := newBatchGen(500)
	if _, err := load(s.AggregatorURL, s.Secret, gen, o.senders, 2*time.Second); err != nil { // warm-up
		return err
	}
	pid := s.Aggregator.Pid()
	// partsWith is the processes whose CPU a round samples: the
	// aggregator first, the dashboards' process (f, if not nil) last.
	partsWith := func(f *follower) *cpuParts {
		var p cpuParts
		p.add("aggregator", pid)
		p.add("clickhouse-server", s.ClickHouse.Pid())
		p.add("redis-server", s.Redis.Pid())
		p.add("bench (senders)", 0)
		if f != nil {
			p.add("dashboards", f.cmd.Process.Pid)
		} else {
			p.add("dashboards", -1) // none, or in the bench's process
		}
		return &p
	}
	const aggregatorPart = 0
	// loading is set while the senders run: in-process clients count
	// updates and their latency only then, as the child process's are
	// counted by their publish time within the senders' run.
	var loading atomic.Bool
	type round struct {
		eps      float64
		rss      int64
		took     time.Duration // the senders' run
		from, to int64         // unix milliseconds the senders ran
		share    cpuShare
	}
	measure := func(what string, parts *cpuParts) (round, error) {
		if _, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), 2*time.Minute); err != nil {
			return round{}, err
		}
		if took, still := waitMerges(s.ClickHouse.HTTPURL, time.Minute); still {
			fmt.Fprintf(os.Stderr, "bench: dashboard: ClickHouse still merging after %v; measuring anyway\n", took.Round(time.Second))
		}
		fmt.Fprintf(os.Stderr, "bench: dashboard: ingest %s (%v, %d senders) ...\n", what, o.duration, o.senders)
		s0 := parts.sample()
		before := gen.sent.Load()
		start := time.Now()
		loading.Store(true)
		_, err := load(s.AggregatorURL, s.Secret, gen, o.senders, o.duration)
		loading.Store(false)
		if err != nil {
			return round{}, err
		}
		end := time.Now()
		el := end.Sub(start)
		sh := parts.share(s0, parts.sample())
		rss, _ := procRSS(pid)
		return round{float64(gen.sent.Load()-before) / el.Seconds(), rss, el, start.UnixMilli(), end.UnixMilli(), sh}, nil
	}
	// The machine's load drifts over a run and single rounds of the ratio
	// spread widely on two shared cores: rounds alternate without and with
	// the clients, each with-round is set against the mean of the
	// without-rounds either side of it, and the median of those ratios is
	// the figure.
	var lat latencies
	var msgs atomic.Int64
	var without, with []round
	var loaded time.Duration // the with-rounds' senders' runs
	rounds := max(o.rounds, 1)
	for i := range rounds {
		r, err := measure(fmt.Sprintf("without dashboards, round %d of %d", i+1, rounds), partsWith(nil))
		if err != nil {
			return err
		}
		without = append(without, r)
		fmt.Fprintf(os.Stderr, "bench: dashboard: connecting %d WebSocket clients ...\n", o.clients)
		if o.clientsInBench {
			conns, wait, err := follow(s.DashboardURL, s.DashboardToken, o.clients, func(ts int64, at time.Time) {
				if loading.Load() {
					msgs.Add(1)
					lat.add(at.Sub(time.UnixMilli(ts)))
				}
			})
			if err != nil {
				return err
			}
			r, err = measure(fmt.Sprintf("with %d dashboards, round %d of %d", o.clients, i+1, rounds), partsWith(nil))
			for _, c := range conns {
				c.Close()
			}
			wait()
			if err != nil {
				return err
			}
		} else {
			f, err := startFollower(s.DashboardURL, s.DashboardToken, o.clients)
			if err != nil {
				return err
			}
			r, err = measure(fmt.Sprintf("with %d dashboards, round %d of %d", o.clients, i+1, rounds), partsWith(f))
			if err := errors.Join(err, f.stop(r.from, r.to, &lat, &msgs)); err != nil {
				return err
			}
		}
		with = append(with, r)
		loaded += r.took
	}
	r, err := measure("without dashboards, last round", partsWith(nil))
	if err != nil {
		return err
	}
	without = append(without, r)

	// The dashboards' cost apart from ingest's noise: the stack idle (all
	// rows stored, no senders) without and with the clients, which then
	// get the once-a-second delta alone.
	var idleWithout, idleWith cpuShare
	if !o.clientsInBench {
		if _, err := waitRows(s.ClickHouse.HTTPURL, gen.sent.Load(), 2*time.Minute); err != nil {
			return err
		}
		waitMerges(s.ClickHouse.HTTPURL, time.Minute)
		idle := func(p *cpuParts) cpuShare {
			s0 := p.sample()
			time.Sleep(o.duration)
			return p.share(s0, p.sample())
		}
		fmt.Fprintf(os.Stderr, "bench: dashboard: idle without and with %d dashboards (%v each) ...\n", o.clients, o.duration)
		idleWithout = idle(partsWith(nil))
		f, err := startFollower(s.DashboardURL, s.DashboardToken, o.clients)
		if err != nil {
			return err
		}
		idleWith = idle(partsWith(f))
		var n atomic.Int64
		if err := f.stop(0, math.MaxInt64, &latencies{}, &n); err != nil {
			return err
		}
	}

	where := "in a process of their own"
	if o.clientsInBench {
		where = "in the bench's process, beside the senders"
	}
	fmt.Println()
	fmt.Println("## dashboard: live updates")
	fmt.Printf("%d rounds alternating without and with %d dashboards following /live (%s), %v of ingest each; each with-round against the mean of the without-rounds either side\n",
		rounds, o.clients, where, o.duration)
	fmt.Println("| round | events/s without (before, after) | events/s with | ratio | aggregator CPU without / with | aggregator RSS without / with |")
	fmt.Println("|---|---|---|---|---|---|")
	var ratios []float64
	for i, w := range with {
		a, b := without[i], without[i+1]
		r := w.eps / ((a.eps + b.eps) / 2)
		ratios = append(ratios, r)
		fmt.Printf("| %d | %s, %s | %s | %.3f | %.0f %% / %.0f %% | %.0f / %.0f MB |\n", i+1, fmtNum(a.eps, ""), fmtNum(b.eps, ""), fmtNum(w.eps, ""), r,
			100*(a.share.procs[aggregatorPart]+b.share.procs[aggregatorPart])/2, 100*w.share.procs[aggregatorPart], float64(a.rss)/1e6, float64(w.rss)/1e6)
	}
	slices.Sort(ratios)
	fmt.Printf("ingest with / without dashboards: median ratio %.3f of %d rounds (lowest %.3f, highest %.3f; goal >= 0.95)\n",
		ratios[len(ratios)/2], len(ratios), ratios[0], ratios[len(ratios)-1])
	fmt.Printf("updates received while ingest ran   %12d (%.2f per client per second)   latency from publish p50 %.1f ms, p99 %.1f ms\n",
		msgs.Load(), float64(msgs.Load())/float64(o.clients)/loaded.Seconds(), lat.pct(50), lat.pct(99))
	fmt.Println()
	fmt.Println("where the cores went in each round (cores used: 1.00 is one core busy throughout)")
	cols := partsWith(nil)
	fmt.Printf("| round | %s |\n", cols.header())
	fmt.Printf("|---|%s\n", strings.Repeat("---|", len(cols.names)+1))
	for i := range without {
		fmt.Printf("| without %d | %s |\n", i+1, without[i].share.cells())
		if i < len(with) {
			fmt.Printf("| with %d | %s |\n", i+1, with[i].share.cells())
		}
	}
	if !o.clientsInBench {
		fmt.Printf("| idle, without | %s |\n", idleWithout.cells())
		fmt.Printf("| idle, with | %s |\n", idleWith.cells())
		fmt.Printf("the dashboards' own cost, idle (a delta a second to each): aggregator %.1f ms of CPU a second more with them than without (%.2f %% of the machine), their process %.1f ms a second\n",
			1000*(idleWith.procs[aggregatorPart]-idleWithout.procs[aggregatorPart]), 100*(idleWith.procs[aggregatorPart]-idleWithout.procs[aggregatorPart])/float64(runtime.NumCPU()),
			1000*idleWith.procs[len(idleWith.procs)-1])
	}

	if o.events <= 0 {
		return nil
	}
	return historyFigures(s.ClickHouse.HTTPURL, o, false)
}

// follow connects n clients to the dashboard's /live WebSocket, each
// reading every message and calling got (from any goroutine) with each
// delta's publish time and when it arrived. wait returns once every
// client's reader ended (after the caller closed conns).
func follow(dashboardURL, token string, n int, got func(ts int64, at time.Time)) (conns []*websocket.Conn, wait func(), err error) {
	u := "ws" + strings.TrimPrefix(dashboardURL, "http") + "/live"
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	var wg sync.WaitGroup
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(u, hdr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			wg.Wait()
			return nil, nil, fmt.Errorf("client %d: %w", len(conns), err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					return
				}
				if ts, ok := deltaTS(b); ok {
					got(ts, time.Now())
				}
			}
		})
	}
	return conns, wg.Wait, nil
}

// followerFlag runs this command as the child process that holds the
// dashboards (startFollower), with this many clients.
const followerFlag = "internal-follow-live"

// follower is a child process holding the dashboards, so their
// goroutines and garbage share the machine's cores with the senders but
// not their Go runtime, as dashboards on other machines would not.
type follower struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startFollower starts the child with n clients and returns once all are
// connected.
func startFollower(dashboardURL, token string, n int) (*follower, error) {
	cmd := exec.Command(os.Args[0], "-"+followerFlag, strconv.Itoa(n), "-follow-url", dashboardURL)
	cmd.Env = append(os.Environ(), "EDGEPIXEL_BENCH_FOLLOW_TOKEN="+token)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &follower{cmd: cmd, stdin: in, out: bufio.NewScanner(out)}
	if !f.out.Scan() || f.out.Text() != "ready" {
		in.Close()
		cmd.Wait()
		return nil, fmt.Errorf("the dashboards' process did not connect its clients (%s)", f.out.Text())
	}
	return f, nil
}

// stop disconnects the clients and counts into lat and msgs the deltas
// published between from and to (unix milliseconds).
func (f *follower) stop(from, to int64, lat *latencies, msgs *atomic.Int64) error {
	f.stdin.Close()
	for f.out.Scan() {
		var ts, us int64
		if _, err := fmt.Sscan(f.out.Text(), &ts, &us); err != nil {
			continue
		}
		if ts >= from && ts <= to {
			msgs.Add(1)
			lat.add(time.Duration(us) * time.Microsecond)
		}
	}
	return f.cmd.Wait()
}

// runFollower is the child's side of startFollower: it connects n clients,
// says "ready", and once its stdin closes disconnects them and writes one
// line per delta received: its publish time (unix milliseconds) and its
// latency (microseconds).
func runFollower(dashboardURL string, n int) error {
	type rec struct{ ts, us int64 }
	var mu sync.Mutex
	var recs []rec
	conns, wait, err := follow(dashboardURL, os.Getenv("EDGEPIXEL_BENCH_FOLLOW_TOKEN"), n, func(ts int64, at time.Time) {
		mu.Lock()
		recs = append(recs, rec{ts, at.Sub(time.UnixMilli(ts)).Microseconds()})
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	wait()
	w := bufio.NewWriter(os.Stdout)
	for _, r := range recs {
		fmt.Fprintln(w, r.ts, r.us)
	}
	return w.Flush()
}

// historyFigures inserts generated events for one site over the last 30
// days and times each question of the page from the rollups and from the
// raw events table.
//
// With reuse, the events are those a previous run inserted into the
// server at chURL (kept with BENCH_KEEP), which has o.events of them.
func historyFigures(chURL string, o dashOptions, reuse bool) error {
	ctx := context.Background()
	c, err := clickhouse.New(chURL, "edgepixel")
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	var backfilled []string // how the rollups a kept server lacked were backfilled
	if reuse {
		// A server kept by an earlier version: migrated and the tables
		// of the newer steps backfilled, as an aggregator's start and
		// its lease holder would.
		if _, err := c.Migrate(ctx); err != nil {
			return err
		}
		for _, b := range c.Backfills() {
			bstart := time.Now()
			res, err := b.Run(ctx)
			if err != nil {
				return err
			}
			if len(res.Rebuilt) > 0 {
				line := fmt.Sprintf("%s backfilled: %d months in %v", b.Table, len(res.Rebuilt), time.Since(bstart).Round(time.Millisecond))
				backfilled = append(backfilled, line)
				fmt.Fprintf(os.Stderr, "bench: dashboard: migrated; %s\n", line)
			}
		}
	}
	if !reuse {
		fmt.Fprintf(os.Stderr, "bench: dashboard: inserting %d generated events for one site ...\n", o.events)
		if err := insertVisits(ctx, c, "bench.example", o.events, time.Now().UTC()); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: dashboard: inserted in %v; waiting for the rollups ...\n", time.Since(start).Round(time.Millisecond))
	}
	if err := waitFor(2*time.Minute, func() bool {
		rows, err := c.Query(ctx, "SELECT sumMerge(events) FROM edgepixel."+clickhouse.Grains[2].Table+" WHERE site = 'bench.example'")
		return err == nil && len(rows) == 1 && rows[0][0] == strconv.Itoa(o.events)
	}); err != nil {
		return errors.New("the rollups never caught up")
	}
	// The rollups' lease holder stores settled visit hours every minute;
	// here they are built at once, as it would for the inserted history.
	start = time.Now()
	hours, err := c.BuildVisitHours(ctx, time.Now().Add(-clickhouse.SegmentSeconds*time.Second))
	if err != nil {
		return err
	}
	buildTook := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench: dashboard: %d visit hours built in %v\n", hours, buildTook.Round(time.Millisecond))
	start = time.Now()
	dimHours, err := c.BuildVisitDims(ctx, time.Now().Add(-clickhouse.SegmentSeconds*time.Second))
	if err != nil {
		return err
	}
	dimsTook := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench: dashboard: %d visit dim hours built in %v\n", dimHours, dimsTook.Round(time.Millisecond))
	// The lease holder also compacts rollup partitions that went
	// quiet; the generated history is quiet once inserted, and each of
	// its insert blocks spans the whole month, leaving every day's row
	// in every part until merged.
	start = time.Now()
	parts, err := c.CompactRollups(ctx, 0)
	if err != nil {
		return err
	}
	compactTook := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench: dashboard: %d rollup partitions compacted in %v\n", parts, compactTook.Round(time.Millisecond))
	sizes, _ := c.Query(ctx, "SELECT table, sum(rows) FROM system.parts WHERE database = 'edgepixel' AND active AND table IN ('events', '"+
		clickhouse.VisitsTable+"', '"+clickhouse.VisitHoursTable+"', '"+clickhouse.VisitDimsTable+"', '"+clickhouse.DimTable+"', '"+clickhouse.DimDayTable+"', '"+clickhouse.MinuteAudienceTable+"', '"+clickhouse.MinuteSourcesTable+"', '"+clickhouse.PropsTable+"', '"+clickhouse.PropsDimsTable+"', '"+clickhouse.HumanHoursTable+"', '"+clickhouse.HumanDaysTable+"', '"+clickhouse.BotDimHoursTable+"', '"+clickhouse.BotDimDaysTable+"', '"+clickhouse.MixHoursTable+"', '"+clickhouse.OpensHoursTable+"', '"+clickhouse.OpensDaysTable+"', '"+clickhouse.PageDimsTable+"', '"+clickhouse.Grains[0].Table+"') GROUP BY table ORDER BY table")
	questions := []struct {
		name string
		q    string
		dim  string
	}{
		{"tiles (visitors, visits, bounce) + chart, 30 days", "range=30d", ""},
		{"tiles + chart, this month", "range=month", ""},
		{"tiles + chart, 7 days", "range=7d", ""},
		{"tiles + chart, yesterday", "range=yesterday", ""},
		{"tiles + chart, today", "range=today", ""},
		{"tiles + chart, 30 days, country=DE", "range=30d&country=DE", ""},
		{"tiles + chart, 30 days, page=/p/7", "range=30d&page=/p/7", ""},
		{"tiles + chart, 7 days, browser=Safari", "range=7d&browser=Safari", ""},
		{"tiles + chart, 30 days, country=DE&device=mobile", "range=30d&country=DE&device=mobile", ""},
		{"top pages, 30 days", "range=30d", "page"},
		{"top browsers, 30 days", "range=30d", "browser"},
		{"top channels, 7 days", "range=7d", "channel"},
		{"top countries, this month", "range=month", "country"},
		{"entry pages, 30 days", "range=30d", "entry_page"},
		{"exit pages, 30 days", "range=30d", "exit_page"},
		{"entry pages, 7 days", "range=7d", "entry_page"},
		{"top countries, 30 days, country=DE", "range=30d&country=DE", "country"},
		{"top pages, 30 days, country=DE", "range=30d&country=DE", "page"},
		{"top props, 30 days", "range=30d", "props"},
		{"top props, 30 days, event=signup", "range=30d&event=signup", "props"},
		{"top props, 30 days, country=DE", "range=30d&country=DE", "props"},
		{"top props, 30 days, event=signup&device=mobile", "range=30d&event=signup&device=mobile", "props"},
		{"top props, 7 days, page=/p/7", "range=7d&page=/p/7", "props"},
		{"tiles + chart, 30 days, channel=search&country=DE", "range=30d&channel=search&country=DE", ""},
		{"top pages, 30 days, referrer=www.google.com", "range=30d&referrer=www.google.com", "page"},
		{"top sources, 30 days, page=/p/7", "range=30d&page=/p/7", "referrer"},
		{"top countries, 30 days, page=/p/7", "range=30d&page=/p/7", "country"},
		{"top pages, 30 days, event=signup", "range=30d&event=signup", "page"},
		{"top sources, 30 days, country=DE", "range=30d&country=DE", "referrer"},
		{"top props, 30 days, country=DE&device=mobile", "range=30d&country=DE&device=mobile", "props"},
		{"quality: bot share and consent tiers, 30 days", "range=30d", "mix"},
		{"tiles + chart, 30 days, bots=exclude", "range=30d&bots=exclude", ""},
		{"top pages, 30 days, bots=exclude", "range=30d&bots=exclude", "page"},
		{"tiles + chart, 7 days, bots=exclude", "range=7d&bots=exclude", ""},
		{"top sources, 30 days, bots=exclude", "range=30d&bots=exclude", "referrer"},
		{"top countries, 30 days, country=DE, bots=exclude", "range=30d&country=DE&bots=exclude", "country"},
		{"tiles + chart, 30 days, country=DE, bots=exclude", "range=30d&country=DE&bots=exclude", ""},
		{"top pages, 30 days, country=DE, bots=exclude", "range=30d&country=DE&bots=exclude", "page"},
		{"top email opens, 30 days", "range=30d", "mail_open"},
		{"top email opens, 30 days, bots=exclude", "range=30d&bots=exclude", "mail_open"},
		{"top signatures, 30 days, mail_open=" + mailopen.Apple, "range=30d&mail_open=" + mailopen.Apple, "signature"},
		{"tiles + chart, 30 days, mail_open=" + mailopen.Gmail, "range=30d&mail_open=" + mailopen.Gmail, ""},
		{"top pages, 30 days, signature=verified", "range=30d&signature=verified", "page"},
	}
	fmt.Println()
	fmt.Printf("## dashboard: history API on %d events of one site over 30 days (%d questions each from the rollups, %d from the raw events)\n", o.events, o.queries, o.rawQueries)
	for _, r := range sizes {
		fmt.Printf("rows in %-18s %12s\n", r[0], r[1])
	}
	fmt.Printf("visit hours built   %d in %v (the lease holder's first build over the inserted history)\n", hours, buildTook.Round(time.Millisecond))
	fmt.Printf("visit dims built    %d hours in %v (likewise: visits per dimension value, entry and exit pages)\n", dimHours, dimsTook.Round(time.Millisecond))
	fmt.Printf("rollups compacted   %d partitions in %v (the lease holder's compaction of quiet partitions)\n", parts, compactTook.Round(time.Millisecond))
	for _, line := range backfilled {
		fmt.Printf("%s (the kept server migrated)\n", line)
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average        %s", la)
	}
	for _, qq := range questions {
		var res [2]latencies
		var src string        // the tables the rollup engine read
		var answers [2]string // the tiles' exact figures from each engine

		for i, e := range []*query.Engine{{Src: c}, {Src: c, Raw: true}} {
			vals, _ := url.ParseQuery("site=bench.example&" + qq.q)
			req, err := query.ParseRequest(vals, time.Now())
			if err != nil {
				return err
			}
			n := o.queries
			qctx, cancel := context.WithCancel(ctx)
			if e.Raw {
				n = max(1, o.rawQueries)
				// The raw table takes minutes per question on 10
				// million events: a question is given up after the
				// budget, and the figure says so.
				qctx, cancel = context.WithTimeout(ctx, o.rawBudget)
			}
			for range n {
				t0 := time.Now()
				if qq.dim == "mix" {
					var m query.Mix
					m, err = e.Mix(qctx, req)
					if !e.Raw {
						src = m.Source
					}
					if err == nil {
						answers[i] = fmt.Sprintf("bots=%d/%d tiers=%v", m.Bots, m.Events, m.Tiers)
					}
				} else if qq.dim == "" {
					var st query.Stats
					st, err = e.Stats(qctx, req)
					if !e.Raw {
						src = st.Source + "+" + st.VisitsSource
					}
					if err == nil {
						answers[i] = exactFigures(st)
					}
				} else {
					var top query.Top
					top, err = e.Top(qctx, req, qq.dim, 10)
					if !e.Raw {
						src = top.Source
					}
				}
				if err != nil && e.Raw && qctx.Err() != nil {
					// The server goes on with a query whose client
					// left: stop it, so that it does not slow the
					// next figures.
					c.Exec(ctx, "KILL QUERY WHERE query LIKE '%bench.example%' AND query NOT LIKE 'KILL%' SYNC")
					break
				}
				if err != nil {
					cancel()
					return err
				}
				res[i].add(time.Since(t0))
			}
			cancel()
		}
		raw := fmt.Sprintf("raw events p50 %7.1f ms p99 %7.1f ms   raw/rollup p99 %.1fx", res[1].pct(50), res[1].pct(99), res[1].pct(99)/res[0].pct(99))
		if res[1].n() == 0 {
			raw = fmt.Sprintf("raw events not answered within %v   raw/rollup p99 > %.0fx", o.rawBudget, float64(o.rawBudget.Milliseconds())/res[0].pct(99))
		}
		switch {
		case answers[1] == "":
		case answers[0] == answers[1]:
			raw += "; same figures"
		default:
			raw += fmt.Sprintf("; FIGURES DIFFER: rollups %s, raw %s", answers[0], answers[1])
		}
		fmt.Printf("%-50s rollup p50 %7.1f ms p99 %7.1f ms   %s (goal: rollup p99 < 300 ms; read %s)\n", qq.name, res[0].pct(50), res[0].pct(99), raw, src)
	}
	return nil
}

// insertVisits stores n events of site over the 30 days before now,
// generated by ClickHouse itself (a Go client cannot feed it as fast), in
// visits of 4 events 10 s to 5 min apart by visitors from a pool of
// 500,000; a tenth of the events are custom events, with props (a plan
// of three and a step of ten); a twentieth of the visitors are bots and
// a tenth in the aggregate consent tier (no visitor id); referrer and channel
// vary per visit, geography, browser, OS and device per visitor (as the
// edge's visitor id, a hash of address and user agent, makes them); a
// twentieth of the visits are email opens, by who fetched them, most of
// them signed. The
// views roll them up as they are inserted, as they would live events.
func insertVisits(ctx context.Context, c *clickhouse.Client, site string, n int, now time.Time) error {
	const chunk = 1_000_000
	quoted := make([]string, len(event.MailOpens))
	for i, k := range event.MailOpens {
		quoted[i] = clickhouse.Quote(k)
	}
	mailOpens := "[" + strings.Join(quoted, ", ") + "]" // who fetched an email open
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		sql := fmt.Sprintf(`INSERT INTO %[1]s.events (event_id, ts, ts_ms, site, name, props, url, referrer, country, region, channel, browser, os, device, visitor_id, bot_score, tier, mail_open, signature)
SELECT generateUUIDv4(), toDateTime(intDiv(ms, 1000)), ms, %[2]s,
	if(cityHash64(number, 2) %% 10 = 0, 'signup', 'pageview'),
	if(cityHash64(number, 2) %% 10 = 0, concat('{"plan":"', ['free', 'pro', 'team'][cityHash64(vi, 10) %% 3 + 1], '","step":', toString(cityHash64(number, 11) %% 10), '}'), ''),
	concat('https://', %[2]s, '/p/', toString(cityHash64(number, 3) %% 200)),
	['', 'https://news.ycombinator.com/', 'https://www.google.com/', 'https://t.co/x', 'https://duckduckgo.com/'][r + 1],
	['DE', 'US', 'FR', 'GB', 'NL', 'SE', 'JP', 'BR', ''][g + 1],
	['DE-BE', 'US-CA', 'FR-IDF', 'GB-LND', 'NL-NH', 'SE-AB', 'JP-13', 'BR-SP', ''][g + 1],
	['direct', 'referral', 'search', 'social', 'search'][r + 1],
	['Chrome', 'Safari', 'Firefox', 'Edge', 'Samsung Internet'][cityHash64(vi, 5) %% 5 + 1],
	['Windows', 'macOS', 'iOS', 'Android', 'Linux'][cityHash64(vi, 6) %% 5 + 1],
	['desktop', 'mobile', 'tablet'][cityHash64(vi, 7) %% 3 + 1],
	if(cityHash64(vi, 13) %% 10 = 0, 0, vi),
	if(cityHash64(vi, 12) %% 20 = 0, 90, 0),
	if(cityHash64(vi, 13) %% 10 = 0, 'aggregate', 'full'),
	if(cityHash64(v, 14) %% 20 = 0, %[6]s[cityHash64(v, 15) %% %[7]d + 1], ''),
	if(cityHash64(v, 14) %% 20 = 0, ['verified', 'verified', 'unsigned'][cityHash64(v, 16) %% 3 + 1], '')
FROM (SELECT number, intDiv(number, 4) AS v, cityHash64(v) %% 500000 + 1 AS vi, cityHash64(v, 8) %% 5 AS r, cityHash64(vi, 9) %% 9 AS g,
	(%[3]d - 1800 - cityHash64(v, 1) %% (30 * 86400)) * 1000 + (number %% 4) * (10000 + cityHash64(number, 4) %% 290000) AS ms
	FROM numbers(%[4]d, %[5]d))`, c.DB(), clickhouse.Quote(site), now.Unix(), off, m, mailOpens, len(event.MailOpens))
		if err := c.Exec(ctx, sql); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: dashboard: %d of %d events inserted\n", off+m, n)
	}
	return nil
}

// exactFigures are the tiles of st that both engines count exactly (not
// the visitors, an estimate each computes from its own rows), this
// period's and the previous one's.
func exactFigures(st query.Stats) string {
	var b strings.Builder
	for _, m := range st.Metrics {
		if m.Name != "visitors" && m.Value != nil && m.Previous != nil {
			fmt.Fprintf(&b, "%s=%v/%v ", m.Name, *m.Value, *m.Previous)
		}
	}
	return strings.TrimSpace(b.String())
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

// deltaTS reads a live message's publish time (live.Message.TS) if it
// is a delta. The dashboards run on the measured machine, so they read
// only the two fields they time rather than decoding every message: a
// full decode would be their own CPU, not the aggregator's, taken from
// the ingest being measured.
func deltaTS(b []byte) (int64, bool) {
	if !bytes.HasPrefix(b, []byte(`{"type":"`+live.TypeDelta+`"`)) {
		return 0, false
	}
	i := bytes.LastIndex(b, []byte(`"ts":`))
	if i < 0 {
		return 0, false
	}
	ts, err := strconv.ParseInt(string(bytes.TrimSuffix(b[i+len(`"ts":`):], []byte("}"))), 10, 64)
	return ts, err == nil
}
