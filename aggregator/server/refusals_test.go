package server

import "testing"

// The refusal log's line names what grew since the last one, by reason,
// and nothing when nothing did.
func TestRefusalGrowth(t *testing.T) {
	a := refusalCounts{map[string]uint64{"stale": 2, "malformed": 1}, map[string]uint64{}}
	b := refusalCounts{map[string]uint64{"stale": 2, "malformed": 4, "too_large": 1}, map[string]uint64{"bad_time": 3}}
	if d, bad := a.since(b); d != "malformed=3 too_large=1" || bad != "bad_time=3" {
		t.Errorf("since: %q %q", d, bad)
	}
	if d, bad := b.since(b); d != "" || bad != "" {
		t.Errorf("no growth: %q %q", d, bad)
	}
	if d, _ := (refusalCounts{}).since(a); d != "malformed=1 stale=2" {
		t.Errorf("from nothing: %q", d)
	}
}
