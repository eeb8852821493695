package pop

// fastly_compute_runtime: facts about the guest's own execution.
var fastlyComputeRuntime = hostModule{name: "fastly_compute_runtime", funcs: []hostFunc{
	{"get_heap_mib", i32("mib_out"), runtimeHeapMiB},
	// get_vcpu_ms is not implemented: guest CPU time is measured only
	// when a CPU budget is set, and only approximately (limits.go).
}}

// runtimeHeapMiB implements fastly_compute_runtime.get_heap_mib(mib_out):
// writes the guest's linear memory size in MiB, which is what bounds its
// heap.
//
// Status: $ok.
//
// Differs: Fastly counts host memory held for the sandbox too (e.g. body
// bytes read from the network but not yet by the guest) and rounds up;
// this counts linear memory only, rounded down.
func runtimeHeapMiB(c *call) status {
	if !c.putU32(c.u32(0), c.mem.Size()>>20) {
		return stInval
	}
	return stOK
}
