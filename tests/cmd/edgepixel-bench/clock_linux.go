//go:build linux

package main

import (
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// threadClockFloor is the median difference of two back-to-back readings
// of the thread CPU clock the POP measures guest time with: the clock's
// own cost, which every guest-time figure carries once.
func threadClockFloor() (time.Duration, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	read := func() int64 {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return ts.Nano()
	}
	d := make([]time.Duration, 2001)
	for i := range d {
		a := read()
		d[i] = time.Duration(read() - a)
	}
	slices.Sort(d)
	return d[len(d)/2], true
}
