package ingest

import (
	"github.com/edgepixel/edgepixel/aggregator/record"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// decodeRecord returns a spooled record's events and bad rows.
func decodeRecord(p []byte) ([]event.Event, []record.BadRow, error) {
	var d record.Decoded
	err := record.Decode(&d, p)
	return d.Events, d.Bad, err
}

// recordCounters returns a spooled record's counters.
func recordCounters(p []byte) []wire.Counters {
	var d record.Decoded
	record.Decode(&d, p)
	return d.Counters
}
