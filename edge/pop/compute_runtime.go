package pop

import "time"

// fastly_compute_runtime.get_vcpu_ms: the vCPU time a sandbox has used.
// Like the CPU budget (limits.go), it is approximated by the wall time the
// guest spends outside hostcalls and sleeps, and the clock only runs once
// the guest first asks: keeping it for every hostcall of every guest would
// cost time for a figure few guests read. Fastly documents the value for
// comparing two readings, not as an absolute, and two readings taken
// after the first call are exact in this sense.

// vcpuClock accumulates guest run time. Only the instance's goroutine
// touches it.
type vcpuClock struct {
	on    bool
	used  time.Duration
	since int64 // monoNow when the guest last left the host; 0 while in it
}

// pause and resume bracket hostcalls and sleeps (enterHost, leaveHost).
func (v *vcpuClock) pause() {
	if v.since != 0 {
		v.used += time.Duration(monoNow() - v.since)
		v.since = 0
	}
}

func (v *vcpuClock) resume() {
	if v.on {
		v.since = monoNow()
	}
}

// get_vcpu_ms(ms_out u64): milliseconds of guest run time so far.
func runtimeVCPUMs(c *call) status {
	v := &c.inst.vcpu
	v.on = true // leaveHost starts the clock when this call returns
	if !c.putU64(c.u32(0), uint64(v.used/time.Millisecond)) {
		return stInval
	}
	return stOK
}
