package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\ncr\r\x00\x1f", "é✓😀", "bad\xffutf8\xc3", "/p?a=1&b=<x>"} {
		var got string
		enc := AppendJSONString(nil, s)
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
