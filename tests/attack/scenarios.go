package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// The limits a whole stack under attack runs with (PopArgs,
// AggregatorArgs): low enough that the documented memory bounds are tight,
// deadlines short enough that each attack's connections are dealt with
// while a scenario runs. The bounds are computed from the same values.
const (
	PopInstances       = 2
	PopMaxInstances    = 4
	PopMaxConns        = 1500
	PopMaxConnsPerAddr = 256
	PopBodyMemory      = 32 << 20
	PopHeaderTimeout   = 2 * time.Second
	PopBodyIdleTimeout = 2 * time.Second
	PopBodyTimeout     = 4 * time.Second

	AggMaxConns          = 2048
	AggMaxConnsPerClient = 256
	AggMaxBody           = 4 << 20
	AggMaxBodyMemory     = 64 << 20
	AggMaxHeaderBytes    = 16 << 10
	AggHeaderTimeout     = 2 * time.Second
	AggBodyTimeout       = 3 * time.Second
	AggMaxSites          = 100
	AggLoaderMaxRows     = 50000 // the default
	AggGCPercent         = 400   // the default
	AggMemoryLimit       = 384 << 20
	AggFailAfter         = 5 * time.Second
	AggExitDelay         = time.Second
	AdminToken           = "hostile-admin-token-0123456789abcdef"
)

// PopArgs are edgepixel-pop's flags for a stack under attack, with its
// admin endpoints (/metrics) on adminAddr.
func PopArgs(adminAddr string) []string {
	return []string{
		"--admin-addr", adminAddr,
		"--instances", strconv.Itoa(PopInstances), "--max-instances", strconv.Itoa(PopMaxInstances),
		"--max-conns", strconv.Itoa(PopMaxConns), "--max-conns-per-addr", strconv.Itoa(PopMaxConnsPerAddr),
		"--body-memory", strconv.Itoa(PopBodyMemory),
		"--header-timeout", PopHeaderTimeout.String(), "--body-idle-timeout", PopBodyIdleTimeout.String(),
		"--body-timeout", PopBodyTimeout.String(),
	}
}

// AggregatorArgs are edgepixel-aggregator's flags for a stack under attack.
func AggregatorArgs() []string {
	return []string{
		"--max-conns", strconv.Itoa(AggMaxConns), "--max-conns-per-client", strconv.Itoa(AggMaxConnsPerClient),
		"--max-body", strconv.Itoa(AggMaxBody), "--max-body-memory", strconv.Itoa(AggMaxBodyMemory),
		"--max-header-bytes", strconv.Itoa(AggMaxHeaderBytes),
		"--read-header-timeout", AggHeaderTimeout.String(), "--body-timeout", AggBodyTimeout.String(),
		"--max-sites", strconv.Itoa(AggMaxSites), "--admin-token", AdminToken,
		"--loader-max-rows", strconv.Itoa(AggLoaderMaxRows), "--gc-percent", strconv.Itoa(AggGCPercent),
		"--memory-limit", strconv.Itoa(AggMemoryLimit),
		"--fail-after", AggFailAfter.String(), "--exit-delay", AggExitDelay.String(),
	}
}

// PopBoundFor is the POP's documented bound under PopArgs, start being its
// resident memory once serving. Every instance counts at Fastly's limit:
// the edge module's grow with the events they buffer.
func PopBoundFor(start int64) PopBound {
	return PopBound{Start: start, Max: PopMaxInstances, Instance: PopInstanceLimit, MaxConns: PopMaxConns, BodyMemory: PopBodyMemory}
}

// AggregatorBoundFor is the aggregator's documented bound under
// AggregatorArgs.
var AggregatorBoundFor = AggregatorBound{LoaderMaxRows: AggLoaderMaxRows, MaxConns: AggMaxConns, GCPercent: AggGCPercent,
	MaxBodyMemory: AggMaxBodyMemory, MemoryLimit: AggMemoryLimit}

