package pop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
)

func TestRequestRoundTrip(t *testing.T) {
	p := startPOP(t, nil, nil)
	hdr := http.Header{}
	var many []string
	for i := range 40 {
		// 40 values of ~500 bytes: more than the SDK's 8 KiB first buffer,
		// so the guest needs several cursor calls.
		many = append(many, fmt.Sprintf("%02d-%s", i, strings.Repeat("m", 500)))
	}
	hdr["X-Many"] = many
	big := strings.Repeat("B", 10000) // one value larger than that buffer: $buflen retry
	hdr.Set("X-Big", big)
	hdr.Set("X-Empty", "")
	resp, body := p.do(t, "POST", "/info?x=1&y=%20z&x=2", strings.NewReader("abc"), hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var info infoResp
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	host := strings.TrimPrefix(p.URL, "http://")
	if info.Method != "POST" || info.URL != p.URL+"/info?x=1&y=%20z&x=2" || info.Path != "/info" ||
		info.RawQuery != "x=1&y=%20z&x=2" || info.Host != host || info.Proto != "HTTP/1.1" {
		t.Errorf("request line: %+v", info)
	}
	if got := info.Header["X-Many"]; len(got) != 40 || got[0] != many[0] || got[39] != many[39] {
		t.Errorf("X-Many: %d values", len(got))
	}
	if got := info.Header["X-Big"]; len(got) != 1 || got[0] != big {
		t.Errorf("X-Big: %d values", len(got))
	}
	if got, ok := info.Header["X-Empty"]; !ok || len(got) != 1 || got[0] != "" {
		t.Errorf("X-Empty: %q %v", got, ok)
	}
	if got := info.Header["Host"]; len(got) != 1 || got[0] != host {
		t.Errorf("Host header: %q", got)
	}
	if info.BodyLen != 3 {
		t.Errorf("body len %d", info.BodyLen)
	}
	if info.RemoteAddr != "127.0.0.1" || info.ServerAddr != "127.0.0.1" {
		t.Errorf("client/server ip: %q %q", info.RemoteAddr, info.ServerAddr)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
}

// infoResp mirrors the guest's /info answer.
type infoResp struct {
	Method, URL, Host, Path, RawQuery, Proto string
	RemoteAddr, ServerAddr                   string
	Header                                   map[string][]string
	BodyLen                                  int
	Instance                                 string
}

func TestEchoLargeBody(t *testing.T) {
	p := startPOP(t, nil, nil)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	resp, body := p.do(t, "POST", "/echo?big=9000", bytes.NewReader(payload), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !bytes.Equal([]byte(body), payload) {
		t.Fatalf("echoed %d bytes, want %d identical", len(body), len(payload))
	}
	if got := resp.Header.Values("X-Multi"); strings.Join(got, ",") != "v0,v1,v2,v3,v4" {
		t.Errorf("X-Multi = %q", got)
	}
	if got := resp.Header.Get("X-Big"); len(got) != 9000 {
		t.Errorf("X-Big has %d bytes", len(got))
	}
	if got := resp.Header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type %q", got)
	}
	if got := resp.Header.Get("X-Header-Keys"); !strings.Contains(got, "Content-Length") || !strings.Contains(got, "User-Agent") {
		t.Errorf("guest saw headers %q", got)
	}
}

func TestStatusAndEmptyBodies(t *testing.T) {
	p := startPOP(t, nil, nil)
	resp, body := p.get(t, "/status?code=418")
	if resp.StatusCode != 418 || resp.Header.Get("X-Custom") != "yes" || body != "status body" {
		t.Errorf("418: %d %q %q", resp.StatusCode, resp.Header, body)
	}
	resp, body = p.get(t, "/status?code=204")
	if resp.StatusCode != 204 || body != "" {
		t.Errorf("204: %d %q", resp.StatusCode, body)
	}
	resp, body = p.do(t, "HEAD", "/echo", nil, nil)
	if resp.StatusCode != 201 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	resp, body = p.get(t, "/nope")
	if resp.StatusCode != 404 || body != "no route /nope" {
		t.Errorf("404: %d %q", resp.StatusCode, body)
	}
}

func TestBackendSend(t *testing.T) {
	be := newBackend(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := ln.Addr().String()
	ln.Close()
	m := manifest(t, fmt.Sprintf(`
[local_server.backends.aggregator]
url = %q
override_host = "agg.example"
[local_server.backends.plain]
url = %q
[local_server.backends.dead]
url = "http://%s"
[local_server.backends.denied]
url = %q
`, be.URL+"/api", be.URL, deadAddr, newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) })))
	p := startPOP(t, m, nil)

	resp, body := p.get(t, "/backend?name=aggregator&path="+urlq("/ingest?x=1"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend-Status") != "207" {
		t.Fatalf("status %d / backend %q: %s", resp.StatusCode, resp.Header.Get("X-Backend-Status"), body)
	}
	if want := `backend got POST /api/ingest?x=1 body="hello backend"`; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if got := resp.Header.Get("X-Backend-Header"); got != "seen /api/ingest" {
		t.Errorf("backend header seen by guest: %q", got)
	}
	rec := <-be.got
	if rec.Host != "agg.example" || rec.Header.Get("X-From-Guest") != "1" || strings.Join(rec.Header.Values("X-Two"), ",") != "a,b" {
		t.Errorf("backend received %+v", rec)
	}

	// Streaming request body (send_async_streaming), no override_host:
	// Host comes from the request URI.
	resp, body = p.get(t, "/backend?stream=1&name=plain&path=/s")
	if resp.StatusCode != 200 || body != `backend got POST /s body="hello streamed backend"` {
		t.Errorf("streaming send: %d %q", resp.StatusCode, body)
	}
	if rec := <-be.got; rec.Host != "origin.example" {
		t.Errorf("Host without override: %q", rec.Host)
	}

	resp, body = p.get(t, "/backend?name=nope&path=/x")
	if resp.StatusCode != 503 || !strings.Contains(body, "backend not found") {
		t.Errorf("unknown backend: %d %q", resp.StatusCode, body)
	}
	resp, body = p.get(t, "/backend?name=dead&path=/x")
	if resp.StatusCode != 502 || !strings.Contains(body, "connection refused") {
		t.Errorf("dead backend: %d %q", resp.StatusCode, body)
	}
	// A backend refusing the guest's credentials, or not answering, shows
	// in Degraded (/healthz) with what to check; one that answers does not.
	if resp, _ := p.get(t, "/backend?name=denied&path=/x"); resp.Header.Get("X-Backend-Status") != "401" {
		t.Errorf("denied backend: %d %q", resp.StatusCode, resp.Header.Get("X-Backend-Status"))
	}
	d := strings.Join(p.Degraded(), "\n")
	if !strings.Contains(d, "backend denied: 1 request failing") || !strings.Contains(d, "status 401") || !strings.Contains(d, "check aggregator_secret") ||
		!strings.Contains(d, "backend dead: 1 request failing") || !strings.Contains(d, "check the backend URL") || strings.Contains(d, "backend aggregator") {
		t.Errorf("degraded:\n%s", d)
	}
	var metrics bytes.Buffer
	p.WritePrometheus(&metrics)
	if !strings.Contains(metrics.String(), "edgepixel_pop_backend_sends_total 4") ||
		!strings.Contains(metrics.String(), "edgepixel_pop_backend_errors_total 1") {
		t.Errorf("metrics:\n%s", metrics.String())
	}
}

func urlq(s string) string {
	return strings.NewReplacer("?", "%3F", "&", "%26", "=", "%3D").Replace(s)
}

func TestLogAndStdout(t *testing.T) {
	p := startPOP(t, nil, nil)
	resp, body := p.get(t, "/log?msg=hello+there")
	if resp.StatusCode != 200 || body != "logged" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	poptest.WaitFor(t, "log line", func() bool {
		out := p.Stdout.String()
		return strings.Contains(out, "guestlog :: hello there\n") && strings.Contains(out, "guest stdout: hello there\n")
	})
}

func TestStores(t *testing.T) {
	m := manifest(t, `
[local_server.config_stores.cfg]
format = "inline-toml"
[local_server.config_stores.cfg.contents]
pop = "local"
long = "`+strings.Repeat("L", 3000)+`"
[local_server.dictionaries.dict]
format = "inline-toml"
[local_server.dictionaries.dict.contents]
k = "dict value"
[local_server.secret_stores]
sec = [{ key = "aggregator_secret", data = "s3cr3t" }]
`)
	p := startPOP(t, m, nil)
	for _, tc := range []struct {
		path     string
		code     int
		contains string
	}{
		{"/config?store=cfg&key=pop", 200, "local"},
		{"/config?store=cfg&key=long", 200, strings.Repeat("L", 3000)},
		{"/config?store=cfg&key=missing", 404, "key not found"},
		{"/config?store=nostore&key=pop", 404, "config store not found"},
		{"/dict?store=dict&key=k", 200, "dict value"},
		{"/dict?store=dict&key=zz", 404, "not found"},
		{"/secret?store=sec&key=aggregator_secret", 200, "s3cr3t"},
		{"/secret?store=sec&key=nope", 404, "secret not found"},
		{"/secret?store=nope&key=x", 404, "secret store not found"},
	} {
		resp, body := p.get(t, tc.path)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %.80q", tc.path, resp.StatusCode, body)
		}
	}
}

