package conformance

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serve.sh starts `fastly compute serve` in a process group of its own
// and disowns it; if serve.sh is killed (a timeout), the CLI and its POP
// would outlive the run, holding the port. As a child subreaper the
// harness inherits such orphans, so it can end exactly them: its own
// descendants, found by parent pid, never processes by name.

const prSetChildSubreaper = 36 // <linux/prctl.h>

// BecomeSubreaper makes orphaned descendants children of this process.
func BecomeSubreaper() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ReapOrphans kills and reaps every remaining child of this process (call
// it when none of the ones it started itself should still run), and the
// children those leave behind, which come to it in turn. It returns how
// many it ended.
func ReapOrphans() int {
	n := 0
	for round := 0; round < 20; round++ {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return n
		}
		for _, k := range kids {
			if !k.zombie { // a zombie has ended already; it only needs reaping
				syscall.Kill(k.pid, syscall.SIGKILL)
				n++
			}
		}
		for _, k := range kids {
			var ws syscall.WaitStatus
			syscall.Wait4(k.pid, &ws, 0, nil)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

type child struct {
	pid    int
	zombie bool
}

// children lists the processes whose parent is ppid, from /proc.
func children(ppid int) []child {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []child
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if p, _ := strconv.Atoi(fields[1]); p == ppid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, child{pid, fields[0] == "Z"})
		}
	}
	return out
}
