package pop

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// Fastly's limits (https://docs.fastly.com/products/compute-resource-limits
// and the network services limits), all in this file: what each is, and
// how the POP enforces it.
//
// Per execution, enforced by terminating the guest:
//
//   - memory: a guest's linear memory may not grow past Config.MemoryLimit
//     (Fastly: 128 MB heap). The refusal is exact (our allocator refuses
//     the grow); what follows is up to the guest: a Go guest dies with
//     "out of memory", and the request gets a 500.
//   - wall: each execution segment (startup, one client request, the code
//     after the serve loop) may last Config.WallBudget (Fastly: 2 min),
//     answered 503 as Fastly documents for its sandbox timeout.
//   - cpu: a client request may run guest code for Config.CPUBudget
//     (Fastly: 50 ms of vCPU). We cannot read a goroutine's CPU time, so
//     this is the wall time the guest spends outside hostcalls and sleeps:
//     waiting for a backend, a client body or the next request does not
//     count, being descheduled on a busy host does (so keep it generous
//     on loaded machines). Also answered 503.
//
// A breach terminates the instance (its context is cancelled; with
// WithCloseOnContextDone wazero stops the guest at its next loop or call),
// the client gets the error at once, and the pool replaces the instance.
// Nothing of it is reused, so nothing leaks into another visitor's request.
//
// Per request, enforced by refusing it:
//
//   - URL and header section of a client request: answered 414 or 431
//     before any guest sees it (overLimits); net/http refuses a head
//     larger than the two together while still reading it (431, see
//     maxHeadBytes in clients.go), so none is buffered whole first.
//   - URL and header section of a request a guest sends: $inval from
//     uri_set, $httpheadtoolarge from the send calls (headTooLarge).
//   - backend requests per execution: $limitexceeded from the send calls
//     past the 32nd (countSend).
//   - dynamic backends: $limitexceeded from register_dynamic_backend past
//     the 200th.

type limitKind uint32

const (
	limitNone limitKind = iota
	limitWall
	limitCPU
	limitMemory
	numLimits
)

func (k limitKind) String() string {
	return [...]string{"none", "wall", "cpu", "memory"}[k]
}

// status is what the client gets for a request that breached limit k.
func (k limitKind) status() int {
	if k == limitMemory {
		// The guest aborts (a Go guest throws "out of memory"): a crash.
		return http.StatusInternalServerError
	}
	return http.StatusServiceUnavailable
}

const (
	defaultMemoryLimit = 128 << 20
	defaultWallBudget  = 2 * time.Minute
)

const (
	// maxBackendSends is "maximum number of backend requests: 32 per
	// execution".
	maxBackendSends = 32
	// maxDynamicBackends is Fastly's "200 dynamic backends per service";
	// the local POP applies it per instance, where registrations live.
	maxDynamicBackends = 200
	// maxURLLen is Fastly's 8 KB URL limit: longer client URLs are
	// answered 414 before the guest runs, guests cannot set longer ones.
	maxURLLen = 8 << 10
	// maxHeaderSection is Fastly's request header size limit (69 KB):
	// a larger client header section is answered 431, and a guest
	// request with a larger one cannot be sent ($httpheadtoolarge).
	maxHeaderSection = 69 << 10
)

// monoNow is a monotonic clock in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

var monoEpoch = time.Now()

// watchdog enforces the wall and CPU budgets of one instance. The guest's
// goroutine opens and closes segments (begin/end); a timer checks the
// budgets while a segment is open. mu serialises the timer's decision with
// the segment changing, so a breach is always charged to the segment that
// caused it.
type watchdog struct {
	inst   *instance
	mu     sync.Mutex
	active bool
	wall   time.Duration // the segment's wall budget; <= 0: none
	cpu    bool          // the segment has a CPU budget
	began  int64         // monoNow at begin
	ds     *downstream
	timer  *time.Timer

	// CPU accounting, only when the server has a CPU budget: time the
	// guest ran in earlier stretches of this segment, and when the current
	// stretch began (0 while it is in a hostcall or asleep).
	cpuUsed  atomic.Int64
	runSince atomic.Int64
}

