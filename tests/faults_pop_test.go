package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/store"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/edgepixel/edgepixel/tests/proc"
	"github.com/edgepixel/edgepixel/tests/stack"
)

// TestFaultsThroughPOP sends hits with unique markers through the real
// POP running the edge module while the aggregator is stopped and the POP
// is killed, and holds every fault to the same account: every hit the POP
// answered is in ClickHouse exactly once (and nothing that was never
// sent), and the edges' counters reported to the aggregator match (hits
// answered = events accepted = events stored, no drops, no loss).
//
// Three stacks run at once, each a fault sequence:
//
//   - journal (the POP's default): at steady load, (1) the aggregator
//     stopped for 60 s, then (2) the POP killed with SIGKILL and started
//     again, on the log queue it left on disk;
//   - journal, idle: (3) the aggregator stopped, a single hit, the
//     aggregator down for 2 minutes;
//   - batches (Fastly's way: signed batches, the fallback log endpoint when
//     they fail): the same single hit and 2 minutes (the instance holding
//     it ends while the aggregator is down), then the aggregator stopped
//     for 20 s at steady load.
func TestFaultsThroughPOP(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	// The sequences run at once whatever -parallel says: each waits on
	// outages far more than it computes.
	var wg sync.WaitGroup
	for name, seq := range map[string]func(t *testing.T){
		"journal under load":    journalUnderLoad,
		"journal single hit":    func(t *testing.T) { singleHitOutage(t, faultStack(t, stack.DeliveryJournal)) },
		"batches with fallback": batchesWithFallback,
	} {
		wg.Go(func() { t.Run(name, seq) })
	}
	wg.Wait()
}

// journalUnderLoad: faults (1) and (2) at steady load, journal delivery.
func journalUnderLoad(t *testing.T) {
	s := faultStack(t, stack.DeliveryJournal)
	l := startLoad(t, s, "load", 4)
	defer l.stop()
	l.run(5 * time.Second)
	stopAggregator(t, s, 60*time.Second, l)
	l.run(3 * time.Second)
	checkAccount(t, s, l, "after the aggregator was down for 60 s")

	l.run(3 * time.Second)
	s.Pop.Kill() // SIGKILL: no drain, no flush
	t.Logf("POP killed after %d answered hits", l.answeredCount())
	l.run(time.Second) // hits meet a closed port meanwhile: not answered
	restartPop(t, s)
	l.run(5 * time.Second)
	l.stop()
	checkAccount(t, s, l, "after the POP was killed and restarted")
	if n := popMetric(t, s, "edgepixel_pop_log_lines_delivered_total", stack.JournalEndpoint); n == 0 {
		t.Error("nothing was delivered through the journal")
	}
}

// batchesWithFallback: fault (3), then the aggregator stopped at load,
// delivering Fastly's way.
func batchesWithFallback(t *testing.T) {
	s := faultStack(t, stack.DeliveryBatches)
	singleHitOutage(t, s)
	l := startLoad(t, s, "load", 4)
	defer l.stop()
	l.run(5 * time.Second)
	stopAggregator(t, s, 20*time.Second, l)
	l.run(5 * time.Second)
	l.stop()
	checkAccount(t, s, l, "after the aggregator was down for 20 s at load")
	if n := popMetric(t, s, "edgepixel_pop_log_lines_delivered_total", stack.FallbackEndpoint); n == 0 {
		t.Error("nothing was delivered through the fallback endpoint")
	}
}

// TestJournalRefused: a journal whose queue refuses every line (10 bytes
// at most a line, and in all) fails the module's log write; the module then delivers the
// hits by batches, and nothing is lost or doubled, and the refusals are
// counted by the POP.
func TestJournalRefused(t *testing.T) {
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stack.Options{JournalQuery: "max_bytes=10&max_buffer=10", PopArgs: []string{"--admin-addr", admin}})
	l := startLoad(t, s, "refused", 2)
	l.run(3 * time.Second)
	l.stop()
	checkAccount(t, s, l, "with the journal refusing every line")
	if n := popMetric(t, s, "edgepixel_pop_log_lines_refused_total", stack.JournalEndpoint); n < l.answeredCount() {
		t.Errorf("the journal counted %d refused lines for %d hits", n, l.answeredCount())
	}
	if n := popMetric(t, s, "edgepixel_pop_log_lines_dropped_total", stack.JournalEndpoint); n != 0 {
		t.Errorf("the journal counted %d lines lost, but every refused one was delivered otherwise", n)
	}
}

