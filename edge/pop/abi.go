package pop

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The ABI: Fastly's Compute host interface (the witx ABI that
// compute-sdk-go's internal/abi/fastly imports) is a set of host modules
// named fastly_*. Each module this POP implements, wholly or in part, is
// one file named after it (fastly_http_req.go, fastly_kv_store.go, ...)
// that declares one hostModule value: the module's name and, for each
// function it implements, the function's name, its parameters as the witx
// ABI names them, and the Go function that implements it. abiModules below
// lists every module of the ABI; the ones this POP does not implement are
// listed with the reason. Nothing else registers a hostcall.
//
// A host function is a hostFn: it reads its arguments from the call and
// returns the $fastly_status the guest sees. Every one carries a doc
// comment of the same shape:
//
//	// <goName> implements <module>.<function>(<params>): <what it does,
//	// and what the params mean where their names do not say>.
//	//
//	// Status: <$ok and when; each error status and when>.
//	//
//	// Differs: <where Fastly or Viceroy behave otherwise, or "no known difference">.
//
// Two statuses hold for every function and are not repeated: $inval for a
// pointer or length outside guest memory (call.go never lets a guest
// pointer crash the host) and $badf for a handle of the wrong kind or one
// that was closed (handles.go checks the kind on every lookup).

// hostFn implements one hostcall. It reads its arguments from c and
// returns the $fastly_status the guest sees.
type hostFn func(c *call) status

// hostFunc is one function of a host module.
type hostFunc struct {
	name   string
	params []param
	fn     hostFn
}

// param is one parameter of a host function, named as in the witx ABI.
type param struct {
	name string
	typ  api.ValueType
}

// i32 declares parameters of type i32: nearly every hostcall takes only
// pointers, lengths and handles, which are all i32.
func i32(names ...string) []param {
	ps := make([]param, len(names))
	for i, n := range names {
		ps[i] = param{n, api.ValueTypeI32}
	}
	return ps
}

// i64 declares parameters of type i64.
func i64(names ...string) []param {
	ps := make([]param, len(names))
	for i, n := range names {
		ps[i] = param{n, api.ValueTypeI64}
	}
	return ps
}

// hostModule is one host module of the ABI: the functions this POP
// implements, or, with none, the reason it implements none.
type hostModule struct {
	name        string
	funcs       []hostFunc
	unsupported string // why the module is answered $unsupported; "" when implemented
}

// abiModules is every host module of the Fastly Compute ABI, as
// compute-sdk-go v1.9.0 imports it, plus the older names guests built
// with earlier SDKs import. A function a guest imports that is not listed
// (in any module) is answered $unsupported; so is every function of a
// module listed as unsupported.
var abiModules = []hostModule{
	fastlyABI,
	fastlyHTTPDownstream,
	fastlyHTTPReq,
	fastlyHTTPResp,
	fastlyHTTPBody,
	fastlyBackend,
	fastlyLog,
	fastlyConfigStore,
	fastlyDictionary,
	fastlySecretStore,
	fastlyKVStore,
	fastlyGeo,
	fastlyComputeRuntime,
	fastlyACL,
	fastlyDeviceDetection,
	fastlyShielding,
	fastlyERL,

	{name: "fastly_http_cache", unsupported: "the POP has no HTTP cache; fsthttp sends uncached when these answer $unsupported"},
	{name: "fastly_cache", unsupported: "the POP has no cache"},
	{name: "fastly_purge", unsupported: "the POP has no cache to purge"},
	{name: "fastly_image_optimizer", unsupported: "the image optimizer is a Fastly service"},
	{name: "fastly_async_io", unsupported: "select over pending requests and bodies is not implemented (pending_req_poll and pending_req_wait are)"},
	{name: "fastly_object_store", unsupported: "the KV store's former name; compute-sdk-go uses fastly_kv_store"},
	{name: "fastly_uap", unsupported: "the POP has no user-agent parser"},
}

type hostKey struct{ module, name string }

// hostIndex is abiModules by module and function name, built once.
var hostIndex = sync.OnceValue(func() map[hostKey]hostFunc {
	idx := map[hostKey]hostFunc{}
	for _, m := range abiModules {
		for _, f := range m.funcs {
			k := hostKey{m.name, f.name}
			if _, dup := idx[k]; dup {
				panic("pop: hostcall listed twice: " + m.name + "." + f.name)
			}
			idx[k] = f
		}
	}
	return idx
})

// unsupportedModule returns why module is not implemented, if it is one
// of abiModules' unsupported ones.
func unsupportedModule(module string) string {
	for _, m := range abiModules {
		if m.name == module {
			return m.unsupported
		}
	}
	return ""
}

