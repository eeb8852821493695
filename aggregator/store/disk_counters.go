package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// counterJSON is a counters row as the disk store writes it; field names
// match the ClickHouse edge_counters columns.
type counterJSON struct {
	Instance event.ID `json:"instance"`
	TsMS     int64    `json:"ts_ms"`
	Pop      string   `json:"pop"`
	Site     string   `json:"site"`
	Counter  string   `json:"counter"`
	Reason   string   `json:"reason"`
	Value    uint64   `json:"value"`
}

func counterFile(ms int64) string {
	return "edge-counters-" + time.UnixMilli(ms).UTC().Format("20060102") + ".ndjson"
}

// InsertCounters appends rows to edge-counters-YYYYMMDD.ndjson (by the
// edge's day, UTC) and fsyncs, like InsertEvents.
func (d *Disk) InsertCounters(_ context.Context, rows []CounterRow) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return appendByDay(d.dir, rows, func(r *CounterRow) string { return counterFile(r.Time) },
		func(r *CounterRow) any {
			return counterJSON{r.Instance, r.Time, r.Pop, r.Site, r.Counter, r.Reason, r.Value}
		}, nil)
}

// readCounters reads the rows of the day files from from's day on.
func (d *Disk) readCounters(from time.Time) ([]CounterRow, error) {
	files, err := filepath.Glob(filepath.Join(d.dir, "edge-counters-*.ndjson"))
	if err != nil {
		return nil, err
	}
	first := counterFile(from.UnixMilli())
	var rows []CounterRow
	for _, path := range files {
		if filepath.Base(path) < first {
			continue
		}
		err := scanLines(path, func(line []byte) error {
			var c counterJSON
			if err := json.Unmarshal(line, &c); err != nil {
				return err
			}
			rows = append(rows, CounterRow{c.Instance, c.TsMS, c.Pop, c.Site, c.Counter, c.Reason, c.Value})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("disk store: %s: %w", path, err)
		}
	}
	return rows, nil
}

func scanLines(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Loss implements CounterStore by reading the files: counters from a
// look-back before from on, events of the days the range covers.
func (d *Disk) Loss(_ context.Context, site string, all bool, from, to time.Time) (Loss, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := Loss{Site: site, From: from.UnixMilli(), To: to.UnixMilli()}
	rows, err := d.readCounters(from.Add(-wire.MaxInstanceLife))
	if err != nil {
		return l, err
	}
	if !all {
		rows = slices.DeleteFunc(rows, func(r CounterRow) bool { return r.Site != site })
	}
	CountersInRange(&l, rows, from, to)
	seen := map[string]bool{}
	for day := from.UTC().Truncate(24 * time.Hour); day.Before(to); day = day.Add(24 * time.Hour) {
		err := scanLines(filepath.Join(d.dir, dayFile(day.UnixMilli())), func(line []byte) error {
			var e struct {
				ID   string `json:"event_id"`
				Site string `json:"site"`
				TsMS int64  `json:"ts_ms"`
			}
			if err := json.Unmarshal(line, &e); err != nil {
				return err
			}
			if (all || e.Site == site) && e.TsMS >= l.From && e.TsMS < l.To && !seen[e.ID] {
				seen[e.ID] = true
				l.Stored++
			}
			return nil
		})
		if err != nil {
			return l, fmt.Errorf("disk store: %w", err)
		}
	}
	l.Finish()
	return l, nil
}

// LatestCounters implements CounterStore.
func (d *Disk) LatestCounters(_ context.Context, since time.Time) ([]CounterRow, error) {
	d.mu.Lock()
	rows, err := d.readCounters(since)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return Latest(rows, since), nil
}

// Latest keeps, of rows since since, the largest value for each instance,
// site, counter and reason.
func Latest(rows []CounterRow, since time.Time) []CounterRow {
	type key struct {
		inst                  event.ID
		site, counter, reason string
	}
	at := map[key]int{}
	var out []CounterRow
	for _, r := range rows {
		if r.Time < since.UnixMilli() {
			continue
		}
		k := key{r.Instance, r.Site, r.Counter, r.Reason}
		if i, ok := at[k]; ok {
			if r.Value > out[i].Value {
				out[i] = r
			}
			continue
		}
		at[k] = len(out)
		out = append(out, r)
	}
	sortRows(out)
	return out
}

var _ CounterStore = (*Disk)(nil)