// Targets are the servers of one stack that scenarios attack.
type Targets struct {
	Pop, PopAdmin, Aggregator string // http://host:port
	// Dashboard is the aggregator's private listener, DashboardToken its
	// admin token.
	Dashboard, DashboardToken string
	Secret                    []byte // the aggregator's HMAC secret
	PopPid, AggregatorPid     int
	AggregatorLog             string // the file the aggregator logs to
}

// UnderAttack returns o with the flags of a stack under attack (PopArgs,
// with the POP's admin endpoints on a free loopback address, and
// AggregatorArgs), and what finds the targets in the stack once started.
func UnderAttack(o stack.Options) (stack.Options, func(*stack.Stack) Targets, error) {
	admin, err := proc.FreeAddr()
	if err != nil {
		return o, nil, err
	}
	o.PopArgs = append(PopArgs(admin), o.PopArgs...)
	o.AggregatorArgs = append(AggregatorArgs(), o.AggregatorArgs...)
	return o, func(s *stack.Stack) Targets {
		return Targets{Pop: s.PopURL, PopAdmin: "http://" + admin, Aggregator: s.AggregatorURL, Dashboard: s.DashboardURL, DashboardToken: s.DashboardToken, Secret: s.Secret,
			PopPid: s.Pop.Pid(), AggregatorPid: s.Aggregator.Pid(), AggregatorLog: s.Aggregator.Log}
	}, nil
}

// IdleConns is how many connections the idle-connection attack can open
// from this process: the 20,000, or fewer where the open-file
// limit (raised as far as allowed) leaves less room.
func IdleConns() int {
	return min(20000, int(RaiseOpenFiles(30000))-4000)
}

func hostOf(u string) string { return strings.TrimPrefix(u, "http://") }

// A Scenario is one kind of hostile traffic against a whole stack, aimed
// at the endpoints it targets.
type Scenario struct {
	Name string
	// Start begins the attack and returns once it holds.
	Start func(t Targets) (*Attack, error)
}

// Attack is a scenario under way.
type Attack struct {
	stop func(o *Outcome)
}

// Stop ends the attack (waiting at most a few seconds for the servers'
// deadlines to deal with what it left) and says what happened.
func (a *Attack) Stop() Outcome {
	o := Outcome{Stored: map[string]int{}}
	a.stop(&o)
	return o
}

// Outcome is what an attack met.
type Outcome struct {
	Notes []string // what the servers answered, one line each
	// Problems are guarantees the attack broke: a test fails on each.
	Problems []string
	// Stored holds, by site pattern (ClickHouse LIKE), how many events
	// the attack got answered 2xx: each must be stored exactly once.
	Stored map[string]int
}

func (o *Outcome) note(format string, args ...any) {
	o.Notes = append(o.Notes, fmt.Sprintf(format, args...))
}

func (o *Outcome) problem(format string, args ...any) {
	o.Problems = append(o.Problems, fmt.Sprintf(format, args...))
}

