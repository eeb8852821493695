package accesslog

import (
	"encoding/json"
	"io"
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
