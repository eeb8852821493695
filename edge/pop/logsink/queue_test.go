package logsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/poptest"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// lineCollector records every line delivered, and answers with status()
// (200 when nil).
type lineCollector struct {
	*httptest.Server
	mu       sync.Mutex
	lines    []string
	requests atomic.Int32
	status   atomic.Pointer[func(lines int) int]
}

func newLineCollector(t *testing.T) *lineCollector {
	c := &lineCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if f := c.status.Load(); f != nil {
			if st := (*f)(len(lines)); st != 200 {
				w.WriteHeader(st)
				return
			}
		}
		c.mu.Lock()
		c.lines = append(c.lines, lines...)
		c.mu.Unlock()
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *lineCollector) answer(f func(lines int) int) { c.status.Store(&f) }

func (c *lineCollector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

// waitFor waits until the collector holds n lines.
func (c *lineCollector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := c.got()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func queueEndpoint(url, dir, durability string) Endpoint {
	return Endpoint{Name: "q", Kind: HTTP, URL: url, Queue: dir, Durability: durability, Period: 20 * time.Millisecond}
}

func init() {
	queueTestHook = func(q *queueSink) {
		q.backoff = 5 * time.Millisecond
		q.probeEvery = 10 * time.Millisecond
		if n := os.Getenv("EDGEPIXEL_QUEUE_SEGMENT"); n != "" {
			fmt.Sscan(n, &q.segBytes)
		}
	}
}

// openTestQueue opens a queue of segBytes segments (0: the default).
func openTestQueue(t *testing.T, ep Endpoint, segBytes int64) *queueSink {
	t.Helper()
	if segBytes > 0 {
		t.Setenv("EDGEPIXEL_QUEUE_SEGMENT", fmt.Sprint(segBytes))
	}
	q, err := openQueue(ep.withDefaults(), quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQueue(t, q) })
	return q
}

func closeQueue(t *testing.T, q *queueSink) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.close(ctx); err != nil {
		t.Error(err)
	}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"%s":%d}`, prefix, i)
	}
	return out
}

// Delivered in order, the checkpoint moving on and segments deleted.
func TestQueueDelivers(t *testing.T) {
	for _, dur := range []string{DurabilityWrite, DurabilityFsync} {
		t.Run(dur, func(t *testing.T) {
			c := newLineCollector(t)
			dir := t.TempDir()
			q := openTestQueue(t, queueEndpoint(c.URL, dir, dur), 200) // a few lines a segment
			want := numbered("n", 100)
			var wg sync.WaitGroup
			for w := range 4 { // instances write concurrently
				wg.Go(func() {
					for _, l := range want[w*25 : (w+1)*25] {
						if err := q.Write("q", []byte(l)); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			got := c.waitFor(t, len(want))
			slices.Sort(got)
			w := slices.Clone(want)
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("delivered %d lines, want %d", len(got), len(want))
			}
			// The queue holds visitors' events: only the POP's user reads it.
			ents, err := os.ReadDir(dir)
			if err != nil || len(ents) == 0 {
				t.Fatalf("queue directory: %v %v", ents, err)
			}
			for _, e := range ents {
				if fi, err := e.Info(); err != nil || fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s: mode %v, want no access for group or others (%v)", e.Name(), fi.Mode(), err)
				}
			}
			if dur == DurabilityFsync && (q.syncs.Load() == 0 || q.syncs.Load() > 100) {
				t.Errorf("%d fsyncs for 100 writes", q.syncs.Load())
			}
			deadline := time.Now().Add(10 * time.Second)
			for q.st.queued.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			segs, _ := segments(dir)
			if q.st.queued.Load() != 0 || len(segs) > 2 {
				t.Errorf("queued %d bytes, %d segments left", q.st.queued.Load(), len(segs))
			}
		})
	}
}

// The first collector refuses (503) or is gone: every batch goes to the
// failover collector within the same attempt, in order, and nothing is
// dropped.
func TestQueueFailsOver(t *testing.T) {
	for _, first := range []string{"refuses", "gone"} {
		t.Run(first, func(t *testing.T) {
			a, b := newLineCollector(t), newLineCollector(t)
			a.answer(func(int) int { return http.StatusServiceUnavailable })
			url := a.URL
			if first == "gone" {
				a.Close()
			}
			ep := queueEndpoint(url, t.TempDir(), DurabilityWrite)
			ep.Failover = []string{b.URL}
			q := openTestQueue(t, ep, 0)
			want := numbered("n", 50)
			for _, l := range want {
				if err := q.Write("q", []byte(l)); err != nil {
					t.Fatal(err)
				}
			}
			if got := b.waitFor(t, len(want)); !slices.Equal(got, want) {
				t.Fatalf("the failover collector got %d lines %v, want %d in order", len(got), got, len(want))
			}
			if got := a.got(); len(got) != 0 {
				t.Errorf("the refusing collector kept %d lines", len(got))
			}
			if q.st.dropped.Load() != 0 {
				t.Errorf("%d dropped", q.st.dropped.Load())
			}
		})
	}
}

// A batch a failover collector took is delivered, yet the endpoint has
// lost its spare: /healthz (Degraded), the metrics and the log say so,
// once per spell and without either collector's token, until the URL
// takes batches again. Meanwhile the URL is tried once per primaryProbe,
// not for every batch; when the failover fails too, the deliveries are
// failing, and Degraded says that instead.
func TestFailoverIsShown(t *testing.T) {
	for _, queued := range []bool{false, true} {
		t.Run(fmt.Sprint("queued=", queued), func(t *testing.T) {
			a, b := newLineCollector(t), newLineCollector(t)
			a.answer(func(int) int { return http.StatusServiceUnavailable })
			ep := Endpoint{Name: "j", Kind: HTTP, URL: a.URL + "/in?token=s3cret", Period: 20 * time.Millisecond,
				Failover: []string{b.URL + "/in?key=k3y"}}
			if queued {
				ep.Queue, ep.Durability = t.TempDir(), DurabilityWrite
			}
			var logged proc.Buffer
			ls, err := Open([]Endpoint{ep}, io.Discard, slog.New(slog.NewTextHandler(&logged, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ls.Close(context.Background())
			sk := ls.Lookup("j")
			degraded := func() string { return strings.Join(ls.Degraded(), "\n") }
			secret := func(where, s string) {
				if strings.Contains(s, "s3cret") || strings.Contains(s, "k3y") {
					t.Errorf("%s names a token: %s", where, s)
				}
			}

			writeLines(sk, "a1", "a2")
			b.waitFor(t, 2)
			d := eventually(t, "a failover line", degraded, func(d string) bool { return strings.Contains(d, "failover collector") })
			if !strings.HasPrefix(d, "log endpoint j: its URL has been failing for") || !strings.Contains(d, "answered 503") ||
				!strings.Contains(d, "failover collector "+b.URL+"/in?… takes its batches") {
				t.Errorf("degraded while failing over: %q", d)
			}
			secret("degraded", d)
			tried := a.requests.Load()
			writeLines(sk, "a3") // a batch of its own, within the spell
			b.waitFor(t, 3)
			if n := a.requests.Load(); n != tried {
				t.Errorf("the URL was tried %d more times within primaryProbe", n-tried)
			}
			// (The collector has the lines before send counts them.)
			metrics := func() string {
				var m bytes.Buffer
				ls.WritePrometheus(&m)
				return m.String()
			}
			failovers := regexp.MustCompile(`edgepixel_pop_log_failover_batches_total\{endpoint="j",kind="http"\} ([2-9]|\d\d)`)
			eventually(t, "2 batches failed over in the metrics", metrics, failovers.MatchString)

			b.answer(func(int) int { return http.StatusServiceUnavailable })
			writeLines(sk, "a4")
			d = eventually(t, "a failing line", degraded, func(d string) bool { return strings.Contains(d, "deliveries failing") })
			if strings.Contains(d, "failover collector") || strings.Count(d, "answered 503") != 2 {
				t.Errorf("degraded while both fail: %q", d)
			}
			secret("degraded", d)

			sk.stats().failMu.Lock()
			sk.stats().probeEvery = time.Nanosecond
			sk.stats().failMu.Unlock()
			a.answer(func(int) int { return http.StatusOK })
			if got := a.waitFor(t, 1); !slices.Equal(got, []string{"a4"}) {
				t.Errorf("the URL got %q once back", got)
			}
			eventually(t, "no degraded line", degraded, func(d string) bool { return d == "" })
			l := logged.String()
			if strings.Count(l, "a failover collector takes its batches") != 1 || strings.Count(l, "takes deliveries again") != 1 ||
				queued && (!strings.Contains(l, "delivery failed; the batch stays queued") || strings.Count(l, "deliveries succeed again") != 1) {
				t.Errorf("log:\n%s", l)
			}
			secret("the log", l)

			// A new spell counts its own batches.
			a.answer(func(int) int { return http.StatusServiceUnavailable })
			b.answer(func(int) int { return http.StatusOK })
			writeLines(sk, "a5")
			eventually(t, "a new spell's line", degraded, func(d string) bool { return strings.Contains(d, "takes its batches (1 so far)") })
		})
	}
}

// eventually polls get until ok accepts its value, for up to 10 s, and
// returns the value; the test fails if it never does.
func eventually[T any](t *testing.T, what string, get func() T, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := get()
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s: last %v", what, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The collector is down: the queue keeps everything on disk across a
// restart of the POP and delivers it all, once, when the collector is
// back.
func TestQueueSurvivesOutageAndRestart(t *testing.T) {
	c := newLineCollector(t)
	c.answer(func(int) int { return 503 })
	dir := t.TempDir()
	ep := queueEndpoint(c.URL, dir, DurabilityWrite)
	t.Setenv("EDGEPIXEL_QUEUE_SEGMENT", "300")
	q, err := openQueue(ep.withDefaults(), quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := numbered("a", 50)
	writeLines(q, want...)
	deadline := time.Now().Add(10 * time.Second)
	for c.requests.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	closeQueue(t, q) // shut down during the outage: nothing is dropped
	if q.st.dropped.Load() != 0 || len(c.got()) != 0 {
		t.Fatalf("%d dropped, %d delivered during the outage", q.st.dropped.Load(), len(c.got()))
	}
	// Looked at while the collector still refuses: once it takes them,
	// the queue may be empty before the check.
	q2 := openTestQueue(t, ep, 0)
	if q2.st.queued.Load() == 0 {
		t.Fatal("nothing queued after the restart")
	}
	c.answer(func(int) int { return 200 })
	more := numbered("b", 5)
	writeLines(q2, more...)
	got := c.waitFor(t, 55)
	if !slices.Equal(got, append(want, more...)) {
		t.Fatalf("delivered %d lines (in order: %v), want 55", len(got), slices.Equal(got[:min(50, len(got))], want[:min(50, len(got))]))
	}
}

// A second POP cannot use a queue directory in use.
func TestQueueLocked(t *testing.T) {
	dir := t.TempDir()
	ep := queueEndpoint("http://127.0.0.1:1/", dir, "")
	openTestQueue(t, ep, 0)
	if _, err := openQueue(ep.withDefaults(), quietLog(), nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
}

// Past its disk budget the queue refuses entries, counting them, and the
// guest's write fails; a line over max_bytes is refused too.
func TestQueueBudget(t *testing.T) {
	ep := queueEndpoint("http://127.0.0.1:1/", t.TempDir(), "")
	ep.MaxBuffer, ep.MaxBytes = 1000, 100
	q := openTestQueue(t, ep, 0)
	var full int
	for _, l := range numbered("x", 200) {
		if err := q.Write("q", []byte(l)); errors.Is(err, ErrQueueFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if full == 0 || q.st.refused.Load() != uint64(full) || q.st.dropped.Load() != 0 || q.st.queued.Load() > 1000 {
		t.Fatalf("%d refused, %d counted refused, %d dropped, %d queued", full, q.st.refused.Load(), q.st.dropped.Load(), q.st.queued.Load())
	}
	if err := q.Write("q", make([]byte, 100)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("long line: %v", err)
	}
}

// A batch the collector refuses as too large is split; a single line it
// refuses is dropped and counted, and delivery goes on.
func TestQueueSplitsOn413(t *testing.T) {
	c := newLineCollector(t)
	c.answer(func(lines int) int {
		if lines > 4 {
			return http.StatusRequestEntityTooLarge
		}
		return 200
	})
	q := openTestQueue(t, queueEndpoint(c.URL, t.TempDir(), ""), 0)
	want := numbered("s", 20)
	writeLines(q, want...)
	if got := c.waitFor(t, 20); !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	c.answer(func(int) int { return http.StatusRequestEntityTooLarge })
	writeLines(q, "huge")
	deadline := time.Now().Add(10 * time.Second)
	for q.st.dropped.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.answer(func(int) int { return 200 })
	writeLines(q, "after")
	if got := c.waitFor(t, 21); q.st.dropped.Load() != 1 || got[len(got)-1] != "after" {
		t.Fatalf("dropped %d, last %q", q.st.dropped.Load(), got[len(got)-1])
	}
}

// A collector that refuses every entry as too large costs one warning at
// the start of the run and one when it ends, not one per entry.
func TestQueueAll413WarnsOnce(t *testing.T) {
	c := newLineCollector(t)
	c.answer(func(int) int { return http.StatusRequestEntityTooLarge })
	var logs proc.Buffer
	q, err := openQueue(queueEndpoint(c.URL, t.TempDir(), "").withDefaults(), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQueue(t, q) })
	writeLines(q, numbered("x", 30)...)
	poptest.WaitFor(t, "every entry dropped", func() bool { return q.st.dropped.Load() == 30 })
	if n := strings.Count(logs.String(), "as too large even alone"); n != 1 {
		t.Errorf("%d warnings for 30 entries refused:\n%s", n, logs.String())
	}
	c.answer(func(int) int { return 200 })
	writeLines(q, "after")
	c.waitFor(t, 1)
	poptest.WaitFor(t, "the run's summary", func() bool { return strings.Contains(logs.String(), "entries=30") })
	if n := strings.Count(logs.String(), "as too large even alone"); n != 2 {
		t.Errorf("%d warnings, want the run's first and its summary:\n%s", n, logs.String())
	}
}

// A line cut short by a crash (never acknowledged) is cut off at start.
func TestQueueCutsTornTail(t *testing.T) {
	c := newLineCollector(t)
	c.answer(func(int) int { return 503 })
	dir := t.TempDir()
	ep := queueEndpoint(c.URL, dir, "")
	q, err := openQueue(ep.withDefaults(), quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(q, "one", "two")
	closeQueue(t, q)
	segs, _ := segments(dir)
	f, err := os.OpenFile(segmentPath(dir, segs[len(segs)-1]), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"torn":`)
	f.Close()
	c.answer(func(int) int { return 200 })
	openTestQueue(t, ep, 0)
	if got := c.waitFor(t, 2); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("got %q", got)
	}
	time.Sleep(50 * time.Millisecond)
	if got := c.got(); len(got) != 2 {
		t.Fatalf("got %q", got)
	}
}

