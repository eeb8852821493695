package accesslog

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkAccessLogAdd is the access log's cost per request.
func BenchmarkAccessLogAdd(b *testing.B) {
	a := New(io.Discard, nil)
	defer a.Close()
	r := httptest.NewRequest("GET", "/p.gif?site=example.com&url=https%3A%2F%2Fexample.com%2Fpage", nil)
	e := Entry{Start: time.Now(), Request: r, Status: 200, Bytes: 43, Duration: 420 * time.Microsecond,
		Instance: 3, RequestID: "0000000000000000000000000000002a"}
	b.ReportAllocs()
	for b.Loop() {
		a.Add(e)
	}
}
