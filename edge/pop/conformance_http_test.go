package pop

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
)

// Conformance tests for the HTTP area: testdata/httpguest drives the
// hostcalls through fsthttp, testdata/rawhttp calls them directly for the
// error statuses. Expected values are Fastly's (or Viceroy's where Fastly
// documents nothing); see the comments at each check.

func startHTTPGuest(t *testing.T, guest, toml string, instances int) *testPOP {
	t.Helper()
	var m = manifest(t, toml)
	return startPOP(t, m, func(c *Config) {
		c.WasmPath = guestPath(guest)
		c.Instances, c.MaxInstances = instances, instances
	})
}

func getJSON(t *testing.T, p *testPOP, path string, hdr http.Header, v any) *http.Response {
	t.Helper()
	resp, body := p.do(t, "GET", path, nil, hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v in %q", path, err, body)
	}
	return resp
}

func shortSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// TestHTTPHeaderBuffers sends what forces every buffer protocol path: a URL
// longer than the SDK's first uri_get buffer (1 KiB, so $buflen and a
// retry), a header value longer than its 8 KiB header buffer, and one
// header with 300 values (several multi-value cursor calls); the guest
// echoes them as response headers, which the host reads back the same way.
func TestHTTPHeaderBuffers(t *testing.T) {
	p := startHTTPGuest(t, "httpguest", "", 1)
	query := "q=" + strings.Repeat("u", 5000)
	long := strings.Repeat("L", 20000)
	var multi []string
	for i := range 300 {
		multi = append(multi, fmt.Sprintf("value-%03d-%s", i, strings.Repeat("m", 20)))
	}
	hdr := http.Header{"X-Long": {long}, "X-Multi": multi}
	var got struct {
		URLLen     int    `json:"url_len"`
		QueryLen   int    `json:"query_len"`
		LongLen    int    `json:"long_len"`
		LongSHA    string `json:"long_sha"`
		MultiCount int    `json:"multi_count"`
		MultiSHA   string `json:"multi_sha"`
	}
	resp := getJSON(t, p, "/headers?"+query, hdr, &got)
	if want := len(p.URL + "/headers?" + query); got.URLLen != want || got.QueryLen != len(query) {
		t.Errorf("url length %d (query %d), want %d (%d)", got.URLLen, got.QueryLen, want, len(query))
	}
	if got.LongLen != len(long) || got.LongSHA != shortSHA(long) {
		t.Errorf("long header: %d bytes, sha %s", got.LongLen, got.LongSHA)
	}
	if got.MultiCount != 300 || got.MultiSHA != shortSHA(strings.Join(multi, "|")) {
		t.Errorf("multi header: %d values, sha %s (order or content differs)", got.MultiCount, got.MultiSHA)
	}
	if v := resp.Header.Get("X-Resp-Long"); v != long {
		t.Errorf("X-Resp-Long: %d bytes back", len(v))
	}
	if v := resp.Header.Values("X-Resp-Multi"); strings.Join(v, "|") != strings.Join(multi, "|") {
		t.Errorf("X-Resp-Multi: %d values back", len(v))
	}
}

// TestHTTPDownstreamLimits: Fastly refuses client requests over its 8 KB
// URL limit (414) and 69 KB header section limit (431) before the guest
// runs; requests just inside the limits reach the guest.
func TestHTTPDownstreamLimits(t *testing.T) {
	p := startHTTPGuest(t, "httpguest", "", 1)
	pad := func(n int) string {
		base := "/headers?q="
		return base + strings.Repeat("x", n-len(base))
	}
	for _, tc := range []struct {
		path string
		hdr  http.Header
		code int
	}{
		{pad(maxURLLen), nil, 200},
		{pad(maxURLLen + 1), nil, 414},
		{"/headers", http.Header{"X-Fat": slicesRepeat(strings.Repeat("h", 7000), 9)}, 200},  // ~63 KB
		{"/headers", http.Header{"X-Fat": slicesRepeat(strings.Repeat("h", 7000), 11)}, 431}, // ~77 KB
	} {
		resp, body := p.do(t, "GET", tc.path, nil, tc.hdr)
		if resp.StatusCode != tc.code {
			t.Errorf("path %d bytes, %d header values: %d, want %d (%.60q)", len(tc.path), len(tc.hdr["X-Fat"]), resp.StatusCode, tc.code, body)
		}
		if tc.code != 200 && strings.Contains(body, "url_len") {
			t.Errorf("the guest ran for a request over the limits")
		}
	}
}

func slicesRepeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

type beInfoJSON struct {
	Name, Target, HostOverride             string
	Dynamic, SSL                           bool
	ConnectMs, FirstByteMs, BetweenBytesMs int64
}

