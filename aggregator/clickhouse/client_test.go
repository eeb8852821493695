package clickhouse

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

var chURL, chTCP string

// TestMain shares one clickhouse-server among the tests (it takes seconds
// to start); each test uses its own database.
func TestMain(m *testing.M) {
	code := func() int {
		if _, ok := localsrv.ClickHouseAvailable(); ok {
			dir, _ := os.MkdirTemp("", "ch-test")
			defer os.RemoveAll(dir)
			c, err := localsrv.StartClickHouse(context.Background(), dir, 0, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer c.Stop()
			chURL, chTCP = c.HTTPURL, c.TCPAddr
		}
		return m.Run()
	}()
	os.Exit(code)
}

var dbSeq atomic.Int32

func newClient(t *testing.T) *Client {
	t.Helper()
	if chURL == "" {
		t.Skip("clickhouse-server not installed")
	}
	c, err := New(chURL, fmt.Sprintf("test%d", dbSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mkEvent(t testing.TB, site string, ms int64) event.Event {
	id, err := event.NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{ID: id, Time: ms, Site: site, Name: "pageview", URL: "https://example.com/\t'quoted'\\",
		Referrer: "r", UserAgent: "ua", ClientIP: "10.0.0.0", Country: "DE", UTMSource: "s", UTMMedium: "m",
		UTMCampaign: "c", Pop: "local", Props: `{"a":"b\nc"}`}
}

func TestInsertRoundTrip(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	if err := c.EnsureSchema(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	evs := []event.Event{mkEvent(t, "demo", now), mkEvent(t, "demo", now-90_000), mkEvent(t, "o'ther", now-3*86400_000)}
	evs[0].VisitorID = 1<<63 + 7
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT toString(event_id), ts_ms, toUInt32(ts), site, name, url, referrer, user_agent, client_ip, country, utm_source, utm_medium, utm_campaign, pop, props FROM "+c.db+".events ORDER BY ts_ms DESC")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		e := evs[i]
		want := []string{e.ID.String(), fmt.Sprint(e.Time), fmt.Sprint(e.Time / 1000), e.Site, e.Name, e.URL, e.Referrer, e.UserAgent,
			e.ClientIP, e.Country, e.UTMSource, e.UTMMedium, e.UTMCampaign, e.Pop, e.Props}
		if strings.Join(r, "|") != strings.Join(want, "|") {
			t.Errorf("row %d\n got %q\nwant %q", i, r, want)
		}
	}
	counts, all, err := c.Counts(ctx, nil, 0)
	if err != nil || counts["demo"] != 2 || counts["o'ther"] != 1 || len(counts) != 2 || all != 3 {
		t.Fatalf("counts %v %d %v", counts, all, err)
	}
	// Bounded: the sites with the most, or the listed ones; the total
	// still covers all.
	if counts, total, err := c.Counts(ctx, nil, 1); err != nil || len(counts) != 1 || counts["demo"] != 2 || total != 3 {
		t.Fatalf("top 1: %v %d %v", counts, total, err)
	}
	if counts, total, err := c.Counts(ctx, []string{"o'ther", "none"}, 0); err != nil || len(counts) != 1 || counts["o'ther"] != 1 || total != 3 {
		t.Fatalf("listed: %v %d %v", counts, total, err)
	}
	// ExistingIDs finds stored ids and not others, across sites and days.
	fresh := mkEvent(t, "demo", now)
	found, err := c.ExistingIDs(ctx, append(evs, fresh))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 3 || found[fresh.ID] || !found[evs[2].ID] {
		t.Fatalf("found %v", found)
	}
	// History comes from the per-minute rollup.
	pts, err := c.History(ctx, "demo", time.UnixMilli(now).Add(-time.Hour), time.UnixMilli(now).Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, p := range pts {
		total += p.N
		if p.T%60 != 0 {
			t.Errorf("point %v not on a minute", p)
		}
	}
	if total != 2 || len(pts) < 1 {
		t.Fatalf("history %v", pts)
	}
	// Recent: the events of the last two minutes, each once though a
	// retry stored the newest twice; with max, the newest.
	if err := c.InsertEvents(ctx, evs[:1]); err != nil {
		t.Fatal(err)
	}
	since := time.UnixMilli(now).Add(-2 * time.Minute)
	rec, err := c.Recent(ctx, since, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 2 {
		t.Fatalf("recent: %d events, want 2: %+v", len(rec), rec)
	}
	slices.SortFunc(rec, func(a, b event.Event) int { return cmp.Compare(b.Time, a.Time) })
	for i, e := range rec {
		if w := evs[i]; e.Site != w.Site || e.Name != w.Name || e.URL != w.URL || e.Time != w.Time || e.VisitorID != w.VisitorID {
			t.Errorf("recent %d: %+v, want %+v", i, e, w)
		}
	}
	if rec, err := c.Recent(ctx, since, 1); err != nil || len(rec) != 1 || rec[0].Time != now {
		t.Fatalf("recent, at most 1: %+v %v", rec, err)
	}
}

func TestLargeInsert(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	evs := make([]event.Event, 50000)
	for i := range evs {
		evs[i] = mkEvent(t, fmt.Sprintf("s%d", i%7), now-int64(i))
	}
	start := time.Now()
	if err := c.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d rows in %v", len(evs), time.Since(start))
	found, err := c.ExistingIDs(ctx, evs[:12000])
	if err != nil || len(found) != 12000 {
		t.Fatalf("ExistingIDs found %d: %v", len(found), err)
	}
	counts, _, _ := c.Counts(ctx, nil, 0)
	var n uint64
	for _, v := range counts {
		n += v
	}
	if n != 50000 {
		t.Fatalf("count %d", n)
	}
}

func TestErrors(t *testing.T) {
	c := newClient(t)
	if err := c.Exec(context.Background(), "SELECT nonsense("); err == nil || !strings.Contains(err.Error(), "clickhouse") {
		t.Errorf("bad SQL: %v", err)
	}
	if _, err := New("ftp://x", "db"); err == nil {
		t.Error("ftp url accepted")
	}
	if _, err := New("http://x:1", "db; DROP"); err == nil {
		t.Error("bad db name accepted")
	}
	down, _ := New("http://127.0.0.1:1", "x")
	if err := down.Ping(context.Background()); err == nil {
		t.Error("ping of nothing succeeded")
	}
	// A wrong password: ClickHouse answers /ping without reading it,
	// and /readyz said "ok" while every query failed (a tester's).
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("ping: %v", err)
	}
	u, _ := url.Parse(chURL)
	u.User = url.UserPassword("default", "wrong")
	wrong, _ := New(u.String(), "x")
	if err := wrong.Ping(context.Background()); err == nil {
		t.Error("ping with a wrong password succeeded")
	}
	if err := down.InsertEvents(context.Background(), []event.Event{mkEvent(t, "x", time.Now().UnixMilli())}); err == nil {
		t.Error("insert into nothing succeeded")
	}
}

func TestUnescapeTSV(t *testing.T) {
	for in, want := range map[string]string{`a\tb`: "a\tb", `\\`: `\`, `\'`: `'`, `x\ny`: "x\ny", `plain`: "plain"} {
		if got := unescapeTSV(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// In a cluster an insert request the server never answers is given up
// after the quorum timeout and a margin, so that the loader retries it
// (the same block, kept once) instead of waiting on it for good.
func TestClusterInsertGivesUp(t *testing.T) {
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hung)
	defer func(m time.Duration) { insertTimeoutMargin = m }(insertTimeoutMargin)
	insertTimeoutMargin = 200 * time.Millisecond
	c, err := New(srv.URL, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetCluster(ClusterConfig{Name: "c", InsertQuorum: 2, QuorumTimeout: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	evs := []event.Event{mkEvent(t, "s", time.Now().UnixMilli())}
	done := make(chan error, 1)
	go func() { done <- c.InsertEvents(context.Background(), evs) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("insert into a server that never answers: %v, want a deadline error", err)
		}
	case <-time.After(time.Minute): // a hang guard, far past the 300 ms limit
		t.Fatal("the insert still waits on a server that never answers")
	}
}

// A server that closes a kept-alive connection as the next request
// arrives on it (ClickHouse at its keep_alive_timeout): a SELECT is sent
// again on a new connection and answers; a statement that may not run
// twice (an INSERT's) is not, and fails.
func TestQueryReplayedOnClosedConnection(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if requests.Add(1) == 2 {
			// The second request, on the first one's connection.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, "1\n")
	}))
	defer srv.Close()
	c, err := New(srv.URL, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := range 2 {
		if rows, err := c.Query(ctx, "SELECT 1"); err != nil || len(rows) != 1 {
			t.Fatalf("query %d: %v %v", i, rows, err)
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (the second replayed)", n)
	}
	requests.Store(1)
	if err := c.Exec(ctx, "INSERT INTO t VALUES (1)"); err == nil {
		t.Error("an INSERT was replayed on a new connection")
	}
}

// TestInsertsRunViewsInParallel: an insert reaches the server with
// parallel_view_processing=1, read back from the server's own query log;
// a cluster's inserts say 0 beside the quorum (its views' order matters,
// see SetCluster).
func TestInsertsRunViewsInParallel(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	c.insertSettings["log_queries"] = "1" // only to find the insert in system.query_log
	if err := c.InsertEvents(ctx, []event.Event{mkEvent(t, "demo", time.Now().UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	// The server logs a finished query after answering it: flush until
	// the insert is there.
	var rows [][]string
	for deadline := time.Now().Add(10 * time.Second); len(rows) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := c.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
			t.Fatal(err)
		}
		var err error
		rows, err = c.Query(ctx, "SELECT Settings.Values[indexOf(Settings.Names, 'parallel_view_processing')] FROM system.query_log"+ // type 2: QueryFinish (a UInt8 in 18.16)
			" WHERE type = 2 AND query LIKE 'INSERT INTO "+c.db+".events %'")
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(rows) != 1 || rows[0][0] != "1" {
		t.Errorf("the insert's parallel_view_processing in the query log: %q, want one insert with 1", rows)
	}

	cc, err := New(chURL, c.db)
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.SetCluster(ClusterConfig{Name: "c", InsertQuorum: 2}); err != nil {
		t.Fatal(err)
	}
	if cc.insertSettings["parallel_view_processing"] != "0" || cc.insertSettings["insert_quorum"] != "2" {
		t.Errorf("cluster insert settings %v", cc.insertSettings)
	}
}
