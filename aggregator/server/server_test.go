package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/localsrv"
)

var (
	redisURL, chURL string
	chTCP           string // the native protocol address of the same server
	secret          = []byte("integration-test-secret")
	dbSeq           atomic.Int32
)

// TestMain starts one redis-server and one clickhouse-server for the
// package; each test uses its own ClickHouse database and Redis db index.
func TestMain(m *testing.M) {
	code := func() int {
		_, haveRedis := localsrv.RedisAvailable()
		_, haveCH := localsrv.ClickHouseAvailable()
		if !haveRedis || !haveCH {
			fmt.Fprintln(os.Stderr, "server tests need redis-server and clickhouse-server; skipping the integration tests")
			return m.Run()
		}
		dir, _ := os.MkdirTemp("", "server-test")
		defer os.RemoveAll(dir)
		ctx := context.Background()
		r, err := localsrv.StartRedis(ctx, dir+"/redis", 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer r.Stop()
		c, err := localsrv.StartClickHouse(ctx, dir+"/ch", 0, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Stop()
		redisURL, chURL, chTCP = r.URL, c.HTTPURL, c.TCPAddr
		return m.Run()
	}()
	os.Exit(code)
}

// agg is an aggregator running in-process behind an httptest server.
type agg struct {
	t    *testing.T
	srv  *Server
	http *httptest.Server
	dash *httptest.Server // the private listener
	stop func()
	db   string
}

func startAgg(t *testing.T, cfg Config) *agg {
	t.Helper()
	cfg.Secret = secret
	if cfg.DashboardToken == "" {
		cfg.DashboardToken = testToken
	}
	cfg.LoaderMaxAge = 20 * time.Millisecond
	cfg.LiveInterval = 20 * time.Millisecond
	cfg.DrainTimeout = time.Second
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	a := &agg{t: t, srv: s, http: httptest.NewServer(s.Handler()), dash: httptest.NewServer(s.DashboardHandler()), db: cfg.ClickHouseDB}
	var stop func()
	var once sync.Once
	a.stop = func() { once.Do(stop) }
	stop = func() {
		s.Hub().Close() // WebSocket handlers end; httptest's Close waits for them
		a.http.Close()
		a.dash.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	}
	return a
}

func needServers(t *testing.T) {
	if chURL == "" {
		t.Skip("redis-server or clickhouse-server not installed")
	}
}

func newDB(t *testing.T) (db, redis string) {
	n := dbSeq.Add(1)
	return fmt.Sprintf("it%d", n), strings.TrimSuffix(redisURL, "/0") + "/" + strconv.Itoa(int(n)%16)
}

func mkEvents(t *testing.T, site string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		ms := time.Now().UnixMilli()
		id, err := event.NewID(ms, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = event.Event{ID: id, Time: ms, Site: site, Name: "pageview", URL: fmt.Sprintf("https://example.com/%d", i), Pop: "test"}
	}
	return out
}

func (a *agg) post(body []byte, hdr map[string]string) (int, string) {
	a.t.Helper()
	req, _ := http.NewRequest("POST", a.http.URL+"/ingest", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("POST /ingest: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func signed(key []byte, ts int64, body []byte) map[string]string {
	return map[string]string{wire.HeaderTimestamp: strconv.FormatInt(ts, 10), wire.HeaderSignature: wire.Sign(key, ts, body)}
}

func (a *agg) send(evs []event.Event) {
	a.t.Helper()
	body := wire.Append(nil, evs)
	if code, b := a.post(body, signed(secret, time.Now().Unix(), body)); code != 200 {
		a.t.Fatalf("ingest: %d %s", code, b)
	}
}

func chQuery(t *testing.T, q string) string {
	t.Helper()
	resp, err := http.Post(chURL+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", q, b)
	}
	return strings.TrimSpace(string(b))
}

func (a *agg) rows() int {
	n, err := strconv.Atoi(chQuery(a.t, "SELECT count() FROM "+a.db+".events"))
	if err != nil {
		a.t.Fatal(err)
	}
	return n
}

// live follows /live and returns a channel of announced totals.
func (a *agg) live() <-chan uint64 {
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.dash.URL, "http")+"/live", authHeader())
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { c.Close() })
	ch := make(chan uint64, 1000)
	go func() {
		defer close(ch)
		for {
			var m struct {
				Type  string            `json:"type"`
				Total uint64            `json:"total"`
				Sites map[string]uint64 `json:"sites"`
			}
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			ch <- m.Total
		}
	}()
	return ch
}

func waitTotal(t *testing.T, ch <-chan uint64, want uint64) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var last uint64
	for {
		select {
		case n, ok := <-ch:
			if !ok {
				t.Fatalf("live socket closed at %d, want %d", last, want)
			}
			if n > want {
				t.Fatalf("live total %d overshot %d", n, want)
			}
			if last = n; n == want {
				return
			}
		case <-timeout:
			t.Fatalf("live total %d, want %d", last, want)
		}
	}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in time", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegration(t *testing.T) {
	needServers(t)
	db, rurl := newDB(t)
	dataDir := t.TempDir()
	a := startAgg(t, Config{DataDir: dataDir, RedisURL: rurl, ClickHouseURL: chURL, ClickHouseDB: db})
	defer func() { a.stop() }()
	live := a.live()
	waitTotal(t, live, 0) // the snapshot on connect

	demo := mkEvents(t, "demo", 60)
	shop := mkEvents(t, "shop", 40)
	start := time.Now()
	a.send(append(demo[:30:30], demo[0], demo[1], demo[0])) // duplicates within a batch
	a.send(append(demo[20:], shop[:10]...))                 // overlaps the first
	a.send(append(demo[:30:30], demo[0], demo[1], demo[0])) // the edge retrying a batch
	a.send(shop)
	const unique = 100
	waitTotal(t, live, unique)
	t.Logf("live count reached %d %v after the first POST", unique, time.Since(start).Round(time.Millisecond))
	if n := a.rows(); n != unique {
		t.Fatalf("count() = %d, want exactly %d", n, unique)
	}
	if got := chQuery(t, "SELECT site, count() FROM "+db+".events GROUP BY site ORDER BY site"); got != "demo\t60\nshop\t40" {
		t.Fatalf("per site: %q", got)
	}

	t.Run("bad input", func(t *testing.T) {
		good := wire.Append(nil, mkEvents(t, "forged", 1))
		now := time.Now().Unix()
		garbage := []byte("EPB1\x05garbage")
		huge := bytes.Repeat([]byte{'x'}, 5<<20)
		for _, c := range []struct {
			name   string
			body   []byte
			hdr    map[string]string
			status int
			reason string
		}{
			{"no signature", good, nil, 401, "bad_signature"},
			{"wrong secret", good, signed([]byte("not the secret"), now, good), 401, "bad_signature"},
			{"stale", good, signed(secret, now-3600, good), 401, "stale"},
			{"malformed", garbage, signed(secret, now, garbage), 400, "malformed"},
			{"oversized", huge, signed(secret, now, huge), 413, "too_large"},
		} {
			before := a.srv.Metrics().Dropped(c.reason)
			code, body := a.post(c.body, c.hdr)
			if code != c.status || !strings.Contains(body, `"reason":"`+c.reason+`"`) {
				t.Errorf("%s: %d %s, want %d %s", c.name, code, body, c.status, c.reason)
			}
			if a.srv.Metrics().Dropped(c.reason) != before+1 {
				t.Errorf("%s: not counted", c.name)
			}
		}
		// A marker after the bad input: once it is stored, nothing else was.
		a.send(mkEvents(t, "marker", 1))
		waitTotal(t, live, unique+1)
		if n := a.rows(); n != unique+1 {
			t.Fatalf("%d rows after bad input, want %d", n, unique+1)
		}
	})

	t.Run("api", func(t *testing.T) {
		var counts struct {
			Total uint64            `json:"total"`
			Sites map[string]uint64 `json:"sites"`
		}
		getJSON(t, a.dash.URL+"/api/counts", &counts)
		if counts.Total != unique+1 || counts.Sites["demo"] != 60 || counts.Sites["shop"] != 40 {
			t.Errorf("counts %+v", counts)
		}
		var h struct {
			Site   string `json:"site"`
			Points []struct {
				T int64  `json:"t"`
				N uint64 `json:"n"`
			} `json:"points"`
		}
		getJSON(t, a.dash.URL+"/api/history?site=demo&minutes=5", &h)
		var sum uint64
		for _, p := range h.Points {
			sum += p.N
		}
		if h.Site != "demo" || len(h.Points) != 5 || sum != 60 || h.Points[4].T != time.Now().Unix()/60*60 {
			t.Errorf("history %+v", h)
		}
		// The live count is published as soon as rows are stored; the
		// loader marks them done and commits the spool checkpoint after
		// that, in its next stage, so spool_bytes reaches 0 a little later.
		var b []byte
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			resp, err := authGet(a.dash.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "edgepixel_aggregator_spool_bytes 0\n") || time.Now().After(deadline) {
				break
			}
		}
		for _, want := range []string{
			"edgepixel_aggregator_inserted_total 101",
			"edgepixel_aggregator_accepted_batches_total 5",
			`edgepixel_aggregator_dropped_total{reason="stale"} 1`,
			"edgepixel_aggregator_deduped_total 56",
			"edgepixel_aggregator_spool_bytes 0",
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %q:\n%s", want, b)
			}
		}
		var ready map[string]any
		if code := getJSON(t, a.http.URL+"/readyz", &ready); code != 200 {
			t.Errorf("readyz %d %v", code, ready)
		}
		// The dashboard listener's, with the checks' errors, is the
		// admin's only.
		if resp, err := http.Get(a.dash.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("dashboard /readyz without credentials: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		if resp, err := authGet(a.dash.URL + "/readyz"); err != nil || resp.StatusCode != 200 {
			t.Errorf("dashboard /readyz with the admin token: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		if code := getJSON(t, a.http.URL+"/healthz", &ready); code != 200 {
			t.Errorf("healthz %d", code)
		}
		resp, err := http.Get(a.dash.URL + "/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("dashboard: %v %v", resp, err)
		}
		resp.Body.Close()
		if resp, err := http.Get(a.http.URL + "/"); err != nil || resp.StatusCode != 404 {
			t.Fatalf("dashboard on the public listener: %v %v", resp, err)
		}
	})

	t.Run("restart keeps dedupe and counts", func(t *testing.T) {
		a.stop()
		a = startAgg(t, Config{DataDir: dataDir, RedisURL: rurl, ClickHouseURL: chURL, ClickHouseDB: db})
		live := a.live()
		waitTotal(t, live, unique+1) // initialized from the store
		a.send(demo)                 // the edge retrying after the restart
		fresh := mkEvents(t, "demo", 1)
		a.send(fresh)
		waitTotal(t, live, unique+2)
		if n := a.rows(); n != unique+2 {
			t.Fatalf("%d rows, want %d", n, unique+2)
		}
	})
}

