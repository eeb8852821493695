package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/behaviour"
	"github.com/edgepixel/edgepixel/tests/build"
	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
	"github.com/edgepixel/edgepixel/wrangler/worker"
)

var (
	workerMu   sync.Mutex
	workerWasm = map[build.Toolchain]string{}
)

// builtWorker builds the Cloudflare worker module with tc once for the
// package, with the recipe `make worker` and wrangler.toml use (from the
// wasm cache when its sources have not changed).
func builtWorker(t *testing.T, tc build.Toolchain) string {
	t.Helper()
	workerMu.Lock()
	defer workerMu.Unlock()
	if w, ok := workerWasm[tc]; ok {
		return w
	}
	w := filepath.Join(filepath.Dir(bin.Wasm), fmt.Sprintf("edgepixel-worker-%s.wasm", tc))
	if err := build.Worker.Build(context.Background(), tc, root, w, nil); err != nil {
		t.Fatal(err)
	}
	workerWasm[tc] = w
	return w
}

// startWorkerd runs the worker built by tc in workerd with vars, stopped
// when t ends.
func startWorkerd(t *testing.T, tc build.Toolchain, vars map[string]string) *stack.Workerd {
	t.Helper()
	return startWorkerdKV(t, tc, vars, nil)
}

// startWorkerdKV is startWorkerd with KV namespaces (stack.WorkerdOptions.KV).
func startWorkerdKV(t *testing.T, tc build.Toolchain, vars, kv map[string]string) *stack.Workerd {
	t.Helper()
	return startWorkerdWith(t, tc, stack.WorkerdOptions{Vars: vars, KV: kv})
}

// startWorkerdWith is startWorkerd with o's Vars, KV and Spool, in a
// directory of its own.
func startWorkerdWith(t *testing.T, tc build.Toolchain, o stack.WorkerdOptions) *stack.Workerd {
	t.Helper()
	wasm := builtWorker(t, tc)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o.Bin, o.Root, o.Wasm, o.Dir = need(t, deps.Workerd), root, wasm, dir
	w, err := stack.StartWorkerd(ctx, o)
	if err != nil {
		t.Logf("---- workerd.log ----\n%s", proc.Tail(filepath.Join(dir, "workerd.log"), 8000))
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop()
		// Requests wait, in their waitUntil, for batches other requests
		// opened: workerd says so if that crosses its request contexts
		// in a way it will not run.
		// (stack.StartWorkerd runs it --verbose, so that it says so.)
		log := readFile(filepath.Join(dir, "workerd.log"))
		for _, bad := range []string{"different request", "had hung"} {
			if bytes.Contains(log, []byte(bad)) {
				t.Errorf("workerd cancelled work that crossed requests (%q):\n%s", bad, proc.Tail(filepath.Join(dir, "workerd.log"), 4000))
				break
			}
		}
		if t.Failed() {
			t.Logf("---- workerd.log (tail) ----\n%s", proc.Tail(filepath.Join(dir, "workerd.log"), 8000))
		}
	})
	return w
}

// workerVars configures a worker for stack s.
func workerVars(s *stack.Stack) map[string]string {
	return map[string]string{
		worker.ConfigIngestURL:  s.AggregatorURL + "/ingest",
		worker.ConfigSecret:     string(s.Secret),
		pixel.ConfigCORSOrigins: behaviour.CORSOrigins,
		// Batching across requests (off by default) is what these tests
		// hold to exactly once.
		worker.ConfigBatchWait: strconv.Itoa(int(worker.BatchWait.Milliseconds())),
	}
}

// cfJSON is what the tests' workerd serves as request.cf.
const cfJSON = `{"country":"DE","region":"Hesse","regionCode":"HE","city":"Frankfurt am Main","asn":3320,"colo":"TST","botManagement":{"score":42}}`

// workerHeaders are what Cloudflare adds to every request a worker sees.
var workerHeaders = map[string]string{"CF-Connecting-IP": "127.0.0.1", stack.CFHeader: cfJSON}