func TestResponseCompletesBeforePostResponseWork(t *testing.T) {
	p := startPOP(t, nil, nil)
	p.get(t, "/counter") // warm the path
	start := time.Now()
	resp, body := p.get(t, "/slowtail")
	took := time.Since(start)
	if resp.StatusCode != 200 || body != "done" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// The guest sleeps 3 s after closing the response: an answer that
	// took that long waited for the post-response work. (An order, not a
	// speed: any loaded machine answers well within it.)
	if took >= 3*time.Second {
		t.Errorf("response took %v: it waited for the guest's post-response work", took)
	}
}

func TestInstanceReuse(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.Instances, c.MaxInstances = 1, 1 })
	var id string
	for i := 1; i <= 5; i++ {
		resp, body := p.get(t, "/counter")
		inst, n, _ := strings.Cut(body, " ")
		if i == 1 {
			id = inst
		}
		if resp.StatusCode != 200 || inst != id || n != strconv.Itoa(i) {
			t.Fatalf("request %d: %d %q (instance %s)", i, resp.StatusCode, body, id)
		}
	}
	var metrics bytes.Buffer
	p.WritePrometheus(&metrics)
	for _, want := range []string{
		"edgepixel_pop_instances_started_total 1\n",
		"edgepixel_pop_instance_startup_seconds_count 1\n",
	} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("no %q in metrics:\n%s", want, metrics.String())
		}
	}
	if st := p.InstanceStartups(); len(st) != 1 || st[0] <= 0 {
		t.Errorf("instance startups %v, want one positive duration", st)
	}
}