// TestHTTPDynamicBackends registers a dynamic backend through fsthttp, reads
// its configuration back through the fastly_backend getters, sends to it,
// and checks name collisions: the same name again, and a static backend's
// name, are both "name in use" ($error). Registrations live as long as the
// instance, so the second request on the same instance finds the name taken
// and can still send.
func TestHTTPDynamicBackends(t *testing.T) {
	dyn := newBackend(t)
	static := newBackend(t)
	p := startHTTPGuest(t, "httpguest", fmt.Sprintf(`
[local_server.backends.static]
url = %q
`, static.URL), 1)
	target := strings.TrimPrefix(dyn.URL, "http://")
	path := "/dynamic?name=dyn1&target=" + url.QueryEscape(target)

	var got struct {
		Registered  *beInfoJSON `json:"registered"`
		RegisterErr string      `json:"register_err"`
		FromName    *beInfoJSON `json:"from_name"`
		SendStatus  int         `json:"send_status"`
		SendBody    string      `json:"send_body"`
		SendErr     string      `json:"send_err"`
		AgainInUse  bool        `json:"again_in_use"`
		StaticInUse bool        `json:"static_in_use"`
	}
	getJSON(t, p, path, nil, &got)
	want := beInfoJSON{Name: "dyn1", Target: target, HostOverride: "dyn.example", Dynamic: true,
		ConnectMs: 1234, FirstByteMs: 5678, BetweenBytesMs: 910}
	if got.Registered == nil || *got.Registered != want {
		t.Errorf("registered: %+v (err %q), want %+v", got.Registered, got.RegisterErr, want)
	}
	if got.FromName == nil || *got.FromName != want {
		t.Errorf("BackendFromName: %+v, want %+v", got.FromName, want)
	}
	if got.SendStatus != 207 || got.SendBody != `backend got GET /dyn?x=1 body=""` {
		t.Errorf("send to dynamic backend: %d %q %q", got.SendStatus, got.SendBody, got.SendErr)
	}
	select {
	case rec := <-dyn.got:
		if rec.Host != "dyn.example" {
			t.Errorf("dynamic backend saw Host %q, want the host override", rec.Host)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dynamic backend got no request")
	}
	if !got.AgainInUse || !got.StaticInUse {
		t.Errorf("name collisions: again=%v static=%v, want both ErrBackendNameInUse", got.AgainInUse, got.StaticInUse)
	}
	if len(static.reqs) != 0 {
		t.Errorf("the static backend got requests: %+v", static.reqs)
	}

	// Same instance, next request: the registration is still there.
	got.Registered, got.RegisterErr, got.SendStatus = nil, "", 0
	getJSON(t, p, path, nil, &got)
	if got.Registered != nil || !strings.Contains(got.RegisterErr, "already in use") || got.SendStatus != 207 {
		t.Errorf("second request: registered=%+v err=%q send=%d", got.Registered, got.RegisterErr, got.SendStatus)
	}

	// A static backend answers the same getters: not dynamic, the
	// defaults of Fastly's timeouts.
	var info beInfoJSON
	getJSON(t, p, "/backendinfo?name=static", nil, &info)
	wantStatic := beInfoJSON{Name: "static", Target: strings.TrimPrefix(static.URL, "http://"),
		ConnectMs: 1000, FirstByteMs: 15000, BetweenBytesMs: 10000}
	if info != wantStatic {
		t.Errorf("static backend: %+v, want %+v", info, wantStatic)
	}
	var missing struct{ Err string }
	getJSON(t, p, "/backendinfo?name=nope", nil, &missing)
	if missing.Err != "backend not found" {
		t.Errorf("unknown backend info: %q", missing.Err)
	}
	var sent struct {
		NotFound bool `json:"not_found"`
		Err      string
	}
	getJSON(t, p, "/send?name=nope&path=/x", nil, &sent)
	if !sent.NotFound {
		t.Errorf("send to an unknown backend: %q, want ErrBackendNotFound", sent.Err)
	}
}

// TestHTTPBackendSendLimit: Fastly allows 32 backend requests per
// execution. The 33rd and later sends fail with $limitexceeded without
// reaching the backend; the next downstream request starts a new count.
func TestHTTPBackendSendLimit(t *testing.T) {
	be := newBackend(t)
	p := startHTTPGuest(t, "httpguest", fmt.Sprintf(`
[local_server.backends.static]
url = %q
`, be.URL), 1)
	var results []string
	getJSON(t, p, "/sends?name=static&n=34", nil, &results)
	if len(results) != 34 {
		t.Fatalf("%d results", len(results))
	}
	for i, r := range results {
		if i < 32 && r != "ok" {
			t.Errorf("send %d: %q", i+1, r)
		}
		if i >= 32 && !strings.Contains(r, "LimitExceeded") {
			t.Errorf("send %d: %q, want a limit exceeded error", i+1, r)
		}
	}
	be.mu.Lock()
	n := len(be.reqs)
	be.mu.Unlock()
	if n != 32 {
		t.Errorf("the backend received %d requests, want 32", n)
	}
	getJSON(t, p, "/sends?name=static&n=2", nil, &results)
	if strings.Join(results, ",") != "ok,ok" {
		t.Errorf("next execution: %q", results)
	}
}

// trailerBackend answers with a body followed by trailers, and records the
// trailers of the requests it receives.
type trailerBackend struct {
	*httptest.Server
	mu       sync.Mutex
	trailers []http.Header
}

func newTrailerBackend(t *testing.T) *trailerBackend {
	tb := &trailerBackend{}
	tb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		tb.mu.Lock()
		tb.trailers = append(tb.trailers, r.Trailer.Clone())
		tb.mu.Unlock()
		w.Header().Set("Trailer", "X-Backend-Sum, X-Multi-T")
		io.WriteString(w, "body with trailers")
		w.Header().Set("X-Backend-Sum", "42")
		w.Header().Add("X-Multi-T", "a")
		w.Header().Add("X-Multi-T", "b")
	}))
	t.Cleanup(tb.Close)
	return tb
}

