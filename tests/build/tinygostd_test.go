package build

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestOverlayRoot builds the overlay over a stand-in release root: every
// file of the release is reachable through it, the missing package is
// added, and the release itself is untouched.
func TestOverlayRoot(t *testing.T) {
	ctx := context.Background()
	troot := t.TempDir()
	for _, f := range []string{"bin/tinygo", "targets/wasip1.json", "src/runtime/gc.go", "src/net/dial.go", "src/net/http/client.go", "src/net/http/internal/ascii/print.go"} {
		p := filepath.Join(troot, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f), 0o644)
	}
	cache := t.TempDir()
	dir, err := overlayRoot(ctx, troot, cache)
	if err != nil {
		t.Fatal(err)
	}
	if dir == troot {
		t.Fatal("no overlay for a root without net/http/cookiejar")
	}
	for _, f := range []string{"bin/tinygo", "targets/wasip1.json", "src/runtime/gc.go", "src/net/dial.go", "src/net/http/client.go", "src/net/http/internal/ascii/print.go"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || string(b) != f {
			t.Errorf("%s through the overlay: %q, %v", f, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "src/net/http/cookiejar/jar.go")); err != nil {
		t.Errorf("cookiejar not added: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "src/net/http/cookiejar/*_test.go")); len(m) > 0 {
		t.Errorf("tests copied: %v", m)
	}
	if _, err := os.Stat(filepath.Join(troot, "src/net/http/cookiejar")); err == nil {
		t.Error("the release root was changed")
	}
	again, err := overlayRoot(ctx, troot, cache)
	if err != nil || again != dir {
		t.Errorf("second call: %s, %v; want the same overlay %s", again, err, dir)
	}
	if got, _ := overlayRoot(ctx, dir, cache); got != dir {
		t.Errorf("a root with every package needs no overlay, got %s", got)
	}
}
