package pop

import "time"

// fastly_compute_runtime: facts about the guest's own execution.
var fastlyComputeRuntime = hostModule{name: "fastly_compute_runtime", funcs: []hostFunc{
	{"get_heap_mib", i32("mib_out"), runtimeHeapMiB},
	{"get_vcpu_ms", i32("vcpu_ms_out"), runtimeVCPUMs},
}}

// runtimeHeapMiB implements fastly_compute_runtime.get_heap_mib(mib_out):
// writes the guest's linear memory size in MiB, which is what bounds its
// heap.
//
// Status: $ok.
//
// Rounded up, as Fastly does: a guest under 1 MiB (a small TinyGo
// build) has a heap of 1 MiB, not 0 (compute-sdk-go's TestGetHeapMiB).
//
// Differs: Fastly counts host memory held for the sandbox too (e.g. body
// bytes read from the network but not yet by the guest); this counts
// linear memory only.
func runtimeHeapMiB(c *call) status {
	if !c.putU32(c.u32(0), uint32((uint64(c.mem.Size())+1<<20-1)>>20)) {
		return stInval
	}
	return stOK
}

// runtimeVCPUMs implements fastly_compute_runtime.get_vcpu_ms(vcpu_ms_out):
// writes the milliseconds of vCPU time the sandbox has used, a u64.
//
// Status: $ok.
//
// Differs: Fastly measures CPU time. Here, as for the CPU budget
// (limits.go), it is the wall time the guest spends outside hostcalls and
// sleeps, and the clock (vcpuClock) only starts at the guest's first call:
// the first reading is 0. Fastly documents the value for comparing two
// readings, not as an absolute, and two readings after the first call
// compare in that sense.
func runtimeVCPUMs(c *call) status {
	v := &c.inst.vcpu
	v.on = true // leaveHost starts the clock when this call returns
	if !c.putU64(c.u32(0), uint64(v.used/time.Millisecond)) {
		return stInval
	}
	return stOK
}

// vcpuClock accumulates an instance's guest run time for get_vcpu_ms. It
// runs only once the guest first asks: keeping it for every hostcall of
// every guest would cost time for a figure few guests read. Only the
// instance's goroutine touches it.
type vcpuClock struct {
	on    bool
	used  time.Duration
	since int64 // monoNow when the guest last left the host; 0 while in it
}

// pause and resume bracket hostcalls and sleeps (enterHost, leaveHost in
// limits.go).
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
