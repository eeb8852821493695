// Package localsrv runs private redis-server and clickhouse-server processes
// for tests and for `make run`.
//
// Each server is a child process (package proc) bound to loopback on a free
// port, with all of its data under a directory the caller chooses: tests
// pass t.TempDir(), `make run` passes a fixed directory so that data
// survives restarts.
package localsrv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/tests/proc"
)

func portOr(p int) (int, error) {
	if p != 0 {
		return p, nil
	}
	return proc.FreePort()
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// serverDir makes a server's data directory and returns it absolute,
// with port, or a free port for 0.
func serverDir(dir string, port int) (string, int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", 0, err
	}
	port, err = portOr(port)
	return dir, port, err
}

// startServer starts bin (called name in messages) with its output
// appended to logFile, and waits up to limit until ready passes for it.
// A server that does not get ready is killed, and the error ends with
// the last lines it wrote to its log in this run.
func startServer(ctx context.Context, name, logFile string, limit time.Duration, ready func(*proc.Proc) error, bin string, args ...string) (*proc.Proc, error) {
	p, err := proc.Start(name, proc.Options{Log: logFile}, bin, args...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := p.WaitReady(ctx, func() error { return ready(p) }); err != nil {
		return nil, err
	}
	return p, nil
}
