// Package privdir makes the directories that hold events (the
// aggregator's data directory and spool, a POP's disk queues) private to
// the user that runs the process, and says when one is not: visitor ids,
// user agents and pages are personal data, and a directory readable by
// other local users shares every event in it.
//
// It never changes the mode of a directory it did not create: an older
// version's directory, or one an operator made (a --data-dir of /tmp, a
// directory shared with a backup agent's group on purpose), is the
// operator's to change, so Make returns a warning that says how.
package privdir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Mode is the mode Make creates directories with: the owner's alone.
const Mode fs.FileMode = 0o700

// Make creates dir, and its missing parents, with Mode. An existing
// directory is left as it is; warning, if not "", says that other users
// may read or enter it and how to stop them, for the caller to log. err
// is os.MkdirAll's, or os.Stat's.
func Make(dir string) (warning string, err error) {
	if err := os.MkdirAll(dir, Mode); err != nil {
		return "", err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	return Warning(dir, fi.Mode()), nil
}

// Warning is what Make says of a directory dir of mode m: "" where only
// its owner may enter it (no group or other permission bits), otherwise
// a sentence naming the mode and what to do: the chmod that makes it
// private, or, for a directory others may write to (sticky, such as
// /tmp, or writable by all), a directory of its own, since a chmod
// there would break what else uses it.
func Warning(dir string, m fs.FileMode) string {
	if m.Perm()&0o077 == 0 {
		return ""
	}
	if m&fs.ModeSticky != 0 || m.Perm()&0o002 != 0 {
		return fmt.Sprintf("%s (mode %#o) holds events, and other local users may read them and write there: give a directory of its own, such as %s, which is made %#o", dir, m.Perm(), filepath.Join(dir, "edgepixel"), Mode)
	}
	return fmt.Sprintf("%s (mode %#o) holds events, and other local users may read it: run chmod %#o %s", dir, m.Perm(), Mode, dir)
}
