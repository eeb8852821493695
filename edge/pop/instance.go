package pop

import (
	"context"
	"errors"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// instance is one warm guest: a wasm module instance running _start on its
// own goroutine. All of its host state (handles, current request) is
// touched only from that goroutine, because hostcalls run on the goroutine
// that called into the guest. Nothing here is shared with other instances,
// so one guest's state can never leak into another.
type instance struct {
	s      *Server
	id     uint64
	ctx    context.Context
	cancel context.CancelFunc
	mod    api.Module
	c      call

	tab    handleTable
	gen    uint32
	cur    *downstream
	served int
	// starting is true until the instance first waits for a request.
	starting bool

	// Sticky handles, deduplicated by name.
	endpoints    map[string]uint32
	configStores map[string]uint32
	dicts        map[string]uint32
	secretStores map[string]uint32
	secrets      map[string]uint32
}

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

func newInstance(s *Server, id uint64) *instance {
	inst := &instance{
		s:            s,
		id:           id,
		starting:     true,
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
	return inst
}

// run instantiates the module and runs _start to completion. A guest using
// fsthttp.ServeMany returns from _start only when it stops serving.
func (inst *instance) run() error {
	mod, err := inst.s.rt.InstantiateModule(inst.ctx, inst.s.compiled, inst.s.modCfg)
	if err != nil {
		return err
	}
	inst.mod = mod
	start := mod.ExportedFunction("_start")
	if start == nil {
		return errors.New("module exports no _start (it must be a WASI command)")
	}
	_, err = start.Call(inst.ctx)
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
	clean := cleanExit(err)
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
		inst.s.starting.Add(-1)
	}
}
