package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgepixel/edgepixel/aggregator/clickhouse"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

const (
	logToken   = "log-token-for-the-integration-test"
	adminToken = "admin-token-for-the-integration-test"
)

func (a *agg) do(method, path string, body []byte, hdr map[string]string) (int, map[string]any) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.http.URL+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res map[string]any
	json.Unmarshal(b, &res)
	if res == nil {
		res = map[string]any{"body": string(b)}
	}
	return resp.StatusCode, res
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func chInt(t *testing.T, q string) int {
	t.Helper()
	n, err := strconv.Atoi(chQuery(t, q))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadRowsAndNDJSON runs the new ingest paths end to end on real Redis
// and ClickHouse: a compressed binary batch with invalid events, and NDJSON
// log lines (compressed, bearer token, one delivered twice, some broken).
// Good events land in events exactly once; bad ones in bad_rows, through
// the spool and the loader.
func TestBadRowsAndNDJSON(t *testing.T) {
	needServers(t)
	db, rurl := newDB(t)
	a := startAgg(t, Config{DataDir: t.TempDir(), RedisURL: rurl, ClickHouseURL: chURL, ClickHouseDB: db, LogToken: logToken})
	defer a.stop()
	live := a.live()
	waitTotal(t, live, 0)

	// Binary, gzip: 3 good, 1 invalid (no site), 1 with a time far off.
	evs := mkEvents(t, "demo", 5)
	evs[1].Site = ""
	evs[3].Time -= 60 * 24 * 3600 * 1000
	body := gz(wire.Append(nil, evs))
	hdr := signed(secret, time.Now().Unix(), body)
	hdr["Content-Type"] = wire.ContentType
	hdr["Content-Encoding"] = "gzip"
	if code, res := a.do("POST", "/ingest", body, hdr); code != 200 || res["accepted"] != 3.0 || res["bad"] != 2.0 {
		t.Fatalf("binary: %d %v", code, res)
	}

	// NDJSON, zstd, bearer: 2 good lines without ids, one broken line.
	now := time.Now().UnixMilli()
	lines := fmt.Sprintf("{\"ts_ms\":%d,\"site\":\"logs\",\"url\":\"/a\"}\n{\"ts_ms\":%d,\"site\":\"logs\",\"url\":\"/b\"}\n{\"site\":\"logs\",\n", now, now)
	enc, _ := zstd.NewWriter(nil)
	zbody := enc.EncodeAll([]byte(lines), nil)
	enc.Close()
	nd := map[string]string{"Authorization": "Bearer " + logToken, "Content-Encoding": "zstd", "Content-Type": "application/x-ndjson"}
	for i := range 2 { // Fastly re-delivering the same lines
		if code, res := a.do("POST", "/ingest/ndjson", zbody, nd); code != 200 || res["accepted"] != 2.0 || res["bad"] != 1.0 {
			t.Fatalf("ndjson: %d %v", code, res)
		}
		if i == 0 {
			// The retry comes after the first delivery was stored (a
			// timeout of the sender's), in a load of its own.
			eventually(t, "the broken line stored", func() bool {
				return chInt(t, "SELECT count() FROM "+db+".bad_rows WHERE reason = 'bad_json'") == 1
			})
		}
	}
	if code, res := a.do("POST", "/ingest/ndjson", []byte(lines), map[string]string{"Authorization": "Bearer wrong"}); code != 401 || res["reason"] != "bad_token" {
		t.Fatalf("wrong token: %d %v", code, res)
	}

	waitTotal(t, live, 5) // 3 binary + 2 distinct log lines
	// The re-sent body's load is done once its 2 events were found
	// stored already; only then does it show whether its bad line was
	// stored or counted again.
	eventually(t, "the re-sent body loaded", func() bool { return a.srv.metrics.Deduped.Load() == 2 })
	if n := a.rows(); n != 5 {
		t.Fatalf("%d event rows, want 5", n)
	}
	// Bad rows: 2 from the batch, and the broken line once though the body
	// came twice (same row id: the loader finds it stored and leaves the
	// copy out). The loader stores them before it commits the record, and
	// the record's events are counted live only after that, so they are
	// there.
	if n := chInt(t, "SELECT count() FROM "+db+".bad_rows"); n != 3 {
		t.Fatalf("%d bad rows stored, want 3", n)
	}
	if got := chQuery(t, "SELECT reason, source, site, uniqExact(row_id) FROM "+db+".bad_rows GROUP BY reason, source, site ORDER BY reason"); got != "bad_json\tndjson\t\t1\nbad_time\twire\tdemo\t1\ninvalid_event\twire\t\t1" {
		t.Fatalf("bad rows:\n%s", got)
	}
	if raw := chQuery(t, "SELECT raw FROM "+db+".bad_rows WHERE reason = 'bad_json' LIMIT 1"); raw != `{"site":"logs",` {
		t.Fatalf("raw %q", raw)
	}
	resp, err := authGet(a.dash.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`edgepixel_aggregator_bad_rows_total{reason="bad_json"} 1`, `edgepixel_aggregator_bad_rows_total{reason="invalid_event"} 1`,
		`edgepixel_aggregator_bad_rows_total{reason="bad_time"} 1`, `edgepixel_aggregator_dropped_total{reason="bad_token"} 1`} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The Fastly logging challenge is served when a log token is set.
	if code, res := a.do("GET", "/.well-known/fastly/logging/challenge", nil, nil); code != 200 || res["body"] != "*\n" {
		t.Errorf("challenge: %d %v", code, res)
	}
}

// TestAdminEndpoints: erasure and retention through the HTTP API against
// real ClickHouse, with the audit log.
func TestAdminEndpoints(t *testing.T) {
	needServers(t)
	db, rurl := newDB(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), nil))
	a := startAgg(t, Config{DataDir: t.TempDir(), RedisURL: rurl, ClickHouseURL: chURL, ClickHouseDB: db,
		AdminToken: adminToken, Logger: log})
	defer a.stop()
	live := a.live()
	waitTotal(t, live, 0)

	evs := mkEvents(t, "demo", 6)
	for i := range evs {
		evs[i].Props = `{"user_id":"user-` + strconv.Itoa(i%2) + `abcdef"}`
	}
	old := mkEvents(t, "demo", 1)[0]
	a.send(evs)
	waitTotal(t, live, 6)
	// An event too old for ingest's window goes in directly, as history
	// loaded before retention was turned on would be.
	old.Time -= 100 * 24 * 3600 * 1000
	if err := a.srv.store.InsertEvents(t.Context(), []event.Event{old}); err != nil {
		t.Fatal(err)
	}

	auth := map[string]string{"Authorization": "Bearer " + adminToken}
	if code, _ := a.do("POST", "/admin/erase", []byte(`{"user_id":"user-0abcdef","actor":"x"}`), map[string]string{"Authorization": "Bearer nope"}); code != 401 {
		t.Fatalf("wrong admin token: %d", code)
	}
	code, res := a.do("POST", "/admin/erase", []byte(`{"user_id":"user-0abcdef","actor":"dpo"}`), auth)
	if code != 200 || res["done"] != true {
		t.Fatalf("erase: %d %v", code, res)
	}
	if n := chInt(t, "SELECT count() FROM "+db+".events WHERE props LIKE '%user-0abcdef%'"); n != 0 {
		t.Fatalf("%d events of the erased user left", n)
	}
	if n := a.rows(); n != 4 { // 3 of the other user, and the old one
		t.Fatalf("%d rows left, want 4", n)
	}
	// The live total follows what is stored once events are removed:
	// the counts are read again and every client gets a new snapshot.
	liveTotal := func(want uint64) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		var last uint64
		for {
			select {
			case n, ok := <-live:
				if !ok {
					t.Fatalf("live socket closed at %d, want %d", last, want)
				}
				if last = n; n == want {
					return
				}
			case <-timeout:
				t.Fatalf("live total %d, want %d", last, want)
			}
		}
	}
	liveTotal(4)
	code, res = a.do("POST", "/admin/retention", []byte(`{"days":30,"actor":"ops"}`), auth)
	// The old day's partition of events, and of the rollup that keeps
	// visitor ids (the per-minute ones), which retention drops with them.
	var tables []string
	for _, d := range res["dropped"].([]any) {
		tables = append(tables, d.(map[string]any)["table"].(string))
	}
	if code != 200 || !slices.Equal(tables, []string{"events", clickhouse.MinuteAudienceTable, clickhouse.MinuteSourcesTable}) {
		t.Fatalf("retention: %d %v", code, res)
	}
	if n := a.rows(); n != 3 {
		t.Fatalf("%d rows after retention, want 3", n)
	}
	liveTotal(3)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []string{`msg="audit: erase submitted"`, "actor=dpo", `msg="audit: retention applied"`, "actor=ops", "days=30"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestNativeClickHouseRefused: --clickhouse native://... against the
// ClickHouse 18.16 the tests run is refused when the aggregator opens,
// with a message that says to use the HTTP URL.
func TestNativeClickHouseRefused(t *testing.T) {
	needServers(t)
	db, _ := newDB(t)
	_, err := Open(Config{DataDir: t.TempDir(), Secret: secret, ClickHouseURL: "native://" + chTCP, ClickHouseDB: db,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		t.Skip("the test server speaks the native protocol (ClickHouse 19+); nothing to refuse")
	}
	if !strings.Contains(err.Error(), "use its HTTP interface instead") || !strings.Contains(err.Error(), "--clickhouse http://") {
		t.Fatalf("unclear refusal: %v", err)
	}
}