func TestConcurrency(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.Instances, c.MaxInstances = 2, 4 })
	const workers, total = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, total)
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	client := &http.Client{Timeout: 20 * time.Second}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				want := fmt.Sprintf("payload-%d-%s", i, strings.Repeat("x", i*37))
				resp, err := client.Post(p.URL+"/echo", "text/plain", strings.NewReader(want))
				if err != nil {
					errs <- err
					continue
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 || string(got) != want {
					errs <- fmt.Errorf("request %d: %d, %d bytes", i, resp.StatusCode, len(got))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGuestPanic(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.Instances, c.MaxInstances = 1, 2 })
	resp, body := p.get(t, "/panic")
	if resp.StatusCode != 500 {
		t.Errorf("panic: %d %q", resp.StatusCode, body)
	}
	for range 3 {
		resp, body = p.get(t, "/counter")
		if resp.StatusCode != 200 {
			t.Fatalf("after panic: %d %q", resp.StatusCode, body)
		}
	}
	poptest.WaitFor(t, "panic message on stderr", func() bool { return strings.Contains(p.Stderr.String(), "guest panics on purpose") })
	var metrics bytes.Buffer
	p.WritePrometheus(&metrics)
	if !strings.Contains(metrics.String(), "edgepixel_pop_instances_failed_total 1\n") {
		t.Errorf("metrics:\n%s", metrics.String())
	}
}

