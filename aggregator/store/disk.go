package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/privdir"
)

// Disk stores events as newline-delimited JSON, one file per UTC day, for
// running the aggregator without ClickHouse (a laptop, `make run` where
// ClickHouse is not installed). Counts and the per-minute history are kept
// in memory and rebuilt from the files at open, so it suits thousands to a
// few million events, not production volumes.
type Disk struct {
	dir string

	mu      sync.Mutex
	counts  map[string]uint64
	minutes map[string]map[int64]uint64
}

// OpenDisk opens (creating) the store in dir and rebuilds its counts.
func OpenDisk(dir string) (*Disk, error) {
	// Under the data directory, whose mode the aggregator checks.
	if _, err := privdir.Make(dir); err != nil {
		return nil, err
	}
	d := &Disk{dir: dir, counts: map[string]uint64{}, minutes: map[string]map[int64]uint64{}}
	files, err := d.files()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := d.load(f); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *Disk) files() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(d.dir, "events-*.ndjson"))
	slices.Sort(m)
	return m, err
}

func dayFile(ms int64) string {
	return "events-" + time.UnixMilli(ms).UTC().Format("20060102") + ".ndjson"
}

// load counts the rows of one file, cutting off a partial last line left
// by a crash mid-write.
func (d *Disk) load(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var good int64
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				if terr := f.Truncate(good); terr != nil {
					return terr
				}
			}
			return nil
		}
		if err != nil {
			return err
		}
		// Only the fields the counts need; the file holds whole events in
		// event.Event's JSON, whose names are event.Fields' (and the
		// ClickHouse columns); lines written before a field existed lack it.
		var r struct {
			Site string `json:"site"`
			TsMS int64  `json:"ts_ms"`
		}
		if jerr := json.Unmarshal(line, &r); jerr != nil {
			return fmt.Errorf("disk store: %s: corrupt line at byte %d: %v", path, good, jerr)
		}
		good += int64(len(line))
		d.countLocked(r.Site, r.TsMS)
	}
}

func (d *Disk) countLocked(site string, ms int64) {
	d.counts[site]++
	m := d.minutes[site]
	if m == nil {
		m = map[int64]uint64{}
		d.minutes[site] = m
	}
	m[ms/1000/60*60]++
}

func (d *Disk) Init(context.Context) error { return nil }

// InsertEvents appends evs to their day files and fsyncs them. A file a
// write failed on is cut back to its previous length, so no partial row
// remains.
func (d *Disk) InsertEvents(_ context.Context, evs []event.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return appendByDay(d.dir, evs, func(e *event.Event) string { return dayFile(e.Time) },
		func(e *event.Event) any { return e },
		func(day []*event.Event) {
			for _, e := range day {
				d.countLocked(e.Site, e.Time)
			}
		})
}

// appendByDay writes rows as NDJSON, each to the file name(row) says, one
// fsynced append per file; stored is called with each file's rows once
// they are durable.
func appendByDay[T any](dir string, rows []T, name func(*T) string, encode func(*T) any, stored func([]*T)) error {
	byFile := map[string][]*T{}
	for i := range rows {
		f := name(&rows[i])
		byFile[f] = append(byFile[f], &rows[i])
	}
	for f, day := range byFile {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, r := range day {
			if err := enc.Encode(encode(r)); err != nil {
				return err
			}
		}
		if err := appendSync(filepath.Join(dir, f), buf.Bytes()); err != nil {
			return fmt.Errorf("disk store: %w", err)
		}
		if stored != nil {
			stored(day)
		}
	}
	return nil
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err = f.WriteAt(b, st.Size()); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Truncate(st.Size())
	}
	return err
}

// ExistingIDs scans the day files evs fall in.
func (d *Disk) ExistingIDs(_ context.Context, evs []event.Event) (map[event.ID]bool, error) {
	want := map[string]event.ID{}
	days := map[string]bool{}
	for i := range evs {
		want[evs[i].ID.String()] = evs[i].ID
		days[dayFile(evs[i].Time)] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	found := map[event.ID]bool{}
	for name := range days {
		err := d.scanFile(name, func(line []byte) {
			// The id is the first field: no need to decode the whole line.
			if i := bytes.Index(line, []byte(`"event_id":"`)); i >= 0 && len(line) >= i+12+36 {
				if id, ok := want[string(line[i+12:i+12+36])]; ok {
					found[id] = true
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

// scanFile calls line with each line of the day file name; a file that
// does not exist has none.
func (d *Disk) scanFile(name string, line func([]byte)) error {
	return scanLines(filepath.Join(d.dir, name), func(b []byte) error { line(b); return nil })
}

func (d *Disk) Counts(_ context.Context, sites []string, max int) (map[string]uint64, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	counts, total := TopCounts(d.counts, sites, max)
	return counts, total, nil
}

// Recent reads the day files from since's day to today.
func (d *Disk) Recent(_ context.Context, since time.Time, max int) ([]event.Event, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	from := since.UnixMilli()
	var evs []event.Event
	for day := since.UTC().Truncate(24 * time.Hour); !day.After(time.Now()); day = day.Add(24 * time.Hour) {
		err := d.scanFile(dayFile(day.UnixMilli()), func(line []byte) {
			var r struct {
				Site      string `json:"site"`
				Name      string `json:"name"`
				URL       string `json:"url"`
				VisitorID uint64 `json:"visitor_id"`
				TsMS      int64  `json:"ts_ms"`
			}
			if json.Unmarshal(line, &r) == nil && r.TsMS >= from {
				evs = append(evs, event.Event{Site: r.Site, Name: r.Name, URL: r.URL, VisitorID: r.VisitorID, Time: r.TsMS})
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if max > 0 && len(evs) > max {
		slices.SortFunc(evs, func(a, b event.Event) int { return cmp.Compare(b.Time, a.Time) })
		evs = evs[:max]
	}
	return evs, nil
}

func (d *Disk) History(_ context.Context, site string, from, to time.Time) ([]Point, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pts []Point
	for t, n := range d.minutes[site] {
		if t >= from.Unix() && t <= to.Unix() {
			pts = append(pts, Point{t, n})
		}
	}
	slices.SortFunc(pts, func(a, b Point) int { return int(a.T - b.T) })
	return pts, nil
}

// Ping checks the directory is still writable.
func (d *Disk) Ping(context.Context) error {
	f, err := os.CreateTemp(d.dir, ".ping-*")
	if err != nil {
		return fmt.Errorf("disk store: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

func (d *Disk) Name() string { return "disk" }
func (d *Disk) Close() error { return nil }

// Dir returns the directory the files are in.
func (d *Disk) Dir() string { return d.dir }

var _ Store = (*Disk)(nil)
