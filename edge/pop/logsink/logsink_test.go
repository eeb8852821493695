package logsink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// collector is an HTTP log collector that records each batch. The first
// failN requests are answered with failCode.
type collector struct {
	*httptest.Server
	batches  chan string
	headers  chan http.Header
	requests atomic.Int32
	failN    int32
	failCode int
}

func newCollector(t *testing.T, failN int32, failCode int) *collector {
	c := &collector{batches: make(chan string, 100), headers: make(chan http.Header, 100), failN: failN, failCode: failCode}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if n := c.requests.Add(1); n <= c.failN {
			w.WriteHeader(c.failCode)
			return
		}
		c.headers <- r.Header.Clone()
		c.batches <- string(body)
	}))
	t.Cleanup(c.Close)
	return c
}

// next waits for the next delivered batch. The generous timeout is for a
// loaded machine; nothing here depends on how fast delivery is.
func (c *collector) next(t *testing.T) string {
	t.Helper()
	select {
	case b := <-c.batches:
		return b
	case <-time.After(20 * time.Second):
		t.Fatal("no batch delivered")
		return ""
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testHTTPSink has a period that never ticks unless the test sends on
// the returned channel, so batching by size is deterministic.
func testHTTPSink(t *testing.T, ep Endpoint) (*httpSink, chan time.Time) {
	tick := make(chan time.Time)
	ep.Name = "t"
	s := newHTTPSink(ep.withDefaults(), quietLog(), tick)
	s.backoff = time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.close(ctx) // a no-op if the test closed it
	})
	return s, tick
}

func writeLines(s Sink, lines ...string) {
	for _, l := range lines {
		s.Write("t", []byte(l))
	}
}

func TestLogHTTPBatchesByEntries(t *testing.T) {
	c := newCollector(t, 0, 0)
	s, tick := testHTTPSink(t, Endpoint{URL: c.URL, MaxEntries: 2})
	writeLines(s, "a", "b", "c", "d", "e")
	if got := c.next(t); got != "a\nb\n" {
		t.Errorf("first batch %q", got)
	}
	if got := c.next(t); got != "c\nd\n" {
		t.Errorf("second batch %q", got)
	}
	tick <- time.Now() // the period seals the incomplete batch
	if got := c.next(t); got != "e\n" {
		t.Errorf("third batch %q", got)
	}
	poptest.WaitFor(t, "deliveries counted", func() bool { return s.st.delivered.Load() == 5 })
	if r := s.st.requests.Load(); r != 3 {
		t.Errorf("%d requests, want 3", r)
	}
}

func TestLogHTTPBatchesByPeriod(t *testing.T) {
	c := newCollector(t, 0, 0)
	s, tick := testHTTPSink(t, Endpoint{URL: c.URL, MaxEntries: 100})
	writeLines(s, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	tick <- time.Now()
	// All three in one batch: nothing was sent before the period ended.
	if got := c.next(t); got != "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n" {
		t.Errorf("batch %q", got)
	}
	if h := <-c.headers; h.Get("Content-Type") != "application/x-ndjson" || h.Get("User-Agent") != "edgepixel-pop" {
		t.Errorf("headers %v", h)
	}
}

func TestLogHTTPBatchesByBytes(t *testing.T) {
	c := newCollector(t, 0, 0)
	s, tick := testHTTPSink(t, Endpoint{URL: c.URL, MaxBytes: 10})
	writeLines(s, "1234", "5678", "abcd") // 5 bytes each with the newline: two per batch
	if got := c.next(t); got != "1234\n5678\n" {
		t.Errorf("first batch %q", got)
	}
	tick <- time.Now()
	if got := c.next(t); got != "abcd\n" {
		t.Errorf("second batch %q", got)
	}
	writeLines(s, "this line is longer than max_bytes")
	if r, d := s.st.refused.Load(), s.st.dropped.Load(); r != 1 || d != 0 {
		t.Errorf("refused %d, dropped %d, want the oversized entry refused", r, d)
	}
}

func TestLogHTTPRetriesAfter500(t *testing.T) {
	c := newCollector(t, 1, http.StatusInternalServerError)
	s, tick := testHTTPSink(t, Endpoint{URL: c.URL})
	writeLines(s, "x")
	tick <- time.Now()
	if got := c.next(t); got != "x\n" {
		t.Errorf("batch %q", got)
	}
	if r := c.requests.Load(); r != 2 {
		t.Errorf("%d requests, want 2 (one failure, one retry)", r)
	}
	poptest.WaitFor(t, "delivery counted", func() bool { return s.st.delivered.Load() == 1 })
	if f, d := s.st.failures.Load(), s.st.dropped.Load(); f != 1 || d != 0 {
		t.Errorf("failures %d dropped %d", f, d)
	}
}

// A batch the collector refuses as too large (413) is split until each
// part is taken, in order; an entry refused alone is dropped and counted.
func TestLogHTTPSplitsOn413(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) > 12 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	s, tick := testHTTPSink(t, Endpoint{URL: srv.URL})
	writeLines(s, "a1", "b22", "c3", "d444", "e5", "this one is too long")
	tick <- time.Now()
	poptest.WaitFor(t, "the batch delivered in parts", func() bool { return s.st.delivered.Load()+s.st.dropped.Load() == 6 })
	mu.Lock()
	defer mu.Unlock()
	if all := strings.Join(got, ""); all != "a1\nb22\nc3\nd444\ne5\n" {
		t.Errorf("delivered %q in %d parts, want every entry but the long one, in order", all, len(got))
	}
	if d := s.st.dropped.Load(); d != 1 {
		t.Errorf("dropped %d, want the entry refused alone", d)
	}
}

