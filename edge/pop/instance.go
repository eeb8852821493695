package pop

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop/interrupt"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// instance is one warm guest: a wasm module instance running _start on its
// own goroutine. All of its host state (handles, current request) is
// touched only from that goroutine, because hostcalls run on the goroutine
// that called into the guest. Nothing here is shared with other instances,
// so one guest's state can never leak into another.
type instance struct {
	s    *Server
	prog *program // the module version it runs (reload.go)
	id   uint64
	// sandboxID is its FASTLY_TRACE_ID and the request id of the first
	// request it serves (bind).
	sandboxID uint64
	ctx       context.Context
	cancel    context.CancelFunc
	mod       api.Module
	c         call
	// inbox receives the request the pool hands it while idle (pool.go).
	inbox chan *downstream

	tab    handleTable
	strs   strCache // header names and values from the guest (intern.go)
	gen    uint32
	cur    *downstream
	served int
	// starting is true until the instance first waits for a request.
	starting bool
	spawned  time.Time
	// retiring: it was told to end after sitting idle (pool.go).
	retiring bool
	// The timers of waitWork: the guest's timeout and the idle limit.
	waitTimer, idleTimer reusedTimer

	// Execution limits (limits.go). breached and the watchdog are also
	// touched by the watchdog's timer goroutine.
	dog        watchdog
	breached   atomic.Uint32 // a limitKind
	memRefused atomic.Bool   // a memory grow was refused
	// http: dynamic backends, backend send count, pending next_request
	// (backends.go).
	http httpState

	// Sticky handles, deduplicated by name.
	endpoints    map[string]uint32
	configStores map[string]uint32
	dicts        map[string]uint32
	secretStores map[string]uint32
	kvStores     map[string]uint32 // made on first use (kv.go)
	secrets      map[string]uint32
	acls         map[string]uint32 // made on first use (fastly_acl.go)

	vcpu vcpuClock // get_vcpu_ms (fastly_compute_runtime.go)
	// guest is the guest's run time where it is not the thread's CPU
	// time (threadCPUClock), with Config.MeasureGuestTime; segStart is
	// guestUsed when the current request was handed over (pool.go,
	// waitRequest).
	guest    guestClock
	segStart time.Duration
	segOpen  bool
	// segAnswer is the request's run time when its response went to the
	// client (send_downstream), -1 until then; segSends counts the backend
	// requests made since it was handed over. With them a request's time
	// splits into the answer and the work after it (a batch flush), for
	// GuestSamples.
	segAnswer time.Duration
	segSends  int
}

// guestUsed is the instance's run time so far, read at a request's ends:
// the thread's CPU time, or, where that is not read, the wall time the
// guest ran outside hostcalls and sleeps.
func (inst *instance) guestUsed() time.Duration {
	if threadCPUClock {
		return time.Duration(threadCPUNow())
	}
	return inst.guest.used
}

// guestClock accumulates the wall time the guest runs outside hostcalls
// and sleeps, where thread CPU time is not read (threadCPUClock false;
// Config.MeasureGuestTime). Only the instance's goroutine touches it.
type guestClock struct {
	used  time.Duration
	since int64 // threadCPUNow when the guest last left the host; 0 while in it
}

func (g *guestClock) pause() {
	if g.since != 0 {
		g.used += time.Duration(threadCPUNow() - g.since)
		g.since = 0
	}
}

func (g *guestClock) resume() { g.since = threadCPUNow() }

type instKey struct{}

// instCtx carries the instance into hostcalls; a direct type assertion on
// it is cheaper than walking a context.WithValue chain on every hostcall.
type instCtx struct {
	context.Context
	inst *instance
}

func (c *instCtx) Value(k any) any {
	if k == (instKey{}) {
		return c.inst
	}
	return c.Context.Value(k)
}

func instanceOf(ctx context.Context) *instance {
	if c, ok := ctx.(*instCtx); ok {
		return c.inst
	}
	inst, _ := ctx.Value(instKey{}).(*instance)
	return inst
}

