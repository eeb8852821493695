package store

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
)

func TestDiskBadRows(t *testing.T) {
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 4, 23, 59, 0, 0, time.UTC).UnixMilli()
	rows := []record.BadRow{
		record.NewBadRow(now, record.SourceNDJSON, "demo", "bad_json", "unexpected EOF", []byte(`{"site":"demo"`)),
		record.NewBadRow(now+2*60_000, record.SourceWire, "", "invalid_event", "missing site", []byte(`{}`)),
	}
	if err := d.InsertBadRows(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"bad-rows-20260504.ndjson", "bad-rows-20260505.ndjson"} {
		f, err := os.Open(filepath.Join(d.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		var got []badRowJSON
		for sc.Scan() {
			var r badRowJSON
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		f.Close()
		r := rows[i]
		if len(got) != 1 || got[0] != (badRowJSON{r.ID.String(), r.Received, r.Source, r.Site, r.Reason, r.Error, r.Raw}) {
			t.Errorf("%s: %+v", name, got)
		}
	}
	// Bad-row files are not event files: counts are untouched at reopen.
	d2, err := OpenDisk(d.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if c, _, _ := d2.Counts(context.Background(), nil, 0); len(c) != 0 {
		t.Errorf("counts %v", c)
	}
}
