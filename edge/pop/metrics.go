package pop

import (
	"fmt"
	"io"
	"sync/atomic"
)

// metrics are plain atomic counters: cheap enough to bump on every request
// and hostcall without a metrics library.
type metrics struct {
	requests       atomic.Uint64
	errors         atomic.Uint64 // requests the POP answered itself (5xx): guest failure, no response, shutdown
	noResponse     atomic.Uint64 // guest moved on or ended without responding
	started        atomic.Uint64
	crashed        atomic.Uint64
	hostcallErrors atomic.Uint64
	unsupported    atomic.Uint64
	backendSends   atomic.Uint64
	backendErrors  atomic.Uint64
}

// WritePrometheus writes the server's metrics in the Prometheus text format.
func (s *Server) WritePrometheus(w io.Writer) {
	type metric struct {
		name, kind, help string
		value            uint64
	}
	for _, m := range []metric{
		{"edgepixel_pop_requests_total", "counter", "Client requests received.", s.m.requests.Load()},
		{"edgepixel_pop_request_errors_total", "counter", "Client requests the POP answered with an error itself (guest failure, no response, shutdown).", s.m.errors.Load()},
		{"edgepixel_pop_guest_no_response_total", "counter", "Client requests a guest finished without sending a response.", s.m.noResponse.Load()},
		{"edgepixel_pop_instances_live", "gauge", "Guest instances currently running.", uint64(max(s.live.Load(), 0))},
		{"edgepixel_pop_instances_idle", "gauge", "Guest instances waiting for a request.", uint64(max(s.idle.Load(), 0))},
		{"edgepixel_pop_instances_started_total", "counter", "Guest instances started.", s.m.started.Load()},
		{"edgepixel_pop_instances_failed_total", "counter", "Guest instances that trapped or exited with an error.", s.m.crashed.Load()},
		{"edgepixel_pop_hostcall_errors_total", "counter", "Hostcalls that returned an error status.", s.m.hostcallErrors.Load()},
		{"edgepixel_pop_hostcall_unsupported_total", "counter", "Calls to hostcalls this POP does not implement.", s.m.unsupported.Load()},
		{"edgepixel_pop_backend_sends_total", "counter", "Requests sent to backends.", s.m.backendSends.Load()},
		{"edgepixel_pop_backend_errors_total", "counter", "Backend requests that failed without a response.", s.m.backendErrors.Load()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.kind, m.name, m.value)
	}
}
