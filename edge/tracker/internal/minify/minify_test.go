package minify_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/edgepixel/edgepixel/edge/tracker"
	"github.com/edgepixel/edgepixel/edge/tracker/internal/minify"
	"github.com/edgepixel/edgepixel/shared/event"
)

// TestServedFresh: what the edge serves (tracker.Script, tracker.Gzip) is
// s.js minified. Here rather than in package tracker, whose own tests
// also run inside the TinyGo module under the POP (tests/edgetinygo),
// where a guest has no filesystem to read s.js from.
func TestServedFresh(t *testing.T) {
	const stale = "run `go generate ./edge/tracker`"
	src, err := os.ReadFile("../../s.js")
	if err != nil {
		t.Fatal(err)
	}
	want, err := minify.Script(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tracker.Script, want) {
		t.Fatalf("s.min.js is not s.js minified: %s", stale)
	}
	zr, err := gzip.NewReader(bytes.NewReader(tracker.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, tracker.Script) {
		t.Fatalf("s.min.js.gz is not s.min.js (%v): %s", err, stale)
	}
}

// TestLimits: s.js's copy of an edge limit must be the edge's, and be
// there; a stale one stops the generation.
func TestLimits(t *testing.T) {
	good := fmt.Sprintf("var m = /*MAX_PROPS_LEN*/%d;", event.MaxPropsLen)
	if _, err := minify.Script([]byte(good)); err != nil {
		t.Errorf("%s: %v", good, err)
	}
	for _, src := range []string{
		"var m = 1;", // not written
		fmt.Sprintf("var m = /*MAX_PROPS_LEN*/%d;", event.MaxPropsLen+1), // stale
		good + " var n = /*MAX_PROP_LEN*/1;",                             // no such limit
	} {
		if _, err := minify.Script([]byte(src)); err == nil {
			t.Errorf("%s: no error", src)
		}
	}
}
