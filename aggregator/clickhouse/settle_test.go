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
