// Package feed is the steady stream of signed batches that the fault tests
// (tests.TestFaults, cluster.TestCluster) send straight to aggregators the
// way an edge does, and the checks that hold what ClickHouse stored to
// what the aggregators acknowledged: every acknowledged event stored
// exactly once, none inserted twice, nothing stored that was not sent.
//
// Each batch holds 20 to 300 events with unique ids, about a tenth of them
// repeats of events sent before on the same lane; it is retried until the
// aggregator answers 200 (a 503 is retried quietly, any other answer is a
// test error), now and then sent again whole as if the 200 had been lost,
// and only then are its events acknowledged.
package feed

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/aggregator/spool"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Options say where a Feeder sends and how it reads the store.
type Options struct {
	// T receives the errors of the senders (a batch refused, or not
	// acknowledged after 600 attempts 100 ms apart).
	T *testing.T
	// Secret signs each attempt (wire.Sign).
	Secret []byte
	// Lanes is how many aggregators there are (at least 1). Sender i
	// sends to lane i % Lanes, and repeats events sent on its lane only:
	// an edge's retries go to the aggregator that did not answer.
	Lanes int
	// URL is lane's aggregator base URL (batches go to URL(lane)+"/ingest"),
	// read again at each attempt.
	URL func(lane int) string
	// Site is the events' site prefix: sites are Site+"0" to Site+"2".
	Site string
	// ResendOneIn: one batch in ResendOneIn is sent a second time once
	// acknowledged.
	ResendOneIn int

	// Query runs sql on a ClickHouse server (database edgepixel) that
	// reads all the events, and returns the answer trimmed.
	Query func(t *testing.T, sql string) string
	// Spooled is the bytes the aggregators hold in their spools, not yet
	// stored.
	Spooled func(t *testing.T) float64
	// Wait is how long CheckExact waits for the store to catch up, Poll
	// how often it reads it meanwhile.
	Wait, Poll time.Duration
	// ShortWhy says, in CheckExact's log line, why the per-minute rollup
	// may fall short of the events table.
	ShortWhy string
	// After, if set, runs at the end of a CheckExact that passed, with
	// the stored rows, for the test's own checks.
	After func(t *testing.T, what string, rows int)
}

