package localsrv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// Redis is a running private redis-server.
type Redis struct {
	Addr string // 127.0.0.1:port
	URL  string // redis://127.0.0.1:port/0
	Dir  string // data directory (append-only file lives here)
	p    *proc.Proc
	// extra are the arguments beyond StartRedis's (a cluster node's),
	// given again by Restart.
	extra []string
	// replicaOf is, for a cluster replica, its master's node ID.
	replicaOf string
}

// RedisAvailable reports whether redis-server is installed, and where.
func RedisAvailable() (path string, ok bool) { return deps.Redis.Path("") }

// StartRedis starts redis-server on 127.0.0.1:port (0 picks a free port)
// with its data in dir. The append-only file is on so that a server started
// again on the same dir keeps its keys (the aggregator's dedupe state);
// RDB snapshots are off as they would only duplicate it.
func StartRedis(ctx context.Context, dir string, port int) (*Redis, error) {
	return startRedis(ctx, dir, port)
}

// startRedis is StartRedis with extra redis-server arguments (a cluster
// node's).
func startRedis(ctx context.Context, dir string, port int, extra ...string) (*Redis, error) {
	bin, ok := RedisAvailable()
	if !ok {
		return nil, fmt.Errorf("redis-server not found; %s", deps.Advice([]deps.Program{deps.Redis}))
	}
	dir, port, err := serverDir(dir, port)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "yes", "--protected-mode", "yes",
		"--daemonize", "no", "--logfile", ""}, extra...)
	r := &Redis{Addr: hostPort(port), Dir: dir, extra: extra}
	r.URL = "redis://" + r.Addr + "/0"
	// Loading a large append-only file can take a while; PING answers
	// -LOADING until it is done.
	r.p, err = startServer(ctx, "redis-server", RedisLog(dir), 30*time.Second,
		func(p *proc.Proc) error { return r.ping(p.Pid()) }, bin, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ping sends PING over a raw connection (localsrv has no Redis client
// dependency so that anything can import it) and checks that the server
// answering is the process pid.
func (r *Redis) ping(pid int) error {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	// INFO's process_id proves the server on the port is ours and not one
	// that held the port already (ours would then exit, unable to bind).
	if _, err := c.Write([]byte("PING\r\nINFO server\r\n")); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	if line, err = br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "$") {
		return fmt.Errorf("INFO answered %q (%v)", line, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 || n > 1<<20 {
		return fmt.Errorf("INFO answered %q", line)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(br, info); err != nil {
		return err
	}
	want := fmt.Sprintf("process_id:%d\r\n", pid)
	if !strings.Contains(string(info), want) {
		return fmt.Errorf("another server answers on %s", r.Addr)
	}
	return nil
}

// Stop shuts the server down gracefully (SIGTERM makes Redis flush its
// append-only file) and waits for it.
func (r *Redis) Stop() error {
	if r == nil {
		return nil
	}
	return r.p.Stop(15 * time.Second)
}

// Kill ends the server at once, as a crash would (for fault tests).
func (r *Redis) Kill() error {
	if r == nil {
		return nil
	}
	return r.p.Kill()
}

// Pid is the server's process id (for its CPU time and I/O in /proc).
func (r *Redis) Pid() int { return r.p.Pid() }

// Signal sends sig to the server, e.g. SIGSTOP and SIGCONT to make a
// replica fall behind its master.
func (r *Redis) Signal(sig syscall.Signal) error { return r.p.Signal(sig) }

// Done is closed when the server process has exited.
func (r *Redis) Done() <-chan struct{} { return r.p.Done() }

// Err is how the server ended (nil for exit status 0); valid once Done
// is closed.
func (r *Redis) Err() error { return r.p.Err() }

// RedisLog is the log of the redis-server StartRedis runs in dir.
func RedisLog(dir string) string { return filepath.Join(dir, "redis.log") }
