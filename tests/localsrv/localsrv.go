// Package localsrv runs private redis-server and clickhouse-server processes
// for tests and for `make run`.
//
// Each server is a child process (package proc) bound to loopback on a free
// port, with all of its data under a directory the caller chooses: tests
// pass t.TempDir(), `make run` passes a fixed directory so that data
// survives restarts.
package localsrv

import (
	"net"
	"strconv"

	"github.com/edgepixel/edgepixel/tests/proc"
)

func portOr(p int) (int, error) {
	if p != 0 {
		return p, nil
	}
	return proc.FreePort()
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
