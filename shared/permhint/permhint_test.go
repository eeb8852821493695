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
	// (This user's own file: chmod is the fix, not a chown to itself.)
	for _, want := range []string{`secret "salt": open ` + file + ": permission denied", "edgepixel-pop runs as " + me.name, file + " is " + me.user + "'s, mode 0600", "chmod u+rwX " + file} {
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
	// The refused path of several: not another PathError beside it.
	other := &fs.PathError{Op: "open", Path: "/elsewhere", Err: fs.ErrNotExist}
	err = Wrap("p", errors.Join(other, fmt.Errorf("x: %w", &fs.PathError{Op: "open", Path: file, Err: fs.ErrPermission})))
	if !strings.Contains(err.Error(), file+" is ") || strings.Contains(err.Error(), "/elsewhere is") {
		t.Errorf("%v: want the hint of %s", err, file)
	}
	if got := Wrap("p", errors.Join(other, fs.ErrPermission)); got.Error() != errors.Join(other, fs.ErrPermission).Error() {
		t.Errorf("a refusal on no path: %v, want no hint", got)
	}
	// Anything else as it is.
	for _, e := range []error{nil, errors.New("x"), &fs.PathError{Op: "open", Path: file, Err: fs.ErrNotExist}} {
		if got := Wrap("p", e); got != e {
			t.Errorf("Wrap(%v) = %v", e, got)
		}
	}
}

// Another user's path: chown it; one not there: make it, not chown its
// parent (a shared /var/lib).
func TestHint(t *testing.T) {
	nobody := account{user: "nobody", name: "nobody (uid 65534)"}
	got := hint("edgepixel-pop", nobody, "/etc/edgepixel/secret", "/etc/edgepixel/secret", "root", 0o600, false)
	if want := "edgepixel-pop runs as nobody (uid 65534), and /etc/edgepixel/secret is root's, mode 0600: give nobody access (chown nobody /etc/edgepixel/secret, or a group both share), or run edgepixel-pop as root"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = hint("edgepixel-pop", nobody, "/var/lib/edgepixel/q", "/var/lib", "root", 0o755, true)
	if !strings.Contains(got, "/var/lib is root's, mode 0755: give nobody access (make /var/lib/edgepixel/q for it: install -d -o nobody /var/lib/edgepixel/q)") || strings.Contains(got, "chown") {
		t.Errorf("a missing directory: %s", got)
	}
}
