// Command rawhttp probes the HTTP-area hostcalls directly, without the SDK,
// for the statuses a well-behaved SDK never provokes: bad and invalid
// handles, reserved option bits, a second outstanding next_request, trailer
// reads before the body ends, polling a pending request that is not done,
// over-long URIs and header sections. It answers its first request with one
// "probe=value" line per probe; the test decides what each must be. The
// manifest gives it two backends: "static" and "slow" (answers late).
package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport fastly_http_req body_downstream_get
func bodyDownstreamGet(req, body unsafe.Pointer) uint32

//go:wasmimport fastly_http_req new
func reqNew(h unsafe.Pointer) uint32

//go:wasmimport fastly_http_req uri_set
func reqURISet(h uint32, p unsafe.Pointer, n uint32) uint32

//go:wasmimport fastly_http_req header_append
func reqHeaderAppend(h uint32, name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32) uint32

//go:wasmimport fastly_http_req send_async
func sendAsync(req, body uint32, be unsafe.Pointer, beLen uint32, pending unsafe.Pointer) uint32

//go:wasmimport fastly_http_req pending_req_poll_v2
func pendingPollV2(h uint32, detail, done, resp, body unsafe.Pointer) uint32

//go:wasmimport fastly_http_req pending_req_wait_v2
func pendingWaitV2(h uint32, detail, resp, body unsafe.Pointer) uint32

//go:wasmimport fastly_http_req register_dynamic_backend
func registerDynamicBackend(name unsafe.Pointer, nameLen uint32, target unsafe.Pointer, targetLen uint32, mask uint32, cfg unsafe.Pointer) uint32

//go:wasmimport fastly_http_resp new
func respNew(h unsafe.Pointer) uint32

//go:wasmimport fastly_http_resp send_downstream
func respSendDownstream(h, body, streaming uint32) uint32

//go:wasmimport fastly_http_body new
func bodyNew(h unsafe.Pointer) uint32

