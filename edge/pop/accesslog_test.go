package pop

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\ncr\r\x00\x1f", "é✓😀", "bad\xffutf8\xc3", "/p?a=1&b=<x>"} {
		var got string
		enc := appendJSONString(nil, s)
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Errorf("%q encoded as invalid JSON %s: %v", s, enc, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got != want {
			t.Errorf("%q round-tripped to %q", s, got)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	var m metrics
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 3 * time.Millisecond, time.Minute} {
		m.duration.observe(d)
	}
	// 100µs is on the first bound (le is inclusive); a minute is +Inf only.
	want := map[int]uint64{0: 2, 5: 1, len(durationBuckets): 1}
	for i := range m.duration.counts {
		if got := m.duration.counts[i].Load(); got != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, got, want[i])
		}
	}
}

func TestRecorderStatusAndBytes(t *testing.T) {
	// Not httptest.ResponseRecorder: it refuses a body after a 1xx.
	w := &recorder{ResponseWriter: &fakeResponse{h: http.Header{}}}
	w.WriteHeader(http.StatusEarlyHints) // interim: not the status that counts
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte("ab"))
	io.Copy(w, strings.NewReader("cde")) // through ReadFrom
	if w.status != http.StatusCreated || w.bytes != 5 {
		t.Errorf("status %d bytes %d", w.status, w.bytes)
	}
	if http.NewResponseController(w).Flush() != nil || !w.ResponseWriter.(*fakeResponse).flushed {
		t.Error("Flush does not reach the underlying writer")
	}
}

type fakeResponse struct {
	h       http.Header
	flushed bool
}

func (f *fakeResponse) Header() http.Header         { return f.h }
func (f *fakeResponse) WriteHeader(int)             {}
func (f *fakeResponse) Write(p []byte) (int, error) { return len(p), nil }
func (f *fakeResponse) Flush()                      { f.flushed = true }

// BenchmarkAccessLogAdd is the access log's cost per request.
func BenchmarkAccessLogAdd(b *testing.B) {
	a := newAccessLog(io.Discard)
	defer a.close()
	r := httptest.NewRequest("GET", "/p.gif?site=example.com&url=https%3A%2F%2Fexample.com%2Fpage", nil)
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		a.add(start, r, 200, 43, 420*time.Microsecond, 3, 42)
	}
}
