// Package permhint says, of an error that is a file system permission
// refusal, who the process runs as and who owns what it was refused, so
// that the fix (chown, chmod, or the service's user) is in the message: a
// bare "permission denied" named only the path, and the usual cause, a
// file written by root's cron for a service running as another user, was
// left to guess.
package permhint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Wrap returns err with a hint appended when it is a permission refusal
// (errors.Is fs.ErrPermission) on a path (an *fs.PathError in its chain):
// prog's user, the nearest existing path's owner and mode, and a command
// that would give prog access. Any other error comes back as it is.
func Wrap(prog string, err error) error {
	var pe *fs.PathError
	if err == nil || !errors.Is(err, fs.ErrPermission) || !errors.As(err, &pe) {
		return err
	}
	path := pe.Path
	fi, serr := os.Stat(path)
	for serr != nil && filepath.Dir(path) != path {
		// Not there, or its directory cannot be searched: say what the
		// nearest directory above it is.
		path = filepath.Dir(path)
		fi, serr = os.Stat(path)
	}
	me := self()
	if serr != nil {
		return fmt.Errorf("%w (%s runs as %s)", err, prog, me.name)
	}
	owner := owner(fi)
	return fmt.Errorf("%w: %s runs as %s, and %s is %s's, mode %#o: give %s access (chown %s %s, or a group both share), or run %s as %s",
		err, prog, me.name, path, owner, fi.Mode().Perm(), me.user, me.user, path, prog, owner)
}

// account is a user as the hint names them.
type account struct {
	user string // the name chown takes (or the uid)
	name string // "nobody (uid 65534)"
}