// begin opens a segment with the given wall budget: ds is the client
// request it serves (nil for startup and for the code after the serve
// loop, which only have a wall budget).
func (w *watchdog) begin(ds *downstream, wall time.Duration) {
	s := w.inst.s
	cpu := ds != nil && s.cpuBudget > 0
	if wall <= 0 && !cpu {
		return
	}
	first := wall
	if cpu && (first <= 0 || s.cpuBudget < first) {
		// CPU time never exceeds wall time, so the first check can wait
		// for the whole CPU budget.
		first = s.cpuBudget
	}
	w.mu.Lock()
	w.active, w.wall, w.cpu, w.ds, w.began = true, wall, cpu, ds, monoNow()
	w.cpuUsed.Store(0)
	if w.timer == nil {
		w.timer = time.AfterFunc(first, w.check)
	} else {
		w.timer.Reset(first)
	}
	w.mu.Unlock()
}

// end closes the current segment, if any.
func (w *watchdog) end() {
	w.mu.Lock()
	if w.active {
		w.active, w.ds = false, nil
		w.timer.Stop()
	}
	w.mu.Unlock()
}

// check runs on the timer's goroutine. A check that fires late, after its
// segment ended, finds the watchdog inactive or looks at the new segment,
// which is harmless: it only ever compares real elapsed values.
func (w *watchdog) check() {
	s := w.inst.s
	w.mu.Lock()
	if !w.active {
		w.mu.Unlock()
		return
	}
	now := monoNow()
	elapsed := time.Duration(now - w.began)
	kind := limitNone
	next := time.Duration(1<<63 - 1)
	if w.wall > 0 {
		if elapsed >= w.wall {
			kind = limitWall
		}
		next = w.wall - elapsed
	}
	if kind == limitNone && w.cpu {
		used := time.Duration(w.cpuUsed.Load())
		if rs := w.runSince.Load(); rs != 0 {
			used += time.Duration(now - rs)
		}
		if used >= s.cpuBudget {
			kind = limitCPU
		} else {
			// The guest cannot use more than the remaining budget before
			// that much time passed. A floor keeps a guest that waits on a
			// backend with its budget nearly spent from being checked in a
			// tight loop; the price is overshooting by at most an eighth.
			next = min(next, max(s.cpuBudget-used, s.cpuBudget/8))
		}
	}
	if kind == limitNone {
		w.timer.Reset(next)
		w.mu.Unlock()
		return
	}
	ds := w.ds
	w.active, w.ds = false, nil
	// Recorded under mu: once end() returns, the guest's goroutine sees it
	// (waitRequest must not take another request on a dying instance).
	first := w.inst.breached.CompareAndSwap(0, uint32(kind))
	w.mu.Unlock()
	if first {
		w.inst.terminate(kind, ds, elapsed)
	}
}

// terminate ends an instance that breached a limit: the client gets its
// error now, without waiting for the guest to unwind, and the instance's
// context is cancelled, which stops the guest and every blocking hostcall.
func (inst *instance) terminate(kind limitKind, ds *downstream, elapsed time.Duration) {
	s := inst.s
	s.ps.breaches[kind].Add(1)
	s.log.Warn("guest instance exceeded a limit; terminating it", "instance", inst.id, "limit", kind.String(),
		"elapsed", elapsed.Round(time.Millisecond), "wall_budget", s.wallBudget, "cpu_budget", s.cpuBudget)
	if ds != nil {
		ds.send(outcome{status: kind.status(), failed: true, limit: kind.String()})
	}
	inst.cancel()
}

// breachKind is the limit this instance breached, if any.
func (inst *instance) breachKind() limitKind { return limitKind(inst.breached.Load()) }

