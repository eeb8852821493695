//go:build unix

package permhint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrap(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	me := self()
	// A refusal on a file that is there: its owner and mode, and the
	// user to give it to.
	err := Wrap("edgepixel-pop", fmt.Errorf("secret %q: %w", "salt", &fs.PathError{Op: "open", Path: file, Err: fs.ErrPermission}))
	for _, want := range []string{`secret "salt": open ` + file + ": permission denied", "edgepixel-pop runs as " + me.name, file + " is " + me.user + "'s, mode 0600", "chown " + me.user + " " + file} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q in it", err, want)
		}
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("%v: the refusal is no longer in the chain", err)
	}
	// One that is not: its nearest directory.
	missing := filepath.Join(dir, "q", "journal")
	err = Wrap("edgepixel-pop", &fs.PathError{Op: "mkdir", Path: missing, Err: fs.ErrPermission})
	if !strings.Contains(err.Error(), dir+" is "+me.user+"'s, mode 07") {
		t.Errorf("%v: want the nearest directory, %s", err, dir)
	}
	// Anything else as it is.
	for _, e := range []error{nil, errors.New("x"), &fs.PathError{Op: "open", Path: file, Err: fs.ErrNotExist}} {
		if got := Wrap("p", e); got != e {
			t.Errorf("Wrap(%v) = %v", e, got)
		}
	}
}
