package pop

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

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
