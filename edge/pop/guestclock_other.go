//go:build !linux

package pop

// threadCPUNow falls back to the monotonic clock where thread CPU time is
// not read: guest time then includes time the thread was not running.
func threadCPUNow() int64 { return monoNow() }