// TestFullQueuesCountTheLoss: with the aggregator down and both log
// queues at their budget, the events an instance holds when it ends can
// be delivered nowhere; they are lost, and counted: its counters line
// still queues (beyond max_buffer), so /api/loss shows every answered hit
// that is not stored as delivery_failed, once the aggregator is back. A
// tester's run had lost 329 answered events with no count reaching it.
func TestFullQueuesCountTheLoss(t *testing.T) {
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	full := "max_bytes=2000&max_buffer=4000"
	s := startStack(t, stack.Options{JournalQuery: full, FallbackQuery: full, PopArgs: []string{"--admin-addr", admin}})
	if err := s.Aggregator.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, s, "fullq", 2)
	l.run(3 * time.Second)
	l.stop()
	if err := s.Pop.Stop(30 * time.Second); err != nil { // its instances end, counting what they hold
		t.Fatal(err)
	}
	if err := s.StartAggregator(context.Background()); err != nil {
		t.Fatal(err)
	}
	restartPop(t, s) // its queues resume
	answered := uint64(l.answeredCount())
	var rows uint64
	var loss store.Loss
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		rows = uint64(atoi(t, chQuery(t, s.ClickHouse.HTTPURL, "SELECT count() FROM events WHERE site = '"+l.site+"'")))
		loss = lossOf(t, s, l.site)
		if loss.Events >= answered && loss.Stored == rows && rows+loss.Dropped[wire.DropDeliveryFailed] >= answered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hits answered, %d stored; within 3 minutes /api/loss said %+v", answered, rows, loss)
		}
	}
	t.Logf("%d hits answered, %d stored; /api/loss: %+v", answered, rows, loss)
	if rows == answered {
		t.Fatal("every answered hit was stored: the queues were not full, and the test tests nothing")
	}
	if loss.Events != answered || loss.Dropped[wire.DropDeliveryFailed] != answered-rows || loss.Lost != answered-rows {
		t.Errorf("%d answered, %d stored: /api/loss counts %d events accepted, %d delivery_failed, %d lost; want %d, %d, %d",
			answered, rows, loss.Events, loss.Dropped[wire.DropDeliveryFailed], loss.Lost, answered, answered-rows, answered-rows)
	}
}

// faultStack starts a stack with delivery d, its POP serving /metrics.
func faultStack(t *testing.T, d string) *stack.Stack {
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return startStack(t, stack.Options{Delivery: d, PopArgs: []string{"--admin-addr", admin}})
}

// singleHitOutage is fault (3): the aggregator stopped, one hit, the
// aggregator down for 2 minutes, then started again.
func singleHitOutage(t *testing.T, s *stack.Stack) {
	l := startLoad(t, s, "single", 0)
	if err := s.Aggregator.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	l.hit(0)
	if l.answeredCount() != 1 {
		t.Fatal("the single hit was not answered")
	}
	time.Sleep(2 * time.Minute)
	if err := s.StartAggregator(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkAccount(t, s, l, "a single hit with the aggregator down for 2 minutes")
}

// stopAggregator stops the aggregator (SIGTERM) for d while l runs, and
// starts it again.
func stopAggregator(t *testing.T, s *stack.Stack, d time.Duration, l *load) {
	t.Helper()
	if err := s.Aggregator.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := l.answeredCount()
	l.run(d)
	t.Logf("%d hits answered while the aggregator was down for %v", l.answeredCount()-before, d)
	if err := s.StartAggregator(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func restartPop(t *testing.T, s *stack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.StartPop(ctx); err != nil {
		t.Fatal(err)
	}
}

// load sends pixel hits of site "f-<name>-<n>" with unique page URLs from
// a few workers, recording which were answered with the GIF.
type load struct {
	t    *testing.T
	s    *stack.Stack
	site string

	mu       sync.Mutex
	sent     map[string]bool // every URL requested
	answered map[string]bool // URLs answered with the GIF
	failed   int             // requests that got no answer
	next     int

	workers  int
	running  chan struct{} // closed while the workers should send
	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	client   *http.Client
}

var loadSeq struct {
	sync.Mutex
	n int
}

func startLoad(t *testing.T, s *stack.Stack, name string, workers int) *load {
	loadSeq.Lock()
	loadSeq.n++
	site := fmt.Sprintf("f-%s-%d", name, loadSeq.n)
	loadSeq.Unlock()
	l := &load{t: t, s: s, site: site, sent: map[string]bool{}, answered: map[string]bool{}, workers: workers,
		quit: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go l.work(w)
	}
	return l
}

// run lets the workers send for d.
func (l *load) run(d time.Duration) {
	l.mu.Lock()
	l.running = make(chan struct{})
	close(l.running)
	l.mu.Unlock()
	time.Sleep(d)
	l.mu.Lock()
	l.running = nil
	l.mu.Unlock()
}

func (l *load) stop() {
	l.stopOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
	})
}

func (l *load) work(w int) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		running := l.running
		l.mu.Unlock()
		select {
		case <-l.quit:
			return
		default:
		}
		if running == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l.hit(w)
		time.Sleep(10 * time.Millisecond)
	}
}

