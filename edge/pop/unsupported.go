package pop

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// Hostcalls this POP does not implement are still provided, generically,
// for every fastly_* function a module imports: a guest built against any
// SDK version links, and calling one of them gets the honest answer a
// Fastly host gives for a feature it lacks, $unsupported. The SDK handles
// that status (e.g. fsthttp falls back from guest-side caching).

// unsupported answers a hostcall the POP does not implement: status 5
// ($unsupported), zero for any other results. Each one is logged once.
func (s *Server) unsupported(full string, results []api.ValueType) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		for i := range results {
			stack[i] = 0
		}
		if len(results) > 0 && results[0] == api.ValueTypeI32 {
			stack[0] = uint64(stUnsupported)
		}
		s.m.unsupported.Add(1)
		if _, loaded := s.warned.LoadOrStore(full, true); !loaded {
			s.log.Info("guest called a hostcall this POP does not implement; answered unsupported", "hostcall", full)
		}
	}
}