// TestWorkers runs the Cloudflare worker in workerd against a real
// aggregator, Redis and ClickHouse: the behaviour table beside the Fastly
// module under the POP with both builds of the worker (TinyGo's, which
// ships, and standard Go's), exact counts under load with each, and with
// the TinyGo build the NDJSON fallback and losses counted across an
// aggregator outage.
func TestWorkers(t *testing.T) {
	s := startStack(t, stack.Options{Delivery: stack.DeliveryBatches, EdgeConfig: map[string]string{pixel.ConfigCORSOrigins: behaviour.CORSOrigins}})
	wds := map[build.Toolchain]*stack.Workerd{}
	for _, tc := range build.Toolchains {
		wds[tc] = startWorkerd(t, tc, workerVars(s))
	}
	wd := wds[build.TinyGo]

	t.Run("behaviour table", func(t *testing.T) { behaviourTable(t, s, wds) })
	for _, tc := range build.Toolchains {
		t.Run("exactly once under load/"+string(tc), func(t *testing.T) { workerLoad(t, s, wds[tc], "wk-load-"+string(tc)) })
	}
	t.Run("batching under concurrent load", func(t *testing.T) { workerBatchingLoad(t, s) })
	t.Run("NDJSON fallback", func(t *testing.T) {
		dead, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		vars := workerVars(s)
		vars[worker.ConfigIngestURL] = "http://" + dead + "/ingest" // nothing listens: every batch fails
		vars[worker.ConfigNDJSONURL] = s.AggregatorURL + "/ingest/ndjson"
		fb := startWorkerd(t, build.TinyGo, vars)
		const n = 20
		for i := 0; i < n; i++ {
			resp, body := get(t, pixelURL(fb.URL, "wk-fallback", fmt.Sprintf("https://ex.test/f/%d", i), ""), workerHeaders)
			checkPixel(t, resp, body)
		}
		waitExactly(t, s, "wk-fallback", n)
		eventually(t, 30*time.Second, "counts via the fallback", func() (bool, string) {
			l := lossOf(t, s, "wk-fallback")
			return l.Hits == n && l.Events == n && l.Stored == n && l.Lost == 0, fmt.Sprintf("%+v", l)
		})
	})
	for _, tc := range build.Toolchains {
		t.Run("s.js/"+string(tc), func(t *testing.T) { workerScript(t, wds[tc]) })
	}
	t.Run("salts from KV, rotated without a redeploy", func(t *testing.T) { workerKVSalts(t, s) })
	t.Run("per-site settings from vars, then KV", func(t *testing.T) { workerKVSettings(t, s) })
	t.Run("drops alone reported", func(t *testing.T) { workerDropsAlone(t, s) })
	t.Run("aggregator down: losses counted", func(t *testing.T) { workerOutage(t, s, wd) })
}

// workerScript asks wd for s.js as a browser does (gzip accepted) and as
// a client that takes no encoding: the gzip answer must be tracker.Gzip,
// encoded once, and the other the script itself (workerd encoded the
// module's gzip body a second time, and browsers ran nothing).
func workerScript(t *testing.T, wd *stack.Workerd) {
	for _, c := range []struct {
		accept, encoding string
		want             []byte
	}{
		{"gzip, deflate, br", "gzip", tracker.Gzip},
		{"identity", "", tracker.Script},
	} {
		resp, body := get(t, wd.URL+"/s.js", map[string]string{"Accept-Encoding": c.accept})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != c.encoding || !bytes.Equal(body, c.want) {
			t.Errorf("s.js, Accept-Encoding %s: %d Content-Encoding %q, %d bytes (%.12q); want 200 %q, the %d bytes of %s",
				c.accept, resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body), body, c.encoding, len(c.want), map[bool]string{true: "tracker.Gzip", false: "tracker.Script"}[c.encoding != ""])
		}
	}
}

// workerDropsAlone sends a workerd of its own requests that bring no
// event, only a drop (a HEAD of the pixel), and nothing after them: their
// counts must reach the aggregator without a later request to carry them,
// since an isolate may serve nothing more before it is evicted.
func workerDropsAlone(t *testing.T, s *stack.Stack) {
	wd := startWorkerd(t, build.TinyGo, workerVars(s))
	const site, n = "wk-drops", 3
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("HEAD", pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/h/%d", i), ""), nil)
		for k, v := range workerHeaders {
			req.Header.Set(k, v)
		}
		if resp, _ := do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD of the pixel: %d", resp.StatusCode)
		}
	}
	eventually(t, 30*time.Second, "the drops reported with no later request", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Hits == n && l.Dropped[wire.DropHeadRequest] == n && l.Events == 0, fmt.Sprintf("%+v", l)
	})
}

