package attack

// The memory bounds the README documents, for the flags a process runs
// with: what the attack tests hold a process's peak resident memory to.

// PopBound is edgepixel-pop's bound (README, edgepixel-pop, "Memory"):
//
//	RSS ≤ B + I × M + C × 200 KiB + --body-memory + L + 48 MiB
//
// with B taken as the process's resident memory once it serves, which
// includes its Warm instances as they were then: the bound adds M for
// each of the Max - Warm others (Warm 0 counts every instance at M).
type PopBound struct {
	Start      int64 // B: resident memory once serving, bytes
	Warm, Max  int   // instances included in Start; --max-instances
	Instance   int64 // M: one instance's memory, bytes (at most PopInstanceLimit)
	MaxConns   int   // --max-conns
	BodyMemory int64 // --body-memory
	LogBuffers int64 // L: the max_buffer of HTTP log endpoints
}

// The parts of PopBound the README gives as figures.
const (
	PopConnBytes     = 200 << 10 // a connection holding a head just under the limit
	PopInstanceLimit = 128 << 20 // Fastly's memory limit per instance, which the POP enforces
	PopSlack         = 48 << 20  // the Go heap's headroom
)

// Bytes is the bound.
func (b PopBound) Bytes() int64 {
	return b.Start + int64(b.Max-b.Warm)*b.Instance + int64(b.MaxConns)*PopConnBytes + b.BodyMemory + b.LogBuffers + PopSlack
}

// AggregatorBound is edgepixel-aggregator's bound (README,
// edgepixel-aggregator, "Memory"): what it holds live is at most
//
//	L = 48 MiB + loader-max-rows × 2 KiB + max-conns × 32 KiB + max-body-memory
//
// and its resident memory at most
//
//	min(memory-limit, (1 + gc-percent/100) × L) + 32 MiB
type AggregatorBound struct {
	LoaderMaxRows, MaxConns, GCPercent int
	MaxBodyMemory, MemoryLimit         int64
}

// Live is L.
func (b AggregatorBound) Live() int64 {
	return 48<<20 + int64(b.LoaderMaxRows)*2<<10 + int64(b.MaxConns)*32<<10 + b.MaxBodyMemory
}

// Bytes is the bound on resident memory.
func (b AggregatorBound) Bytes() int64 {
	return min(b.MemoryLimit, b.Live()*int64(100+b.GCPercent)/100) + 32<<20
}
