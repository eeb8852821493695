//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// fdReserve is the file descriptors kept for everything but client
// connections: spool segments, Redis and ClickHouse connections, the
// listeners, logs.
const fdReserve = 256

// fitConns returns --max-conns lowered, with a warning, to what the file
// descriptor limit leaves after fdReserve: past it, accepting would fail
// with EMFILE instead of answering 503, and the loader could not open the
// spool. (The Go runtime already raises the soft limit to the hard one.)
func fitConns(log *slog.Logger, maxConns int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return maxConns
	}
	room := int(min(rl.Cur, 1<<30)) - fdReserve
	if room < 16 {
		room = 16
	}
	if maxConns < 0 || maxConns > room {
		log.Warn("--max-conns lowered to fit the file descriptor limit (raise it with ulimit -n or LimitNOFILE=)",
			"max_conns", room, "was", maxConns, "nofile", rl.Cur, "reserved", fdReserve)
		return room
	}
	return maxConns
}
