package pop

import "golang.org/x/sys/unix"

// threadCPUNow is the calling thread's CPU time in nanoseconds; the
// instance's goroutine is locked to its thread while guest time is
// measured (Config.MeasureGuestTime), so this is the guest's, unaffected
// by other processes running meanwhile.
func threadCPUNow() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return monoNow()
	}
	return ts.Nano()
}
