package pop

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// hostFn implements one hostcall. It reads its arguments from c and
// returns the $fastly_status the guest sees.
type hostFn func(c *call) status

type hostDef struct {
	params []api.ValueType
	fn     hostFn
}

type hostKey struct{ module, name string }

// i32s returns n i32 parameter types: nearly every hostcall takes only
// pointers, lengths and handles, which are all i32.
func i32s(n int) []api.ValueType {
	return slices.Repeat([]api.ValueType{api.ValueTypeI32}, n)
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
	defs := hostcalls()
	var implemented, stubbed int
	for mod, fns := range byModule {
		b := rt.NewHostModuleBuilder(mod)
		for _, f := range fns {
			def, ok := defs[hostKey{mod, f.name}]
			if ok && (!slices.Equal(def.params, f.params) || !slices.Equal(f.results, []api.ValueType{api.ValueTypeI32})) {
				s.log.Warn("hostcall signature differs from this POP's; answering unsupported",
					"hostcall", mod+"."+f.name, "declared", sigString(f.params, f.results))
				ok = false
			}
			var fn api.GoModuleFunction
			if ok {
				fn = s.wrap(def.fn)
				implemented++
			} else {
				fn = s.unsupported(mod+"."+f.name, f.results)
				stubbed++
			}
			b.NewFunctionBuilder().WithGoModuleFunction(fn, f.params, f.results).WithName(f.name).Export(f.name)
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

// hostcalls is the table of implemented hostcalls with the signatures of
// compute-sdk-go's internal/abi/fastly (the witx ABI).
func hostcalls() map[hostKey]hostDef {
	d := map[hostKey]hostDef{}
	add := func(mod, name string, params []api.ValueType, fn hostFn) {
		d[hostKey{mod, name}] = hostDef{params, fn}
	}
	i64 := []api.ValueType{api.ValueTypeI64}
	// Requests and responses share the header hostcalls; only the handle
	// lookup differs.
	addHeaderCalls := func(mod string, list headerHolder) {
		add(mod, "header_names_get", i32s(6), headerNamesGet(list))
		add(mod, "header_value_get", i32s(6), headerValueGet(list))
		add(mod, "header_values_get", i32s(8), headerValuesGet(list))
		add(mod, "header_values_set", i32s(5), headerValuesSet(list))
		add(mod, "header_insert", i32s(5), headerInsert(list, false))
		add(mod, "header_append", i32s(5), headerInsert(list, true))
		add(mod, "header_remove", i32s(3), headerRemove(list))
	}

	add("fastly_abi", "init", i64, abiInit)

	const req = "fastly_http_req"
	add(req, "body_downstream_get", i32s(2), reqBodyDownstreamGet)
	add(req, "new", i32s(1), reqNew)
	add(req, "close", i32s(1), reqClose)
	add(req, "method_get", i32s(4), reqMethodGet)
	add(req, "method_set", i32s(3), reqMethodSet)
	add(req, "uri_get", i32s(4), reqURIGet)
	add(req, "uri_set", i32s(3), reqURISet)
	add(req, "version_get", i32s(2), reqVersionGet)
	add(req, "version_set", i32s(2), reqVersionSet)
	addHeaderCalls(req, reqHeaders)
	add(req, "cache_override_set", i32s(4), reqCacheOverride(false))
	add(req, "cache_override_v2_set", i32s(6), reqCacheOverride(true))
	add(req, "framing_headers_mode_set", i32s(2), reqFramingMode)
	add(req, "auto_decompress_response_set", i32s(2), reqAutoDecompress)
	add(req, "send", i32s(6), reqSend)
	add(req, "send_v2", i32s(7), reqSendV2)
	add(req, "send_v3", i32s(7), reqSendV2)
	add(req, "send_async", i32s(5), reqSendAsync(false))
	add(req, "send_async_v2", i32s(6), reqSendAsyncV2)
	add(req, "send_async_streaming", i32s(5), reqSendAsync(true))
	add(req, "pending_req_poll", i32s(4), reqPendingPoll)
	add(req, "pending_req_poll_v2", i32s(5), reqPendingPollV2)
	add(req, "pending_req_wait", i32s(3), reqPendingWait)
	add(req, "pending_req_wait_v2", i32s(4), reqPendingWaitV2)
	add(req, "downstream_client_ip_addr", i32s(2), downstreamIP(clientAddr, false))
	add(req, "downstream_server_ip_addr", i32s(2), downstreamIP(serverAddr, false))

	const ds = "fastly_http_downstream"
	add(ds, "next_request", i32s(3), dsNextRequest)
	add(ds, "next_request_wait", i32s(3), dsNextRequestWait)
	add(ds, "next_request_abandon", i32s(1), dsNextRequestAbandon)
	add(ds, "downstream_client_ip_addr", i32s(3), downstreamIP(clientAddr, true))
	add(ds, "downstream_server_ip_addr", i32s(3), downstreamIP(serverAddr, true))
	add(ds, "downstream_client_request_id", i32s(4), dsRequestID)
	add(ds, "downstream_original_header_names", i32s(6), dsOriginalHeaderNames)
	add(ds, "downstream_original_header_count", i32s(2), dsOriginalHeaderCount)
	for _, name := range []string{
		"downstream_client_h2_fingerprint", "downstream_client_oh_fingerprint",
		"downstream_tls_cipher_openssl_name", "downstream_tls_protocol",
		"downstream_tls_client_hello", "downstream_tls_client_servername",
		"downstream_tls_raw_client_certificate", "downstream_tls_ja4",
		"downstream_compliance_region",
	} {
		add(ds, name, i32s(4), dsAbsent)
	}
	add(ds, "downstream_tls_ja3_md5", i32s(3), dsAbsent)
	add(ds, "downstream_tls_client_cert_verify_result", i32s(2), dsAbsent)
	add(ds, "downstream_client_ddos_detected", i32s(2), dsFalse)
	add(ds, "fastly_key_is_valid", i32s(2), dsFalse)
	for name, def := range downstreamTLSHostcalls() { // downstream_tls.go: real TLS metadata over the dsAbsent defaults
		add(ds, name, def.params, def.fn)
	}

	const resp = "fastly_http_resp"
	add(resp, "new", i32s(1), respNew)
	add(resp, "close", i32s(1), respClose)
	add(resp, "status_get", i32s(2), respStatusGet)
	add(resp, "status_set", i32s(2), respStatusSet)
	add(resp, "version_get", i32s(2), respVersionGet)
	add(resp, "version_set", i32s(2), respVersionSet)
	addHeaderCalls(resp, respHeaders)
	add(resp, "framing_headers_mode_set", i32s(2), respFramingMode)
	add(resp, "send_downstream", i32s(3), respSendDownstream)
	add(resp, "get_addr_dest_ip", i32s(3), respAddrDestIP)
	add(resp, "get_addr_dest_port", i32s(2), respAddrDestPort)

	const body = "fastly_http_body"
	add(body, "new", i32s(1), bodyNew)
	add(body, "read", i32s(4), bodyRead)
	add(body, "write", i32s(5), bodyWrite)
	add(body, "append", i32s(2), bodyAppend)
	add(body, "close", i32s(1), bodyEnd(nil))
	add(body, "abandon", i32s(1), bodyEnd(errAbandoned))
	add(body, "known_length", i32s(2), bodyKnownLength)

	add("fastly_log", "endpoint_get", i32s(3), logEndpointGet)
	add("fastly_log", "write", i32s(4), logWrite)

	addStoreHostcalls(add) // config stores, dictionaries, secrets, KV, geolocation (stores.go)

	for name, def := range backendHostcalls() { // backends.go
		add("fastly_backend", name, def.params, def.fn)
	}
	add(req, "register_dynamic_backend", i32s(6), reqRegisterDynamicBackend) // dynbackend.go
	add(body, "trailer_append", i32s(5), bodyTrailerAppend)                  // trailers.go
	add(body, "trailer_names_get", i32s(6), bodyTrailerNamesGet)
	add(body, "trailer_value_get", i32s(6), bodyTrailerValueGet)
	add(body, "trailer_values_get", i32s(8), bodyTrailerValuesGet)

	add("fastly_compute_runtime", "get_heap_mib", i32s(1), runtimeHeapMiB)
	add("fastly_compute_runtime", "get_vcpu_ms", i32s(1), runtimeVCPUMs) // compute_runtime.go

	// Products faked from [local_server] configuration, as in Viceroy.
	add("fastly_acl", "open", i32s(3), aclOpen) // acl.go
	add("fastly_acl", "lookup", i32s(5), aclLookup)
	add("fastly_device_detection", "lookup", i32s(5), deviceLookup) // device_detection.go
	add("fastly_shielding", "shield_info", i32s(5), shieldInfo)     // shielding.go
	// No request is analysed for bots here: "not analysed" is the true
	// answer (fsthttp then reports an empty BotDetectionResult).
	add(ds, "downstream_bot_analyzed", i32s(2), dsFalse)
	add(ds, "downstream_bot_detected", i32s(2), dsFalse)
	add(ds, "downstream_bot_verified", i32s(2), dsFalse)
	add(ds, "downstream_bot_name", i32s(4), dsAbsent)
	add(ds, "downstream_bot_category", i32s(4), dsAbsent)
	add(ds, "downstream_bot_category_kind", i32s(2), dsAbsent)
	return d
}

// fastly_abi.init(abi_version u64)
func abiInit(c *call) status { return stOK }

// fastly_compute_runtime.get_heap_mib(mib_out u32): the guest's linear
// memory size, which is what bounds its heap.
func runtimeHeapMiB(c *call) status {
	if !c.putU32(c.u32(0), c.mem.Size()>>20) {
		return stInval
	}
	return stOK
}
