package main

import (
	"strings"
	"testing"
)

func TestOnceLines(t *testing.T) {
	var out strings.Builder
	o := &onceLines{w: &out, seen: map[string]bool{}}
	for _, s := range []string{"a\n", "b\na", "\n", "c", "\nb\n", "d\n"} {
		if n, err := o.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := out.String(), "a\nb\nc\nd\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
}
