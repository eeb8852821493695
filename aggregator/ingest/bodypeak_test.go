package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// bodyOf returns a signed-batch body of events of about 2 kB each, just
// under size bytes.
func bodyOf(t *testing.T, size int) []byte {
	var evs []event.Event
	n := 0
	for {
		e := newEvent(t, "demo")
		e.URL = "https://example.com/" + strings.Repeat("a", 2000)
		one := len(wire.Append(nil, []event.Event{e, e})) - len(wire.Append(nil, []event.Event{e}))
		if n+2*one > size {
			return wire.Append(nil, evs)
		}
		evs, n = append(evs, e), n+one
	}
}

// Memory of BodyNeed, a client's share of BodyPeak, holds a batch up to
// MaxBody, plain or compressed: a body's buffer grows by doubling and
// holds the old and the new one at once, so under --max-body 9MiB a body
// of 8-9 MiB needs 8+16 = 24 MiB to be read, and the default share of
// twice --max-body refused it 503 overloaded on every retry (a
// reviewer's finding); its decompressed copy and decoding take more of
// the whole (a tester's).
func TestBodyNeedHoldsMaxBody(t *testing.T) {
	if got := BodyPeak(4 << 20); got != 6<<20 {
		t.Errorf("BodyPeak(4 MiB) = %d, want 6 MiB: a probe, not the buffer, reads the byte past the limit", got)
	}
	for _, huge := range []int64{1 << 62, math.MaxInt64} {
		if BodyPeak(huge) != math.MaxInt64 || BodyNeed(huge) != math.MaxInt64 {
			t.Errorf("BodyPeak, BodyNeed(%d) = %d, %d: want no share to hold it", huge, BodyPeak(huge), BodyNeed(huge))
		}
	}
	for _, maxBody := range []int64{4 << 20, 9 << 20} {
		budget := NewBudget(BodyNeed(maxBody), BodyPeak(maxBody))
		h := New(Config{Secret: secret, Spool: &memSpool{}, MaxBody: maxBody, Budget: budget})
		body := bodyOf(t, int(maxBody))
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(body)
		zw.Close()
		for _, coding := range []string{"", "gzip"} {
			sent := body
			if coding != "" {
				sent = zb.Bytes()
			}
			for attempt := 1; attempt <= 2; attempt++ {
				r := request(sent, time.Now().Unix(), secret)
				if coding != "" {
					r.Header.Set("Content-Encoding", coding)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					t.Errorf("--max-body %d, %q body of %d bytes, attempt %d: %d %s", maxBody, coding, len(body), attempt, w.Code, strings.TrimSpace(w.Body.String()))
				}
			}
		}
		if budget.Used() != 0 {
			t.Fatalf("budget leaked %d", budget.Used())
		}
	}
	// An NDJSON body takes its work space before it is decompressed (a
	// tester's got 503 for ever under --max-body 1MiB).
	const token = "log-token-0123456789"
	for _, maxBody := range []int64{1 << 20, 2 << 20, 4 << 20} {
		budget := NewBudget(BodyNeed(maxBody), BodyPeak(maxBody))
		h := NewNDJSON(Config{Secret: secret, Spool: &memSpool{}, LogToken: token, MaxBody: maxBody, Budget: budget})
		var lines []byte
		for i := 0; ; i++ {
			line := fmt.Appendf(nil, `{"site":"demo","name":"pageview","ts_ms":%d,"url":"https://example.com/%d/%s"}`+"\n", time.Now().UnixMilli(), i, strings.Repeat("a", 1000))
			if int64(len(lines)+len(line)) > maxBody {
				break
			}
			lines = append(lines, line...)
		}
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(lines)
		zw.Close()
		for _, coding := range []string{"", "gzip"} {
			sent, hdr := lines, map[string]string{"Authorization": "Bearer " + token}
			if coding != "" {
				sent, hdr["Content-Encoding"] = zb.Bytes(), coding
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, ndjsonRequest(sent, hdr))
			if w.Code != 200 {
				t.Errorf("NDJSON, --max-body %d, %q body of %d bytes: %d %s", maxBody, coding, len(lines), w.Code, strings.TrimSpace(w.Body.String()))
			}
		}
		if budget.Used() != 0 {
			t.Fatalf("budget leaked %d", budget.Used())
		}
	}
}