// Feeder is a running stream; Batches counts acknowledged sends (resends
// included).
type Feeder struct {
	o Options

	mu     sync.Mutex
	acked  map[event.ID]struct{} // distinct acknowledged events
	recent [][]event.Event       // per lane, for repeats across batches
	old    [][]byte              // acknowledged bodies, for resending
	events int                   // events sent in acknowledged batches, repeats included
	paused bool
	cond   *sync.Cond
	busy   int // senders in the middle of a batch

	Batches atomic.Int64

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Start starts senders senders.
func Start(o Options, senders int) *Feeder {
	f := &Feeder{o: o, acked: map[event.ID]struct{}{}, recent: make([][]event.Event, o.Lanes), quit: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	for i := range senders {
		f.wg.Add(1)
		go f.loop(i % o.Lanes)
	}
	return f
}

// Stop stops the senders once their batches are acknowledged; it may be
// called again.
func (f *Feeder) Stop() {
	f.once.Do(func() {
		f.mu.Lock()
		close(f.quit)
		f.paused = false
		f.cond.Broadcast()
		f.mu.Unlock()
		f.wg.Wait()
	})
}

func randN(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

func (f *Feeder) loop(lane int) {
	defer f.wg.Done()
	for {
		f.mu.Lock()
		for f.paused {
			f.cond.Wait()
		}
		select {
		case <-f.quit:
			f.mu.Unlock()
			return
		default:
		}
		f.busy++
		// 20 to 300 events, about a tenth of them repeats of recent ones.
		n := 20 + randN(280)
		evs := make([]event.Event, 0, n)
		recent := f.recent[lane]
		for len(evs) < n {
			if len(recent) > 0 && randN(10) == 0 {
				evs = append(evs, recent[randN(len(recent))])
				continue
			}
			now := time.Now().UnixMilli()
			id, _ := event.NewID(now, rand.Reader)
			evs = append(evs, event.Event{ID: id, Time: now, Site: f.o.Site + strconv.Itoa(randN(3)), Name: "pageview",
				URL: "https://example.com/" + strconv.Itoa(randN(1000)), Pop: "test"})
		}
		f.mu.Unlock()

		body := wire.Append(nil, evs)
		f.send(lane, body)
		if randN(f.o.ResendOneIn) == 0 {
			f.send(lane, body) // the 200 was lost on the way: the edge sends it again
		}

		f.mu.Lock()
		for _, e := range evs {
			f.acked[e.ID] = struct{}{}
		}
		f.events += len(evs)
		f.recent[lane] = append(f.recent[lane], evs[:min(len(evs), 20)]...)
		if len(f.recent[lane]) > 2000 {
			f.recent[lane] = f.recent[lane][len(f.recent[lane])-1000:]
		}
		if len(f.old) < 200 {
			f.old = append(f.old, body)
		}
		f.busy--
		f.cond.Broadcast()
		f.mu.Unlock()
		time.Sleep(time.Duration(20+randN(30)) * time.Millisecond)
	}
}

// send posts body to lane's aggregator until it is acknowledged, signing
// each attempt afresh.
func (f *Feeder) send(lane int, body []byte) {
	client := &http.Client{Timeout: 10 * time.Second}
	for attempt := 0; ; attempt++ {
		ts := time.Now().Unix()
		req, _ := http.NewRequest("POST", f.o.URL(lane)+"/ingest", bytes.NewReader(body))
		req.Header.Set("Content-Type", wire.ContentType)
		req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(wire.HeaderSignature, wire.Sign(f.o.Secret, ts, body))
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				f.Batches.Add(1)
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				f.o.T.Errorf("ingest answered %s", resp.Status)
			}
		}
		if attempt > 600 {
			f.o.T.Errorf("a batch was not acknowledged after %d attempts: %v", attempt, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ResendOld sends the first n acknowledged batches (of the first 200) again,
// each to lane 0.
func (f *Feeder) ResendOld(n int) {
	f.mu.Lock()
	old := f.old[:min(n, len(f.old))]
	f.mu.Unlock()
	for _, b := range old {
		f.send(0, b)
	}
}

// pause waits for the senders to finish the batch they are on (until
// acknowledged) and holds them.
func (f *Feeder) pause() {
	f.mu.Lock()
	f.paused = true
	for f.busy > 0 {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

func (f *Feeder) resume() {
	f.mu.Lock()
	f.paused = false
	f.cond.Broadcast()
	f.mu.Unlock()
}

// Counts returns the events' rows and distinct ids, and the rows ever
// inserted: the events_per_minute rollup's sum, whose materialized view
// adds every row inserted into events (copies included, whatever
// ReplacingMergeTree merges later collapse), so that a double cannot hide
// behind a merge.
func (f *Feeder) Counts(t *testing.T) (rows, uniq, inserted int) {
	t.Helper()
	out := f.o.Query(t, "SELECT count(), uniqExact(event_id) FROM events")
	fs := strings.Fields(out)
	if len(fs) != 2 {
		t.Fatalf("counts: %q", out)
	}
	rows, _ = strconv.Atoi(fs[0])
	uniq, _ = strconv.Atoi(fs[1])
	inserted, _ = strconv.Atoi(f.o.Query(t, "SELECT sum(n) FROM events_per_minute"))
	return
}

// CheckExact pauses the senders, waits (Options.Wait at most) until
// everything acknowledged is stored and the spools are empty, or a double
// shows, and counts: the events table must hold exactly the distinct
// acknowledged events, each once, and no more rows may ever have been
// inserted (a Fatal otherwise). Then it runs Options.After.
func (f *Feeder) CheckExact(t *testing.T, what string) {
	t.Helper()
	f.pause()
	defer f.resume()
	f.mu.Lock()
	want, sent := len(f.acked), f.events
	f.mu.Unlock()
	var rows, uniq, inserted int
	deadline := time.Now().Add(f.o.Wait)
	for {
		rows, uniq, inserted = f.Counts(t)
		if rows > want || inserted > want {
			break // a double: no need to wait for more
		}
		// Rows can be readable before the insert that stores them returns
		// (a replicated insert waits for its quorum, and for its views'
		// rows): the loads are over once the spools are empty.
		if rows == want && f.o.Spooled(t) == 0 {
			rows, uniq, inserted = f.Counts(t)
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(f.o.Poll)
	}
	t.Logf("%s: %d events in %d acknowledged batches (%d distinct); events table: %d rows, %d distinct ids; rows ever inserted: %d",
		what, sent, f.Batches.Load(), want, rows, uniq, inserted)
	// inserted (the rollup's sum) exposes a double that a merge already
	// collapsed. It can also fall short: ClickHouse writes the materialized
	// view's part separately, so a server stopped mid-insert can keep the
	// events but not their rollup rows. That is a dashboard undercount, not
	// a lost event, and is reported rather than failed.
	if rows != want || uniq != want || inserted > want {
		t.Fatalf("%s: want exactly %d rows, distinct and inserted once; got %d rows, %d distinct, %d inserted (%d lost, %d doubled)",
			what, want, rows, uniq, inserted, want-uniq, max(inserted, rows)-uniq)
	}
	if inserted < want {
		t.Logf("%s: the per-minute rollup is %d rows short of the events table (%s)", what, want-inserted, f.o.ShortWhy)
	}
	if f.o.After != nil {
		f.o.After(t, what, rows)
	}
}

// CheckIDs compares the stored ids with the acknowledged ones, id by id:
// an error for each acknowledged event missing and each stored event never
// acknowledged. Call it once the senders are stopped and CheckExact passed.
func (f *Feeder) CheckIDs(t *testing.T) {
	t.Helper()
	out := f.o.Query(t, "SELECT toString(event_id) FROM events")
	stored := map[event.ID]bool{}
	for _, line := range strings.Split(out, "\n") {
		id, err := event.ParseID(line)
		if err != nil {
			t.Fatalf("stored id %q: %v", line, err)
		}
		stored[id] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var missing, extra int
	for id := range f.acked {
		if !stored[id] {
			missing++
		}
	}
	for id := range stored {
		if _, ok := f.acked[id]; !ok {
			extra++
		}
	}
	t.Logf("id by id: %d acknowledged, %d stored, %d missing, %d never sent", len(f.acked), len(stored), missing, extra)
	if missing != 0 || extra != 0 {
		t.Errorf("%d acknowledged events missing, %d stored events never acknowledged", missing, extra)
	}
}

// Unloaded returns the events an aggregator's spool in dir holds from its
// checkpoint on: what its loader had not finished loading. Read it only
// while no aggregator has the spool open (after a kill).
func Unloaded(dir string) ([]event.Event, error) {
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		return nil, err
	}
	defer sp.Close()
	var out []event.Event
	pos := sp.Checkpoint()
	for {
		recs, err := sp.Read(pos, 100, 8<<20)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return out, nil
		}
		for _, r := range recs {
			var d record.Decoded
			if err := record.Decode(&d, r.Data); err != nil {
				return nil, fmt.Errorf("spool record at %v: %w", pos, err)
			}
			out = append(out, d.Events...)
			pos = r.Next
		}
	}
}
