// Command rawguest probes the POP's hostcalls directly, without the SDK, to
// check the error paths a well-behaved SDK never takes: stale, foreign and
// invalid handles, bad pointers, short buffers, unsupported hostcalls. It
// answers the first request with one "probe=status" line per probe.
package main

import (
	"fmt"
	"strings"
	"unsafe"
)

//go:wasmimport fastly_http_req body_downstream_get
func bodyDownstreamGet(req, body unsafe.Pointer) uint32

//go:wasmimport fastly_http_req method_get
func methodGet(h uint32, buf unsafe.Pointer, bufLen uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_req header_remove
func reqHeaderRemove(h uint32, name unsafe.Pointer, nameLen uint32) uint32

//go:wasmimport fastly_http_req header_names_get
func reqHeaderNamesGet(h uint32, buf unsafe.Pointer, bufLen uint32, cursor uint32, endingCursor unsafe.Pointer, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_resp new
func respNew(h unsafe.Pointer) uint32

//go:wasmimport fastly_http_resp close
func respClose(h uint32) uint32

//go:wasmimport fastly_http_resp status_set
func respStatusSet(h uint32, status uint32) uint32

//go:wasmimport fastly_http_resp send_downstream
func respSendDownstream(h, body, streaming uint32) uint32

//go:wasmimport fastly_http_body new
func bodyNew(h unsafe.Pointer) uint32

//go:wasmimport fastly_http_body write
func bodyWrite(h uint32, buf unsafe.Pointer, bufLen uint32, end uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_http_body read
func bodyRead(h uint32, buf unsafe.Pointer, bufLen uint32, nread unsafe.Pointer) uint32

//go:wasmimport fastly_device_detection lookup
func deviceLookup(ua unsafe.Pointer, uaLen uint32, buf unsafe.Pointer, bufLen uint32, nwritten unsafe.Pointer) uint32

//go:wasmimport fastly_config_store open
func configStoreOpen(name unsafe.Pointer, nameLen uint32, h unsafe.Pointer) uint32

const invalid = 0xFFFFFFFE

func main() {
	var rh, bh uint32 = invalid, invalid
	if st := bodyDownstreamGet(unsafe.Pointer(&rh), unsafe.Pointer(&bh)); st != 0 {
		panic(fmt.Sprint("body_downstream_get: ", st))
	}
	var out strings.Builder
	probe := func(name string, st uint32) { fmt.Fprintf(&out, "%s=%d\n", name, st) }

	var buf [64]byte
	var nw uint32
	bp, np := unsafe.Pointer(&buf[0]), unsafe.Pointer(&nw)
	probe("method_get_ok", methodGet(rh, bp, 64, np))
	fmt.Fprintf(&out, "method=%s\n", buf[:nw])
	probe("method_get_short_buf", methodGet(rh, bp, 1, np))
	fmt.Fprintf(&out, "method_needed=%d\n", nw)
	probe("method_get_unknown_handle", methodGet(12345, bp, 64, np))
	probe("method_get_invalid_handle", methodGet(invalid, bp, 64, np))
	probe("method_get_zero_handle", methodGet(0, bp, 64, np))
	probe("method_get_body_handle", methodGet(bh, bp, 64, np))
	probe("method_get_bad_pointer", methodGet(rh, unsafe.Pointer(uintptr(0xFFFFFF00)), 64, np))

	var cursor int64
	probe("names_get_bad_pointer", reqHeaderNamesGet(rh, unsafe.Pointer(uintptr(0xFFFFFF00)), 64, 0, unsafe.Pointer(&cursor), np))
	probe("names_get_tiny_buf", reqHeaderNamesGet(rh, bp, 1, 0, unsafe.Pointer(&cursor), np))

	absent := []byte("x-absent")
	probe("header_remove_absent", reqHeaderRemove(rh, unsafe.Pointer(&absent[0]), uint32(len(absent))))
	probe("body_write_req_handle", bodyWrite(rh, bp, 1, 0, np))
	probe("body_write_bad_end", bodyWrite(bh, bp, 1, 7, np))
	probe("body_read_downstream", bodyRead(bh, bp, 64, np))
	probe("device_lookup_unknown", deviceLookup(bp, 4, bp, 64, np))

	name := []byte("no-such-store")
	var ch uint32
	probe("config_store_open_missing", configStoreOpen(unsafe.Pointer(&name[0]), uint32(len(name)), unsafe.Pointer(&ch)))

	var tmp uint32
	respNew(unsafe.Pointer(&tmp))
	probe("resp_close", respClose(tmp))
	probe("resp_close_again", respClose(tmp))

	var resp, body uint32
	respNew(unsafe.Pointer(&resp))
	probe("status_set_invalid", respStatusSet(resp, 42))
	respStatusSet(resp, 200)
	bodyNew(unsafe.Pointer(&body))
	report := []byte(out.String())
	bodyWrite(body, unsafe.Pointer(&report[0]), uint32(len(report)), 0, np)
	if st := respSendDownstream(resp, body, 0); st != 0 {
		panic(fmt.Sprint("send_downstream: ", st))
	}
	// The body was consumed by a non-streaming send.
	if st := bodyWrite(body, bp, 1, 0, np); st != 3 {
		panic(fmt.Sprint("write after send: ", st))
	}
}
