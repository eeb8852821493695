// Package proc runs the programs that the end-to-end tests, `make run` and
// `make bench` start as child processes: our own binaries, redis-server,
// clickhouse-server and the Fastly CLI.
//
// A child gets its own process group, so a terminal's Ctrl-C reaches only
// the parent, which then stops the children in order; and it is killed by
// the kernel if the parent dies (Pdeathsig), so a crashed test run leaves
// nothing behind. Stop and Kill signal the whole group, so whatever a child
// started itself (the POP that `fastly compute serve` runs) ends with it.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Proc is one running child process.
type Proc struct {
	Name string // what messages call it, e.g. "clickhouse-server"
	// Log is the file the process writes to, if Start was given one; the
	// last lines this process wrote there go into startup errors. A server
	// that keeps its own log names that file instead with SetLog.
	Log string
	// logFrom is Log's size before this process wrote to it: the file is
	// appended to across runs, and an earlier run's lines in a startup
	// error would pass for this one's cause.
	logFrom int64

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Options are the optional parts of a start.
type Options struct {
	Dir string   // working directory; "" is the parent's
	Env []string // added to the parent's environment (later entries win)
	// Log is a file the output is appended to (created if needed). Out,
	// if set instead, receives the output directly.
	Log string
	Out io.Writer
	// PrivateNetwork starts the child in a network namespace of its own,
	// where every port is free and nothing outside can connect: for tests
	// of commands with fixed ports. Its loopback is down until the child
	// calls LoopbackUp. As root this is CLONE_NEWNET; otherwise the child
	// also gets a user namespace mapping it to the caller's own ids, which
	// the kernel may forbid (then Start fails).
	PrivateNetwork bool
}

// Start starts bin with args. Without o.Log or o.Out the output is
// discarded.
func Start(name string, o Options, bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = o.Dir
	if o.Env != nil {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	var lf *os.File
	var logFrom int64
	switch {
	case o.Log != "":
		var err error
		if lf, err = os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		cmd.Stdout, cmd.Stderr = lf, lf
		if fi, err := lf.Stat(); err == nil {
			logFrom = fi.Size()
		}
	case o.Out != nil:
		cmd.Stdout, cmd.Stderr = o.Out, o.Out
	}
	// Pdeathsig: the kernel kills the child when the thread that started
	// it exits. Setpgid: a terminal's Ctrl-C goes to the parent only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if o.PrivateNetwork {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
		if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
			cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		}
	}
	if err := cmd.Start(); err != nil {
		if lf != nil {
			lf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: o.Log, logFrom: logFrom, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if lf != nil {
			lf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil for exit status 0); valid once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// Pid is the process id (benchmarks read /proc/PID/io).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process's group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop asks the process to shut down (SIGTERM) and kills it if it has not
// ended within grace. A nil or ended process is no error.
func (p *Proc) Stop(grace time.Duration) error {
	return p.StopWith(syscall.SIGTERM, grace)
}

// StopWith is Stop with another signal, e.g. SIGINT for a program that
// treats Ctrl-C as its graceful stop.
func (p *Proc) StopWith(sig syscall.Signal, grace time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %v; killed", p.Name, grace)
	}
}

// Kill ends the process at once (SIGKILL), as a crash would.
func (p *Proc) Kill() error {
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// SetLog names the file where the process says why it failed, from has
// been its size before this process started (see LogSize): a startup
// error shows what the process wrote there since.
func (p *Proc) SetLog(path string, from int64) { p.Log, p.logFrom = path, from }

// LogSize is the size of the file at path, 0 if there is none: SetLog's
// from, taken before the process starts.
func LogSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitReady calls ready every 50 ms until it returns nil, the process
// ends, or ctx ends. On failure the process is killed and the error ends
// with the last lines it wrote to its log, which is where a server says
// why it did not come up.
func (p *Proc) WaitReady(ctx context.Context, ready func() error) error {
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			// Once more: a check may also learn where the server logs
			// (see SetLog), which it may have written just before it ended.
			if again := ready(); again != nil {
				last = again
			}
			return p.failure(fmt.Errorf("exited during startup (%v); last check: %v", p.err, last))
		case <-ctx.Done():
			p.Kill()
			return p.failure(fmt.Errorf("not ready: %w", errors.Join(ctx.Err(), last)))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// failureLines is how many of its last lines a startup error shows: a
// server's cause is its last words, and a terminal shows this many at once.
const failureLines = 15

func (p *Proc) failure(err error) error {
	if p.Log == "" {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	lines := LastLines(p.Log, p.logFrom, failureLines)
	if len(lines) == 0 {
		return fmt.Errorf("%s: %w; it wrote nothing to %s", p.Name, err, p.Log)
	}
	return fmt.Errorf("%s: %w; the last lines it wrote to %s:\n\n    %s", p.Name, err, p.Log, strings.Join(lines, "\n    "))
}

// LastLines returns the last n non-blank lines written to the file at
// path after its first from bytes (all of it if the file is now shorter,
// e.g. replaced).
func LastLines(path string, from int64, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if from > fi.Size() {
		from = 0
	}
	// Enough for n lines of any server's log; a longer line is cut.
	const most = 64 << 10
	if fi.Size()-from > most {
		from = fi.Size() - most
	}
	b, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, " \t\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// Tail returns at most the last n bytes of the file at path.
func Tail(path string, n int) []byte {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.TrimSpace(b)
}

// HTTPOK returns a readiness check that GETs url and wants 200.
func HTTPOK(url string) func() error {
	client := &http.Client{Timeout: time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// FreeAddr returns a loopback address ("127.0.0.1:port") that was free a
// moment ago. Another process may take it in between; a server that then
// fails to bind says so in its log.
//
// The port is drawn at random from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where no outgoing connection's source
// port and no other bind to port 0 lands: a port the kernel picked
// itself is handed out again to the next connect(2), which took
// clickhouse-server's port during its seconds of startup in a busy test
// run. Where the range leaves too little room below it, the kernel picks.
//
// A port is handed out once per process: two calls before the first
// address is bound (a test picks every port of a cluster, then starts its
// servers) would otherwise both find it free, and the second server fail
// to bind.
func FreeAddr() (string, error) {
	handedMu.Lock()
	defer handedMu.Unlock()
	if lo := ephemeralLow(); lo-freeFloor >= 1000 {
		for range 50 {
			port := freeFloor + rand.IntN(lo-freeFloor)
			if handed[port] {
				continue
			}
			a := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			if l, err := net.Listen("tcp", a); err == nil {
				l.Close()
				handed[port] = true
				return a, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	handed[l.Addr().(*net.TCPAddr).Port] = true
	return l.Addr().String(), nil
}

// handed are the ports FreeAddr has returned in this process.
var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// freeFloor keeps FreeAddr above the well-known and commonly configured
// ports.
const freeFloor = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 0 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(string(f[0]))
	return n
}

// FreePort is FreeAddr's port.
func FreePort() (int, error) {
	a, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(a)
	return strconv.Atoi(port)
}

// LoopbackUp brings up the loopback interface ("lo") of this process's
// network namespace: the first thing a child started with PrivateNetwork
// does.
func LoopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	// struct ifreq: the interface name, then (in a union) its flags.
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(ifr.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return fmt.Errorf("loopback flags: %w", e)
	}
	ifr.flags |= syscall.IFF_UP | syscall.IFF_RUNNING
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return fmt.Errorf("loopback up: %w", e)
	}
	return nil
}

// Buffer collects a child's output (Options.Out) and may be read while the
// child still writes.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