// report notes a crowd's report and checks that the server ended every
// connection and answered each, if at all, with one of statuses.
func (o *Outcome) report(what string, r Report, statuses ...int) {
	o.note("%s: %v", what, r)
	if r.Conns == 0 {
		o.problem("%s: no connection could be opened", what)
	}
	if r.Open() > 0 {
		o.problem("%s: %d connections still open after the server's deadlines", what, r.Open())
	}
	for s, n := range r.First {
		if s != 0 && !contains(statuses, s) {
			o.problem("%s: %d connections answered %d, want %v or none", what, n, s, statuses)
		}
	}
	if r.More > 0 {
		o.problem("%s: %d connections answered more than once", what, r.More)
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Source addresses of the attacks: the POP's, the aggregator's, and a
// crowd large enough for idle connections past any per-address limit.
var (
	popSources   = Addrs("127.0.2.1", 16)
	aggSources   = Addrs("127.0.3.1", 16)
	crowdSources = Addrs("127.0.4.1", 100)
)

// Scenarios are the attacks on a whole stack, in the order they run.
// idleConns is how many idle connections the idle-connection attack opens
// at the POP (the 20,000 needs as many file descriptors here).
func Scenarios(idleConns int) []Scenario {
	return []Scenario{
		{"stalled bodies", stalledBodies},
		{"slow bodies", slowBodies},
		{"slow headers", slowHeaders},
		{"unfinished huge headers", hugeHeaders},
		{"idle connections", func(t Targets) (*Attack, error) { return idle(t, idleConns) }},
		{"file descriptors exhausted", fdExhausted},
		{"conflicting framing", conflictingFraming},
		{"large bodies, unsigned", largeBodies},
		{"distinct site names", siteFlood},
		{"oversized NDJSON", oversizedNDJSON},
		{"admin token guessing", tokenGuessing},
	}
}

// StalledPost is the head of a POST /e that declares a 10,000-byte body,
// which the first repro sends and then nothing.
var StalledPost = []byte("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")

// stalledBodies: heads that declare a body, then nothing; at the
// aggregator the 1,000 connections declaring 4 MiB before any
// signature is checked.
func stalledBodies(t Targets) (*Attack, error) {
	pop := Open(hostOf(t.Pop), popSources[:4], 256, Send(StalledPost))
	agg := Open(hostOf(t.Aggregator), aggSources[:4], 1000, Send(ForgedIngestHead("Content-Length: 4194304\r\n")))
	return &Attack{stop: func(o *Outcome) {
		o.report("POP, POST /e declaring 10000 bytes", pop.Stop(PopBodyIdleTimeout+time.Second), 408)
		o.report("aggregator, /ingest declaring 4 MiB", agg.Stop(AggBodyTimeout+time.Second), 408, 429)
	}}, nil
}

// slowBodies: bodies arriving a byte every 100 ms, never idle long
// enough for the idle deadline, never done.
func slowBodies(t Targets) (*Attack, error) {
	x := []byte("x")
	one := func(int) []byte { return x }
	pop := Open(hostOf(t.Pop), popSources[:4], 256, Trickle(StalledPost, 100*time.Millisecond, 1000, one))
	agg := Open(hostOf(t.Aggregator), aggSources[:4], 256, Trickle(ForgedIngestHead("Content-Length: 4194304\r\n"), 100*time.Millisecond, 1000, one))
	return &Attack{stop: func(o *Outcome) {
		o.report("POP, POST /e a byte every 100 ms", pop.Stop(PopBodyTimeout+time.Second), 408)
		// 429: an address refused for failed signatures earlier is refused
		// before its body is read.
		o.report("aggregator, /ingest a byte every 100 ms", agg.Stop(AggBodyTimeout+time.Second), 408, 429)
	}}, nil
}

// slowHeaders: request heads arriving a line (POP) or a byte (aggregator)
// every 200 ms.
func slowHeaders(t Targets) (*Attack, error) {
	pop := Open(hostOf(t.Pop), popSources[:4], 500, Trickle([]byte("GET /p.gif?site=slow HTTP/1.1\r\n"), 200*time.Millisecond, 1000,
		func(i int) []byte { return fmt.Appendf(nil, "X-Slow-%d: y\r\n", i) }))
	x := []byte("X")
	agg := Open(hostOf(t.Aggregator), aggSources[:4], 500, Trickle([]byte("POST /ingest HTTP/1.1\r\nHost: x\r\n"), 200*time.Millisecond, 1000,
		func(int) []byte { return x }))
	return &Attack{stop: func(o *Outcome) {
		o.report("POP, a header line every 200 ms", pop.Stop(PopHeaderTimeout+time.Second))
		// net/http answers 400 when its header deadline passes in the
		// middle of a line (and closes): closed, if not silently.
		o.report("aggregator, a header byte every 200 ms", agg.Stop(AggHeaderTimeout+time.Second), 400)
	}}, nil
}

// HugeHead is the start of a request head whose header X-Fill the caller
// goes on writing.
func HugeHead(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: x\r\nX-Fill: ")
}

// Repeated is n times the same part, for Send: a megabyte head as 16
// writes of one shared 64 KiB chunk.
func Repeated(part []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = part
	}
	return out
}

// hugeHeads: the 1,000 connections with unfinished 1 MB heads
// (cut at the POP's 69 KB limit, 431), heads held just under it until the
// header deadline, and 1 MB heads at the aggregator.
func hugeHeaders(t Targets) (*Attack, error) {
	chunk := bytes.Repeat([]byte("g"), 64<<10)
	cut := Open(hostOf(t.Pop), popSources[:4], 1000, Send(append([][]byte{HugeHead("/p.gif?site=huge")}, Repeated(chunk, 16)...)...))
	held := Open(hostOf(t.Pop), popSources[4:6], 300, Send(HugeHead("/p.gif?site=huge"), bytes.Repeat([]byte("h"), 70<<10)))
	line := []byte("X-Filler: " + strings.Repeat("a", 64<<10) + "\r\n")
	agg := Open(hostOf(t.Aggregator), aggSources[:2], 500, Send(append([][]byte{[]byte("POST /ingest HTTP/1.1\r\nHost: x\r\n")}, Repeated(line, 16)...)...))
	return &Attack{stop: func(o *Outcome) {
		o.report("POP, 1 MB heads", cut.Stop(PopHeaderTimeout+time.Second), 431)
		o.report("POP, 70 KiB heads held", held.Stop(PopHeaderTimeout+time.Second))
		o.report("aggregator, 1 MB heads", agg.Stop(AggHeaderTimeout+time.Second), 431)
	}}, nil
}

// Healthz is a whole request, answered and then left idle (keep-alive).
var Healthz = []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")

// idle: n keep-alive connections at the POP, far past --max-conns, and
// 3,000 at the aggregator, past its --max-conns.
func idle(t Targets, n int) (*Attack, error) {
	evicted0, _ := Metric(t.PopAdmin+"/metrics", `edgepixel_pop_conns_evicted_total{reason="max_conns"}`)
	pop := Open(hostOf(t.Pop), crowdSources, n, Send(Healthz))
	agg := Open(hostOf(t.Aggregator), aggSources[:12], 3000, Send(Healthz))
	return &Attack{stop: func(o *Outcome) {
		open, err := Metric(t.PopAdmin+"/metrics", "edgepixel_pop_conns_open")
		evicted, _ := Metric(t.PopAdmin+"/metrics", `edgepixel_pop_conns_evicted_total{reason="max_conns"}`)
		rp, ra := pop.Stop(0), agg.Stop(0)
		o.note("POP, %d idle keep-alive connections: %v; %.0f open at the end, %.0f closed to make room", n, rp, open, evicted-evicted0)
		o.note("aggregator, 3000 idle keep-alive connections: %v", ra)
		switch {
		case err != nil:
			o.problem("POP /metrics: %v", err)
		case open > PopMaxConns:
			o.problem("POP: %.0f connections open, over --max-conns %d", open, PopMaxConns)
		case rp.Conns > PopMaxConns && evicted-evicted0 < float64(rp.Conns-PopMaxConns):
			o.problem("POP: %.0f idle connections closed to make room for %d, want at least %d", evicted-evicted0, rp.Conns, rp.Conns-PopMaxConns)
		}
		if ra.First[200] > AggMaxConns || ra.First[503] == 0 {
			o.problem("aggregator: %d of 3000 connections served, %d refused; want at most --max-conns %d served", ra.First[200], ra.First[503], AggMaxConns)
		}
	}}, nil
}

// fdExhausted lowers the POP's open-file limit to what it has open plus
// 200, then opens 1,000 connections: accept runs out of descriptors.
func fdExhausted(t Targets) (*Attack, error) {
	m := func(s string) float64 {
		v, _ := Metric(t.PopAdmin+"/metrics", `edgepixel_pop_`+s+`{reason="fd_limit"}`)
		return v
	}
	errs0, ev0 := m("accept_errors_total"), m("conns_evicted_total")
	open, err := OpenFiles(t.PopPid)
	if err != nil {
		return nil, err
	}
	restore, err := LimitOpenFiles(t.PopPid, uint64(open+200))
	if err != nil {
		return nil, err
	}
	pop := Open(hostOf(t.Pop), popSources[:8], 1000, Send(Healthz))
	return &Attack{stop: func(o *Outcome) {
		r := pop.Stop(0)
		if err := restore(); err != nil {
			o.problem("restoring the POP's open-file limit: %v", err)
		}
		errs, ev := m("accept_errors_total")-errs0, m("conns_evicted_total")-ev0
		o.note("POP limited to %d open files, 1000 keep-alive connections: %v; accept out of descriptors %.0f times, %.0f connections closed to get one back", open+200, r, errs, ev)
		if errs == 0 {
			o.problem("accept never ran out of descriptors: the attack did not reach the limit")
		} else if ev == 0 {
			o.problem("no waiting connection was closed to get a descriptor back")
		}
	}}, nil
}

// conflictingFraming: Content-Length with Transfer-Encoding, a second
// request hidden after the chunked body. At the POP the chunked body is a
// real event (stored once) and the hidden one a pixel hit for site
// "smuggled" (never served, so never stored).
func conflictingFraming(t Targets) (*Attack, error) {
	smuggled := "GET /p.gif?site=smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	body := Chunked(`{"site":"framing","name":"framing","url":"https://framing.example/"}`) + smuggled
	popReq := "POST /e HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nTransfer-Encoding: chunked\r\n\r\n" + body
	pop := Open(hostOf(t.Pop), popSources[:2], 200, Send([]byte(popReq)))
	aggReq := append(ForgedIngestHead("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"), Chunked("abc")+"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"...)
	agg := Open(hostOf(t.Aggregator), aggSources[:2], 200, Send(aggReq))
	return &Attack{stop: func(o *Outcome) {
		rp := pop.Stop(5 * time.Second)
		o.report("POP, POST /e with both framings", rp, 204)
		o.Stored["framing"] = rp.First[204]
		o.Stored["smuggled"] = 0
		ra := agg.Stop(5 * time.Second)
		o.report("aggregator, /ingest with both framings", ra, 401, 429)
		if ra.First[0] > 0 {
			o.problem("aggregator: %d requests with both framings not answered", ra.First[0])
		}
	}}, nil
}

// largeBodies: at the POP 100 bodies declaring 1 MiB, sent to 900 KiB
// and stalled (three times --body-memory together); at the aggregator 32
// senders of 20 unsigned 4 MiB bodies each, back to back.
func largeBodies(t Targets) (*Attack, error) {
	part := bytes.Repeat([]byte("b"), 900<<10)
	pop := Open(hostOf(t.Pop), popSources[:1], 100, Send([]byte("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"), part))
	body := bytes.Repeat([]byte("u"), 4<<20)
	agg := Repeat(hostOf(t.Aggregator), aggSources[:4], 32, 20, func() [][]byte {
		return [][]byte{ForgedIngestHead("Content-Length: 4194304\r\n"), body}
	})
	return &Attack{stop: func(o *Outcome) {
		rp := pop.Stop(PopBodyIdleTimeout + time.Second)
		o.report("POP, 1 MiB bodies stalled at 900 KiB", rp, 408, 503)
		if rp.First[503] == 0 {
			o.problem("POP: no body refused for --body-memory, though they needed three times it")
		}
		ra := agg.Stop(AggBodyTimeout)
		o.note("aggregator, unsigned 4 MiB bodies: %v", ra)
		for s, n := range ra.Answers {
			if s != 401 && s != 429 && s != 503 {
				o.problem("aggregator: %d unsigned bodies answered %d", n, s)
			}
		}
	}}, nil
}

// siteFlood: the 50,000 distinct site names, sent through the
// POP as event POSTs of 100 each, while ten dashboards follow /live.
func siteFlood(t Targets) (*Attack, error) {
	ctx, cancel := context.WithCancel(context.Background())
	wg, answered, posts := floodPosts(ctx, t, func(i int64) string { return "flood-" + strconv.FormatInt(i, 10) })
	dash := followLive(ctx, t.Dashboard, t.DashboardToken, 10)
	return &Attack{stop: func(o *Outcome) {
		wg.Wait() // bounded: 500 posts
		o.Stored["flood-%"] = int(answered.Load())
		// Live counts follow what is loaded: wait for the loader while it
		// makes progress (a CI run beside other work loaded 34,477 of the
		// 50,000 in a fixed 15 s), and give up after 15 s without any.
		var counts struct {
			Sites map[string]uint64 `json:"sites"`
			Other uint64            `json:"other"`
		}
		var size int
		var seen uint64
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			raw, err := getAuth(t.Dashboard+"/api/counts", t.DashboardToken)
			if err != nil || json.Unmarshal(raw, &counts) != nil {
				continue
			}
			if int64(counts.Other) >= answered.Load()-AggMaxSites {
				size = len(raw)
				break
			}
			if counts.Other > seen {
				seen, end = counts.Other, time.Now().Add(15*time.Second)
			}
		}
		cancel()
		maxMsg, maxSites := dash.wait()
		o.note("%d distinct sites answered in %d posts; /api/counts %d bytes, %d sites, other %d; 10 dashboards: largest live message %d bytes, %d sites",
			answered.Load(), posts.Load(), size, len(counts.Sites), counts.Other, maxMsg, maxSites)
		if answered.Load() == 0 {
			o.problem("no flood post was answered 204")
		}
		if len(counts.Sites) > AggMaxSites+1 || maxSites > AggMaxSites+1 {
			o.problem("live counts list %d sites (/api/counts), %d (live messages), over --max-sites %d", len(counts.Sites), maxSites, AggMaxSites)
		}
		if size == 0 {
			o.problem("/api/counts never counted the flood under other")
		}
	}}, nil
}

