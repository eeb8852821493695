package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// rejectLine is a counters line as the aggregator reads it.
type rejectLine struct {
	Type     string `json:"type"`
	Instance string `json:"instance"`
	Pop      string `json:"pop"`
	Sites    []struct {
		Site  string            `json:"site"`
		TS    int64             `json:"ts_ms"`
		Hits  uint64            `json:"hits"`
		Drops map[string]uint64 `json:"drops"`
	} `json:"sites"`
}

type rejectFixture struct {
	r      *rejectReporter
	counts map[string]uint64
	config map[string]string
	now    time.Time
	lines  []rejectLine
	to     []string
	fail   error
}

func newRejectFixture(t *testing.T) *rejectFixture {
	f := &rejectFixture{counts: map[string]uint64{}, config: map[string]string{}, now: time.UnixMilli(1764000000000)}
	f.r = &rejectReporter{
		counts: func() map[string]uint64 { return maps.Clone(f.counts) },
		write: func(endpoint string, line []byte) error {
			if f.fail != nil {
				return f.fail
			}
			var l rejectLine
			if err := json.Unmarshal(line, &l); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			f.lines, f.to = append(f.lines, l), append(f.to, endpoint)
			return nil
		},
		stores: func(string) (map[string]string, map[string][]byte) { return f.config, nil },
		now:    func() time.Time { return f.now },
		rand:   rand.Reader,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return f
}

func (f *rejectFixture) written(t *testing.T, want int) {
	t.Helper()
	if len(f.lines) != want {
		t.Fatalf("%d lines written, want %d: %+v", len(f.lines), want, f.lines)
	}
}

// last checks the last line written and returns it, after want lines in
// all.
func (f *rejectFixture) last(t *testing.T, want int) rejectLine {
	t.Helper()
	f.written(t, want)
	l := f.lines[want-1]
	if l.Type != wire.TypeCounters || len(l.Sites) != 1 || l.Sites[0].Site != "" || l.Sites[0].TS != f.now.UnixMilli() || l.Instance == "" {
		t.Fatalf("line %+v", l)
	}
	return l
}

func TestRejectReports(t *testing.T) {
	f := newRejectFixture(t)
	f.r.report()
	if len(f.lines) != 0 {
		t.Fatalf("a line with nothing refused: %+v", f.lines)
	}

	// Refusals since the POP started, those the module counts or that
	// carry no request left out.
	f.counts["body_too_large"] = 2
	f.counts["ambiguous_framing"] = 5
	f.counts["proxy_header"] = 1
	f.now = f.now.Add(time.Second)
	f.r.report()
	l := f.last(t, 1)
	if s := l.Sites[0]; s.Hits != 2 || !maps.Equal(s.Drops, map[string]uint64{"body_too_large": 2}) || l.Pop != pop.PopName || f.to[0] != "edgepixel_fallback" {
		t.Errorf("first line %+v to %s", l, f.to[0])
	}
	first := l.Instance

	// Nothing new: no line.
	f.now = f.now.Add(time.Second)
	f.r.report()
	f.written(t, 1)

	// A line the endpoint does not take is written again, with what was
	// counted since; the pop column as the module's.
	f.counts["url_too_long"] = 1
	f.config["pop"] = "FRA"
	f.config["journal"] = "edgepixel_journal"
	f.fail = errors.New("disk full")
	f.r.report()
	f.written(t, 1)
	f.fail = nil
	f.counts["body_too_large"] = 3
	f.now = f.now.Add(time.Second)
	f.r.report()
	l = f.last(t, 2)
	if s := l.Sites[0]; s.Hits != 4 || !maps.Equal(s.Drops, map[string]uint64{"body_too_large": 3, "url_too_long": 1}) || l.Pop != "FRA" || l.Instance != first || f.to[1] != "edgepixel_journal" {
		t.Errorf("second line %+v to %s", l, f.to[1])
	}

	// After rejectInstanceLife a new instance counts from zero, once the
	// old one's last counts are written.
	f.counts["body_too_large"] = 4
	f.now = f.now.Add(rejectInstanceLife)
	f.r.report()
	l = f.last(t, 3)
	if s := l.Sites[0]; l.Instance != first || s.Drops["body_too_large"] != 4 {
		t.Errorf("the old instance's last line %+v", l)
	}
	f.counts["body_memory"] = 1
	f.now = f.now.Add(time.Second)
	f.r.report()
	l = f.last(t, 4)
	if s := l.Sites[0]; l.Instance == first || s.Hits != 1 || !maps.Equal(s.Drops, map[string]uint64{"body_memory": 1}) {
		t.Errorf("the new instance's line %+v", l)
	}

	// A module that writes its events to log_endpoint: the refusals go
	// there too; with the fallback "none" and no journal, nowhere.
	f.config["log_endpoint"] = "cdn_logs"
	f.counts["body_memory"] = 2
	f.r.report()
	if f.last(t, 5); f.to[4] != "cdn_logs" {
		t.Errorf("written to %s", f.to[4])
	}
	f.config = map[string]string{"fallback_log_endpoint": "none"}
	f.counts["body_memory"] = 3
	f.r.report()
	f.written(t, 5)
}
