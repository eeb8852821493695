package tokenfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token file's white space around the token is dropped; an empty file
// and a missing one are errors that say which.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for content, want := range map[string]string{"tok": "tok", "tok\n": "tok", "  a b\r\n\n": "a b"} {
		if got, err := Read(write("t", content)); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", content, got, err, want)
		}
	}
	empty := write("my token", " \n\t")
	if _, err := Read(empty); !errors.Is(err, ErrEmpty) || !strings.HasPrefix(err.Error(), empty+" is empty: put the token in it") || !strings.Contains(err.Error(), "> '"+empty+"'") {
		t.Errorf("empty file: %v", err)
	}
	for _, bad := range []string{"one\ntwo\n", "a\tb", "a\x00b", "a\x7fb"} {
		if _, err := Read(write("bad", bad)); err == nil || !strings.Contains(err.Error(), "holds more than one token") {
			t.Errorf("%q: %v, want it refused", bad, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "write the token there") {
		t.Errorf("missing file: %v", err)
	}
	// A token issued elsewhere: where it comes from, not a new one.
	if _, err := ReadIssued(filepath.Join(dir, "missing"), "the aggregator's --log-token-file"); err == nil ||
		!strings.Contains(err.Error(), "(the one in the aggregator's --log-token-file)") || strings.Contains(err.Error(), "urandom") {
		t.Errorf("missing issued token: %v", err)
	}
	// A relative path's error names the directory it was looked for in.
	t.Chdir(dir)
	if _, err := Read("missing"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "missing")) {
		t.Errorf("missing relative file: %v, want it named in %s", err, dir)
	}
}