// hit sends one hit with a new marker.
func (l *load) hit(int) {
	l.mu.Lock()
	page := fmt.Sprintf("https://faults.example/%s/%d", l.site, l.next)
	l.next++
	l.sent[page] = true
	l.mu.Unlock()
	resp, err := l.client.Get(pixelURL(l.s.PopURL, l.site, page, ""))
	ok := false
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		ok = rerr == nil && resp.StatusCode == 200 && string(body) == string(pixel.GIF) && resp.Header.Get("X-Edgepixel-Drop") == ""
	}
	l.mu.Lock()
	if ok {
		l.answered[page] = true
	} else {
		l.failed++
	}
	l.mu.Unlock()
}

func (l *load) answeredCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answered)
}

// checkAccount waits until the aggregator has stored what the POP
// answered and the counters agree, then checks it exactly: each answered
// URL stored once, nothing stored that was not sent, no row inserted
// twice (the per-minute rollup counts every insert, whatever merges
// collapse later), and the edges' counters: hits = events accepted =
// events stored, no drops.
func checkAccount(t *testing.T, s *stack.Stack, l *load, what string) {
	t.Helper()
	l.mu.Lock()
	answered := len(l.answered)
	sent := len(l.sent)
	failed := l.failed
	l.mu.Unlock()
	ch := s.ClickHouse.HTTPURL
	q := func(sql string) string { return chQuery(t, ch, strings.ReplaceAll(sql, "SITE", "'"+l.site+"'")) }
	var rows, uniq, inserted int
	var state string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		f := strings.Fields(q("SELECT count(), uniqExact(url), (SELECT sum(n) FROM events_per_minute WHERE site = SITE) FROM events WHERE site = SITE"))
		rows, uniq, inserted = atoi(t, f[0]), atoi(t, f[1]), atoi(t, f[2])
		loss := lossOf(t, s, l.site)
		state = fmt.Sprintf("%d rows (%d distinct urls, %d inserted); counters %+v", rows, uniq, inserted, loss)
		if rows >= answered && uint64(rows) == loss.Hits && loss.Stored == uint64(rows) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d answered, %d sent: not all stored and counted within 3 minutes: %s", what, answered, sent, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second) // a double would land now
	f := strings.Fields(q("SELECT count(), uniqExact(url), uniqExact(event_id), (SELECT sum(n) FROM events_per_minute WHERE site = SITE) FROM events WHERE site = SITE"))
	rows, uniq, ids, inserted := atoi(t, f[0]), atoi(t, f[1]), atoi(t, f[2]), atoi(t, f[3])
	loss := lossOf(t, s, l.site)
	t.Logf("%s: %d hits sent, %d answered, %d without an answer; stored %d rows, %d distinct urls and ids, %d inserted; edge counters: %d hits, %d events accepted, %d stored, drops %v, lost %d",
		what, sent, answered, failed, rows, uniq, inserted, loss.Hits, loss.Events, loss.Stored, loss.Dropped, loss.Lost)
	if rows != uniq || rows != ids || inserted != rows {
		t.Errorf("%s: %d rows, %d distinct urls, %d distinct ids, %d inserted: a hit stored twice", what, rows, uniq, ids, inserted)
	}
	stored := map[string]bool{}
	for _, u := range strings.Split(q("SELECT url FROM events WHERE site = SITE"), "\n") {
		stored[u] = true
	}
	l.mu.Lock()
	var missing, strangers int
	for u := range l.answered {
		if !stored[u] {
			missing++
		}
	}
	for u := range stored {
		if !l.sent[u] {
			strangers++
		}
	}
	l.mu.Unlock()
	if missing > 0 || strangers > 0 {
		t.Errorf("%s: %d answered hits not stored, %d stored hits never sent", what, missing, strangers)
	}
	var dropped uint64
	for _, n := range loss.Dropped {
		dropped += n
	}
	// Every hit the edge answered: counted, accepted, stored once. (A hit
	// the POP took but could not answer before it was killed may be
	// among them: it was counted and journaled before its answer.)
	if loss.Hits != uint64(rows) || loss.Events != uint64(rows) || loss.Stored != uint64(rows) || dropped != 0 || loss.Lost != 0 {
		t.Errorf("%s: edge counters %+v do not match %d stored events (hits answered = events stored + counted drops)", what, loss, rows)
	}
}

// popMetric reads one labelled counter of the POP's /metrics (its
// --admin-addr).
func popMetric(t *testing.T, s *stack.Stack, name, endpoint string) int {
	t.Helper()
	admin := ""
	for i, a := range s.Options().PopArgs {
		if a == "--admin-addr" {
			admin = s.Options().PopArgs[i+1]
		}
	}
	_, m := get(t, "http://"+admin+"/metrics", nil)
	re := regexp.MustCompile(regexp.QuoteMeta(name) + `\{endpoint="` + regexp.QuoteMeta(endpoint) + `"[^}]*\} (\d+)`)
	got := re.FindSubmatch(m)
	if got == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(got[1]))
	return n
}
