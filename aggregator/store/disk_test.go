package store

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
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
}
