//go:build linux

package attack

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Memory reads a process's peak (VmHWM) and current (VmRSS) resident
// memory from /proc/PID/status, in bytes.
func Memory(pid int) (peak, now int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			now = kb << 10
		}
	}
	if peak == 0 {
		return 0, 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return peak, now, nil
}

// ResetPeak makes the kernel start a process's peak resident memory
// (VmHWM) again from its current one (proc(5), clear_refs "5"), so that a
// peak can be read per attack.
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// MiB is n bytes in mebibytes, for messages.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }

// OpenFiles counts a process's open file descriptors.
func OpenFiles(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

func prlimit(pid int, set, old *syscall.Rlimit) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_NOFILE),
		uintptr(unsafe.Pointer(set)), uintptr(unsafe.Pointer(old)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// LimitOpenFiles lowers a running process's soft open-file limit to n
// (prlimit(2), as `prlimit --pid`): the way to run a server out of file
// descriptors without opening them all. It returns what restores the
// previous limit.
func LimitOpenFiles(pid int, n uint64) (restore func() error, err error) {
	var old syscall.Rlimit
	if err := prlimit(pid, nil, &old); err != nil {
		return nil, fmt.Errorf("reading the open-file limit of %d: %w", pid, err)
	}
	if n > old.Max {
		return nil, fmt.Errorf("open-file limit %d over the hard limit %d", n, old.Max)
	}
	set := syscall.Rlimit{Cur: n, Max: old.Max}
	if err := prlimit(pid, &set, nil); err != nil {
		return nil, fmt.Errorf("limiting %d to %d open files: %w", pid, n, err)
	}
	return func() error { return prlimit(pid, &old, nil) }, nil
}

// RaiseOpenFiles raises this process's own open-file limit to n if it
// can (the hard limit too, which takes root), and returns the soft limit
// now in effect: a crowd of n connections needs n descriptors here too.
func RaiseOpenFiles(n uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur >= n {
		return rl.Cur
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, rl.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			return rl.Cur
		}
		want = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
			return rl.Cur
		}
	}
	return want.Cur
}