// An entry whose write returned is delivered even if the process is
// killed (SIGKILL) right after: the helper process writes and kills
// itself, and a new queue delivers everything it acknowledged.
func TestQueueSurvivesKill(t *testing.T) {
	if dir := os.Getenv("EDGEPIXEL_QUEUE_KILL_DIR"); dir != "" {
		ep := queueEndpoint("http://127.0.0.1:1/", dir, DurabilityWrite)
		q, err := openQueue(ep.withDefaults(), quietLog(), nil)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		for i, l := range numbered("k", 300) {
			if err := q.Write("q", []byte(l)); err != nil {
				fmt.Println("write:", err)
				os.Exit(1)
			}
			fmt.Println("acked", i) // after the write returned
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueSurvivesKill$")
	cmd.Env = append(os.Environ(), "EDGEPIXEL_QUEUE_KILL_DIR="+dir, "EDGEPIXEL_QUEUE_SEGMENT=1000")
	out, _ := cmd.Output()
	acked := strings.Count(string(out), "acked")
	if acked != 300 {
		t.Fatalf("helper acknowledged %d writes: %s", acked, out)
	}
	c := newLineCollector(t)
	openTestQueue(t, queueEndpoint(c.URL, dir, DurabilityWrite), 0)
	if got := c.waitFor(t, 300); !slices.Equal(got, numbered("k", 300)) {
		t.Fatalf("delivered %d of 300 acknowledged lines", len(got))
	}
}

func BenchmarkQueueWrite(b *testing.B) {
	for _, dur := range []string{DurabilityWrite, DurabilityFsync} {
		b.Run(dur, func(b *testing.B) {
			ep := queueEndpoint("http://127.0.0.1:1/", b.TempDir(), dur)
			ep.MaxBuffer = 1 << 40
			q, err := openQueue(ep.withDefaults(), quietLog(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				b.StopTimer()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				q.close(ctx)
			}()
			line := []byte(numbered("bench", 1)[0] + strings.Repeat("x", 300))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := q.Write("q", line); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func TestParseQueueOptions(t *testing.T) {
	ep, err := ParseEndpoint("ev=http://h/in?queue=/var/q&durability=fsync&keep=1")
	if err != nil || ep.Queue != "/var/q" || ep.Durability != DurabilityFsync || ep.URL != "http://h/in?keep=1" || !ep.Queued() {
		t.Fatalf("%+v %v", ep, err)
	}
	if d := ep.withDefaults(); d.MaxBuffer != defaultQueueBudget {
		t.Errorf("disk budget %d", d.MaxBuffer)
	}
	if d := (Endpoint{Kind: HTTP, Queue: "/q"}).withDefaults(); d.Durability != DurabilityWrite {
		t.Errorf("default durability %q", d.Durability)
	}
	if ep, _ := ParseEndpoint("ev=http://h/?queue=memory"); ep.Queued() {
		t.Error("queue=memory is queued on disk")
	}
	if _, err := ParseEndpoint("a=http://h/?queue=/q&durability=sometimes"); err == nil {
		t.Error("durability=sometimes accepted")
	}
	mem, _ := ParseEndpoint("a=http://h/?durability=fsync")
	if _, err := Open([]Endpoint{mem}, io.Discard, quietLog(), nil); err == nil || !strings.Contains(err.Error(), "needs a disk queue") {
		t.Errorf("durability without a queue: %v", err)
	}
}

// The write latency histogram is exported per queued endpoint.
func TestQueueWriteLatencyMetric(t *testing.T) {
	ep := queueEndpoint("http://127.0.0.1:1/", t.TempDir(), DurabilityFsync)
	set, err := Open([]Endpoint{ep}, io.Discard, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		set.Close(ctx)
	}()
	for range 3 {
		if err := set.Lookup("q").Write("q", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, want := range []string{`edgepixel_pop_log_write_seconds_count{endpoint="q",durability="fsync"} 3`,
		`edgepixel_pop_log_write_seconds_bucket{endpoint="q",durability="fsync",le="+Inf"} 3`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

// The disk queue's write fails (a full disk, found by a new-user tester
// with the queue on a tiny tmpfs): the endpoint says so in Degraded and a
// metric for as long as it lasts, even while older lines are delivered,
// counts what it refuses, and takes entries again by itself once the disk
// writes, with no half line left in the queue.
func TestQueueRecoversFromWriteFailure(t *testing.T) {
	for _, dur := range []string{DurabilityWrite, DurabilityFsync} {
		t.Run(dur, func(t *testing.T) {
			c := newLineCollector(t)
			c.answer(func(int) int { return http.StatusServiceUnavailable })
			dir := t.TempDir()
			set, q := openQueueSet(t, queueEndpoint(c.URL, dir, dur))
			write := func(l string) error { return q.Write("q", []byte(l)) }
			metric := func() string {
				var b strings.Builder
				set.WritePrometheus(&b)
				for l := range strings.Lines(b.String()) {
					if strings.HasPrefix(l, `edgepixel_pop_log_queue_write_failing_seconds{endpoint="q"`) {
						return strings.TrimSpace(l[strings.LastIndexByte(l, ' ')+1:])
					}
				}
				return "absent"
			}
			queueDegraded := func() string {
				for _, d := range set.Degraded() {
					if strings.Contains(d, "disk queue cannot write") {
						return d
					}
				}
				return ""
			}

			before := numbered("before", 5)
			for _, l := range before {
				if err := write(l); err != nil {
					t.Fatal(err)
				}
			}
			if m := metric(); m != "0" {
				t.Errorf("write failing metric %s before any failure, want 0", m)
			}

			// The disk fills: half a line is written, then ENOSPC.
			var failing atomic.Bool
			failing.Store(true)
			q.mu.Lock()
			q.writeFile = func(f *os.File, b []byte) (int, error) {
				if failing.Load() {
					n, _ := f.Write(b[:len(b)/2])
					return n, syscall.ENOSPC
				}
				return f.Write(b)
			}
			q.mu.Unlock()
			refused := 0
			for range 3 {
				if err := write(`{"refused":1}`); !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("write on a full disk: %v, want ENOSPC", err)
				}
				refused++
			}
			d := queueDegraded()
			if d == "" || !strings.Contains(d, "log endpoint q") || !strings.Contains(d, dir) || !strings.Contains(d, "no space left") {
				t.Errorf("Degraded while the disk is full: %q", set.Degraded())
			}
			if m := metric(); m == "0" || m == "absent" {
				t.Errorf("write failing metric %s while the disk is full", m)
			}

			// The collector takes the older lines: the disk is still full.
			c.answer(func(int) int { return 200 })
			c.waitFor(t, len(before))
			deadline := time.Now().Add(10 * time.Second)
			for q.st.queued.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if queueDegraded() == "" {
				t.Errorf("a delivery cleared the disk failure from Degraded: %q", set.Degraded())
			}
			for range 3 {
				if write(`{"refused":2}`) == nil {
					t.Fatal("a write on a full disk succeeded")
				}
				refused++
			}
			if got, d := q.st.refused.Load(), q.st.dropped.Load(); got != uint64(refused) || d != 0 {
				t.Errorf("%d entries counted refused and %d dropped, want %d refused", got, d, refused)
			}

			// Space again: the state clears without an entry to retry
			// the disk (the prober's), and a write succeeds, without a
			// restart.
			failing.Store(false)
			deadline = time.Now().Add(10 * time.Second)
			for queueDegraded() != "" || metric() != "0" {
				if time.Now().After(deadline) {
					t.Fatalf("the disk failure stays without an entry: Degraded %q, write failing metric %s", set.Degraded(), metric())
				}
				time.Sleep(5 * time.Millisecond)
			}
			for write(`{"after":-1}`) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the queue does not take entries again once the disk has space")
				}
				time.Sleep(time.Millisecond)
			}
			if queueDegraded() != "" || metric() != "0" {
				t.Errorf("after recovery: Degraded %q, write failing metric %s", set.Degraded(), metric())
			}
			after := numbered("after", 5)
			for _, l := range after {
				if err := write(l); err != nil {
					t.Fatalf("write after recovery: %v", err)
				}
			}
			want := append(slices.Clone(before), `{"after":-1}`)
			want = append(want, after...)
			got := c.waitFor(t, len(want))
			if !slices.Equal(got, want) {
				t.Errorf("delivered %q,\nwant %q", got, want)
			}
		})
	}
}

// At durability=fsync an fsync that fails (EIO) fails its writers and
// puts the queue in the same state as a failed write, until a retry's
// fsync succeeds.
func TestQueueRecoversFromFsyncFailure(t *testing.T) {
	c := newLineCollector(t)
	set, q := openQueueSet(t, queueEndpoint(c.URL, t.TempDir(), DurabilityFsync))
	var failing atomic.Bool
	failing.Store(true)
	q.mu.Lock()
	q.syncFile = func(f *os.File) error {
		if failing.Load() {
			return syscall.EIO
		}
		return f.Sync()
	}
	q.mu.Unlock()
	if err := q.Write("q", []byte(`{"lost":1}`)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write whose fsync fails: %v, want EIO", err)
	}
	if d := set.Degraded(); len(d) != 1 || !strings.Contains(d[0], "disk queue cannot write") {
		t.Errorf("Degraded after a failed fsync: %q", d)
	}
	failing.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for q.Write("q", []byte(`{"after":0}`)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the queue does not take entries again once fsync succeeds")
		}
		time.Sleep(time.Millisecond)
	}
	if d := set.Degraded(); len(d) != 0 {
		t.Errorf("Degraded after recovery: %q", d)
	}
	if err := q.Write("q", []byte(`{"after":1}`)); err != nil {
		t.Fatal(err)
	}
	// The line whose fsync failed was written: it is delivered too (the
	// aggregator deduplicates it against its guest's other delivery).
	if got := c.waitFor(t, 3); len(got) != 3 || got[1] != `{"after":0}` || got[2] != `{"after":1}` {
		t.Errorf("delivered %q", got)
	}
}

// openQueueSet opens a set of the one queued endpoint ep, named "q", and
// closes it when the test ends.
func openQueueSet(t *testing.T, ep Endpoint) (*Set, *queueSink) {
	t.Helper()
	set, err := Open([]Endpoint{ep}, io.Discard, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		set.Close(ctx)
	})
	return set, set.Lookup("q").(*queueSink)
}

// countersLine is a counters line as an edge module writes it when its
// instance ends with events no path took.
func countersLine(lost uint64) string {
	c := wire.Counters{Pop: "test", Sites: []wire.SiteCounts{{Site: "s", Time: 1, Hits: lost, Events: lost,
		Drops: []wire.Drop{{Reason: wire.DropDeliveryFailed, N: lost}}}}}
	return string(wire.AppendCountersLine(nil, &c))
}

// A queue at max_buffer refuses events but still takes counters lines,
// within countersReserve: the count of the refused events has to travel.
func TestQueueTakesCountersWhenFull(t *testing.T) {
	c := newLineCollector(t)
	c.answer(func(int) int { return http.StatusServiceUnavailable })
	ep := queueEndpoint(c.URL, t.TempDir(), "")
	ep.MaxBuffer, ep.MaxBytes = 1000, 200
	q := openTestQueue(t, ep, 0)
	var taken []string
	for _, l := range numbered("x", 200) {
		if err := q.Write("q", []byte(l)); err == nil {
			taken = append(taken, l)
		} else if !errors.Is(err, ErrQueueFull) {
			t.Fatal(err)
		}
	}
	if err := q.Write("q", []byte(`{"x":"one more"}`)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("an event line on a full queue: %v, want ErrQueueFull", err)
	}
	line := countersLine(7)
	if err := q.Write("q", []byte(line)); err != nil {
		t.Fatalf("a counters line on a full queue: %v", err)
	}
	// The reserve is bounded too.
	var refused int
	for range countersReserve/len(line) + 10 {
		if q.Write("q", []byte(line)) != nil {
			refused++
		}
	}
	if refused == 0 || q.st.queued.Load() > 1000+countersReserve {
		t.Errorf("%d counters lines refused past the reserve, %d bytes queued", refused, q.st.queued.Load())
	}
	c.answer(func(int) int { return 200 })
	got := c.waitFor(t, len(taken)+1)
	if !slices.Equal(got[:len(taken)+1], append(taken, line)) {
		t.Errorf("delivered %d lines, not the %d taken then the counters line", len(got), len(taken))
	}
}

// While the disk cannot write, counters lines are held in memory, taken
// as written, and written and delivered once it writes again, with no
// further entry to retry the disk.
func TestQueueHoldsCountersWhileDiskFails(t *testing.T) {
	for _, dur := range []string{DurabilityWrite, DurabilityFsync} {
		t.Run(dur, func(t *testing.T) {
			c := newLineCollector(t)
			_, q := openQueueSet(t, queueEndpoint(c.URL, t.TempDir(), dur))
			var failing atomic.Bool
			lines := holdCounters(t, q, &failing)
			if r, d := q.st.refused.Load(), q.st.dropped.Load(); r != 1 || d != 0 {
				t.Errorf("%d entries refused and %d dropped, want 1 refused (the event line)", r, d)
			}
			failing.Store(false)
			if got := c.waitFor(t, 2); !slices.Equal(got, lines) {
				t.Errorf("delivered %q, want the held counters lines %q", got, lines)
			}
			q.mu.Lock()
			held := len(q.held)
			q.mu.Unlock()
			if held != 0 {
				t.Errorf("%d lines still held after recovery", held)
			}
		})
	}
}

// holdCounters makes q's disk refuse writes (ENOSPC) until failing is
// set false, writes an event line, which is refused, and two counters
// lines, which are held; it returns the counters lines.
func holdCounters(t *testing.T, q *queueSink, failing *atomic.Bool) []string {
	t.Helper()
	failing.Store(true)
	q.mu.Lock()
	q.writeFile = func(f *os.File, b []byte) (int, error) {
		if failing.Load() {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	}
	q.mu.Unlock()
	if err := q.Write("q", []byte(`{"event":1}`)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("an event line on a full disk: %v, want ENOSPC", err)
	}
	lines := []string{countersLine(3), countersLine(5)}
	for _, l := range lines {
		if err := q.Write("q", []byte(l)); err != nil {
			t.Fatalf("a counters line on a full disk: %v, want it held", err)
		}
	}
	return lines
}

// A queue that closes while its disk still cannot write sends the held
// counters lines to the collector directly, and counts them as lost only
// when the collector does not take them either.
func TestQueueSendsHeldCountersAsItCloses(t *testing.T) {
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprint("collector up ", up), func(t *testing.T) {
			c := newLineCollector(t)
			if !up {
				c.answer(func(int) int { return http.StatusServiceUnavailable })
			}
			set, q := openQueueSet(t, queueEndpoint(c.URL, t.TempDir(), DurabilityWrite))
			lines := holdCounters(t, q, new(atomic.Bool))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			set.Close(ctx)
			got, dropped := c.got(), q.st.dropped.Load()
			if r := q.st.refused.Load(); r != 1 {
				t.Errorf("%d refused, want the event line", r)
			}
			if up && (!slices.Equal(got, lines) || dropped != 0) {
				t.Errorf("delivered %q with %d dropped, want the held lines %q", got, dropped, lines)
			}
			if !up && (len(got) != 0 || dropped != 2) {
				t.Errorf("delivered %q with %d dropped, want none delivered and the 2 held lines dropped", got, dropped)
			}
		})
	}
}

// The checkpoint written in place (a full disk has no room for a new
// file) reads back as the new line alone.
func TestOverwriteCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), checkpointName)
	if err := os.WriteFile(path, []byte("12 99999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := overwriteCheckpoint(path, []byte("13 100\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if f := strings.Fields(string(b)); !slices.Equal(f, []string{"13", "100"}) {
		t.Errorf("checkpoint reads %q", b)
	}
}

// A queue whose disk fails after everything it holds was delivered gives
// up its newest segment, so that the sender deletes it: what the queue
// itself filled is freed, and the disk can write again.
// With no checkpoint written yet and none that can be (the disk was
// full before the first delivery), the delivered segment goes too:
// resume reads a missing segment as delivered.
func TestQueueFreesWhatItFilled(t *testing.T) {
	for _, noCheckpoint := range []bool{false, true} {
		t.Run(fmt.Sprint("no checkpoint ", noCheckpoint), func(t *testing.T) { queueFreesWhatItFilled(t, noCheckpoint) })
	}
}

func queueFreesWhatItFilled(t *testing.T, noCheckpoint bool) {
	c := newLineCollector(t)
	dir := t.TempDir()
	if noCheckpoint {
		// checkpoint.tmp a directory that cannot be removed: neither a
		// new checkpoint nor one written in place can be.
		block := filepath.Join(dir, checkpointName+".tmp")
		if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	_, q := openQueueSet(t, queueEndpoint(c.URL, dir, ""))
	for _, l := range numbered("x", 3) {
		if err := q.Write("q", []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor(t, 3)
	for deadline := time.Now().Add(10 * time.Second); q.st.queued.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lines stay queued")
		}
	}
	first, err := segments(dir)
	if err != nil || len(first) != 1 {
		t.Fatalf("segments %v %v", first, err)
	}
	q.mu.Lock()
	q.writeFile = func(*os.File, []byte) (int, error) { return 0, syscall.ENOSPC }
	q.mu.Unlock()
	if err := q.Write("q", []byte(`{"full":1}`)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write on a full disk: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		segs, _ := segments(dir)
		if !slices.Contains(segs, first[0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delivered segment %d stays: %v", first[0], segs)
		}
	}
}
