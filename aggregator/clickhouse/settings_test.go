package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestOldPartsProblem(t *testing.T) {
	for _, tc := range []struct {
		value string
		warn  bool
	}{
		{"480", true}, // 18.16's default
		{"61", true},
		{"60", false},
		{"10", false},
		{"", true}, // not a number: said so
		{"x", true},
	} {
		if p := oldPartsProblem(tc.value, ""); (p != "") != tc.warn {
			t.Errorf("oldPartsProblem(%q) = %q, want a warning: %v", tc.value, p, tc.warn)
		} else if tc.warn && !strings.Contains(p, tc.value) {
			t.Errorf("oldPartsProblem(%q) = %q, which does not say the value", tc.value, p)
		}
	}
}

// The servers the project starts (tests/localsrv's MergeTreeConfig) have
// the settings the aggregator asks for, and the query runs on 18.16.
func TestSettingsProblems(t *testing.T) {
	c := newClient(t)
	got, err := c.SettingsProblems(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("problems on localsrv's server: %q", got)
	}
	// And it read the setting, rather than finding no row.
	rows, err := c.Query(context.Background(), fmt.Sprintf(oldPartsQuery, "system.merge_tree_settings"))
	if err != nil || len(rows) != 1 || rows[0][0] != strconv.Itoa(MaxOldPartsLifetime) {
		t.Fatalf("old_parts_lifetime: %q, %v; want one row, %d (localsrv.MergeTreeConfig)", rows, err, MaxOldPartsLifetime)
	}
}
