package store

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
)

// A day file's line holds every field of event.Fields under its JSON name
// (which is the ClickHouse column), and nothing else.
func TestDiskWritesEveryField(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := ev(t, "a", time.Now().UnixMilli())
	for i, f := range event.Fields {
		if f.Str != nil {
			*f.Str(&e) = "v-" + f.JSON
		}
		if f.Uint != nil {
			f.SetUint(&e, uint64(i+1))
		}
	}
	if err := d.InsertEvents(context.Background(), []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, dayFile(e.Time)))
	if err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	if err := json.Unmarshal(b, &row); err != nil {
		t.Fatal(err)
	}
	var keys, want []string
	for k := range row {
		keys = append(keys, k)
	}
	for _, f := range event.Fields {
		want = append(want, f.JSON)
		if f.Str != nil && row[f.JSON] != "v-"+f.JSON {
			t.Errorf("%s: %v", f.JSON, row[f.JSON])
		}
		if f.Uint != nil && row[f.JSON] != float64(f.Uint(&e)) {
			t.Errorf("%s: %v", f.JSON, row[f.JSON])
		}
	}
	slices.Sort(keys)
	slices.Sort(want)
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Fatalf("keys %v, want %v", keys, want)
	}
}

// Day files written before method existed open, count and answer
// ExistingIDs beside lines written now.
func TestDiskReadsOlderLines(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixMilli()
	e := ev(t, "a", now)
	old := `{"event_id":"` + e.ID.String() + `","ts_ms":` + jsonInt(now) + `,"site":"a","name":"pageview","url":"","referrer":"","user_agent":"","client_ip":"","country":"","utm_source":"","utm_medium":"","utm_campaign":"","pop":"","props":""}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, dayFile(now)), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	fresh := ev(t, "a", now)
	fresh.Method = "GET"
	if err := d.InsertEvents(context.Background(), []event.Event{fresh}); err != nil {
		t.Fatal(err)
	}
	found, err := d.ExistingIDs(context.Background(), []event.Event{e, fresh})
	if err != nil || !found[e.ID] || !found[fresh.ID] {
		t.Fatalf("found %v %v", found, err)
	}
	if d, err = OpenDisk(dir); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := d.Counts(context.Background(), nil, 0); c["a"] != 2 {
		t.Fatalf("counts %v", c)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
