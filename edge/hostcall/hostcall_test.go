package hostcall

import (
	"strings"
	"testing"
)

// TestStatusErrName: an error names the status as the witx does, beside
// its number, so an operator reading the log can look it up.
func TestStatusErrName(t *testing.T) {
	if got := status(13).err("req_send").Error(); got != "req_send: fastly status 13 (limitexceeded)" {
		t.Errorf("got %q", got)
	}
	if got := status(99).err("x").Error(); !strings.Contains(got, "99 (unknown)") {
		t.Errorf("got %q", got)
	}
	if statusNames[statusNone] != "none" || statusNames[statusBufLen] != "buflen" {
		t.Errorf("names out of step with the values: %q", statusNames)
	}
}
