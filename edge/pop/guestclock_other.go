//go:build !linux

package pop

// threadCPUClock is false: threadCPUNow is wall time, so hostcalls and
// sleeps are taken out of the guest's time one by one (enterHost).
const threadCPUClock = false

// threadCPUNow falls back to the monotonic clock where thread CPU time is
// not read: guest time then includes time the thread was not running.
func threadCPUNow() int64 { return monoNow() }
