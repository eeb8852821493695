package tracker

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/edgepixel/edgepixel/edge/tracker/internal/minify"
)

const stale = "run `go generate ./edge/tracker`"

func TestMinifiedFresh(t *testing.T) {
	src, err := os.ReadFile("s.js")
	if err != nil {
		t.Fatal(err)
	}
	want, err := minify.Script(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Script, want) {
		t.Fatalf("s.min.js is not s.js minified: %s", stale)
	}
	zr, err := gzip.NewReader(bytes.NewReader(Gzip))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, Script) {
		t.Fatalf("s.min.js.gz is not s.min.js (%v): %s", err, stale)
	}
	if len(Gzip) > 2048 {
		t.Errorf("s.js is %d bytes gzipped; the goal is under 2 KB", len(Gzip))
	}
}

func TestETag(t *testing.T) {
	sum := sha256.Sum256(Script)
	if want := fmt.Sprintf(`"%x"`, sum[:8]); ETag != want {
		t.Errorf("ETag is %s, want %s: %s", ETag, want, stale)
	}
}