func behaviourTable(t *testing.T, s *stack.Stack, wds map[build.Toolchain]*stack.Workerd) {
	runs := []struct {
		name, base string
		hdr        map[string]string
	}{
		{"pop", s.PopURL, nil},
	}
	for _, tc := range build.Toolchains {
		runs = append(runs, struct {
			name, base string
			hdr        map[string]string
		}{"worker-" + string(tc), wds[tc].URL, workerHeaders})
	}
	want := 0
	for _, c := range behaviour.Cases {
		want += len(c.Rows)
	}
	got := map[string]map[behaviour.Row]int{}
	for _, run := range runs {
		uuid, err := event.NewID(time.Now().UnixMilli(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range behaviour.Cases {
			site := behaviour.Site(run.name, i)
			for r := 0; r < max(c.Repeat, 1); r++ {
				req, err := http.NewRequest(c.Method, run.base+behaviour.Expand(c.Target, site, uuid.String()), strings.NewReader(behaviour.Expand(c.Body, site, uuid.String())))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("User-Agent", behaviour.UA)
				for k, v := range run.hdr {
					req.Header.Set(k, v)
				}
				for k, v := range c.Header {
					req.Header.Set(k, behaviour.Expand(v, site, uuid.String()))
				}
				resp, body := do(t, req)
				drop, acao := resp.Header.Get("X-Edgepixel-Drop"), resp.Header.Get("Access-Control-Allow-Origin")
				if resp.StatusCode != c.Status || drop != c.Drop || acao != c.AllowOrigin {
					t.Errorf("%s: %s: %d drop %q allow-origin %q, want %d %q %q: %.200s", run.name, c.Name, resp.StatusCode, drop, acao, c.Status, c.Drop, c.AllowOrigin, body)
				}
				if c.Method == "GET" && strings.HasPrefix(c.Target, "/p") && !bytes.Equal(body, pixel.GIF) {
					t.Errorf("%s: %s: not the GIF", run.name, c.Name)
				}
			}
		}
		prefix := "bt-" + run.name + "-"
		waitExactly(t, s, prefix+"%", want)
		rows, platform := storedRows(t, s, prefix+"%")
		got[run.name] = map[behaviour.Row]int{}
		for _, r := range rows {
			r.Site = "{site}"
			got[run.name][r]++
		}
		if run.name != "pop" {
			for _, p := range platform {
				if p != [2]string{"DE", "TST"} {
					t.Errorf("worker row's country and pop: %v, want request.cf's DE and TST", p)
				}
			}
		}
		// Each case's rows, under its own site.
		for i, c := range behaviour.Cases {
			site := behaviour.Site(run.name, i)
			var have []behaviour.Row
			for _, r := range rows {
				if r.Site == site {
					r.Site = "{site}"
					have = append(have, r)
				}
			}
			if !sameRows(have, c.Rows) {
				t.Errorf("%s: %s: stored %+v, want %+v", run.name, c.Name, have, c.Rows)
			}
		}
	}
	for _, run := range runs[1:] {
		if fmt.Sprint(sortedRows(got["pop"])) != fmt.Sprint(sortedRows(got[run.name])) {
			t.Errorf("the platforms stored different rows:\npop:    %v\n%s: %v", sortedRows(got["pop"]), run.name, sortedRows(got[run.name]))
		}
	}
}

func sameRows(a, b []behaviour.Row) bool {
	m := map[behaviour.Row]int{}
	for _, r := range a {
		m[r]++
	}
	for _, r := range b {
		m[r]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func sortedRows(m map[behaviour.Row]int) []string {
	var out []string
	for r, n := range m {
		out = append(out, fmt.Sprintf("%dx%+v", n, r))
	}
	sort.Strings(out)
	return out
}

// storedRows reads the rows of the sites LIKE pattern, with each row's
// platform fields (country, pop).
func storedRows(t *testing.T, s *stack.Stack, like string) ([]behaviour.Row, [][2]string) {
	t.Helper()
	out := chQuery(t, s.ClickHouse.HTTPURL, "SELECT site, name, url, referrer, user_agent, client_ip, utm_source, utm_medium, utm_campaign, props, method, country, pop FROM events WHERE site LIKE '"+like+"' FORMAT JSONCompact")
	var res struct {
		Data [][]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rows []behaviour.Row
	var platform [][2]string
	for _, d := range res.Data {
		rows = append(rows, behaviour.Row{Site: d[0], Name: d[1], URL: d[2], Referrer: d[3], UserAgent: d[4], ClientIP: d[5],
			UTMSource: d[6], UTMMedium: d[7], UTMCampaign: d[8], Props: d[9], Method: d[10]})
		platform = append(platform, [2]string{d[11], d[12]})
	}
	return rows, platform
}

// waitExactly waits for n rows of the sites LIKE pattern, then checks
// there are no more.
func waitExactly(t *testing.T, s *stack.Stack, like string, n int) {
	t.Helper()
	q := "SELECT count() FROM events WHERE site LIKE '" + like + "'"
	eventually(t, 30*time.Second, fmt.Sprintf("%d rows for %s", n, like), func() (bool, string) {
		got := chQuery(t, s.ClickHouse.HTTPURL, q)
		return got == strconv.Itoa(n), got
	})
	// The aggregator loads its spool in order: once a later marker is
	// stored, anything doubled before it would be too.
	marker := newEvent(t, "wk-marker-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	resp, b := signedBatch(t, s.AggregatorURL, s.Secret, []event.Event{marker})
	wantStatus(t, resp, b, http.StatusOK)
	eventually(t, 30*time.Second, "marker stored", func() (bool, string) {
		got := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = '"+marker.Site+"'")
		return got == "1", got
	})
	if got := chQuery(t, s.ClickHouse.HTTPURL, q); got != strconv.Itoa(n) {
		t.Fatalf("%s rows for %s, want exactly %d", got, like, n)
	}
}

func workerLoad(t *testing.T, s *stack.Stack, wd *stack.Workerd, site string) {
	const pixels, posts, workers = 200, 40, 8
	const batches = "edgepixel_aggregator_accepted_batches_total"
	before := metricsOf(t, s)[batches]
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < pixels; i += workers {
				resp, body := get(t, pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/l/%d", i), ""), workerHeaders)
				checkPixel(t, resp, body)
			}
			for i := w; i < posts; i += workers {
				resp, b := post(t, wd.URL+"/e", "text/plain", []byte(fmt.Sprintf(`{"site":%q,"name":"post","url":"https://ex.test/e/%d"}`, site, i)), workerHeaders)
				wantStatus(t, resp, b, http.StatusNoContent)
			}
		}(w)
	}
	wg.Wait()
	waitExactly(t, s, site, pixels+posts)
	// Not a pass condition (how many requests meet in a batch depends
	// on timing), but what batching across requests did here; the
	// marker waitExactly sent is one batch.
	t.Logf("%d events from %d concurrent clients came in %.0f batches", pixels+posts, workers, metricsOf(t, s)[batches]-before-1)
	if n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT uniqExact(url) FROM events WHERE site = '"+site+"'"); n != strconv.Itoa(pixels+posts) {
		t.Errorf("%s distinct pages, want %d", n, pixels+posts)
	}
	eventually(t, 30*time.Second, "the worker's counts", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Hits == pixels+posts && l.Events == pixels+posts && l.Stored == pixels+posts && l.Lost == 0, fmt.Sprintf("%+v", l)
	})
}

// workerBatchingLoad sends many overlapping hits through workers that
// batch across requests, and finds every answered hit stored exactly
// once, with no loss counted. With the longest batch_wait_ms the batches
// close when full, in whichever request fills them; with 1 ms they fall
// due by age in later requests, before or after the first request's
// timer. Either way the request that starts a delivery is seldom the one
// that opened the batch: when the delivery ran on a promise of the
// opening request (before this test), workerd never ran it, and most
// hits were lost without a log line.
func workerBatchingLoad(t *testing.T, s *stack.Stack) {
	for _, c := range []struct {
		wait string
		hits int
	}{
		{"5000", 2*worker.BatchEvents + 100}, // two full batches, then one by its wait
		{"100", 1500},
		{"1", 1000},
	} {
		t.Run("batch_wait_ms="+c.wait, func(t *testing.T) {
			vars := workerVars(s)
			vars[worker.ConfigBatchWait] = c.wait
			wd := startWorkerd(t, build.TinyGo, vars)
			site := "wk-batch-" + c.wait
			// Keep-alive connections, one per client, as a busy site's
			// visitors' browsers and Cloudflare's front end keep them:
			// the hits overlap in the isolate.
			const clients = 64
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			var wg sync.WaitGroup
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < c.hits; i += clients {
						req, _ := http.NewRequest("GET", pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/b/%d", i), ""), nil)
						for k, v := range workerHeaders {
							req.Header.Set(k, v)
						}
						resp, err := client.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil {
							t.Error(err)
							return
						}
						checkPixel(t, resp, body)
					}
				}(w)
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			waitExactly(t, s, site, c.hits)
			if n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT uniqExact(url) FROM events WHERE site = '"+site+"'"); n != strconv.Itoa(c.hits) {
				t.Errorf("%s distinct pages, want %d", n, c.hits)
			}
			eventually(t, 30*time.Second, "the worker's counts", func() (bool, string) {
				l := lossOf(t, s, site)
				return l.Hits == uint64(c.hits) && l.Events == uint64(c.hits) && l.Stored == uint64(c.hits) && l.Lost == 0, fmt.Sprintf("%+v", l)
			})
		})
	}
}

// workerOutage kills the aggregator, sends hits that no path can
// deliver, restarts it, and finds the losses counted as delivery_failed.
func workerOutage(t *testing.T, s *stack.Stack, wd *stack.Workerd) {
	if err := s.Aggregator.Kill(); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(wd.Dir, "workerd.log")
	before := eventsLost(readFile(log))
	const n = 5
	for i := 0; i < n; i++ {
		resp, body := get(t, pixelURL(wd.URL, "wk-lost", fmt.Sprintf("https://ex.test/x/%d", i), ""), workerHeaders)
		checkPixel(t, resp, body)
	}
	// Each delivery (the hits may share batches) tries its batch and its
	// fallback, with retries, and then says how many events it lost.
	eventually(t, 60*time.Second, "the worker gave up on every delivery", func() (bool, string) {
		k := eventsLost(readFile(log)) - before
		return k == n, strconv.Itoa(k)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.StartAggregator(ctx); err != nil {
		t.Fatal(err)
	}
	// Later hits carry the counts of the slots that lost events.
	sent := 0
	eventually(t, 60*time.Second, "the losses reported", func() (bool, string) {
		resp, body := get(t, pixelURL(wd.URL, "wk-lost", fmt.Sprintf("https://ex.test/y/%d", sent), ""), workerHeaders)
		checkPixel(t, resp, body)
		sent++
		time.Sleep(200 * time.Millisecond)
		l := lossOf(t, s, "wk-lost")
		return l.Dropped[wire.DropDeliveryFailed] == n, fmt.Sprintf("%+v", l)
	})
	waitExactly(t, s, "wk-lost", sent)
	eventually(t, 30*time.Second, "every hit accounted for", func() (bool, string) {
		l := lossOf(t, s, "wk-lost")
		return l.Hits == uint64(n+sent) && l.Events == uint64(n+sent) && l.Stored == uint64(sent), fmt.Sprintf("%+v", l)
	})
}

// workerKVSalts serves the salts from a KV namespace that changes while
// the worker runs: visitor ids appear once a salt is there and change
// when it does, with no restart of the worker.
func workerKVSalts(t *testing.T, s *stack.Stack) {
	kv := startKV(t)
	vars := workerVars(s)
	vars["kv_cache_ms"] = "0" // re-read on every request, in the background after the first
	wd := startWorkerdKV(t, build.TinyGo, vars, map[string]string{"SALTS": kv.addr})

	const site = "wk-salt"
	sent := 0
	hit := func() {
		resp, body := get(t, pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/s/%d", sent), ""), workerHeaders)
		checkPixel(t, resp, body)
		sent++
	}
	ids := func() map[string]bool {
		m := map[string]bool{}
		for _, id := range strings.Fields(chQuery(t, s.ClickHouse.HTTPURL, "SELECT DISTINCT visitor_id FROM events WHERE site = '"+site+"'")) {
			m[id] = true
		}
		return m
	}
	hit() // the first request read an empty namespace: no salt, no visitor id
	waitExactly(t, s, site, sent)
	if m := ids(); len(m) != 1 || !m["0"] {
		t.Fatalf("visitor ids without a salt: %v", m)
	}
	day := privacy.Day(time.Now())
	put := func(seed byte) {
		kv.put(privacy.SaltKey(day), privacy.NewSalt(day, [16]byte{seed}).String())
		kv.put(privacy.SaltKey(day+1), privacy.NewSalt(day+1, [16]byte{seed}).String())
	}
	put(1)
	var first string
	eventually(t, 30*time.Second, "a visitor id from the KV salt", func() (bool, string) {
		hit()
		time.Sleep(200 * time.Millisecond)
		m := ids()
		for id := range m {
			if id != "0" {
				first = id
			}
		}
		return len(m) == 2 && first != "", fmt.Sprint(m)
	})
	put(2) // what edgepixel-salt would write, sped up
	eventually(t, 30*time.Second, "the visitor id from the rotated salt", func() (bool, string) {
		hit()
		time.Sleep(200 * time.Millisecond)
		m := ids()
		return len(m) == 3 && m["0"] && m[first], fmt.Sprint(m)
	})
	waitExactly(t, s, site, sent)
	if r := kv.reads(); r < sent {
		t.Errorf("%d KV reads for %d requests with no cache", r, sent)
	}
}

// kvServer is a Workers KV namespace as workerd reads it from an
// external service: GET /KEY (percent-encoded) answers the value, or 404.
type kvServer struct {
	addr  string
	mu    sync.Mutex
	m     map[string]string
	nread int
}

func startKV(t *testing.T) *kvServer {
	t.Helper()
	kv := &kvServer{m: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kv.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := url.PathUnescape(strings.TrimPrefix(r.URL.Path, "/"))
		kv.mu.Lock()
		v, ok := kv.m[key]
		kv.nread++
		kv.mu.Unlock()
		if r.Method != http.MethodGet || !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return kv
}

func (kv *kvServer) put(k, v string) {
	kv.mu.Lock()
	kv.m[k] = v
	kv.mu.Unlock()
}

func (kv *kvServer) reads() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.nread
}

// workerKVSettings sets per-site settings first as Worker vars, then in
// a KV namespace while the worker runs: the KV values replace the vars
// of their names with no redeploy, site.SITE is read for the sites KV
// lists, and what each site's hits get (counted, or dropped for the
// named reason) follows.
func workerKVSettings(t *testing.T, s *stack.Stack) {
	kv := startKV(t)
	const a, b, c = "wk-set-a", "wk-set-b", "wk-set-c"
	vars := workerVars(s)
	vars["kv_cache_ms"] = "0"
	vars[pixel.ConfigSitePrefix+a] = "sign=reject"
	wd := startWorkerdKV(t, build.TinyGo, vars, map[string]string{"SETTINGS": kv.addr})
	stored := map[string]int{}
	sent := 0
	hit := func(site string) string {
		t.Helper()
		sent++
		resp, body := get(t, pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/k/%d", sent), ""), workerHeaders)
		if resp.StatusCode != 200 || !bytes.Equal(body, pixel.GIF) {
			t.Fatalf("%s: %s", site, resp.Status)
		}
		drop := resp.Header.Get("X-Edgepixel-Drop")
		if drop == "" {
			stored[site]++
		}
		return drop
	}
	if d := hit(a); d != wire.DropUnsigned {
		t.Fatalf("var site.%s=sign=reject: drop %q, want %q", a, d, wire.DropUnsigned)
	}
	if d := hit(c); d != "" {
		t.Fatalf("no sites list: %s dropped (%s)", c, d)
	}
	kv.put(pixel.ConfigSites, a+" "+b)
	kv.put(pixel.ConfigSitePrefix+a, "sign=off")
	kv.put(pixel.ConfigSitePrefix+b, "sign=reject")
	eventually(t, 30*time.Second, "the KV settings applied", func() (bool, string) {
		da, db, dc := hit(a), hit(b), hit(c)
		return da == "" && db == wire.DropUnsigned && dc == wire.DropUnknownSite, fmt.Sprintf("drops %q %q %q", da, db, dc)
	})
	for _, site := range []string{a, b, c} {
		waitExactly(t, s, site, stored[site])
	}
	// b counted until KV listed it with sign=reject, then no more.
	if stored[a] == 0 {
		t.Errorf("stored per site: %v; want %s's hits counted once KV said sign=off", stored, a)
	}
}

var eventsLostRE = regexp.MustCompile(`worker: (\d+) events lost`)

// eventsLost sums the events the worker's log says it lost.
func eventsLost(log []byte) int {
	n := 0
	for _, m := range eventsLostRE.FindAllSubmatch(log, -1) {
		k, _ := strconv.Atoi(string(m[1]))
		n += k
	}
	return n
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// TestWranglerDryRun bundles the worker the way `wrangler deploy` would,
// with no account and no network: wrangler.toml's build runs the one
// recipe, and the bundle holds the module and the JavaScript.
func TestWranglerDryRun(t *testing.T) {
	wrangler := need(t, deps.Wrangler)
	out := t.TempDir()
	// The build is TinyGo's: minutes on a busy machine unless the wasm
	// cache has it (TestWorkers built it); slow is not a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrangler, "deploy", "--dry-run", "--outdir", out)
	cmd.Dir = filepath.Join(root, "wrangler")
	cmd.Env = append(os.Environ(), "WRANGLER_SEND_METRICS=false", "CI=true", "CLOUDFLARE_CF_FETCH_ENABLED=false", "XDG_CONFIG_HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wrangler deploy --dry-run: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "--dry-run: exiting now.") {
		t.Errorf("no dry-run end in:\n%s", b)
	}
	wasm, _ := filepath.Glob(filepath.Join(out, "*edgepixel.wasm"))
	if _, err := os.Stat(filepath.Join(out, "index.js")); err != nil || len(wasm) != 1 {
		t.Fatalf("bundle lacks index.js or the module: %v %v", err, wasm)
	}
	js := readFile(filepath.Join(out, "index.js"))
	for _, want := range []string{"ep_serve", "waitUntil", "wasi_snapshot_preview1", "extends DurableObject", "ep_spool_send"} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("bundle lacks %q", want)
		}
	}
	// wrangler.toml binds the spool's Durable Object class.
	if !regexp.MustCompile(`env\.SPOOL \(Spool\)\s+Durable Object`).Match(b) {
		t.Errorf("wrangler lists no SPOOL Durable Object binding:\n%s", b)
	}
}

// TestWorkerJS runs the worker's JavaScript with each build of the Go
// module under Node's test runner (wrangler/test): batching across
// requests, with timers and clocks the tests control, and what each
// request's waitUntil waits for.
func TestWorkerJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node: %v (it comes with npm: %s)", err, deps.Advice([]deps.Program{deps.Npm}))
	}
	for _, tc := range build.Toolchains {
		t.Run(string(tc), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// Node 20 reads wrangler/src's ES modules (.js, no package.json) by their syntax.
			cmd := exec.CommandContext(ctx, node, "--experimental-detect-module", "--test", "test/")
			cmd.Dir = filepath.Join(root, "wrangler")
			cmd.Env = append(os.Environ(), "EDGEPIXEL_WORKER_WASM="+builtWorker(t, tc))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node --test: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("# fail 0")) || bytes.Contains(out, []byte("# pass 0")) {
				t.Errorf("node --test:\n%s", out)
			}
		})
	}
}

var eventsSpooledRE = regexp.MustCompile(`worker: (\d+) events spooled`)

// eventsSpooled sums the events the worker's log says it handed to the spool.
func eventsSpooled(log []byte) int {
	n := 0
	for _, m := range eventsSpooledRE.FindAllSubmatch(log, -1) {
		k, _ := strconv.Atoi(string(m[1]))
		n += k
	}
	return n
}

// coloHits sends pixel hits for site through workerd as if from the
// Cloudflare data center colo, with URLs numbered under path; n counts
// them.
type coloHits struct {
	t          *testing.T
	site, path string
	n          int
}

func (h *coloHits) hit(wd *stack.Workerd, colo string) {
	h.t.Helper()
	hdr := map[string]string{"CF-Connecting-IP": "127.0.0.1", stack.CFHeader: strings.Replace(cfJSON, `"colo":"TST"`, `"colo":"`+colo+`"`, 1)}
	resp, body := get(h.t, pixelURL(wd.URL, h.site, fmt.Sprintf("https://ex.test/%s/%d", h.path, h.n), ""), hdr)
	checkPixel(h.t, resp, body)
	h.n++
}

// TestWorkersSpool holds the worker's spool (wrangler/src/spool.js, a
// Durable Object on workerd's disk) to its promise: the aggregator is
// killed for longer than a delivery may take, hits keep coming, workerd
// itself is killed with SIGKILL and started again on the same disk in
// the middle of the outage, and once the aggregator is back every
// answered hit is stored exactly once with no loss counted. The hits
// before the restart come from one data center and those after it from
// another, so each has its own spool object: the first one's batches
// reach the aggregator only if its alarm survived the restart, as
// nothing else wakes it. The delivery deadline and the spool's waits are
// made short by the worker's vars.
func TestWorkersSpool(t *testing.T) {
	s := startStack(t, stack.Options{Delivery: stack.DeliveryBatches, NoPop: true})
	vars := workerVars(s)
	vars[worker.ConfigDeliveryDeadline] = "1000"
	vars[worker.ConfigSpoolRetry] = "200"
	vars[worker.ConfigSpoolRetryMax] = "1000"
	spool := t.TempDir()
	wd := startWorkerdWith(t, build.TinyGo, stack.WorkerdOptions{Vars: vars, Spool: spool})
	const site = "wk-spool"
	h := &coloHits{t: t, site: site, path: "sp"}
	// Before the outage: delivered at once.
	for i := 0; i < 10; i++ {
		h.hit(wd, "TST")
	}
	waitExactly(t, s, site, h.n)

	if err := s.Aggregator.Kill(); err != nil {
		t.Fatal(err)
	}
	// Hits for several delivery deadlines: each batch tries the
	// aggregator, then its NDJSON path, then goes to the spool.
	const during = 25
	for i := 0; i < during; i++ {
		h.hit(wd, "TST")
		time.Sleep(100 * time.Millisecond)
	}
	log1 := filepath.Join(wd.Dir, "workerd.log")
	eventually(t, 60*time.Second, "every hit of the outage spooled", func() (bool, string) {
		n := eventsSpooled(readFile(log1))
		return n == during, strconv.Itoa(n)
	})
	// The spool retries while the aggregator is away.
	eventually(t, 30*time.Second, "the spool retried", func() (bool, string) {
		return bytes.Contains(readFile(log1), []byte("wait for the aggregators")), "no retry logged"
	})

	// workerd killed and started again on the same disk.
	wd.Stop()
	wd2 := startWorkerdWith(t, build.TinyGo, stack.WorkerdOptions{Vars: vars, Spool: spool})
	for i := 0; i < during; i++ {
		h.hit(wd2, "TS2")
		time.Sleep(100 * time.Millisecond)
	}
	log2 := filepath.Join(wd2.Dir, "workerd.log")
	eventually(t, 60*time.Second, "every hit after the restart spooled", func() (bool, string) {
		n := eventsSpooled(readFile(log2))
		return n == during, strconv.Itoa(n)
	})
	// Nothing was stored meanwhile: the aggregator is still down.
	if n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = '"+site+"'"); n != "10" {
		t.Fatalf("%s rows stored during the outage, want the 10 from before it", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.StartAggregator(ctx); err != nil {
		t.Fatal(err)
	}
	// Both spool objects deliver within their longest wait.
	waitExactly(t, s, site, h.n)
	if n := chQuery(t, s.ClickHouse.HTTPURL, "SELECT uniqExact(url) FROM events WHERE site = '"+site+"'"); n != strconv.Itoa(h.n) {
		t.Errorf("%s distinct pages, want %d", n, h.n)
	}
	eventually(t, 30*time.Second, "the worker's counts", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Hits == uint64(h.n) && l.Events == uint64(h.n) && l.Stored == uint64(h.n) && l.Lost == 0 &&
			l.Dropped[wire.DropDeliveryFailed] == 0, fmt.Sprintf("%+v", l)
	})
	for _, log := range []string{log1, log2} {
		if n := eventsLost(readFile(log)); n != 0 {
			t.Errorf("%s: the worker counted %d events lost", log, n)
		}
	}
}

// TestWorkersPlaceholder deploys the worker with wrangler.toml's own
// placeholder ingest_url, as a user who forgot to set it would: the
// worker says so, sends nothing there (a fetch would only fail in DNS,
// which workerd logs with a stack trace per try, and a tester found the
// worker's own message buried under them), and its spool keeps the
// batches, since it has nowhere to deliver them. A deploy with the URL
// set (workerd started again on the same disk) delivers every one of
// them, once.
func TestWorkersPlaceholder(t *testing.T) {
	var conf struct{ Vars map[string]string }
	if _, err := toml.DecodeFile(filepath.Join(root, "wrangler", "wrangler.toml"), &conf); err != nil {
		t.Fatal(err)
	}
	placeholder := conf.Vars[worker.ConfigIngestURL]
	if placeholder == "" {
		t.Fatal("wrangler.toml sets no ingest_url")
	}
	s := startStack(t, stack.Options{Delivery: stack.DeliveryBatches, NoPop: true})
	vars := workerVars(s)
	ingest := vars[worker.ConfigIngestURL]
	vars[worker.ConfigIngestURL] = placeholder
	vars[worker.ConfigSpoolRetry] = "200"
	vars[worker.ConfigSpoolRetryMax] = "500"
	spool := t.TempDir()
	wd := startWorkerdWith(t, build.TinyGo, stack.WorkerdOptions{Vars: vars, Spool: spool})
	const site = "wk-placeholder"
	h := &coloHits{t: t, site: site, path: "ph"}
	for i := 0; i < 10; i++ {
		h.hit(wd, "TST")
	}
	log := filepath.Join(wd.Dir, "workerd.log")
	eventually(t, 60*time.Second, "every hit spooled, and the spool holding them", func() (bool, string) {
		l := readFile(log)
		n := eventsSpooled(l)
		return n == h.n && bytes.Contains(l, []byte("nowhere to deliver")), fmt.Sprintf("%d spooled", n)
	})
	l := readFile(log)
	if !bytes.Contains(l, []byte("ingest_url \""+placeholder+"\" is a placeholder")) {
		t.Errorf("the worker did not say that ingest_url is the placeholder:\n%s", l)
	}
	if bytes.Contains(l, []byte("POST "+placeholder)) {
		t.Errorf("the worker tried the placeholder:\n%s", l)
	}
	wd.Stop()

	vars[worker.ConfigIngestURL] = ingest
	startWorkerdWith(t, build.TinyGo, stack.WorkerdOptions{Vars: vars, Spool: spool})
	waitExactly(t, s, site, h.n)
	eventually(t, 30*time.Second, "the worker's counts", func() (bool, string) {
		l := lossOf(t, s, site)
		return l.Hits == uint64(h.n) && l.Stored == uint64(h.n) && l.Lost == 0, fmt.Sprintf("%+v", l)
	})
	if n := eventsLost(readFile(log)); n != 0 {
		t.Errorf("the worker counted %d events lost", n)
	}
}

// TestWorkersSpoolBounds fills a spool past its bounds while the
// aggregator is down: one worker's spool holds no bytes
// (spool_max_bytes=1), so each batch it is handed is counted lost at
// once; the other's keeps batches one second (spool_max_age_s=1), so its
// alarm counts them lost. Once the aggregator is back, no event of
// either is stored and each one is counted as delivery_failed, beside
// the hits and events the worker counted: every loss is counted.
func TestWorkersSpoolBounds(t *testing.T) {
	s := startStack(t, stack.Options{Delivery: stack.DeliveryBatches, NoPop: true})
	bounds := map[string]map[string]string{
		"wk-spool-full": {worker.ConfigSpoolMaxBytes: "1"},
		"wk-spool-old":  {worker.ConfigSpoolMaxAge: "1"},
	}
	logs := map[string]string{}
	wds := map[string]*stack.Workerd{}
	for site, b := range bounds {
		vars := workerVars(s)
		vars[worker.ConfigDeliveryDeadline] = "500"
		vars[worker.ConfigSpoolRetry] = "200"
		vars[worker.ConfigSpoolRetryMax] = "500"
		for k, v := range b {
			vars[k] = v
		}
		wds[site] = startWorkerdWith(t, build.TinyGo, stack.WorkerdOptions{Vars: vars, Spool: t.TempDir()})
		logs[site] = filepath.Join(wds[site].Dir, "workerd.log")
	}
	if err := s.Aggregator.Kill(); err != nil {
		t.Fatal(err)
	}
	const n = 6
	for site, wd := range wds {
		for i := 0; i < n; i++ {
			resp, body := get(t, pixelURL(wd.URL, site, fmt.Sprintf("https://ex.test/b/%d", i), ""), workerHeaders)
			checkPixel(t, resp, body)
		}
	}
	for site := range wds {
		eventually(t, 60*time.Second, site+": every event spooled, then counted lost there", func() (bool, string) {
			log := readFile(logs[site])
			sp, lost := eventsSpooled(log), spoolLost(log)
			return sp == n && lost == n, fmt.Sprintf("spooled %d, counted lost by the spool %d", sp, lost)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.StartAggregator(ctx); err != nil {
		t.Fatal(err)
	}
	for site := range wds {
		eventually(t, 60*time.Second, site+": the losses reported", func() (bool, string) {
			l := lossOf(t, s, site)
			return l.Hits == n && l.Events == n && l.Dropped[wire.DropDeliveryFailed] == n, fmt.Sprintf("%+v", l)
		})
		waitExactly(t, s, site, 0)
		if l := lossOf(t, s, site); l.Stored != 0 || l.Lost != n {
			t.Errorf("%s: %+v, want none stored, %d lost", site, l, n)
		}
	}
}

var spoolLostRE = regexp.MustCompile(`spool: (\d+) events counted lost`)

// spoolLost sums the events the spool's log says it counted lost.
func spoolLost(log []byte) int {
	n := 0
	for _, m := range spoolLostRE.FindAllSubmatch(log, -1) {
		k, _ := strconv.Atoi(string(m[1]))
		n += k
	}
	return n
}

// An oversized POST is refused (413 too_large) and, up to the worker's
// drain allowance past the cap (wrangler/src/edgepixel.js's DRAIN_BYTES,
// 256 KiB, counted from the cap's one byte more), its connection stays
// usable: workerd closes a connection whose request body was cancelled,
// without saying so, and a tester's next request on it failed. A far
// larger body whose Content-Length says so is refused unread: before its
// first byte is sent.
func TestWorkerOversizedPost(t *testing.T) {
	w := startWorkerd(t, build.TinyGo, map[string]string{worker.ConfigIngestURL: "http://127.0.0.1:1/ingest", worker.ConfigSecret: "x"})
	const drain = 256 << 10
	limit := pixel.MaxPostBody + 1 + drain // the longest body drained
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", strings.TrimPrefix(w.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, bufio.NewReader(c)
	}
	for _, tc := range []struct {
		size    int // body bytes: an event, then spaces
		chunked bool
		status  int
	}{
		{size: pixel.MaxPostBody, status: http.StatusNoContent},
		{size: pixel.MaxPostBody + 1, status: http.StatusRequestEntityTooLarge},
		{size: pixel.MaxPostBody + 100<<10, status: http.StatusRequestEntityTooLarge},
		{size: pixel.MaxPostBody + 100<<10, chunked: true, status: http.StatusRequestEntityTooLarge},
		{size: limit, status: http.StatusRequestEntityTooLarge},
		{size: limit, chunked: true, status: http.StatusRequestEntityTooLarge},
	} {
		c, br := dial()
		ev := `{"site":"a"}`
		body := ev + strings.Repeat(" ", tc.size-len(ev))
		framing := fmt.Sprintf("Content-Length: %d", len(body))
		if tc.chunked {
			framing = "Transfer-Encoding: chunked"
			body = fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		}
		go fmt.Fprintf(c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n%s", framing, body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%d bytes (chunked %v): %v", tc.size, tc.chunked, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tc.status {
			t.Errorf("%d bytes (chunked %v): %s drop %q, want %d", tc.size, tc.chunked, resp.Status, resp.Header.Get(pixel.DropHeader), tc.status)
		}
		fmt.Fprintf(c, "GET /p.gif?site=a HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Errorf("%d bytes (chunked %v): the next request on the connection: %v", tc.size, tc.chunked, err)
		}
		c.Close()
	}
	// Refused unread: the answer comes with none of the body sent.
	c, br := dial()
	defer c.Close()
	fmt.Fprintf(c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", limit+1)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a declared %d-byte body, none sent: %v (the worker waited for it)", limit+1, err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get(pixel.DropHeader) != wire.DropTooLarge {
		t.Errorf("a declared %d-byte body: %s drop %q", limit+1, resp.Status, resp.Header.Get(pixel.DropHeader))
	}
}