// OneSiteFlood is siteFlood's posts and dashboards with every event for
// one site: the same load without the distinct names, which the bench
// measures beside it.
func OneSiteFlood(t Targets) (*Attack, error) {
	ctx, cancel := context.WithCancel(context.Background())
	wg, answered, posts := floodPosts(ctx, t, func(int64) string { return "flood-one" })
	dash := followLive(ctx, t.Dashboard, t.DashboardToken, 10)
	return &Attack{stop: func(o *Outcome) {
		wg.Wait() // bounded: 500 posts
		cancel()
		dash.wait()
		o.Stored["flood-one"] = int(answered.Load())
		o.note("%d events for one site answered in %d posts", answered.Load(), posts.Load())
		if answered.Load() == 0 {
			o.problem("no flood post was answered 204")
		}
	}}, nil
}

// floodPosts sends siteFlood's 500 event POSTs of 100 events, the site
// of the i-th event site(i), from 8 clients until they are sent or ctx
// ends; wg waits for them. answered counts the events of posts answered
// 204, posts the posts answered at all.
func floodPosts(ctx context.Context, t Targets, site func(i int64) string) (wg *sync.WaitGroup, answered, posts *atomic.Int64) {
	const total, per = 50000, 100
	wg, answered, posts = &sync.WaitGroup{}, &atomic.Int64{}, &atomic.Int64{}
	var next atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			c := Client(popSources[w], 30*time.Second)
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				first := next.Add(per) - per
				if first >= total {
					return
				}
				var b bytes.Buffer
				b.WriteByte('[')
				for i := range int64(per) {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"site":%q,"name":"flood","url":"https://flood.example/"}`, site(first+i))
				}
				b.WriteByte(']')
				resp, err := c.Post(t.Pop+"/e", "application/json", &b)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				posts.Add(1)
				if resp.StatusCode == http.StatusNoContent {
					answered.Add(per)
				}
			}
		})
	}
	return wg, answered, posts
}

func get(url string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// getAuth GETs url with a bearer token.
func getAuth(url, token string) ([]byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// dashboards follow /live as dashboards do and keep the largest message.
type dashboards struct {
	wg             sync.WaitGroup
	mu             sync.Mutex
	maxMsg, nSites int
}

func followLive(ctx context.Context, dashURL, token string, n int) *dashboards {
	d := &dashboards{}
	u := "ws" + strings.TrimPrefix(dashURL, "http") + "/live"
	for range n {
		conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + token}})
		if err != nil {
			continue
		}
		d.wg.Go(func() {
			defer conn.Close()
			go func() { <-ctx.Done(); conn.Close() }()
			for {
				_, msg, err := conn.ReadMessage()
				if err != nil {
					return
				}
				var m struct {
					Sites map[string]json.RawMessage `json:"sites"`
				}
				json.Unmarshal(msg, &m)
				d.mu.Lock()
				d.maxMsg, d.nSites = max(d.maxMsg, len(msg)), max(d.nSites, len(m.Sites))
				d.mu.Unlock()
			}
		})
	}
	return d
}

func (d *dashboards) wait() (maxMsg, maxSites int) {
	d.wg.Wait()
	return d.maxMsg, d.nSites
}

// oversizedNDJSON: the signed 3 MB NDJSON request of a million
// tiny lines; any answer but a 5xx will do.
func oversizedNDJSON(t Targets) (*Attack, error) {
	done := make(chan string, 1)
	go func() {
		c := Client(aggSources[5], time.Minute)
		defer c.CloseIdleConnections()
		resp, err := c.Do(Signed(t.Aggregator+"/ingest/ndjson", "application/x-ndjson", t.Secret, bytes.Repeat([]byte("{}\n"), 1_000_000)))
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
	}()
	return &Attack{stop: func(o *Outcome) {
		answer := <-done
		o.note("aggregator, signed NDJSON of 1,000,000 lines (3 MB): %s", answer)
		if !strings.HasPrefix(answer, "2") && !strings.HasPrefix(answer, "413") {
			o.problem("a well-formed NDJSON request answered %s; want 2xx or 413", answer)
		}
	}}, nil
}

// tokenGuessing: admin token guesses from one address, back to back on
// four connections (the issue saw 2,500/s, each a log line).
func tokenGuessing(t Targets) (*Attack, error) {
	lines0 := logLines(t.AggregatorLog)
	req := []byte("POST /admin/retention HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess-0123456789\r\nContent-Length: 2\r\n\r\n{}")
	began := time.Now()
	agg := Repeat(hostOf(t.Aggregator), aggSources[15:], 4, 0, func() [][]byte { return [][]byte{req} })
	return &Attack{stop: func(o *Outcome) {
		r := agg.Stop(time.Second)
		took := time.Since(began)
		added := logLines(t.AggregatorLog) - lines0
		guesses := sum(r.Answers)
		o.note("aggregator, %d admin token guesses (%.0f/s): %v; %d log lines meanwhile", guesses, float64(guesses)/took.Seconds(), r, added)
		if r.Answers[http.StatusTooManyRequests] == 0 || r.Answers[http.StatusOK] > 0 {
			o.problem("token guesses answered %v; want 429 once past the burst, never 200", r.Answers)
		}
		if added > 10 {
			o.problem("%d log lines for %d failed guesses; want them summed up", added, guesses)
		}
	}}, nil
}

func logLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// Phase is one attack measured: what normal hits got while it held, what
// it met, and the peak resident memory of the POP and the aggregator.
type Phase struct {
	Name                    string
	Hits                    *Result
	Outcome                 Outcome
	PopPeak, AggregatorPeak int64         // bytes
	Started, Stopped        time.Duration // how long Start and Stop took
}

// Measure runs one phase: start (nil: no attack) begins the attack on t,
// hits run for d, the attack is stopped, and both processes' peak memory
// since the phase began is read.
func Measure(t Targets, hits *Hits, name string, start func(Targets) (*Attack, error), d time.Duration) (Phase, error) {
	p := Phase{Name: name}
	for _, pid := range []int{t.PopPid, t.AggregatorPid} {
		if err := ResetPeak(pid); err != nil {
			return p, err
		}
	}
	t0 := time.Now()
	var a *Attack
	if start != nil {
		var err error
		if a, err = start(t); err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
	}
	p.Started = time.Since(t0)
	p.Hits = hits.For(d, name)
	t0 = time.Now()
	if a != nil {
		p.Outcome = a.Stop()
	}
	p.Stopped = time.Since(t0)
	var err error
	if p.PopPeak, _, err = Memory(t.PopPid); err != nil {
		return p, fmt.Errorf("%s: the POP: %w", name, err)
	}
	if p.AggregatorPeak, _, err = Memory(t.AggregatorPid); err != nil {
		return p, fmt.Errorf("%s: the aggregator: %w", name, err)
	}
	return p, nil
}
