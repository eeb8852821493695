package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
)

// BadRowStore is implemented by stores that keep bad rows (inputs that
// could not become events). The loader stores a spooled record's bad rows
// through it before its events. Bad rows carry no dedupe claim: an insert
// retried after a failure that had in fact stored them stores them twice,
// and implementations collapse copies by BadRow.ID where they can.
type BadRowStore interface {
	InsertBadRows(ctx context.Context, rows []record.BadRow) error
}

// badRowJSON is a bad row as the disk store writes it; field names match
// the ClickHouse bad_rows columns.
type badRowJSON struct {
	RowID      string `json:"row_id"`
	ReceivedMS int64  `json:"received_ms"`
	Source     string `json:"source"`
	Site       string `json:"site"`
	Reason     string `json:"reason"`
	Error      string `json:"error"`
	Raw        string `json:"raw"`
}

// InsertBadRows appends rows to bad-rows-YYYYMMDD.ndjson (by received day,
// UTC) and fsyncs, like InsertEvents. These files are not read back.
func (d *Disk) InsertBadRows(_ context.Context, rows []record.BadRow) error {
	byDay := map[string][]*record.BadRow{}
	for i := range rows {
		f := "bad-rows-" + time.UnixMilli(rows[i].Received).UTC().Format("20060102") + ".ndjson"
		byDay[f] = append(byDay[f], &rows[i])
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, day := range byDay {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, r := range day {
			if err := enc.Encode(badRowJSON{r.ID.String(), r.Received, r.Source, r.Site, r.Reason, r.Error, r.Raw}); err != nil {
				return err
			}
		}
		if err := appendSync(filepath.Join(d.dir, name), buf.Bytes()); err != nil {
			return fmt.Errorf("disk store: %w", err)
		}
	}
	return nil
}

var _ BadRowStore = (*Disk)(nil)