//go:wasmimport fastly_http_body write
func bodyWrite(h uint32, buf unsafe.Pointer, bufLen uint32, end uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_body read
func bodyRead(h uint32, buf unsafe.Pointer, bufLen uint32, nread unsafe.Pointer) uint32

//go:wasmimport fastly_http_body close
func bodyClose(h uint32) uint32

//go:wasmimport fastly_http_body trailer_append
func trailerAppend(h uint32, name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32) uint32

//go:wasmimport fastly_http_body trailer_names_get
func trailerNamesGet(h uint32, buf unsafe.Pointer, bufLen uint32, cursor uint32, ending unsafe.Pointer, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_body trailer_value_get
func trailerValueGet(h uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufLen uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_downstream next_request
func nextRequest(mask uint32, opts unsafe.Pointer, promise unsafe.Pointer) uint32

//go:wasmimport fastly_http_downstream next_request_abandon
func nextRequestAbandon(promise uint32) uint32

//go:wasmimport fastly_backend exists
func backendExists(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer) uint32

//go:wasmimport fastly_backend is_dynamic
func backendIsDynamic(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer) uint32

//go:wasmimport fastly_backend get_port
func backendGetPort(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer) uint32

//go:wasmimport fastly_backend get_host
func backendGetHost(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufLen uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_backend get_override_host
func backendGetOverrideHost(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufLen uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_backend get_ssl_min_version
func backendGetSSLMin(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer) uint32

//go:wasmimport fastly_backend get_between_bytes_timeout_ms
func backendGetBetweenBytes(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer) uint32

const invalid = 0xFFFFFFFE

// dynamicBackendConfig is $dynamic_backend_config: 23 u32 fields (guest
// pointers are 32-bit addresses, while Go's wasm pointers are 64-bit).
type dynamicBackendConfig struct {
	hostOverride    uint32
	hostOverrideLen uint32
	connectMs       uint32
	firstByteMs     uint32
	betweenBytesMs  uint32
	sslMin, sslMax  uint32
	rest            [16]uint32
}

// sendErrorDetail is $send_error_detail (20 bytes).
type sendErrorDetail struct {
	tag, mask uint32
	rest      [3]uint32
}

func ptr[T any](v *T) unsafe.Pointer { return unsafe.Pointer(v) }

func bytesOf(s string) (unsafe.Pointer, uint32) {
	if s == "" {
		return nil, 0
	}
	b := []byte(s)
	return unsafe.Pointer(&b[0]), uint32(len(b))
}

func main() {
	var rh, bh uint32 = invalid, invalid
	if st := bodyDownstreamGet(ptr(&rh), ptr(&bh)); st != 0 {
		panic(fmt.Sprint("body_downstream_get: ", st))
	}
	var out strings.Builder
	probe := func(name string, v any) { fmt.Fprintf(&out, "%s=%v\n", name, v) }
	var buf [256]byte
	var nw uint32
	bp, np := unsafe.Pointer(&buf[0]), unsafe.Pointer(&nw)

	// --- dynamic backends ---
	reg := func(name, target string, mask uint32, cfg *dynamicBackendConfig) uint32 {
		n, nl := bytesOf(name)
		t, tl := bytesOf(target)
		return registerDynamicBackend(n, nl, t, tl, mask, ptr(cfg))
	}
	var cfg dynamicBackendConfig
	override := []byte("raw.example")
	cfg.hostOverride, cfg.hostOverrideLen = uint32(uintptr(unsafe.Pointer(&override[0]))), uint32(len(override))
	cfg.betweenBytesMs = 777
	probe("dyn_reserved_bit", reg("d0", "127.0.0.1:9", 1, &cfg))
	probe("dyn_unknown_bit", reg("d0", "127.0.0.1:9", 1<<20, &cfg))
	probe("dyn_empty_name", reg("", "127.0.0.1:9", 0, &cfg))
	probe("dyn_bad_target", reg("d0", "http://127.0.0.1:9/x", 0, &cfg))
	probe("dyn_tls_version_bad", reg("d0", "127.0.0.1:9", 1<<5|1<<6, &dynamicBackendConfig{sslMin: 9}))
	probe("dyn_ok", reg("d1", "127.0.0.1:9", 1<<1|1<<4, &cfg))
	probe("dyn_again", reg("d1", "127.0.0.1:9", 0, &cfg))
	probe("dyn_static_name", reg("static", "127.0.0.1:9", 0, &cfg))
	runtime.KeepAlive(override) // the host read it through a bare address
	name := func(s string) (unsafe.Pointer, uint32) { return bytesOf(s) }
	var v uint32 = 99
	n, nl := name("d1")
	probe("d1_exists", backendExists(n, nl, ptr(&v)))
	probe("d1_exists_v", v)
	probe("d1_is_dynamic", backendIsDynamic(n, nl, ptr(&v)))
	probe("d1_is_dynamic_v", v)
	probe("d1_port", backendGetPort(n, nl, ptr(&v)))
	probe("d1_port_v", v)
	probe("d1_between_bytes", backendGetBetweenBytes(n, nl, ptr(&v)))
	probe("d1_between_bytes_v", v)
	probe("d1_override_host", backendGetOverrideHost(n, nl, bp, 256, np))
	probe("d1_override_host_v", string(buf[:nw]))
	probe("d1_host_short_buf", backendGetHost(n, nl, bp, 3, np))
	probe("d1_host_needed", nw)
	probe("d1_ssl_min_plain", backendGetSSLMin(n, nl, ptr(&v)))
	n, nl = name("static")
	probe("static_is_dynamic", backendIsDynamic(n, nl, ptr(&v)))
	probe("static_is_dynamic_v", v)
	probe("static_override_host", backendGetOverrideHost(n, nl, bp, 256, np))
	n, nl = name("nope")
	v = 99
	probe("nope_exists", backendExists(n, nl, ptr(&v)))
	probe("nope_exists_v", v)
	probe("nope_is_dynamic", backendIsDynamic(n, nl, ptr(&v)))
	probe("nope_port", backendGetPort(n, nl, ptr(&v)))

	// --- trailers ---
	var tb uint32 = invalid
	bodyNew(ptr(&tb))
	tn, tnl := bytesOf("x-sum")
	tv, tvl := bytesOf("abc")
	payload := []byte("payload")
	bodyWrite(tb, ptr(&payload[0]), uint32(len(payload)), 0, np)
	probe("trailer_append", trailerAppend(tb, tn, tnl, tv, tvl))
	bad, badl := bytesOf("bad name")
	probe("trailer_append_bad_name", trailerAppend(tb, bad, badl, tv, tvl))
	probe("trailer_append_invalid_handle", trailerAppend(invalid, tn, tnl, tv, tvl))
	probe("trailer_append_req_handle", trailerAppend(rh, tn, tnl, tv, tvl))
	var cursor int64
	// Trailers come after the content: not readable until it is read.
	probe("trailer_names_unread", trailerNamesGet(tb, bp, 256, 0, ptr(&cursor), np))
	probe("trailer_value_unread", trailerValueGet(tb, tn, tnl, bp, 256, np))
	for {
		var nr uint32
		if st := bodyRead(tb, bp, 256, ptr(&nr)); st != 0 || nr == 0 {
			break
		}
	}
	probe("trailer_names_read", trailerNamesGet(tb, bp, 256, 0, ptr(&cursor), np))
	probe("trailer_names_v", strings.ReplaceAll(string(buf[:nw]), "\x00", ","))
	probe("trailer_names_cursor", cursor)
	probe("trailer_names_tiny_buf", trailerNamesGet(tb, bp, 2, 0, ptr(&cursor), np))
	probe("trailer_names_needed", nw)
	probe("trailer_value_read", trailerValueGet(tb, tn, tnl, bp, 256, np))
	probe("trailer_value_v", string(buf[:nw]))
	ab, abl := bytesOf("x-absent")
	probe("trailer_value_absent", trailerValueGet(tb, ab, abl, bp, 256, np))
	probe("trailer_names_invalid_handle", trailerNamesGet(invalid, bp, 256, 0, ptr(&cursor), np))

	// --- closed body ---
	var cb uint32 = invalid
	bodyNew(ptr(&cb))
	probe("body_close", bodyClose(cb))
	probe("body_write_closed", bodyWrite(cb, bp, 1, 0, np))
	probe("body_close_again", bodyClose(cb))

	// --- next_request: one outstanding promise ---
	var p1, p2 uint32 = invalid, invalid
	probe("next_request_1", nextRequest(0, nil, ptr(&p1)))
	probe("next_request_2", nextRequest(0, nil, ptr(&p2)))
	probe("next_request_2_handle", p2 == invalid)
	probe("next_request_abandon", nextRequestAbandon(p1))
	probe("next_request_3", nextRequest(0, nil, ptr(&p2)))
	probe("next_request_abandon_3", nextRequestAbandon(p2))
	probe("next_request_abandon_again", nextRequestAbandon(p2))

	// --- limits on guest-set request heads ---
	var lr uint32 = invalid
	reqNew(ptr(&lr))
	u, ul := bytesOf("http://origin.example/" + strings.Repeat("u", 9000))
	probe("uri_set_too_long", reqURISet(lr, u, ul))
	u, ul = bytesOf("http://origin.example/ok")
	probe("uri_set_ok", reqURISet(lr, u, ul))
	hn, hnl := bytesOf("x-fat")
	hv, hvl := bytesOf(strings.Repeat("v", 8000))
	for range 9 { // 9 x 8 KB: over the 69 KB header section limit
		reqHeaderAppend(lr, hn, hnl, hv, hvl)
	}
	var eb, pend uint32 = invalid, invalid
	bodyNew(ptr(&eb))
	be, bel := bytesOf("static")
	probe("send_head_too_large", sendAsync(lr, eb, be, bel, ptr(&pend)))

	// --- pending requests: poll never blocks ---
	var sr, sb uint32 = invalid, invalid
	reqNew(ptr(&sr))
	u, ul = bytesOf("http://origin.example/slow")
	reqURISet(sr, u, ul)
	bodyNew(ptr(&sb))
	be, bel = bytesOf("slow")
	probe("send_async_slow", sendAsync(sr, sb, be, bel, ptr(&pend)))
	var detail sendErrorDetail
	var done uint32 = 99
	var presp, pbody uint32 = 7, 7
	began := time.Now()
	probe("poll_pending", pendingPollV2(pend, ptr(&detail), ptr(&done), ptr(&presp), ptr(&pbody)))
	probe("poll_fast", time.Since(began) < 100*time.Millisecond)
	probe("poll_done", done)
	probe("poll_resp_invalid", presp == invalid && pbody == invalid)
	probe("poll_bad_handle", pendingPollV2(invalid, ptr(&detail), ptr(&done), ptr(&presp), ptr(&pbody)))
	probe("wait_pending", pendingWaitV2(pend, ptr(&detail), ptr(&presp), ptr(&pbody)))
	probe("wait_detail_tag", detail.tag) // $ok
	probe("wait_again", pendingWaitV2(pend, ptr(&detail), ptr(&presp), ptr(&pbody)))

	// --- request trailers: a body with trailers goes chunked with them ---
	var tr, trb uint32 = invalid, invalid
	reqNew(ptr(&tr))
	u, ul = bytesOf("http://origin.example/reqtrailers")
	reqURISet(tr, u, ul)
	bodyNew(ptr(&trb))
	bodyWrite(trb, ptr(&payload[0]), uint32(len(payload)), 0, np)
	rtn, rtnl := bytesOf("x-req-trailer")
	rtv, rtvl := bytesOf("yes")
	trailerAppend(trb, rtn, rtnl, rtv, rtvl)
	be, bel = bytesOf("static")
	probe("send_with_trailers", sendAsync(tr, trb, be, bel, ptr(&pend)))
	probe("send_with_trailers_wait", pendingWaitV2(pend, ptr(&detail), ptr(&presp), ptr(&pbody)))

	var resp, body uint32
	respNew(ptr(&resp))
	bodyNew(ptr(&body))
	report := []byte(out.String())
	bodyWrite(body, ptr(&report[0]), uint32(len(report)), 0, np)
	if st := respSendDownstream(resp, body, 0); st != 0 {
		panic(fmt.Sprint("send_downstream: ", st))
	}
}
