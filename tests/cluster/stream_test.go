package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// stream is a steady stream of events POSTed to the POPs' /e the way a
// browser sends them: each event has its own client id (event_id, a
// UUIDv7) and a unique marker (its url), and is sent to one POP, then
// again to the other until it is answered 204, and one in five of those
// answered is sent once more to the other POP on purpose, as a client
// that never saw the answer would. Each event must then be stored once.
type stream struct {
	t    *testing.T
	pops []string // base URLs
	site string

	mu       sync.Mutex
	cond     *sync.Cond
	paused   bool
	busy     int             // senders in the middle of an event
	next     int             // the next marker's number
	sent     map[string]bool // markers sent
	answered map[string]bool // markers answered 204
	retries  int             // deliberate sends of an answered event
	resent   int             // sends after an attempt with no 204

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func startStream(t *testing.T, pops []string, site string, senders int) *stream {
	s := &stream{t: t, pops: pops, site: site, sent: map[string]bool{}, answered: map[string]bool{}, quit: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	for i := range senders {
		s.wg.Add(1)
		go s.loop(i)
	}
	return s
}

func randN(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

func (s *stream) loop(w int) {
	defer s.wg.Done()
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		s.mu.Lock()
		for s.paused {
			s.cond.Wait()
		}
		select {
		case <-s.quit:
			s.mu.Unlock()
			return
		default:
		}
		s.busy++
		marker := fmt.Sprintf("https://fleet.example/%s/%d", s.site, s.next)
		s.next++
		s.sent[marker] = true
		s.mu.Unlock()

		id, _ := event.NewID(time.Now().UnixMilli(), rand.Reader)
		name := "pageview"
		if randN(4) == 0 {
			name = "signup"
		}
		body, _ := json.Marshal(map[string]string{"site": s.site, "name": name, "url": marker, "event_id": id.String()})
		pop := w % len(s.pops)
		pop, ok := s.send(client, pop, body)
		deliberate := ok && randN(5) == 0
		if deliberate {
			_, ok = s.send(client, (pop+1)%len(s.pops), body)
		}

		s.mu.Lock()
		if ok {
			s.answered[marker] = true
		}
		if deliberate {
			s.retries++
		}
		s.busy--
		s.cond.Broadcast()
		s.mu.Unlock()
		time.Sleep(time.Duration(5+randN(10)) * time.Millisecond)
	}
}

// send POSTs body to pop, and after an attempt with no 204 to the next
// POP, until one answers 204 (for at most a minute); it returns the POP
// that answered.
func (s *stream) send(client *http.Client, pop int, body []byte) (int, bool) {
	for attempt := 0; attempt < 600; attempt++ {
		resp, err := client.Post(s.pops[pop]+"/e", "application/json", bytes.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return pop, true
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				s.t.Errorf("POP %s answered %s (%s) to %s", s.pops[pop], resp.Status, resp.Header.Get("X-Edgepixel-Drop"), bytes.TrimSpace(b))
				return pop, false
			}
		}
		s.mu.Lock()
		s.resent++
		s.mu.Unlock()
		pop = (pop + 1) % len(s.pops)
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Errorf("an event was not answered by any POP within a minute")
	return pop, false
}

// pause waits for the senders to finish the event they are on and holds
// them.
func (s *stream) pause() {
	s.mu.Lock()
	s.paused = true
	for s.busy > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

func (s *stream) resume() {
	s.mu.Lock()
	s.paused = false
	s.cond.Broadcast()
	s.mu.Unlock()
}

// stop ends the senders once their events are answered; it may be called
// again.
func (s *stream) stop() {
	s.once.Do(func() {
		s.mu.Lock()
		close(s.quit)
		s.paused = false
		s.cond.Broadcast()
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *stream) answeredCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.answered)
}

// stored is what the events table holds for the stream's site: rows per
// marker, and rows, distinct markers and distinct ids.
type stored struct {
	perURL           map[string]int
	rows, urls, ids  int
	inserted         int // the events_per_minute rollup's sum: every row ever inserted
	events, pageview int // rows and pageviews within the dashboard's range (see check)
}

func (f *fleet) stored(t *testing.T, site string) stored {
	reader := f.ch.Shards[1][1] // no aggregator writes to it: its Distributed tables read every shard
	q := func(sql string) string { return query(t, reader, strings.ReplaceAll(sql, "SITE", "'"+site+"'")) }
	st := stored{perURL: map[string]int{}}
	for _, line := range strings.Split(q("SELECT url, count() FROM events WHERE site = SITE GROUP BY url"), "\n") {
		u, n, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		st.perURL[u], _ = strconv.Atoi(n)
	}
	fs := strings.Fields(q("SELECT count(), uniqExact(url), uniqExact(event_id), (SELECT sum(n) FROM events_per_minute WHERE site = SITE) FROM events WHERE site = SITE"))
	if len(fs) != 4 {
		t.Fatalf("counts: %q", fs)
	}
	st.rows, _ = strconv.Atoi(fs[0])
	st.urls, _ = strconv.Atoi(fs[1])
	st.ids, _ = strconv.Atoi(fs[2])
	st.inserted, _ = strconv.Atoi(fs[3])
	return st
}

// check pauses the stream and waits (3 minutes at most) until the events
// table holds every answered marker but those in window, and the live
// aggregators' spools are empty. Then, with each marker stored at most
// once, nothing doubled, nothing stored that was not sent, the answered
// markers not stored must be exactly those of window that no one stored
// (window: what a killed aggregator's loader had not stored), and every
// live aggregator's dashboard must count what the events table holds.
// It returns the lost markers.
func (s *stream) check(t *testing.T, f *fleet, what string, window map[string]bool) (lost []string) {
	t.Helper()
	s.pause()
	defer s.resume()
	s.mu.Lock()
	answered := make(map[string]bool, len(s.answered))
	for u := range s.answered {
		answered[u] = true
	}
	sentN, retries, resent := len(s.sent), s.retries, s.resent
	s.mu.Unlock()

	var st stored
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st = f.stored(t, s.site)
		lost = lost[:0]
		for u := range answered {
			if st.perURL[u] == 0 {
				lost = append(lost, u)
			}
		}
		settled := f.spooled(t) == 0
		inWindow := 0
		for _, u := range lost {
			if window[u] {
				inWindow++
			}
		}
		if settled && inWindow == len(lost) && st.inserted >= st.rows || st.rows > st.urls {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Second) // a double would land now
	st = f.stored(t, s.site)
	lost = lost[:0]
	for u := range answered {
		if st.perURL[u] == 0 {
			lost = append(lost, u)
		}
	}
	windowUnstored := 0
	for u := range window {
		if st.perURL[u] == 0 {
			windowUnstored++
		}
	}
	strangers := 0
	for u := range st.perURL {
		if !s.isSent(u) {
			strangers++
		}
	}
	t.Logf("%s: %d events sent, %d answered, %d deliberate client retries, %d resends after no answer; stored %d rows, %d distinct markers, %d distinct ids, %d inserted; %d answered not stored (window: %d unloaded by the killed aggregator, %d of them stored by no one)",
		what, sentN, len(answered), retries, resent, st.rows, st.urls, st.ids, st.inserted, len(lost), len(window), windowUnstored)
	if st.rows != st.urls || st.rows != st.ids || st.inserted > st.rows {
		t.Errorf("%s: %d rows, %d distinct markers, %d distinct ids, %d inserted: %d doubled", what, st.rows, st.urls, st.ids, st.inserted, max(st.rows, st.inserted)-min(st.urls, st.ids))
	}
	if strangers > 0 {
		t.Errorf("%s: %d stored markers never sent", what, strangers)
	}
	outside := 0
	for _, u := range lost {
		if !window[u] {
			outside++
		}
	}
	if outside > 0 || len(lost) != windowUnstored {
		t.Errorf("%s: %d answered events lost, %d of them outside the killed aggregator's unloaded spool, which held %d events no one stored", what, len(lost), outside, windowUnstored)
	}
	if st.inserted < st.rows {
		t.Errorf("%s: the events_per_minute rollup counts %d rows inserted, the events table holds %d: rollups short", what, st.inserted, st.rows)
	}
	f.checkDashboards(t, what, s.site)
	return lost
}

func (s *stream) isSent(u string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[u]
}

// checkDashboards asks every live aggregator's dashboard API, which reads
// the rollups, for site's numbers today (and yesterday, for a run that
// crosses midnight UTC): the events and pageviews tiles (rollup_hours or
// rollup_days), the series (rollup_hours) and the top events table
// (rollup_dims_bot) must each count
// what the events table holds in the same range.
func (f *fleet) checkDashboards(t *testing.T, what, site string) {
	t.Helper()
	for i, a := range f.aggs {
		if a.p.Exited() {
			continue
		}
		for _, rng := range []string{"today", "yesterday"} {
			var st struct {
				Range struct {
					From, To time.Time
				} `json:"range"`
				Source  string `json:"source"`
				Metrics []struct {
					Name  string   `json:"name"`
					Value *float64 `json:"value"`
				} `json:"metrics"`
				Series []struct {
					Events    uint64 `json:"events"`
					Pageviews uint64 `json:"pageviews"`
				} `json:"series"`
			}
			f.api(t, a, "/api/stats?site="+url.QueryEscape(site)+"&range="+rng, &st)
			var top struct {
				Source string `json:"source"`
				Rows   []struct {
					Value     string `json:"value"`
					Pageviews uint64 `json:"pageviews"`
					Events    uint64 `json:"events"`
				} `json:"rows"`
			}
			f.api(t, a, "/api/top?dim=event&limit=100&site="+url.QueryEscape(site)+"&range="+rng, &top)
			fs := strings.Fields(query(t, f.ch.Shards[1][1], fmt.Sprintf("SELECT count(), countIf(name = 'pageview') FROM events WHERE site = '%s' AND ts >= toDateTime(%d) AND ts < toDateTime(%d)",
				site, st.Range.From.Unix(), st.Range.To.Unix())))
			rows, _ := strconv.ParseUint(fs[0], 10, 64)
			pvs, _ := strconv.ParseUint(fs[1], 10, 64)
			metric := map[string]uint64{}
			for _, m := range st.Metrics {
				if m.Value != nil {
					metric[m.Name] = uint64(*m.Value)
				}
			}
			var seriesEv, seriesPv, topEv, topPv uint64
			for _, p := range st.Series {
				seriesEv += p.Events
				seriesPv += p.Pageviews
			}
			for _, r := range top.Rows {
				topEv += r.Events
				topPv += r.Pageviews
			}
			if metric["events"] != rows || metric["pageviews"] != pvs || seriesEv != rows || seriesPv != pvs || topEv != rows || topPv != pvs {
				t.Errorf("%s: aggregator %d's dashboard, %s: tiles %d events %d pageviews (from %s), series %d/%d, top events %d/%d (from %s); the events table holds %d events, %d pageviews",
					what, i+1, rng, metric["events"], metric["pageviews"], st.Source, seriesEv, seriesPv, topEv, topPv, top.Source, rows, pvs)
			} else if rng == "today" {
				t.Logf("%s: aggregator %d's dashboard counts %d events, %d pageviews today (tiles from %s, top from %s), as the events table", what, i+1, rows, pvs, st.Source, top.Source)
			}
		}
	}
}

// api GETs path from a's dashboard with the admin token into v.
func (f *fleet) api(t *testing.T, a *aggregator, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.dash+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s%s: %s: %s", a.dash, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s%s: %v: %s", a.dash, path, err, b)
	}
}
