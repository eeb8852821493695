// Package pop is a local Fastly Compute host ("point of presence") written
// in pure Go on wazero. It runs any compute-sdk-go module built with
// GOOS=wasip1 GOARCH=wasm, serves HTTP with it, and reads backends and
// stores from a fastly.toml [local_server] section the way Fastly's Viceroy
// does.
//
// Performance comes from never instantiating a standard-Go module per
// request (that costs ~20 ms): the module is compiled once, a pool of warm
// instances each run _start on their own goroutine and block in the host
// until a request arrives, and guests using fsthttp.ServeMany serve many
// requests per instance. The HTTP response completes when the guest
// finishes the response body, not when its handler returns, so work a
// guest does after responding (batching, delivery) costs visitors nothing.
//
// Fastly's limits are enforced (memory, wall clock and an approximate CPU
// budget per execution, URL and header sizes and backend requests per
// request; limits.go): a guest that breaches an execution limit is
// terminated and replaced, and only its own request fails. The pool grows
// under load and shrinks back when idle (pool.go), and a changed module is
// swapped in without dropping requests (reload.go).
//
// # Layout
//
// The runtime, which knows nothing of individual hostcalls:
//
//	server.go     Config, New, ServeHTTP, Shutdown, Precompile; the outputs
//	run.go        Run: the module once as a command, as Viceroy's run
//	instance.go   one warm guest: instantiation, _start, its end
//	pool.go       handing requests to idle instances, growing and shrinking
//	reload.go     module versions (programs) and hot reload
//	limits.go     every Fastly limit and how it is enforced (package
//	              interrupt: the loop flag that stops a breaching guest)
//	metrics.go    counters and histograms, /metrics
//	health.go     components that stop fail the server; Ready, Degraded
//	clients.go    what clients can make the POP hold: connections, deadlines
//	clientaddr.go who the client is behind a trusted proxy (headers);
//	              proxyproto.go the PROXY protocol on client connections
//	reqbody.go    client request bodies, read whole before a guest sees them
//	framing.go    requests with ambiguous framing close their connection
//	downstream.go a client request on its way to a guest and the answer back
//	backends.go   backends and the requests guests send them
//	resolve.go    --resolve: backend connections to other addresses
//	body.go       the body object (trailers.go: its trailers)
//	messages.go   the request and response objects; headers.go their headers
//	kv.go, geo.go the KV stores, geolocation (manifest, databases), device records
//	erl.go        rate counters and penalty boxes (Edge Rate Limiting)
//
// The ABI, one file per host module, named after it (abi.go says how they
// are written and lists every module, the unsupported ones with the
// reason):
//
//	abi.go                  the registration convention, the module table, linking
//	call.go, handles.go     guest memory access and the handle table
//	status.go               $fastly_status and other ABI constants
//	fastly_abi.go           fastly_http_req.go    fastly_http_resp.go
//	fastly_http_body.go     fastly_http_downstream.go
//	fastly_backend.go       fastly_log.go         fastly_geo.go
//	fastly_config_store.go  fastly_dictionary.go  fastly_secret_store.go
//	fastly_kv_store.go      fastly_compute_runtime.go
//	fastly_acl.go           fastly_device_detection.go
//	fastly_shielding.go     fastly_erl.go
//
// And beside it, packages with one job each that know nothing of wazero:
// logsink (where guests' log entries go), accesslog (the NDJSON access
// log), geoip (geolocation from MaxMind-format database files, in
// Fastly's record shape), and poptest (the test guests, built and
// compiled once per test binary). The trusted proxies' rule (the header
// rule and the PROXY header's parser) is shared/clientip, which the
// aggregator uses too.
//
// The host modules stay in package pop rather than one package each (as
// wazero's imports/ does): wazero's host modules are independent of each
// other, while Fastly's share the instance's handle table, the current
// client request, the body object and the backends (fastly_http_req's send
// takes a body, fastly_kv_store's lookup makes one, fastly_http_resp sends
// to the client request that fastly_http_downstream hands out). Separate
// packages would have to export all of that as an internal API for the
// sake of file boundaries; one file per module gives the same reading
// order without it.
package pop
