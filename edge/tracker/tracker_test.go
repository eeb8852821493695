package tracker

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// That Script is s.js minified, and Gzip Script, is internal/minify's
// TestServedFresh: these tests also run in the TinyGo module, which reads
// no files.

func TestSize(t *testing.T) {
	if len(Gzip) > 2048 {
		t.Errorf("s.js is %d bytes gzipped; the goal is under 2 KB", len(Gzip))
	}
}

func TestETag(t *testing.T) {
	sum := sha256.Sum256(Script)
	if want := fmt.Sprintf(`"%x"`, sum[:8]); ETag != want {
		t.Errorf("ETag is %s, want %s: run `go generate ./edge/tracker`", ETag, want)
	}
}
