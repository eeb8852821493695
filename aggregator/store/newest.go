package store

import (
	"context"
	"time"
)

// NewestEventTime returns an upper bound of the newest stored event time
// (unix ms) among events at or after since, 0 if there are none. The disk
// store keeps per-minute counts, so the bound is the end of the newest
// minute. The Redis deduper uses it to know which ids may have been stored
// before Redis lost its memory.
func (d *Disk) NewestEventTime(_ context.Context, since time.Time) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var newest int64 = -1
	for _, m := range d.minutes {
		for t := range m {
			newest = max(newest, t)
		}
	}
	if newest < 0 || (newest+60)*1000 <= since.UnixMilli() {
		return 0, nil
	}
	return (newest+60)*1000 - 1, nil
}
