package pop

import "golang.org/x/sys/unix"

// threadCPUClock: threadCPUNow is the thread's CPU time, which does not
// advance while the thread waits, so a request's guest time is read at its
// two ends only (waitRequest) and hostcalls need no clock readings. On
// Linux a reading is a system call, costly enough that reading it around
// every hostcall would be much of what it measures.
const threadCPUClock = true

// threadCPUNow is the calling thread's CPU time in nanoseconds; the
// instance's goroutine is locked to its thread while guest time is
// measured (Config.MeasureGuestTime), so this is the instance's, unaffected
// by other processes running meanwhile.
func threadCPUNow() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return monoNow()
	}
	return ts.Nano()
}