func TestShutdownRunsPostLoopCode(t *testing.T) {
	be := newBackend(t)
	m := manifest(t, fmt.Sprintf(`
[local_server.backends.aggregator]
url = %q
[local_server.config_stores.guest]
format = "inline-toml"
[local_server.config_stores.guest.contents]
final_backend = "aggregator"
`, be.URL))
	p := startPOP(t, m, func(c *Config) { c.Instances, c.MaxInstances = 1, 1 })
	for range 3 {
		p.get(t, "/counter")
	}
	p.ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-be.got:
		if rec.Path != "/final" || !strings.HasPrefix(rec.Body, "bye ") || !strings.HasSuffix(rec.Body, " 3") {
			t.Errorf("final send: %+v", rec)
		}
	default:
		t.Fatal("the guest's post-ServeMany send did not reach the backend before Shutdown returned")
	}
}

func TestNextRequestTimeoutReplacesInstance(t *testing.T) {
	m := manifest(t, `
[local_server.config_stores.guest]
format = "inline-toml"
[local_server.config_stores.guest.contents]
next_timeout_ms = "50"
`)
	p := startPOP(t, m, func(c *Config) { c.Instances, c.MaxInstances = 1, 1 })
	_, first := p.get(t, "/counter")
	time.Sleep(200 * time.Millisecond)
	resp, second := p.get(t, "/counter")
	a, _, _ := strings.Cut(first, " ")
	b, n, _ := strings.Cut(second, " ")
	if resp.StatusCode != 200 || a == b || n != "1" {
		t.Errorf("expected a fresh instance after the idle timeout: %q then %q", first, second)
	}
}

func TestMaxRequestsEndsInstance(t *testing.T) {
	m := manifest(t, `
[local_server.config_stores.guest]
format = "inline-toml"
[local_server.config_stores.guest.contents]
max_requests = "2"
`)
	p := startPOP(t, m, func(c *Config) { c.Instances, c.MaxInstances = 1, 1 })
	seen := map[string]bool{}
	for range 6 {
		resp, body := p.get(t, "/counter")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		id, _, _ := strings.Cut(body, " ")
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Errorf("6 requests at 2 per instance used %d instances", len(seen))
	}
}

func TestHostcallErrorPaths(t *testing.T) {
	p := startPOP(t, nil, func(c *Config) { c.WasmPath = rawGuestWasm; c.Instances, c.MaxInstances = 1, 1 })
	resp, body := p.get(t, "/probe")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %q\nstderr: %s", resp.StatusCode, body, p.Stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		"method_get_ok":             "0",
		"method":                    "GET",
		"method_get_short_buf":      "4", // $buflen ...
		"method_needed":             "3", // ... with the needed size
		"method_get_unknown_handle": "3", // $badf
		"method_get_invalid_handle": "3",
		"method_get_zero_handle":    "3",
		"method_get_body_handle":    "3",
		"method_get_bad_pointer":    "2", // $inval
		"names_get_bad_pointer":     "2",
		"names_get_tiny_buf":        "4",
		"header_remove_absent":      "2",
		"body_write_req_handle":     "3",
		"body_write_bad_end":        "2",
		"body_read_downstream":      "0",
		"device_lookup_unknown":     "10", // $none: no record for it (fastly_device_detection.go)
		"config_store_open_missing": "3",
		"resp_close":                "0",
		"resp_close_again":          "3",
		"status_set_invalid":        "2",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %s", k, got[k], want)
		}
	}
}