// A collector that refuses everything as too large costs one warning per
// batch, not one per entry.
func TestLogHTTPAll413WarnsOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(srv.Close)
	var logs proc.Buffer
	tick := make(chan time.Time)
	s := newHTTPSink(Endpoint{Name: "t", URL: srv.URL}.withDefaults(), slog.New(slog.NewTextHandler(&logs, nil)), tick)
	s.backoff = time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.close(ctx)
	})
	for i := range 50 {
		writeLines(s, fmt.Sprintf("entry %d", i))
	}
	tick <- time.Now()
	poptest.WaitFor(t, "every entry dropped", func() bool { return s.st.dropped.Load() == 50 })
	poptest.WaitFor(t, "the warning", func() bool { return strings.Contains(logs.String(), "even alone") })
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one batch:\n%s", n, logs.String())
	}
}

func TestSplitAt(t *testing.T) {
	for body, want := range map[string]int{"": 0, "a\n": 0, "a\nb\n": 2, "aaaa\nb\n": 5, "a\nbbbb\n": 2, "a\nb\nc\nd\n": 4} {
		if got := splitAt([]byte(body)); got != want {
			t.Errorf("splitAt(%q) = %d, want %d", body, got, want)
		}
	}
}

func TestLogHTTPPermanentErrorDrops(t *testing.T) {
	c := newCollector(t, 100, http.StatusBadRequest)
	s, tick := testHTTPSink(t, Endpoint{URL: c.URL})
	writeLines(s, "x", "y")
	tick <- time.Now()
	poptest.WaitFor(t, "drop", func() bool { return s.st.dropped.Load() == 2 })
	if r := c.requests.Load(); r != 1 {
		t.Errorf("%d requests: a 400 must not be retried", r)
	}
}

func TestLogHTTPBoundedBuffer(t *testing.T) {
	c := newCollector(t, 0, 0)
	// Never ticks, batches of 100 entries: everything stays queued.
	s, _ := testHTTPSink(t, Endpoint{URL: c.URL, MaxBuffer: 12, MaxBytes: 12})
	writeLines(s, "12345", "67890", "overflow")
	if w, r, q := s.st.written.Load(), s.st.refused.Load(), s.st.queued.Load(); w != 3 || r != 1 || q != 12 {
		t.Errorf("written %d refused %d queued %d, want 3 1 12", w, r, q)
	}
	// Close delivers the rest.
	if err := s.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.next(t); got != "12345\n67890\n" {
		t.Errorf("batch %q", got)
	}
}

func TestLogHTTPCloseDeliversWithHeader(t *testing.T) {
	c := newCollector(t, 0, 0)
	ep, err := ParseEndpoint("ev=" + c.URL + "/in?token=abc&header=Authorization:Bearer%20k&max_entries=1000&period=1h")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := testHTTPSink(t, ep)
	writeLines(s, "one", "two")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.next(t); got != "one\ntwo\n" {
		t.Errorf("batch %q", got)
	}
	if h := <-c.headers; h.Get("Authorization") != "Bearer k" {
		t.Errorf("Authorization %q", h.Get("Authorization"))
	}
}

