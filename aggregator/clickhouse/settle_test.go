package clickhouse

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// ExistingIDs on one server waits for an insert into the events table
// that is still running, such as one whose aggregator gave up on it or
// died: asked before it commits, it would report its events missing, and
// the restarted load would insert them again.
func TestExistingIDsWaitsForRunningInsert(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	e := mkEvent(t, "demo", time.Now().UnixMilli())
	// An insert the server takes a while over (its SELECT sleeps), as
	// one of a large block, or delayed by too many parts, is.
	q := url.Values{"query": {fmt.Sprintf("INSERT INTO %s.events (event_id, ts_ms, ts, site, name) SELECT toUUID('%s'), %d, toDateTime(%d), 'demo', 'pageview' FROM system.one WHERE sleep(3) = 0",
		c.db, e.ID, e.Time, e.Time/1000)}}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(chURL+"/?"+q.Encode(), "text/plain", nil)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, b)
			}
		}
		done <- err
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rows, err := c.Query(ctx, "SELECT 1 FROM system.processes WHERE query LIKE 'INSERT INTO "+c.db+".events %'")
		if err == nil && len(rows) == 1 {
			break
		}
		if time.Now().After(deadline) {
			all, _ := c.Query(ctx, "SELECT query_id, query FROM system.processes")
			t.Logf("processes: %q", all)
			t.Fatalf("the insert is not in system.processes: %v %v", rows, err)
		}
	}
	type answer struct {
		found map[event.ID]bool
		err   error
	}
	got := make(chan answer, 1)
	go func() {
		found, err := c.ExistingIDs(ctx, []event.Event{e})
		got <- answer{found, err}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.err != nil || !a.found[e.ID] {
		t.Fatalf("asked while the insert ran: found %v, %v; want the event, once the insert ended", a.found, a.err)
	}
	// With none running it answers without waiting.
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if found, err := c.ExistingIDs(short, []event.Event{mkEvent(t, "demo", time.Now().UnixMilli())}); err != nil || len(found) != 0 {
		t.Fatalf("with no insert running: %v, %v", found, err)
	}
}

// An event in the first second of 1970 (an import's ts_ms of 500) asks
// ClickHouse for no time before 0, which 18.16 refuses (Code 169): its
// load would be retried for ever, every later event behind it (a
// tester's).
func TestExistingIDsAtTimeZero(t *testing.T) {
	c := newClient(t)
	e := mkEvent(t, "demo", 500)
	if found, err := c.ExistingIDs(context.Background(), []event.Event{e}); err != nil || len(found) != 0 {
		t.Fatalf("an event at 500 ms: found %v (%v)", found, err)
	}
}

// A retry's lookup of 5,000 events of as many long sites stays inside
// the server's max_query_size (a tester's load was refused with Code 62
// and retried for ever), and finds what is stored.
func TestExistingIDsManySites(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	var evs []event.Event
	for i := range 5000 {
		evs = append(evs, mkEvent(t, fmt.Sprintf("site-%0*d", event.MaxSiteLen-5, i), now-int64(i)))
	}
	stored := []event.Event{evs[0], evs[2500], evs[4999]}
	if err := c.InsertEvents(ctx, stored); err != nil {
		t.Fatal(err)
	}
	found, err := c.ExistingIDs(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(stored) {
		t.Errorf("found %d ids, want %d", len(found), len(stored))
	}
	for _, e := range stored {
		if !found[e.ID] {
			t.Errorf("%s of %s not found", e.ID, e.Site)
		}
	}
}

// lookupPart cuts a load into queries by their bytes: one event at least,
// every event once, in order, each part within maxLookupBytes.
func TestLookupPart(t *testing.T) {
	var evs []event.Event
	for i := range 20000 {
		site := "demo"
		if i%3 == 0 {
			site = fmt.Sprintf("site-'%0*d", event.MaxSiteLen-7, i) // quoted, escaped
		}
		evs = append(evs, event.Event{Site: site})
	}
	total := 0
	for rest := evs; len(rest) > 0; {
		part, sites := lookupPart(rest)
		if len(part) == 0 {
			t.Fatal("an empty part")
		}
		n := 0
		for _, s := range sites {
			n += len(s) + 1
		}
		n += 39 * len(part)
		if n > maxLookupBytes {
			t.Errorf("a part of %d events and %d sites takes %d bytes, over %d", len(part), len(sites), n, maxLookupBytes)
		}
		total += len(part)
		rest = rest[len(part):]
	}
	if total != len(evs) {
		t.Errorf("parts hold %d events, want %d", total, len(evs))
	}
	if part, _ := lookupPart(evs[:1]); len(part) != 1 {
		t.Error("one event is no part")
	}
}