// TestClickHouseOutage: ingest keeps accepting while ClickHouse is
// unreachable; the loader retries and stores everything once it is back.
func TestClickHouseOutage(t *testing.T) {
	needServers(t)
	db, rurl := newDB(t)
	dir := t.TempDir()
	ch, err := localsrv.StartClickHouse(context.Background(), dir+"/ch", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	a := startAgg(t, Config{DataDir: dir + "/agg", RedisURL: rurl, ClickHouseURL: ch.HTTPURL, ClickHouseDB: db})
	defer func() { a.stop() }()
	live := a.live()
	waitTotal(t, live, 0)
	ch.Stop()
	evs := mkEvents(t, "demo", 50)
	a.send(evs[:25])
	a.send(evs[10:])
	time.Sleep(300 * time.Millisecond) // the loader fails and backs off
	if a.srv.Metrics().StoreErrors.Load() == 0 {
		t.Error("no store errors counted while ClickHouse was down")
	}
	ch2, err := localsrv.StartClickHouse(context.Background(), dir+"/ch", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch2.Stop()
	// Same data dir, new port: point a fresh aggregator (same spool) at it.
	a.stop()
	a = startAgg(t, Config{DataDir: dir + "/agg", RedisURL: rurl, ClickHouseURL: ch2.HTTPURL, ClickHouseDB: db})
	live = a.live()
	waitTotal(t, live, 50)
	n := chQueryAt(t, ch2.HTTPURL, "SELECT count() FROM "+db+".events")
	if n != "50" {
		t.Fatalf("%s rows, want 50", n)
	}
}

// TestFallbacks runs without Redis and ClickHouse: in-process dedupe and
// the on-disk store.
func TestFallbacks(t *testing.T) {
	dir := t.TempDir()
	a := startAgg(t, Config{DataDir: dir})
	defer a.stop()
	live := a.live()
	waitTotal(t, live, 0)
	evs := mkEvents(t, "demo", 20)
	a.send(evs)
	a.send(evs[5:])
	waitTotal(t, live, 20)
	var counts struct{ Total uint64 }
	getJSON(t, a.dash.URL+"/api/counts", &counts)
	if counts.Total != 20 {
		t.Fatalf("counts %+v", counts)
	}
}

func chQueryAt(t *testing.T, base, q string) string {
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// testToken is the dashboard's admin token in these tests.
const testToken = "test-dashboard-token-0123456789"

func authHeader() http.Header { return http.Header{"Authorization": {"Bearer " + testToken}} }

// authGet GETs u with the dashboard token.
func authGet(u string) (*http.Response, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, err
	}
	req.Header = authHeader()
	return http.DefaultClient.Do(req)
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := authGet(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return resp.StatusCode
}

// A request line and headers over --max-header-bytes get 431 from a real
// net/http server, and up to it 200: net/http alone lets 4 KiB more in.
// MinMaxHeaderBytes is exact too; below it no limit is (see there).
func TestMaxHeaderBytes(t *testing.T) {
	for _, limit := range []int{16 << 10, MinMaxHeaderBytes} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) { testMaxHeaderBytes(t, limit) })
	}
}

func testMaxHeaderBytes(t *testing.T, limit int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{MaxHeaderBytes: netHTTPMaxHeaderBytes(limit), Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	for _, c := range []struct{ size, code int }{{limit, 200}, {limit + 1, 431}, {limit + 4000, 431}} {
		head := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
		req := head + strings.Repeat("a", c.size-len(head)-4) + "\r\n\r\n"
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil || resp.StatusCode != c.code {
			t.Errorf("%d bytes of request line and headers: %v %v, want %d", len(req), resp, err, c.code)
		}
	}
}
