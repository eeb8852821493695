// Package permhint says, of an error that is a file system permission
// refusal, who the process runs as and who owns what it was refused, so
// that the fix (chown, chmod, a directory made for it, or the service's
// user) is in the message: a bare "permission denied" named only the
// path, and the usual cause, a file written by root's cron for a service
// running as another user, was left to guess.
package permhint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Wrap returns err with a hint appended when it holds a permission
// refusal on a path (an *fs.PathError whose own error is
// fs.ErrPermission): prog's user (prog names the process: "edgepixel-pop",
// "the POP"), the owner and mode of the path or, when the path is not
// there, of the nearest directory above it, and what would give prog
// access. Any other error comes back as it is.
func Wrap(prog string, err error) error {
	pe := refused(err)
	if pe == nil {
		return err
	}
	me := self()
	path := pe.Path
	fi, serr := os.Stat(path)
	missing := serr != nil
	for serr != nil && filepath.Dir(path) != path {
		// Not there, or its directory cannot be searched: say what the
		// nearest directory above it is.
		path = filepath.Dir(path)
		fi, serr = os.Stat(path)
	}
	if serr != nil {
		return fmt.Errorf("%w (%s runs as %s)", err, prog, me.name)
	}
	return fmt.Errorf("%w: %s", err, hint(prog, me, pe.Path, path, owner(fi), fi.Mode().Perm(), missing))
}

// hint is Wrap's sentence: me was refused refusedPath, of which path
// (itself, or when missing the nearest directory above it) is owner's,
// of mode mode.
func hint(prog string, me account, refusedPath, path, owner string, mode fs.FileMode, missing bool) string {
	var fix string
	switch {
	case owner == me.user:
		// Its own: a mode that leaves the owner out.
		fix = fmt.Sprintf("chmod u+rwX %s", path)
	case missing:
		// Chowning a shared parent (/var/lib) would be the wrong fix.
		fix = fmt.Sprintf("make %s for it: install -d -o %s %s", refusedPath, me.user, refusedPath)
	default:
		fix = fmt.Sprintf("chown %s %s, or a group both share", me.user, path)
	}
	return fmt.Sprintf("%s runs as %s, and %s is %s's, mode %#o: give %s access (%s), or run %s as %s",
		prog, me.name, path, owner, mode, me.user, fix, prog, owner)
}

// refused is the first *fs.PathError in err's chain whose own error is a
// permission refusal, or nil: another PathError beside it (a file that
// was not there, in an errors.Join) is not what was refused.
func refused(err error) *fs.PathError {
	if err == nil {
		return nil
	}
	if pe, ok := err.(*fs.PathError); ok && errors.Is(pe.Err, fs.ErrPermission) {
		return pe
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return refused(e.Unwrap())
	case interface{ Unwrap() []error }:
		for _, c := range e.Unwrap() {
			if pe := refused(c); pe != nil {
				return pe
			}
		}
	}
	return nil
}

// account is a user as the hint names them.
type account struct {
	user string // the name chown takes (or the uid)
	name string // "nobody (uid 65534)"
}