func lowerKeys(h map[string][]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[strings.ToLower(k)] = strings.Join(v, ",")
	}
	return out
}

// TestHTTPTrailers covers trailers in all three directions: a streamed
// guest response ending with trailers (sent chunked to the client), a
// backend response's trailers read by the guest ($again until the body has
// been read, as the ABI says), and a backend response passed through to the
// client with its trailers.
func TestHTTPTrailers(t *testing.T) {
	tb := newTrailerBackend(t)
	p := startHTTPGuest(t, "httpguest", fmt.Sprintf(`
[local_server.backends.tb]
url = %q
`, tb.URL), 1)

	resp, body := p.get(t, "/trailers/resp")
	sum := sha256.Sum256([]byte(body))
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "chunk 0\n") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if resp.ContentLength != -1 {
		t.Errorf("a response with trailers went out with Content-Length %d", resp.ContentLength)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("X-Checksum trailer %q (trailers %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("X-Late"); got != "late value" {
		t.Errorf("X-Late trailer %q (trailers %v)", got, resp.Trailer)
	}

	var got struct {
		EarlyNotReady bool `json:"early_not_ready"`
		Body          string
		Trailers      map[string][]string
		Err           string
	}
	getJSON(t, p, "/trailers/backend?name=tb", nil, &got)
	if !got.EarlyNotReady {
		t.Errorf("trailers were readable before the body was read")
	}
	tr := lowerKeys(got.Trailers)
	if got.Body != "body with trailers" || tr["x-backend-sum"] != "42" || tr["x-multi-t"] != "a,b" {
		t.Errorf("guest read body %q trailers %v (err %q)", got.Body, got.Trailers, got.Err)
	}

	resp, body = p.get(t, "/trailers/backend?name=tb&passthrough=1")
	if body != "body with trailers" || resp.Trailer.Get("X-Backend-Sum") != "42" ||
		strings.Join(resp.Trailer.Values("X-Multi-T"), ",") != "a,b" {
		t.Errorf("passthrough: %q trailers %v", body, resp.Trailer)
	}
}

// TestHTTPClosedBodyWrite: writing to a response body after closing it is
// a bad handle, which fsthttp reports as ErrClosed.
func TestHTTPClosedBodyWrite(t *testing.T) {
	p := startHTTPGuest(t, "httpguest", "", 1)
	resp, body := p.get(t, "/closedbody")
	if resp.StatusCode != 200 || body != "closing" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	poptest.WaitFor(t, "the guest's report", func() bool { return strings.Contains(p.Stdout.String(), "closedbody write: ") })
	if out := p.Stdout.String(); !strings.Contains(out, "closedbody write: closed=true") {
		t.Errorf("write after close: %q", out)
	}
}