// bearer_file sends the token a file holds (the aggregator's
// --log-token-file) as the bearer token, and is taken out of the URL; a
// missing or empty file, two of them, or one beside an Authorization
// header, are refused when the endpoint is parsed.
func TestLogHTTPBearerFile(t *testing.T) {
	dir := t.TempDir()
	file, empty := filepath.Join(dir, "log-token"), filepath.Join(dir, "empty")
	os.WriteFile(file, []byte("tok-A_b\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	c := newCollector(t, 0, 0)
	ep, err := ParseEndpoint("ev=" + c.URL + "/in?bearer_file=" + url.QueryEscape(file) + "&keep=me&period=1h")
	if err != nil {
		t.Fatal(err)
	}
	if ep.URL != c.URL+"/in?keep=me" || strings.Contains(fmt.Sprint(ep), file) {
		t.Errorf("endpoint %+v", ep)
	}
	s, _ := testHTTPSink(t, ep)
	writeLines(s, "one")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.next(t); got != "one\n" {
		t.Errorf("batch %q", got)
	}
	if h := <-c.headers; h.Get("Authorization") != "Bearer tok-A_b" {
		t.Errorf("Authorization %q", h.Get("Authorization"))
	}
	for spec, want := range map[string]string{
		"a=http://h/?bearer_file=" + url.QueryEscape(file+".missing"):                                "no such file",
		"a=http://h/?bearer_file=" + url.QueryEscape(empty):                                          "is empty: put the token in it",
		"a=http://h/?bearer_file=" + url.QueryEscape(file) + "&bearer_file=" + url.QueryEscape(file): "give one",
		"a=http://h/?header=Authorization:Bearer%20x&bearer_file=" + url.QueryEscape(file):           "no header=Authorization",
		"a=http://h/?bearer_file=":                                      "empty: give the path",
		"a=http://h/?bearer_file=&bearer_file=" + url.QueryEscape(file): "give one",
	} {
		if _, err := ParseEndpoint(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", spec, err, want)
		}
	}
}

func TestLogHTTPCloseGivesUpAtDeadline(t *testing.T) {
	c := newCollector(t, 1<<30, http.StatusServiceUnavailable)
	s, _ := testHTTPSink(t, Endpoint{URL: c.URL, Retries: 1 << 20})
	s.backoff = 50 * time.Millisecond
	writeLines(s, "lost")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.close(ctx); err == nil {
		t.Error("close reported success for an undelivered batch")
	}
	if d := s.st.dropped.Load(); d != 1 {
		t.Errorf("dropped %d", d)
	}
}

func TestParseLogEndpoint(t *testing.T) {
	ep, err := ParseEndpoint("ev=https://logs.example/x?period=2&max_entries=5&max_bytes=100&max_buffer=1000&retries=0&content_type=text/plain&header=X-A:1&header=X-B:two%20words&keep=me")
	if err != nil {
		t.Fatal(err)
	}
	want := Endpoint{Name: "ev", Kind: HTTP, URL: "https://logs.example/x?keep=me",
		Header: http.Header{"X-A": {"1"}, "X-B": {"two words"}}, ContentType: "text/plain",
		Period: 2 * time.Second, MaxEntries: 5, MaxBytes: 100, MaxBuffer: 1000, Retries: -1}
	if !reflect.DeepEqual(ep, want) {
		t.Errorf("got  %+v\nwant %+v", ep, want)
	}
	if d := ep.withDefaults(); d.Retries != 0 {
		t.Errorf("retries=0 became %d retries", d.Retries)
	}
	d := Endpoint{}.withDefaults()
	if d.Period != 5*time.Second || d.MaxEntries != 10000 || d.Retries != 5 {
		t.Errorf("defaults %+v", d)
	}
	ep, err = ParseEndpoint("j=http://a:1/ingest?failover=http%3A%2F%2Fb%3A2%2Fingest%3Ft%3D1&failover=https://c/&period=1s")
	if err != nil || ep.URL != "http://a:1/ingest" || !reflect.DeepEqual(ep.Failover, []string{"http://b:2/ingest?t=1", "https://c/"}) {
		t.Errorf("failover: %+v %v", ep, err)
	}
	for spec, kind := range map[string]string{"a=stdout": Stdout, "b=file:/tmp/x": File, "*=http://h/": HTTP} {
		if ep, err := ParseEndpoint(spec); err != nil || ep.Kind != kind {
			t.Errorf("%s: %+v %v", spec, ep, err)
		}
	}
	for _, bad := range []string{"", "noequals", "=stdout", "a=", "a=ftp://x", "a=file:", "a=http://h/?max_entries=-1",
		"a=http://h/?period=soon", "a=http://h/?header=novalue", "a=http:///nohost", "a=http://h/?failover=ftp://x", "a=http://h/?failover=nohost",
		// Values once replaced without a word (found by a new-user tester).
		"a=http://h/?period=0", "a=http://h/?max_entries=0", "a=http://h/?max_bytes=0", "a=http://h/?max_buffer=1000",
		"a=http://h/?max_bytes=100&max_buffer=99"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A refused endpoint's error names what is wrong without the credentials
// typed into it (a tester's mistyped endpoint printed its token).
func TestParseLogEndpointRedacts(t *testing.T) {
	for _, bad := range []string{
		"https://user:s3cret@collector/in",       // no NAME=
		"a=htps://user:s3cret@collector/in",      // unknown destination
		"a=https://collector/in%zz?token=s3cret", // a URL that does not parse
		"a=https://user:s3cret@collector:port/",  // nor this one
		"a=https://collector/in?header=Authorization%20Bearer%20s3cret",
		"a=https://collector/in?failover=ftp://user:s3cret@b/",
		// Without NAME=, the query's first '=' was taken for it.
		"https://u:s3cret@collector/in?queue=/q",
		"https://collector/in?access_token=s3cret",
		"a=htps://collector/in?header=Authorization:Bearer%20s3cret",
		"a=htps://collector/in?failover=https://u:s3cret@b/",
		"a=https://collector/in?failover=https://b/in?region=eu&dd-api-key=s3cret",
	} {
		_, err := ParseEndpoint(bad)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want an error without the secret", bad, err)
		}
	}
	// A failover URL's raw '?' is refused, saying to encode it, whether
	// or not parameters follow: its first '&' would end it.
	for _, raw := range []string{"a=https://collector/in?failover=https://b/in?region=eu&dd-api-key=k", "a=https://collector/in?period=1s&failover=https://b/?x", "a=https://collector/in?fail%6Fver=https://b/in?v=1&api_key=k"} {
		if _, err := ParseEndpoint(raw); err == nil || !strings.Contains(err.Error(), "percent-encode the whole failover URL") || !strings.Contains(err.Error(), "sent to https://collector/in") {
			t.Errorf("%s: %v", raw, err)
		}
	}
	// A delivery's error names the collector without its query's token
	// (net/http hides a password only).
	ep, err := ParseEndpoint("a=http://127.0.0.1:1/in?dd-api-key=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sendTo(context.Background(), http.DefaultClient, &ep, ep.URL, nil, sendTimeout); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a failed delivery: %v, want an error without the token", err)
	}
}

func TestLogFileSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ev.log")
	ls, err := Open([]Endpoint{{Name: "ev", Kind: File, Path: path}}, io.Discard, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(ls.Lookup("ev"), `{"a":1}`, "plain text")
	if ls.Lookup("other") != ls.fallback {
		t.Error("an unconfigured name must go to the default destination")
	}
	if err := ls.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "{\"a\":1}\nplain text\n" {
		t.Errorf("file holds %q", data)
	}
}

// Entries of a name nobody configured are printed, not delivered, and
// /healthz says so; a name configured as stdout on purpose, or a "*",
// is not listed.
func TestDegradedUnconfigured(t *testing.T) {
	var out bytes.Buffer
	ls, err := Open([]Endpoint{{Name: "shown", Kind: Stdout}}, &out, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close(context.Background())
	ls.Lookup("opened_only")
	ls.Lookup("shown").Write("shown", []byte("a"))
	for _, l := range []string{"b", "c"} {
		ls.Lookup("edgepixel_fallback").Write("edgepixel_fallback", []byte(l)) // as fastly_log writes
	}
	d := ls.Degraded()
	if len(d) != 1 || !strings.HasPrefix(d[0], "log endpoint edgepixel_fallback is not configured: 2 entries printed to stdout, not delivered") {
		t.Errorf("degraded %q", d)
	}
	all, err := Open([]Endpoint{{Name: "*", Kind: Stdout}}, &out, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close(context.Background())
	all.Lookup("edgepixel_fallback").Write("edgepixel_fallback", []byte("b"))
	if d := all.Degraded(); len(d) != 0 {
		t.Errorf("with a *: degraded %q", d)
	}
}

// A refusal's error carries the start of the collector's own words, on
// one line: edgepixel's aggregator says what is wrong with a token.
func TestSendKeepsTheRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "{\"error\":\"bad token: a '+' written in a URL query arrives as a space,\n write it as %2B\"}", http.StatusUnauthorized)
	}))
	defer srv.Close()
	ep := Endpoint{Name: "j", Kind: HTTP, URL: srv.URL}
	retry, status, err := send(context.Background(), srv.Client(), &ep, &sinkStats{}, quietLog(), []byte("x\n"))
	if retry || status != 401 || err == nil || !strings.Contains(err.Error(), `answered 401 Unauthorized: "{\"error\":\"bad token: a '+' written in a URL query arrives as a space, write it as %2B\"}" (check`) ||
		!strings.Contains(err.Error(), "read at start: restart the POP") {
		t.Errorf("retry %v, status %d, err %v: want the collector's words, and that a changed token needs a restart", retry, status, err)
	}
}
