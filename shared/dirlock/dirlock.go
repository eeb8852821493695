// Package dirlock keeps two processes from using one directory: each
// holds an exclusive flock(2) on a lock file in it for as long as it runs.
// The kernel drops the lock when the process exits, however it exits (a
// kill -9 included), so no stale lock is left to clean up. The POP's
// queue directories (edge/pop/logsink) and the aggregator's --data-dir
// use it.
package dirlock

import "errors"

// Name is the lock file's name in a locked directory.
const Name = "lock"

// ErrHeld is returned by Lock when another process holds the lock.
var ErrHeld = errors.New("in use by another process")
