package wasmbench

import "golang.org/x/sys/unix"

// threadCPU returns the calling OS thread's CPU time in nanoseconds.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic("wasmbench: clock_gettime(CLOCK_THREAD_CPUTIME_ID): " + err.Error())
	}
	return ts.Nano()
}
