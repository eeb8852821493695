package tracker

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
)

func TestGzipFresh(t *testing.T) {
	zr, err := gzip.NewReader(bytes.NewReader(Gzip))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, Script) {
		t.Fatalf("s.js.gz is not s.js (%v): run `gzip -9cn s.js > s.js.gz` in edge/tracker", err)
	}
	if len(Gzip) > 2048 {
		t.Errorf("s.js is %d bytes gzipped; the goal is under 2 KB", len(Gzip))
	}
}

func TestETag(t *testing.T) {
	sum := sha256.Sum256(Script)
	if want := fmt.Sprintf(`"%x"`, sum[:8]); ETag != want {
		t.Errorf("ETag is %s; set scriptTag to %s in tracker.go", ETag, want)
	}
}
