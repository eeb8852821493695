// Package localsrv runs private redis-server and clickhouse-server processes
// for tests and for `make run`.
//
// Each server is a child process bound to loopback on a free port, with all
// of its data under a directory the caller chooses: tests pass t.TempDir(),
// `make run` passes a fixed directory so that data survives restarts. A
// child is killed by the kernel if the parent dies (Pdeathsig), so a crashed
// test run leaves no servers behind.
package localsrv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// proc is one child server process and where its output goes.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start launches bin with args, its output appended to logPath.
func start(name, bin, logPath string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	// Pdeathsig: the kernel kills the child when the thread that started it
	// exits; Setpgid keeps a terminal's Ctrl-C from reaching the child
	// before the parent had a chance to stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v; killed", p.name, grace)
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// failure wraps err with the tail of the process log, which is where the
// server says why it did not come up.
func (p *proc) failure(err error) error {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("%s: %w; log %s ends with:\n%s", p.name, err, p.log, bytes.TrimSpace(b))
}

// waitReady polls ready every 50 ms until it succeeds, the process exits,
// ctx ends or timeout passes.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration, ready func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.failure(fmt.Errorf("exited during startup (%v); last check: %v", p.err, last))
		case <-ctx.Done():
			p.kill()
			return p.failure(fmt.Errorf("not ready within %v: %v", timeout, last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago. There is
// a small window in which another process may take it; servers that fail
// to bind report it in their log.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portOr(p int) (int, error) {
	if p != 0 {
		return p, nil
	}
	return FreePort()
}

func lookPath(names ...string) (string, bool) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	// Debian puts clickhouse-server in /usr/sbin, which a non-root PATH
	// often lacks.
	for _, n := range names {
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
			p := filepath.Join(d, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, true
			}
		}
	}
	return "", false
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