// enterHost and leaveHost bracket hostcalls and sleeps for the CPU budget.
func (inst *instance) enterHost() {
	inst.vcpu.pause() // get_vcpu_ms (fastly_compute_runtime.go)
	if inst.s.measureGuest && !threadCPUClock {
		inst.guest.pause()
	}
	if inst.s.cpuBudget <= 0 {
		return
	}
	if rs := inst.dog.runSince.Swap(0); rs != 0 {
		inst.dog.cpuUsed.Add(monoNow() - rs)
	}
}

func (inst *instance) leaveHost() {
	inst.vcpu.resume()
	if inst.s.measureGuest && !threadCPUClock {
		inst.guest.resume()
	}
	if inst.s.cpuBudget <= 0 {
		return
	}
	inst.dog.runSince.Store(monoNow())
}

// nanosleep is the instance's WASI sleep (poll_oneoff with only clock
// subscriptions, which is how an idle Go guest sleeps). It is not guest
// CPU time, and unlike wazero's default it ends when the instance is
// terminated, so a sleeping guest cannot outlive its budget or shutdown.
func (inst *instance) nanosleep(ns int64) {
	inst.enterHost()
	t := time.NewTimer(time.Duration(ns))
	select {
	case <-t.C:
	case <-inst.ctx.Done():
		t.Stop()
	}
	inst.leaveHost()
}

// linearMemory backs a guest's linear memory and enforces the memory
// limit. wazero's own limit (WithMemoryLimitPages) refuses a grow before
// any allocator sees it, so the host could not tell an out-of-memory death
// from any other crash; refusing it here records it on the instance.
type linearMemory struct {
	inst    *instance
	buf     []byte
	limit   uint64
	started bool
}

func (inst *instance) allocateMemory(capacity, _ uint64) experimental.LinearMemory {
	return &linearMemory{inst: inst, buf: make([]byte, 0, capacity), limit: uint64(inst.s.memoryLimit)}
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	// The module's declared minimum is always granted: refusing it would
	// fail instantiation inside wazero rather than a grow in the guest.
	if m.started && size > m.limit {
		m.inst.memRefused.Store(true)
		return nil
	}
	m.started = true
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Same growth as wazero's default memory (append's amortised
	// doubling), without reserving the limit up front.
	m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	return m.buf
}

func (m *linearMemory) Free() { m.buf = nil }

// countSend counts one backend request of the current execution (the
// downstream request being served) and reports whether it is within
// Fastly's limit. Refused sends count too: an execution past the limit
// stays past it.
func (inst *instance) countSend() bool {
	h := &inst.http
	if h.sendsGen != inst.gen {
		h.sendsGen, h.sends = inst.gen, 0
	}
	h.sends++
	if inst.segOpen {
		inst.segSends++
	}
	// A refused send is still counted by the hostcall error metric
	// ($limitexceeded is an error status).
	return h.sends <= maxBackendSends
}

// headTooLarge reports whether a guest request is beyond the limits
// Fastly applies to a request head.
func headTooLarge(ro *reqObj) bool {
	if len(ro.uri) > maxURLLen {
		return true
	}
	return headerSectionSize(ro.header) > maxHeaderSection
}

// headerSectionSize is the size of a header section on the wire:
// "name: value\r\n" per value.
func headerSectionSize(h headerList) int {
	n := 0
	for _, f := range h {
		for _, v := range f.vals {
			n += len(f.name) + len(v) + 4
		}
	}
	return n
}

// overLimits answers 414 or 431 for a client request beyond Fastly's URL
// or header section limits, which Fastly refuses before the guest runs; 0
// lets it through. The header section counts the Host header too.
func overLimits(r *http.Request) int {
	if len(r.RequestURI) > maxURLLen {
		return http.StatusRequestURITooLong
	}
	n := len("Host") + len(r.Host) + 4
	for k, vals := range r.Header {
		for _, v := range vals {
			n += len(k) + len(v) + 4
		}
	}
	if n > maxHeaderSection {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0
}
