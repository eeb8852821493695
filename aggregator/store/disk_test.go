package store

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

func ev(t *testing.T, site string, ms int64) event.Event {
	id, err := event.NewID(ms, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{ID: id, Time: ms, Site: site, Name: "pageview", URL: "https://x/<a>&", Props: `{"k":"v"}`}
}

func TestDisk(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	evs := []event.Event{ev(t, "a", now), ev(t, "a", now-86400_000), ev(t, "b", now)}
	if err := d.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	found, err := d.ExistingIDs(ctx, append(evs[1:], ev(t, "a", now)))
	if err != nil || len(found) != 2 || !found[evs[1].ID] || !found[evs[2].ID] {
		t.Fatalf("found %v %v", found, err)
	}
	pts, _ := d.History(ctx, "a", time.UnixMilli(now).Add(-time.Hour), time.UnixMilli(now))
	if len(pts) != 1 || pts[0].N != 1 || pts[0].T%60 != 0 {
		t.Fatalf("history %v", pts)
	}
	// A crash mid-write leaves a partial line: reopening drops it and
	// keeps the counts exact.
	m, _ := filepath.Glob(filepath.Join(dir, "events-*.ndjson"))
	f, _ := os.OpenFile(m[len(m)-1], os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"event_id":"0190`)
	f.Close()
	d, err = OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := d.Counts(ctx, nil, 0)
	if c["a"] != 2 || c["b"] != 1 {
		t.Fatalf("counts after reopen %v", c)
	}
	if err := d.InsertEvents(ctx, []event.Event{ev(t, "b", now)}); err != nil {
		t.Fatal(err)
	}
	d, _ = OpenDisk(dir)
	if c, _, _ := d.Counts(ctx, nil, 0); c["b"] != 2 {
		t.Fatalf("counts %v", c)
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Recent: the events of the last minute, across the day files; with
	// max, the newest.
	old := ev(t, "a", now-50_000)
	old.VisitorID = 1<<63 + 7
	if err := d.InsertEvents(ctx, []event.Event{old}); err != nil {
		t.Fatal(err)
	}
	rec, err := d.Recent(ctx, time.UnixMilli(now).Add(-time.Minute), 0)
	if err != nil || len(rec) != 4 {
		t.Fatalf("recent: %d events, want 4 (a, b, b, a 50 s ago): %v", len(rec), err)
	}
	var withID int
	for _, e := range rec {
		if e.VisitorID == old.VisitorID && e.Time == old.Time && e.Site == "a" && e.Name == "pageview" && e.URL == old.URL {
			withID++
		}
	}
	if withID != 1 {
		t.Fatalf("recent %+v: want the event of 50 s ago, whole", rec)
	}
	if rec, err := d.Recent(ctx, time.UnixMilli(now).Add(-time.Minute), 3); err != nil || len(rec) != 3 || slices.ContainsFunc(rec, func(e event.Event) bool { return e.Time != now }) {
		t.Fatalf("recent, at most 3: %+v %v", rec, err)
	}
}
