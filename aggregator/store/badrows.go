package store

import (
	"context"
	"time"

	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
)

// BadRowStore is implemented by stores that keep bad rows (inputs that
// could not become events). The loader stores a spooled record's bad rows
// through it before its events. Bad rows carry no dedupe claim: an insert
// retried after a failure that had in fact stored them stores them twice,
// and implementations collapse copies by BadRow.ID where they can.
type BadRowStore interface {
	InsertBadRows(ctx context.Context, rows []record.BadRow) error
}

// BadRowLookup is implemented by bad-row stores that can say which of
// rows they hold already (by BadRow.ID, among those received since a
// time). The loader then inserts and counts only the others, so that a
// body sent again (a log endpoint's retry after a timeout), whose bad
// lines have the same ids, adds them once.
type BadRowLookup interface {
	StoredBadRows(ctx context.Context, rows []record.BadRow, since time.Time) (map[event.ID]bool, error)
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
	d.mu.Lock()
	defer d.mu.Unlock()
	return appendByDay(d.dir, rows,
		func(r *record.BadRow) string {
			return "bad-rows-" + time.UnixMilli(r.Received).UTC().Format("20060102") + ".ndjson"
		},
		func(r *record.BadRow) any {
			return badRowJSON{r.ID.String(), r.Received, r.Source, r.Site, r.Reason, r.Error, r.Raw}
		}, nil)
}

var _ BadRowStore = (*Disk)(nil)
