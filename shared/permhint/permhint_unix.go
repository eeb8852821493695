//go:build unix

package permhint

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// self is the process's effective user.
func self() account { return lookup(os.Geteuid()) }

// owner is fi's owning user's name (or uid).
func owner(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "another user"
	}
	return lookup(int(st.Uid)).user
}

func lookup(uid int) account {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return account{user: u.Username, name: fmt.Sprintf("%s (uid %d)", u.Username, uid)}
	}
	return account{user: id, name: "uid " + id}
}