func (f hostFunc) paramTypes() []api.ValueType {
	ts := make([]api.ValueType, len(f.params))
	for i, p := range f.params {
		ts[i] = p.typ
	}
	return ts
}

// linkHostModules provides every function the compiled module imports from
// a module other than WASI: the implemented hostcalls with their real
// implementation, everything else with a stub answering $unsupported. Both
// use the signature the module declares, so any compute-sdk-go version
// links. An implemented hostcall whose declared signature differs from
// ours (a different ABI revision) is also answered with $unsupported
// rather than guessed at.
func (s *Server) linkHostModules(ctx context.Context, rt wazero.Runtime, compiled wazero.CompiledModule) error {
	type imp struct {
		name            string
		params, results []api.ValueType
	}
	byModule := map[string][]imp{}
	seen := map[hostKey]bool{}
	for _, fd := range compiled.ImportedFunctions() {
		mod, name, _ := fd.Import()
		if mod == wasi_snapshot_preview1.ModuleName {
			continue
		}
		k := hostKey{mod, name}
		if seen[k] {
			continue
		}
		seen[k] = true
		byModule[mod] = append(byModule[mod], imp{name, fd.ParamTypes(), fd.ResultTypes()})
	}
	idx := hostIndex()
	var implemented, stubbed int
	for mod, fns := range byModule {
		b := rt.NewHostModuleBuilder(mod)
		for _, f := range fns {
			def, ok := idx[hostKey{mod, f.name}]
			if ok && (!slices.Equal(def.paramTypes(), f.params) || !slices.Equal(f.results, []api.ValueType{api.ValueTypeI32})) {
				s.log.Warn("hostcall signature differs from this POP's; answering unsupported",
					"hostcall", mod+"."+f.name, "declared", sigString(f.params, f.results))
				ok = false
			}
			fb := b.NewFunctionBuilder()
			var fn api.GoModuleFunction
			if ok {
				fn = s.wrap(def.fn)
				names := make([]string, len(def.params))
				for i, p := range def.params {
					names[i] = p.name
				}
				fb = fb.WithParameterNames(names...)
				implemented++
			} else {
				fn = s.unsupported(mod+"."+f.name, f.results)
				stubbed++
			}
			fb.WithGoModuleFunction(fn, f.params, f.results).WithName(f.name).Export(f.name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("providing host module %s: %w", mod, err)
		}
	}
	s.log.Debug("linked hostcalls", "implemented", implemented, "unsupported", stubbed)
	return nil
}

func sigString(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		var parts []string
		for _, t := range ts {
			parts = append(parts, api.ValueTypeName(t))
		}
		return strings.Join(parts, ",")
	}
	return "(" + name(params) + ") -> (" + name(results) + ")"
}

// wrap adapts a hostFn to wazero's stack-based calling convention. The
// calling instance comes from the call's context; its scratch call value
// is reused, so a hostcall allocates nothing here.
func (s *Server) wrap(fn hostFn) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := instanceOf(ctx)
		if inst == nil {
			stack[0] = uint64(stError)
			return
		}
		c := &inst.c
		c.mem = mod.Memory()
		c.stack = stack
		inst.enterHost() // time in hostcalls is not guest CPU time (limits.go)
		st := fn(c)
		inst.leaveHost()
		c.stack = nil
		stack[0] = uint64(st)
		if st != stOK && st != stBufLen && st != stNone {
			s.m.hostcallErrors.Add(1)
		}
	}
}

// Hostcalls this POP does not implement are still provided, generically,
// for every fastly_* function a module imports: a guest built against any
// SDK version links, and calling one of them gets the honest answer a
// Fastly host gives for a feature it lacks, $unsupported. The SDK handles
// that status (e.g. fsthttp falls back from guest-side caching).

// unsupported answers a hostcall the POP does not implement: status 5
// ($unsupported), zero for any other results. Each one is logged once,
// with the reason if its whole module is unsupported.
func (s *Server) unsupported(full string, results []api.ValueType) api.GoModuleFunc {
	module, _, _ := strings.Cut(full, ".")
	why := unsupportedModule(module)
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		for i := range results {
			stack[i] = 0
		}
		if len(results) > 0 && results[0] == api.ValueTypeI32 {
			stack[0] = uint64(stUnsupported)
		}
		s.m.unsupported.Add(1)
		if _, loaded := s.warned.LoadOrStore(full, true); !loaded {
			args := []any{"hostcall", full}
			if why != "" {
				args = append(args, "why", why)
			}
			s.log.Info("guest called a hostcall this POP does not implement; answered unsupported", args...)
		}
	}
}