// TestHTTPRawErrorPaths checks the statuses of the HTTP-area hostcalls on
// paths the SDK never takes, through testdata/rawhttp.
func TestHTTPRawErrorPaths(t *testing.T) {
	tb := newTrailerBackend(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slow.Close)
	p := startHTTPGuest(t, "rawhttp", fmt.Sprintf(`
[local_server.backends.static]
url = %q
[local_server.backends.slow]
url = %q
`, tb.URL, slow.URL), 1)
	resp, body := p.get(t, "/probe")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		// register_dynamic_backend: malformed input is $inval, a taken
		// name $error (Viceroy; fsthttp maps it to ErrBackendNameInUse).
		"dyn_reserved_bit":    "2",
		"dyn_unknown_bit":     "2",
		"dyn_empty_name":      "2",
		"dyn_bad_target":      "2",
		"dyn_tls_version_bad": "2",
		"dyn_ok":              "0",
		"dyn_again":           "1",
		"dyn_static_name":     "1",
		// fastly_backend getters on the dynamic backend.
		"d1_exists":          "0",
		"d1_exists_v":        "1",
		"d1_is_dynamic":      "0",
		"d1_is_dynamic_v":    "1",
		"d1_port":            "0",
		"d1_port_v":          "9",
		"d1_between_bytes":   "0",
		"d1_between_bytes_v": "777",
		"d1_override_host":   "0",
		"d1_override_host_v": "raw.example",
		"d1_host_short_buf":  "4", // $buflen with the needed size
		"d1_host_needed":     "9",
		"d1_ssl_min_plain":   "10", // no TLS: no TLS version ($none)
		// ... on a static one, and on an unknown one ($inval; exists
		// answers 0 instead).
		"static_is_dynamic":    "0",
		"static_is_dynamic_v":  "0",
		"static_override_host": "10",
		"nope_exists":          "0",
		"nope_exists_v":        "0",
		"nope_is_dynamic":      "2",
		"nope_port":            "2",
		// Trailers: $again until the body has been read to its end.
		"trailer_append":                "0",
		"trailer_append_bad_name":       "2",
		"trailer_append_invalid_handle": "3",
		"trailer_append_req_handle":     "3",
		"trailer_names_unread":          "14",
		"trailer_value_unread":          "14",
		"trailer_names_read":            "0",
		"trailer_names_v":               "x-sum,",
		"trailer_names_cursor":          "-1",
		"trailer_names_tiny_buf":        "4",
		"trailer_names_needed":          "6",
		"trailer_value_read":            "0",
		"trailer_value_v":               "abc",
		"trailer_value_absent":          "10",
		"trailer_names_invalid_handle":  "3",
		// A closed body handle is gone.
		"body_close":        "0",
		"body_write_closed": "3",
		"body_close_again":  "3",
		// One outstanding next_request promise at a time (Viceroy:
		// $limitexceeded); the refused call writes no handle.
		"next_request_1":             "0",
		"next_request_2":             "13",
		"next_request_2_handle":      "true",
		"next_request_abandon":       "0",
		"next_request_3":             "0",
		"next_request_abandon_3":     "0",
		"next_request_abandon_again": "3",
		// Guest-set heads over Fastly's limits.
		"uri_set_too_long":    "2",
		"uri_set_ok":          "0",
		"send_head_too_large": "11",
		// Polling a request in flight answers at once, not done, with
		// invalid handles; wait then completes it.
		"send_async_slow":   "0",
		"poll_pending":      "0",
		"poll_fast":         "true",
		"poll_done":         "0",
		"poll_resp_invalid": "true",
		"poll_bad_handle":   "3",
		"wait_pending":      "0",
		"wait_detail_tag":   "1",
		"wait_again":        "3",
		// A request body with trailers.
		"send_with_trailers":      "0",
		"send_with_trailers_wait": "0",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %s", k, got[k], want)
		}
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var seen []string
	for _, h := range tb.trailers {
		seen = append(seen, h.Get("X-Req-Trailer"))
	}
	if len(tb.trailers) != 1 || seen[0] != "yes" {
		t.Errorf("backend saw request trailers %v, want one request with X-Req-Trailer: yes", tb.trailers)
	}
}

// TestHTTPFirstByteTimeout: a backend that does not answer within its
// first_byte_timeout fails the send, and the POP's log says which timeout
// ended it: the transport's own error was only "context canceled"
// (tester91).
func TestHTTPFirstByteTimeout(t *testing.T) {
	slow := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	var log syncBuffer
	p := startPOP(t, manifest(t, fmt.Sprintf(`
[local_server.backends.slow]
url = %q
first_byte_timeout_ms = 200
`, slow)), func(c *Config) {
		c.WasmPath = guestPath("httpguest")
		c.Instances, c.MaxInstances = 1, 1
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	var got struct{ Err string }
	getJSON(t, p, "/send?name=slow&path=/x", nil, &got)
	if got.Err == "" {
		t.Fatal("the send did not fail")
	}
	if !strings.Contains(log.String(), "no answer within the backend's first-byte timeout (200ms): ") {
		t.Errorf("the log does not name the timeout:\n%s", log.String())
	}
}
