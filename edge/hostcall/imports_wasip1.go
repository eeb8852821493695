//go:build wasip1

package hostcall

import "unsafe"

func strPtr(s string) (*byte, uint32) { return unsafe.StringData(s), uint32(len(s)) }

//go:wasmimport fastly_http_req body_downstream_get
//go:noescape
func bodyDownstreamGet(req, body *handle) status

//go:wasmimport fastly_http_downstream next_request
//go:noescape
func nextRequest(mask uint32, opts *uint64, promise *handle) status

//go:wasmimport fastly_http_downstream next_request_wait
//go:noescape
func nextRequestWait(p handle, req, body *handle) status

//go:wasmimport fastly_http_req method_get
//go:noescape
func methodGet(h handle, buf *byte, bufLen uint32, nwritten *uint32) status

//go:wasmimport fastly_http_req uri_get
//go:noescape
func uriGet(h handle, buf *byte, bufLen uint32, nwritten *uint32) status

//go:wasmimport fastly_http_req header_value_get
//go:noescape
func headerValueGet(h handle, name *byte, nameLen uint32, buf *byte, bufLen uint32, nwritten *uint32) status

//go:wasmimport fastly_http_downstream downstream_client_ip_addr
//go:noescape
func downstreamClientIP(h handle, addr *byte, nwritten *uint32) status

//go:wasmimport fastly_http_body read
//go:noescape
func bodyRead(h handle, buf *byte, bufLen uint32, nread *uint32) status

//go:wasmimport fastly_geo lookup
//go:noescape
func geoLookup(addr *byte, addrLen uint32, buf *byte, bufLen uint32, nwritten *uint32) status

//go:wasmimport fastly_http_resp new
//go:noescape
func respNew(h *handle) status

//go:wasmimport fastly_http_resp status_set
func respStatusSet(h handle, status uint32) status

//go:wasmimport fastly_http_resp header_append
//go:noescape
func respHeaderAppend(h handle, name *byte, nameLen uint32, value *byte, valueLen uint32) status

//go:wasmimport fastly_http_body new
//go:noescape
func bodyNew(h *handle) status

//go:wasmimport fastly_http_body write
//go:noescape
func bodyWrite(h handle, buf *byte, bufLen uint32, end uint32, nwritten *uint32) status

//go:wasmimport fastly_http_resp send_downstream
func respSendDownstream(resp, body handle, streaming uint32) status

//go:wasmimport fastly_http_req new
//go:noescape
func reqNew(h *handle) status

//go:wasmimport fastly_http_req close
func reqClose(h handle) status

//go:wasmimport fastly_http_req method_set
//go:noescape
func reqMethodSet(h handle, method *byte, methodLen uint32) status

//go:wasmimport fastly_http_req uri_set
//go:noescape
func reqURISet(h handle, uri *byte, uriLen uint32) status

//go:wasmimport fastly_http_req cache_override_set
func reqCacheOverrideSet(h handle, tag, ttl, staleWhileRevalidate uint32) status

//go:wasmimport fastly_http_req header_append
//go:noescape
func reqHeaderAppend(h handle, name *byte, nameLen uint32, value *byte, valueLen uint32) status

//go:wasmimport fastly_http_req send
//go:noescape
func reqSend(req, body handle, backend *byte, backendLen uint32, resp, respBody *handle) status

//go:wasmimport fastly_http_resp status_get
//go:noescape
func respStatusGet(h handle, status *uint16) status

//go:wasmimport fastly_http_resp header_value_get
//go:noescape
func respHeaderValueGet(h handle, name *byte, nameLen uint32, buf *byte, bufLen uint32, nwritten *uint32) status

//go:wasmimport fastly_http_body close
func bodyClose(h handle) status

//go:wasmimport fastly_http_resp close
func respClose(h handle) status