func newInstance(s *Server, p *program, id uint64) *instance {
	inst := &instance{
		s:            s,
		prog:         p,
		id:           id,
		sandboxID:    s.reqID.Add(1),
		inbox:        make(chan *downstream, 1),
		starting:     true,
		spawned:      time.Now(),
		endpoints:    map[string]uint32{},
		configStores: map[string]uint32{},
		dicts:        map[string]uint32{},
		secretStores: map[string]uint32{},
		secrets:      map[string]uint32{},
	}
	ctx, cancel := context.WithCancel(s.root)
	inst.ctx = &instCtx{Context: ctx, inst: inst}
	inst.cancel = cancel
	inst.c.inst = inst
	inst.dog.inst = inst
	return inst
}

// run instantiates the module and runs _start to completion. A guest using
// fsthttp.ServeMany returns from _start only when it stops serving.
func (inst *instance) run() error {
	// Startup (instantiation and the guest's init code up to its first
	// wait for a request) has the wall budget too.
	inst.dog.begin(nil, inst.s.startupBudget)
	p := inst.prog
	if inst.s.measureGuest {
		// Thread CPU time is the guest's only while no other goroutine
		// runs on its thread.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	ctx := experimental.WithMemoryAllocator(inst.ctx, experimental.MemoryAllocatorFunc(inst.allocateMemory))
	cfg := inst.s.modCfg.WithNanosleep(inst.nanosleep).WithEnv("FASTLY_TRACE_ID", requestID(inst.sandboxID))
	mod, err := p.rt.InstantiateModule(ctx, p.compiled, cfg)
	if err != nil {
		return err
	}
	inst.mod = mod
	start := mod.ExportedFunction("_start")
	if start == nil {
		return errors.New("module exports no _start (it must be a WASI command)")
	}
	if !p.interruptible {
		_, err = start.Call(inst.ctx)
		return err
	}
	// The instrumented guest stops at its next loop iteration once its
	// flag is set: when the instance's context ends (a breached limit,
	// shutdown), as wazero's WithCloseOnContextDone would stop it.
	flag, ok := mod.ExportedGlobal(interrupt.FlagExport).(api.MutableGlobal)
	if !ok {
		return errors.New("instrumented module lacks its interrupt flag")
	}
	stop := context.AfterFunc(inst.ctx, func() { flag.Set(1) })
	defer stop()
	_, err = start.Call(inst.ctx)
	if err != nil && inst.ctx.Err() != nil {
		// The trap of the flag check, or whatever the guest was doing
		// when it was stopped: reported as wazero reports a module closed
		// by its context.
		code := sys.ExitCodeContextCanceled
		if errors.Is(inst.ctx.Err(), context.DeadlineExceeded) {
			code = sys.ExitCodeDeadlineExceeded
		}
		var ee *sys.ExitError
		if !errors.As(err, &ee) {
			err = sys.NewExitError(code)
		}
	}
	return err
}

// exitNow ends the guest from inside a hostcall without running more
// guest code, the way WASI's proc_exit does.
func (inst *instance) exitNow() {
	_ = inst.mod.CloseWithExitCode(inst.ctx, 0)
	panic(sys.NewExitError(0))
}

// cleanExit reports whether err from run is a normal end.
func cleanExit(err error) bool {
	if err == nil {
		return true
	}
	var ee *sys.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == 0
}

// finish releases everything the instance holds after _start returned or
// trapped: the client gets a 500 if it got nothing, open streaming bodies
// end (with an error if the guest failed), backend requests are cancelled.
func (inst *instance) finish(err error) {
	inst.dog.end()
	clean := cleanExit(err)
	if !clean && inst.memRefused.Load() && inst.breached.CompareAndSwap(0, uint32(limitMemory)) {
		// It died after being refused memory: that is the memory limit.
		inst.s.ps.breaches[limitMemory].Add(1)
		inst.s.log.Warn("guest instance exceeded a limit", "instance", inst.id, "limit", "memory", "memory_limit", inst.s.memoryLimit)
	}
	inst.endRequest(!clean)
	var streamErr error
	if !clean {
		streamErr = errGuestFailed
	}
	inst.tab.all(func(o any) {
		switch o := o.(type) {
		case *body:
			if o.streaming {
				o.finish(streamErr)
			} else {
				o.release()
			}
		case *pendingReq:
			o.abandon()
		}
	})
	inst.tab = handleTable{}
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
	inst.cancel()
	if inst.starting {
		inst.starting = false
		inst.prog.starting.Add(-1)
	}
}
