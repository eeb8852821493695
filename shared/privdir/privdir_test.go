package privdir

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory Make creates is its owner's alone (whatever the umask) and
// draws no warning; an existing one open to others is left as it is and
// named with the chmod that closes it.
func TestMake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	if w, err := Make(dir); err != nil || w != "" {
		t.Fatalf("new directory: %q, %v", w, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != Mode {
		t.Fatalf("new directory's mode: %v, %v", fi.Mode(), err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Make(dir)
	if err != nil || !strings.Contains(w, "chmod 0700 "+dir) || !strings.Contains(w, "0755") {
		t.Fatalf("open directory: %q, %v; want a warning with its chmod", w, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("Make changed an existing directory's mode to %v", fi.Mode())
	}
	// A shared directory, such as /tmp: never a chmod, a directory of
	// its own.
	if w := Warning("/tmp", fs.ModeDir|fs.ModeSticky|0o777); strings.Contains(w, "chmod") || !strings.Contains(w, "/tmp/edgepixel") {
		t.Errorf("/tmp: %q", w)
	}
	if _, err := Make(filepath.Join(dir, "x\x00")); err == nil {
		t.Error("a path with a NUL byte made")
	}
}
