package etag

import "testing"

func TestMatch(t *testing.T) {
	const tag = `"svg5-2f"`
	for header, want := range map[string]bool{
		`"svg5-2f"`:          true,
		`W/"svg5-2f"`:        true, // weakened by a compressing proxy
		`"x", "svg5-2f"`:     true,
		` "x" ,W/"svg5-2f" `: true,
		`*`:                  true,
		``:                   false,
		`"svg5-2e"`:          false,
		`svg5-2f`:            false, // unquoted: not this tag
		`"x", W/"y"`:         false,
		`W/"svg5-2f-longer"`: false,
	} {
		if got := Match(header, tag); got != want {
			t.Errorf("Match(%q) = %v, want %v", header, got, want)
		}
	}
}
