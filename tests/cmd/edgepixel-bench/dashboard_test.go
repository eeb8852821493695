package main

import (
	"encoding/json"
	"testing"

	"github.com/edgepixel/edgepixel/aggregator/live"
)

// TestDeltaTS reads the publish time from the hub's own encoding of a
// delta, and nothing from a snapshot.
func TestDeltaTS(t *testing.T) {
	m := live.Message{Type: live.TypeDelta, Seq: 3, Sites: map[string]uint64{`"ts":1`: 2},
		Pages: map[string][]live.Page{"a": {{Path: `/"ts":5}`, N: 1}}}, TS: 1764590000123}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if ts, ok := deltaTS(b); !ok || ts != m.TS {
		t.Errorf("deltaTS(%s) = %d, %v; want %d", b, ts, ok, m.TS)
	}
	m.Type = live.TypeSnapshot
	b, _ = json.Marshal(m)
	if _, ok := deltaTS(b); ok {
		t.Errorf("deltaTS took a snapshot: %s", b)
	}
}
