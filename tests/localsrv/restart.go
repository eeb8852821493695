package localsrv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Fault tests stop a server and start it again where clients expect it:
// same ports, same data directory. The value is updated in place, so
// every holder of the pointer sees the new process. Only what a new
// process changes is written: the address, URLs and directory stay as
// they were, so another goroutine may read them during a restart (make
// run restarts the aggregator, which reads them, while it restarts
// these).

// Port returns the TCP port the server listens on.
func (r *Redis) Port() int { return portOf(r.Addr) }

// Restart starts redis-server again on the same port and data directory
// (stopping it first, gracefully, if it still runs). With the append-only
// file on, the keys it had when it stopped are back.
func (r *Redis) Restart(ctx context.Context) error {
	if err := r.Stop(); err != nil {
		return err
	}
	n, err := startRedis(ctx, r.Dir, r.Port(), r.extra...)
	if err != nil {
		return err
	}
	r.p, r.replicaOf = n.p, n.replicaOf
	return nil
}

// Running reports whether the server process is still there.
func (r *Redis) Running() bool { return !r.p.Exited() }

// Restart starts clickhouse-server again on the same ports and data
// directory (stopping it first, gracefully, if it still runs).
func (c *ClickHouse) Restart(ctx context.Context) error {
	if err := c.Stop(); err != nil {
		return err
	}
	u, err := url.Parse(c.HTTPURL)
	if err != nil {
		return err
	}
	n, err := startClickHouse(ctx, c.Dir, portOf(u.Host), portOf(c.TCPAddr), c.extra, c.compression)
	if err != nil {
		return err
	}
	c.p, c.token, c.errFrom = n.p, n.token, n.errFrom
	return nil
}

// Running reports whether the server process is still there.
func (c *ClickHouse) Running() bool { return !c.p.Exited() }

func portOf(hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		panic(fmt.Sprintf("localsrv: bad address %q", hostport))
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Signal sends sig to the server, e.g. SIGSTOP to make it hang (it stays
// a replica in ZooKeeper's eyes until its session expires) and SIGCONT.
func (c *ClickHouse) Signal(sig syscall.Signal) error { return c.p.Signal(sig) }

// RestartEmpty starts redis-server again on the same port with no data,
// as a server without persistence comes back after a crash: the
// append-only files are removed first (the server must be stopped or
// killed already, or is stopped gracefully first).
func (r *Redis) RestartEmpty(ctx context.Context) error {
	if err := r.Stop(); err != nil {
		return err
	}
	for _, name := range []string{"appendonlydir", "appendonly.aof", "dump.rdb"} {
		if err := os.RemoveAll(filepath.Join(r.Dir, name)); err != nil {
			return err
		}
	}
	return r.Restart(ctx)
}
