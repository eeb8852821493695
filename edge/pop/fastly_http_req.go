package pop

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// fastly_http_req: requests, the client's and those a guest sends to
// backends (the send calls and the pending requests they start). The
// header calls are shared with fastly_http_resp; only the handle lookup
// differs.
var fastlyHTTPReq = hostModule{name: "fastly_http_req", funcs: []hostFunc{
	{"body_downstream_get", i32("req_handle_out", "body_handle_out"), reqBodyDownstreamGet},
	{"new", i32("req_handle_out"), reqNew},
	{"close", i32("h"), reqClose},
	{"method_get", i32("h", "buf", "buf_len", "nwritten_out"), reqMethodGet},
	{"method_set", i32("h", "method_ptr", "method_len"), reqMethodSet},
	{"uri_get", i32("h", "buf", "buf_len", "nwritten_out"), reqURIGet},
	{"uri_set", i32("h", "uri_ptr", "uri_len"), reqURISet},
	{"version_get", i32("h", "version_out"), reqVersionGet},
	{"version_set", i32("h", "version"), reqVersionSet},
	{"header_names_get", i32("h", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), headerNamesGet(reqHeaders)},
	{"header_value_get", i32("h", "name_ptr", "name_len", "value", "value_max_len", "nwritten_out"), headerValueGet(reqHeaders)},
	{"header_values_get", i32("h", "name_ptr", "name_len", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), headerValuesGet(reqHeaders)},
	{"header_values_set", i32("h", "name_ptr", "name_len", "values_ptr", "values_len"), headerValuesSet(reqHeaders)},
	{"header_insert", i32("h", "name_ptr", "name_len", "value_ptr", "value_len"), headerInsert(reqHeaders, false)},
	{"header_append", i32("h", "name_ptr", "name_len", "value_ptr", "value_len"), headerInsert(reqHeaders, true)},
	{"header_remove", i32("h", "name_ptr", "name_len"), headerRemove(reqHeaders)},
	{"cache_override_set", i32("h", "tag", "ttl", "stale_while_revalidate"), reqCacheOverride(false)},
	{"cache_override_v2_set", i32("h", "tag", "ttl", "stale_while_revalidate", "sk_ptr", "sk_len"), reqCacheOverride(true)},
	{"framing_headers_mode_set", i32("h", "mode"), reqFramingMode},
	{"auto_decompress_response_set", i32("h", "encodings"), reqAutoDecompress},
	{"send", i32("h", "b", "backend_ptr", "backend_len", "resp_handle_out", "resp_body_handle_out"), reqSend},
	{"send_v2", i32("h", "b", "backend_ptr", "backend_len", "error_detail", "resp_handle_out", "resp_body_handle_out"), reqSendV2},
	{"send_v3", i32("h", "b", "backend_ptr", "backend_len", "error_detail", "resp_handle_out", "resp_body_handle_out"), reqSendV2},
	{"send_async", i32("h", "b", "backend_ptr", "backend_len", "pending_req_handle_out"), reqSendAsync(false)},
	{"send_async_v2", i32("h", "b", "backend_ptr", "backend_len", "streaming", "pending_req_handle_out"), reqSendAsyncV2},
	{"send_async_streaming", i32("h", "b", "backend_ptr", "backend_len", "pending_req_handle_out"), reqSendAsync(true)},
	{"pending_req_poll", i32("h", "is_done_out", "resp_handle_out", "resp_body_handle_out"), reqPendingPoll},
	{"pending_req_poll_v2", i32("h", "error_detail", "is_done_out", "resp_handle_out", "resp_body_handle_out"), reqPendingPollV2},
	{"pending_req_wait", i32("h", "resp_handle_out", "resp_body_handle_out"), reqPendingWait},
	{"pending_req_wait_v2", i32("h", "error_detail", "resp_handle_out", "resp_body_handle_out"), reqPendingWaitV2},
	{"register_dynamic_backend", i32("name_prefix_ptr", "name_prefix_len", "target_ptr", "target_len", "backend_config_mask", "backend_configuration"), reqRegisterDynamicBackend},
	// The handle-less forms from before fastly_http_downstream; they ask
	// about the current client request (fastly_http_downstream.go).
	{"downstream_client_ip_addr", i32("addr_octets_out", "nwritten_out"), downstreamIP(clientAddr, false)},
	{"downstream_server_ip_addr", i32("addr_octets_out", "nwritten_out"), downstreamIP(serverAddr, false)},
}}

func (inst *instance) getReq(h uint32) (*reqObj, bool) { return lookup[*reqObj](&inst.tab, h) }

// reqBodyDownstreamGet implements fastly_http_req.body_downstream_get(
// req_handle_out, body_handle_out): the handles of the client request this
// instance serves, and of its body. This is where a pre-warmed instance
// waits for traffic: the first call blocks until the pool hands the
// instance a request.
//
// Status: $ok; $none when the instance already served its request and
// has no current one (a guest without ServeMany asks once). An instance
// shut down before any traffic ends here without running more guest code.
//
// Differs: on Fastly the request exists before the guest starts; here
// the guest starts first and waits in this call (pool.go).
func reqBodyDownstreamGet(c *call) status {
	inst := c.inst
	if _, ok := c.bytes(c.u32(0), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(1), 4); !ok {
		return stInval
	}
	if inst.cur == nil {
		if inst.served > 0 {
			return stNone
		}
		ds, ok := inst.waitRequest(-1)
		if !ok {
			// Shut down before any traffic: end the instance without
			// running more guest code.
			inst.exitNow()
		}
		inst.bind(ds)
	}
	c.putU32(c.u32(0), inst.cur.reqH)
	c.putU32(c.u32(1), inst.cur.bodyH)
	return stOK
}

// reqNew implements fastly_http_req.new(req_handle_out): a new request,
// "GET /" over HTTP/1.1 with no headers, to build a backend request in.
//
// Status: $ok.
//
// Differs: no known difference.
func reqNew(c *call) status {
	r := &reqObj{method: "GET", uri: "/", version: httpV11}
	return c.putHandle(c.u32(0), c.inst.tab.add(r, c.inst.gen, false))
}

// reqClose implements fastly_http_req.close(h): releases a request handle.
//
// Status: $ok.
//
// Differs: no known difference.
func reqClose(c *call) status {
	if _, ok := take[*reqObj](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	return stOK
}

// reqMethodGet implements fastly_http_req.method_get(h, buf, buf_len,
// nwritten_out): writes the request's method to buf and its length to
// nwritten_out.
//
// Status: $ok; $buflen if it does not fit, with its length in
// nwritten_out (writeOut).
//
// Differs: no known difference.
func reqMethodGet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, r.method, c.u32(1), c.u32(2), c.u32(3))
}

// reqMethodSet implements fastly_http_req.method_set(h, method_ptr,
// method_len): sets the request's method.
//
// Status: $ok; $inval if the method is not an RFC 9110 token.
//
// Differs: no known difference.
func reqMethodSet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	m, ok := c.argBytes(1)
	if !ok || !validHeaderName(m) { // a method is a token
		return stInval
	}
	r.method = string(m)
	return stOK
}

// reqURIGet implements fastly_http_req.uri_get(h, buf, buf_len,
// nwritten_out): writes the request's URI. A client request's is
// absolute, with scheme and authority, as Fastly presents it.
//
// Status: $ok; $buflen if it does not fit, with its length in
// nwritten_out.
//
// Differs: no known difference.
func reqURIGet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, r.uri, c.u32(1), c.u32(2), c.u32(3))
}

// reqURISet implements fastly_http_req.uri_set(h, uri_ptr, uri_len): sets
// the request's URI.
//
// Status: $ok; $inval if it is empty, does not parse as a URL, or is
// longer than Fastly's 8 KB URL limit (maxURLLen).
//
// Differs: the URL limit is applied here rather than when the request is
// sent: a URI over it could never be sent.
func reqURISet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	u, ok := c.argString(1)
	if !ok || u == "" || len(u) > maxURLLen { // Fastly's 8 KB URL limit
		return stInval
	}
	if _, err := url.Parse(u); err != nil {
		return stInval
	}
	r.uri = u
	return stOK
}

// reqVersionGet implements fastly_http_req.version_get(h, version_out):
// writes the request's $http_version.
//
// Status: $ok.
//
// Differs: no known difference.
func reqVersionGet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	if !c.putU32(c.u32(1), r.version) {
		return stInval
	}
	return stOK
}

// reqVersionSet implements fastly_http_req.version_set(h, version): sets
// the request's $http_version.
//
// Status: $ok; $inval for a value that is not an $http_version.
//
// Differs: backend requests always go out as HTTP/1.1 whatever the
// version says.
func reqVersionSet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	v := c.u32(1)
	if v > httpV3 {
		return stInval
	}
	r.version = v
	return stOK
}

// reqCacheOverride implements fastly_http_req.cache_override_set(h, tag,
// ttl, stale_while_revalidate) and cache_override_v2_set(..., sk_ptr,
// sk_len): accepts the cache override of a request.
//
// Status: $ok.
//
// Differs: the local POP has no cache, so overrides have no effect (as in
// Viceroy).
func reqCacheOverride(withKey bool) hostFn {
	return func(c *call) status {
		if _, ok := c.inst.getReq(c.u32(0)); !ok {
			return stBadf
		}
		if withKey {
			if _, ok := c.argBytes(4); !ok {
				return stInval
			}
		}
		return stOK
	}
}

// reqFramingMode implements fastly_http_req.framing_headers_mode_set(h,
// mode): 0 lets the host derive Content-Length and Transfer-Encoding from
// the body; 1 (manual) sends the guest's own.
//
// Status: $ok; $inval for another mode.
//
// Differs: no known difference.
func reqFramingMode(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return setFraming(&r.manualFraming, c.u32(1))
}

// setFraming applies a framing_headers_mode_set mode, for requests and
// responses alike.
func setFraming(manual *bool, mode uint32) status {
	if mode > 1 {
		return stInval
	}
	*manual = mode == 1
	return stOK
}

// reqAutoDecompress implements fastly_http_req.auto_decompress_response_set(
// h, encodings): with bit 0 (gzip) set, a gzip-encoded backend response is
// decompressed before the guest sees it, and its Content-Encoding and
// Content-Length are removed.
//
// Status: $ok; $inval for any other bit.
//
// Differs: no known difference.
func reqAutoDecompress(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	enc := c.u32(1)
	if enc&^1 != 0 {
		return stInval
	}
	r.autoGzip = enc&1 != 0
	return stOK
}

// sendArgs resolves the (h, b, backend_ptr, backend_len) prefix the send
// calls share and starts the send; the request and (non-streaming) body
// handles are consumed. It also returns the $send_error_detail tag for a
// send that could not start.
func (c *call) sendArgs(streaming bool) (*pendingReq, status, uint32) {
	inst := c.inst
	rh, bh := c.u32(0), c.u32(1)
	ro, ok1 := inst.getReq(rh)
	b, ok2 := inst.getBody(bh)
	if !ok1 || !ok2 {
		return nil, stBadf, sendErrInternalError
	}
	if b.streaming {
		return nil, stInval, sendErrInternalError
	}
	name, ok := c.argBytes(2)
	if !ok {
		return nil, stInval, sendErrInternalError
	}
	if _, known := inst.backend(string(name)); !known {
		return nil, stInval, sendErrDestinationNotFound
	}
	if !inst.countSend() {
		// Not a failure of the send itself, so no detail: the guest
		// sees the status ("limit exceeded").
		return nil, stLimitExceeded, sendErrUninitialized
	}
	p, st, tag := inst.startSend(ro, b, string(name), streaming)
	if st != stOK {
		return nil, st, tag
	}
	inst.tab.free(rh)
	if !streaming {
		inst.tab.free(bh)
	}
	return p, stOK, 0
}

// reqSend implements fastly_http_req.send(h, b, backend_ptr, backend_len,
// resp_handle_out, resp_body_handle_out): sends the request to the named
// backend and waits for the response head; the body streams in as the
// guest reads it. The guest is blocked meanwhile (that is the call's
// contract), other instances are not.
//
// Status: $ok with the response handles; $inval for an unknown backend,
// a streaming body or a URI that does not parse; $httpheadtoolarge for a
// request head over Fastly's limits; $limitexceeded past Fastly's 32
// backend requests per execution; $error when the request fails (no
// connection, timeout, protocol error) or the instance is terminated
// while waiting.
//
// Differs: no known difference.
func reqSend(c *call) status { return sendSync(c, 0, 4) }

// reqSendV2 implements fastly_http_req.send_v2 and send_v3(h, b,
// backend_ptr, backend_len, error_detail, resp_handle_out,
// resp_body_handle_out): send, plus a $send_error_detail written to
// error_detail: its tag says why a send failed (DNS error, connection
// refused or timed out, response timeout, TLS certificate error, ...), or
// $ok.
//
// Status: as send.
//
// Differs: only the tag of the detail is filled in (its mask is 0), and
// the tag is classified from Go's error, not from Fastly's proxy.
func reqSendV2(c *call) status { return sendSync(c, c.u32(4), 5) }

// sendSync starts a send and waits for it.
func sendSync(c *call, detail uint32, outIdx int) status {
	if _, ok := c.bytes(c.u32(outIdx), 4); !ok {
		return stInval
	}
	if _, ok := c.bytes(c.u32(outIdx+1), 4); !ok {
		return stInval
	}
	p, st, tag := c.sendArgs(false)
	if st != stOK {
		if detail != 0 {
			putSendError(c, detail, tag)
		}
		return st
	}
	return waitPending(c, p, detail, c.u32(outIdx), c.u32(outIdx+1))
}

// waitPending waits for p, or for the instance to be terminated.
func waitPending(c *call, p *pendingReq, detail, respOut, bodyOut uint32) status {
	select {
	case <-p.done:
	case <-c.inst.ctx.Done():
		p.abandon()
		if detail != 0 {
			putSendError(c, detail, sendErrInternalError)
		}
		return stError
	}
	return finishPending(c, p, detail, respOut, bodyOut)
}

// finishPending turns a completed send into response handles, or its
// error into $error and the detail.
func finishPending(c *call, p *pendingReq, detail, respOut, bodyOut uint32) status {
	if p.err != nil {
		if detail != 0 {
			putSendError(c, detail, p.tag)
		}
		return stError
	}
	rh, bh := c.inst.complete(p)
	c.putU32(respOut, rh)
	c.putU32(bodyOut, bh)
	if detail != 0 {
		putSendError(c, detail, sendErrOK)
	}
	return stOK
}

// putSendError fills a $send_error_detail (tag u32, mask u32, ...) if ptr
// is valid. Only the tag is reported, so the mask is cleared.
func putSendError(c *call, ptr uint32, tag uint32) {
	if _, ok := c.bytes(ptr, 8); ok {
		c.putU32(ptr, tag)
		c.putU32(ptr+4, 0)
	}
}

// reqSendAsync implements fastly_http_req.send_async and
// send_async_streaming(h, b, backend_ptr, backend_len,
// pending_req_handle_out): starts the send and returns a pending request
// at once. With streaming the body handle stays open and what the guest
// writes to it goes to the backend as it is written (chunked); the
// request body ends when the guest closes it.
//
// Status: $ok with the pending request handle; otherwise as send, except
// that a failed request is only reported by pending_req_poll or _wait.
//
// Differs: no known difference.
func reqSendAsync(streaming bool) hostFn {
	return func(c *call) status {
		if _, ok := c.bytes(c.u32(4), 4); !ok {
			return stInval
		}
		p, st, _ := c.sendArgs(streaming)
		if st != stOK {
			return st
		}
		return c.putHandle(c.u32(4), c.inst.tab.add(p, c.inst.gen, false))
	}
}

// reqSendAsyncV2 implements fastly_http_req.send_async_v2(h, b,
// backend_ptr, backend_len, streaming, pending_req_handle_out): send_async,
// or send_async_streaming when streaming is not 0.
//
// Status: as send_async.
//
// Differs: no known difference.
func reqSendAsyncV2(c *call) status {
	if _, ok := c.bytes(c.u32(5), 4); !ok {
		return stInval
	}
	p, st, _ := c.sendArgs(c.u32(4) != 0)
	if st != stOK {
		return st
	}
	return c.putHandle(c.u32(5), c.inst.tab.add(p, c.inst.gen, false))
}

// reqPendingPoll implements fastly_http_req.pending_req_poll(h,
// is_done_out, resp_handle_out, resp_body_handle_out): never blocks.
// While the request is in flight is_done_out is 0 and both handles are
// the invalid handle; once it completed is_done_out is 1, the pending
// handle is consumed and the response handles are written.
//
// Status: $ok while in flight or on completion; $error when the request
// failed.
//
// Differs: no known difference.
func reqPendingPoll(c *call) status { return pendingPoll(c, 0, 1) }

// reqPendingPollV2 implements fastly_http_req.pending_req_poll_v2(h,
// error_detail, is_done_out, resp_handle_out, resp_body_handle_out):
// pending_req_poll with a $send_error_detail, as in send_v2.
//
// Status: as pending_req_poll.
//
// Differs: as send_v2's detail.
func reqPendingPollV2(c *call) status { return pendingPoll(c, c.u32(1), 2) }

// pendingPoll is pending_req_poll with the detail pointer (0: none) and
// the index of the first out-pointer argument.
func pendingPoll(c *call, detail uint32, outIdx int) status {
	inst := c.inst
	h := c.u32(0)
	p, ok := lookup[*pendingReq](&inst.tab, h)
	if !ok {
		return stBadf
	}
	doneOut, respOut, bodyOut := c.u32(outIdx), c.u32(outIdx+1), c.u32(outIdx+2)
	for _, ptr := range []uint32{doneOut, respOut, bodyOut} {
		if _, ok := c.bytes(ptr, 4); !ok {
			return stInval
		}
	}
	select {
	case <-p.done:
	default:
		c.putU32(doneOut, 0)
		c.putU32(respOut, invalidHandle)
		c.putU32(bodyOut, invalidHandle)
		return stOK
	}
	inst.tab.free(h)
	c.putU32(doneOut, 1)
	return finishPending(c, p, detail, respOut, bodyOut)
}

// reqPendingWait implements fastly_http_req.pending_req_wait(h,
// resp_handle_out, resp_body_handle_out): consumes the pending request and
// blocks until its response head arrives.
//
// Status: $ok with the response handles; $error when the request failed
// or the instance was terminated while waiting.
//
// Differs: no known difference.
func reqPendingWait(c *call) status { return pendingWait(c, 0, 1) }

// reqPendingWaitV2 implements fastly_http_req.pending_req_wait_v2(h,
// error_detail, resp_handle_out, resp_body_handle_out): pending_req_wait
// with a $send_error_detail, as in send_v2.
//
// Status: as pending_req_wait.
//
// Differs: as send_v2's detail.
func reqPendingWaitV2(c *call) status { return pendingWait(c, c.u32(1), 2) }

// pendingWait is pending_req_wait with the detail pointer (0: none) and
// the index of the first out-pointer argument.
func pendingWait(c *call, detail uint32, outIdx int) status {
	p, ok := take[*pendingReq](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	respOut, bodyOut := c.u32(outIdx), c.u32(outIdx+1)
	if _, ok := c.bytes(respOut, 4); !ok {
		p.abandon()
		return stInval
	}
	if _, ok := c.bytes(bodyOut, 4); !ok {
		p.abandon()
		return stInval
	}
	return waitPending(c, p, detail, respOut, bodyOut)
}

// $backend_config_options bits.
const (
	beOptReserved            = 1 << 0
	beOptHostOverride        = 1 << 1
	beOptConnectTimeout      = 1 << 2
	beOptFirstByteTimeout    = 1 << 3
	beOptBetweenBytesTimeout = 1 << 4
	beOptUseSSL              = 1 << 5
	beOptSSLMinVersion       = 1 << 6
	beOptSSLMaxVersion       = 1 << 7
	beOptCertHostname        = 1 << 8
	beOptCACert              = 1 << 9
	beOptCiphers             = 1 << 10
	beOptSNIHostname         = 1 << 11
	beOptDontPool            = 1 << 12
	beOptClientCert          = 1 << 13
	beOptGRPC                = 1 << 14
	beOptKeepalive           = 1 << 15
	beOptKnown               = 1<<16 - 1
)

// Field offsets in $dynamic_backend_config: 23 fields of 4 bytes each.
const (
	dbcHostOverride     = 0  // ptr, len
	dbcConnectTimeout   = 8  // ms
	dbcFirstByteTimeout = 12 // ms
	dbcBetweenBytes     = 16 // ms
	dbcSSLMin           = 20
	dbcSSLMax           = 24
	dbcCertHostname     = 28 // ptr, len
	dbcCACert           = 36 // ptr, len
	dbcCiphers          = 44 // ptr, len
	dbcSNIHostname      = 52 // ptr, len
	dbcSize             = 92
)

// reqRegisterDynamicBackend implements fastly_http_req.register_dynamic_backend(
// name_prefix_ptr, name_prefix_len, target_ptr, target_len,
// backend_config_mask, backend_configuration): defines a backend named
// name that sends to target (host[:port]) with the options the mask
// selects from the $dynamic_backend_config record. The backend lives as
// long as the instance.
//
// Status: $ok; $error if the name is taken by a static or a dynamic
// backend (fsthttp reports ErrBackendNameInUse); $inval for a malformed
// name, target or option (the reserved bit, unknown bits, empty or
// over-long strings, a bad TLS version, a CA certificate that does not
// parse, an SNI hostname other than the certificate hostname);
// $limitexceeded past Fastly's 200 dynamic backends; $unsupported for a
// client certificate.
//
// Differs: status codes follow Viceroy. The limit is per instance, not
// per service. Cipher strings are checked for presence and otherwise
// ignored (OpenSSL cipher strings have no Go equivalent), and Go always
// sends as SNI the name it verifies, so a distinct SNI name is refused as
// in Viceroy.
func reqRegisterDynamicBackend(c *call) status {
	inst := c.inst
	name, ok1 := c.argString(0)
	target, ok2 := c.argString(2)
	mask := c.u32(4)
	if !ok1 || !ok2 || name == "" || len(name) > 255 || mask&beOptReserved != 0 || mask&^beOptKnown != 0 {
		return stInval
	}
	cfg, ok := c.bytes(c.u32(5), dbcSize)
	if !ok {
		return stInval
	}
	field := func(off int) uint32 {
		return uint32(cfg[off]) | uint32(cfg[off+1])<<8 | uint32(cfg[off+2])<<16 | uint32(cfg[off+3])<<24
	}
	// str reads a (ptr, len) field; it must be non-empty and at most max
	// bytes, as in Viceroy.
	str := func(off int, max uint32) (string, bool) {
		n := field(off + 4)
		if n == 0 || n > max {
			return "", false
		}
		b, ok := c.bytes(field(off), n)
		return string(b), ok
	}

	host, port, err := net.SplitHostPort(target)
	if err != nil {
		host, port = target, ""
	}
	if host == "" || strings.ContainsAny(target, "/?#@ ") {
		return stInval
	}
	scheme := "http"
	if mask&beOptUseSSL != 0 {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: target}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	be := &backend{
		name:                name,
		cfg:                 fastlytoml.Backend{Name: name, URL: u, UseSNI: true},
		base:                u.Scheme + "://" + u.Host + "/",
		connectTimeout:      defaultConnectTimeout,
		firstByteTimeout:    defaultFirstByteTimeout,
		betweenBytesTimeout: defaultBetweenBytesTimeout,
		dynamic:             true,
		tlsMin:              tls12,
		tlsMax:              tls13,
	}
	if mask&beOptHostOverride != 0 {
		h, ok := str(dbcHostOverride, 1024)
		if !ok || !validHeaderValue([]byte(h)) {
			return stInval
		}
		be.cfg.OverrideHost = h
	}
	for _, t := range []struct {
		bit uint32
		off int
		dst *time.Duration
	}{
		{beOptConnectTimeout, dbcConnectTimeout, &be.connectTimeout},
		{beOptFirstByteTimeout, dbcFirstByteTimeout, &be.firstByteTimeout},
		{beOptBetweenBytesTimeout, dbcBetweenBytes, &be.betweenBytesTimeout},
	} {
		if mask&t.bit != 0 {
			*t.dst = time.Duration(field(t.off)) * time.Millisecond
		}
	}

	// TLS options only matter for TLS backends; they are still validated.
	tc := &tls.Config{}
	custom := false
	for _, v := range []struct {
		bit uint32
		off int
		dst *uint32
	}{
		{beOptSSLMinVersion, dbcSSLMin, &be.tlsMin},
		{beOptSSLMaxVersion, dbcSSLMax, &be.tlsMax},
	} {
		if mask&v.bit != 0 {
			if *v.dst = field(v.off); *v.dst > tls13 {
				return stInval
			}
			custom = true
		}
	}
	if be.tlsMin > be.tlsMax {
		return stInval
	}
	tc.MinVersion = tls.VersionTLS10 + uint16(be.tlsMin)
	tc.MaxVersion = tls.VersionTLS10 + uint16(be.tlsMax)
	if mask&beOptCertHostname != 0 {
		h, ok := str(dbcCertHostname, 1024)
		if !ok {
			return stInval
		}
		be.cfg.CertHost, tc.ServerName, custom = h, h, true
	}
	if mask&beOptSNIHostname != 0 {
		// An empty SNI hostname turns SNI off (Viceroy). Go always sends
		// the name it verifies, so a distinct SNI name cannot be honoured:
		// $inval, as in Viceroy.
		if field(dbcSNIHostname+4) == 0 {
			be.cfg.UseSNI = false
		} else {
			h, ok := str(dbcSNIHostname, 1024)
			if !ok || (tc.ServerName != "" && tc.ServerName != h) {
				return stInval
			}
			tc.ServerName, custom = h, true
		}
	}
	if mask&beOptCACert != 0 {
		pem, ok := str(dbcCACert, 64<<10)
		if !ok {
			return stInval
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(pem)) {
			return stInval
		}
		tc.RootCAs, custom = pool, true
	}
	if mask&beOptCiphers != 0 {
		// OpenSSL cipher strings have no Go equivalent; the string is
		// checked for presence and otherwise ignored.
		if _, ok := str(dbcCiphers, 1024); !ok {
			return stInval
		}
	}
	if mask&beOptClientCert != 0 {
		// Client certificates (mTLS to the backend) are not implemented.
		return stUnsupported
	}

	if _, taken := inst.backend(name); taken {
		return stError
	}
	if len(inst.http.dynamic) >= maxDynamicBackends {
		return stLimitExceeded
	}
	if (be.isTLS() && custom) || mask&beOptDontPool != 0 {
		t := inst.s.transport.Clone()
		if be.isTLS() {
			t.TLSClientConfig = tc
		}
		t.DisableKeepAlives = mask&beOptDontPool != 0
		be.transport = t
	}
	if inst.http.dynamic == nil {
		inst.http.dynamic = map[string]*backend{}
	}
	inst.http.dynamic[name] = be
	return stOK
}

// The header calls, shared by fastly_http_req and fastly_http_resp.

// headerHolder resolves a handle to the header list it owns.
type headerHolder func(c *call, h uint32) (*headerList, bool)

// reqHeaders is the headerHolder of request handles.
func reqHeaders(c *call, h uint32) (*headerList, bool) {
	r, ok := lookup[*reqObj](&c.inst.tab, h)
	if !ok {
		return nil, false
	}
	return &r.header, true
}

// respHeaders is the headerHolder of response handles.
func respHeaders(c *call, h uint32) (*headerList, bool) {
	r, ok := lookup[*respObj](&c.inst.tab, h)
	if !ok {
		return nil, false
	}
	return &r.header, true
}

// headerNamesGet implements header_names_get(h, buf, buf_len, cursor,
// ending_cursor_out, nwritten_out) of fastly_http_req and fastly_http_resp:
// the header names, lower case, NUL-terminated, from cursor on (the
// multi-value protocol of writeMulti).
//
// Status: $ok; $buflen if not even the first name fits, with its size in
// nwritten_out.
//
// Differs: no known difference.
func headerNamesGet(get headerHolder) hostFn {
	return func(c *call) status {
		hl, ok := get(c, c.u32(0))
		if !ok {
			return stBadf
		}
		h := *hl
		return writeMulti(c, len(h), func(i int) string { return h[i].name }, true,
			c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5))
	}
}

// headerAndName resolves what the lookup calls share: the header list of
// the handle in argument 0 and the name in arguments 1-2.
func headerAndName(c *call, get headerHolder) (*headerList, []byte, status) {
	hl, ok := get(c, c.u32(0))
	if !ok {
		return nil, nil, stBadf
	}
	name, ok := c.argBytes(1)
	if !ok || len(name) > maxHeaderNameLen {
		return nil, nil, stInval
	}
	return hl, name, stOK
}

// headerValueGet implements header_value_get(h, name_ptr, name_len, value,
// value_max_len, nwritten_out) of fastly_http_req and fastly_http_resp:
// the first value of the named header (case-insensitive).
//
// Status: $ok; $none if the header is absent; $buflen if the value does
// not fit, with its length in nwritten_out; $inval for a name over 64 KiB.
//
// Differs: no known difference.
func headerValueGet(get headerHolder) hostFn {
	return func(c *call) status {
		hl, name, st := headerAndName(c, get)
		if st != stOK {
			return st
		}
		i := hl.index(name)
		if i < 0 || len((*hl)[i].vals) == 0 {
			return stNone
		}
		return writeOut(c, (*hl)[i].vals[0], c.u32(3), c.u32(4), c.u32(5))
	}
}

// headerValuesGet implements header_values_get(h, name_ptr, name_len, buf,
// buf_len, cursor, ending_cursor_out, nwritten_out) of fastly_http_req and
// fastly_http_resp: the named header's values, NUL-terminated, from
// cursor on (writeMulti). An absent header has no values.
//
// Status: $ok; $buflen if not even the first value fits; $inval for a
// name over 64 KiB.
//
// Differs: no known difference.
func headerValuesGet(get headerHolder) hostFn {
	return func(c *call) status {
		hl, name, st := headerAndName(c, get)
		if st != stOK {
			return st
		}
		var vals []string
		if i := hl.index(name); i >= 0 {
			vals = (*hl)[i].vals
		}
		return writeMulti(c, len(vals), func(i int) string { return vals[i] }, false,
			c.u32(3), c.u32(4), c.u32(5), c.u32(6), c.u32(7))
	}
}

// headerValuesSet implements header_values_set(h, name_ptr, name_len,
// values_ptr, values_len) of fastly_http_req and fastly_http_resp: replaces
// the named header's values with the NUL-separated list; an empty list
// removes the header.
//
// Status: $ok; $inval for a name that is not a token or a value with a
// control character.
//
// Differs: no known difference.
func headerValuesSet(get headerHolder) hostFn {
	return func(c *call) status {
		hl, ok := get(c, c.u32(0))
		if !ok {
			return stBadf
		}
		name, ok1 := c.argBytes(1)
		raw, ok2 := c.argBytes(3)
		if !ok1 || !ok2 || !validHeaderName(name) {
			return stInval
		}
		var vals []string
		for len(raw) > 0 {
			v, rest, found := bytes.Cut(raw, []byte{0})
			_ = found
			if !validHeaderValue(v) {
				return stInval
			}
			vals = append(vals, string(v))
			raw = rest
		}
		n := string(name)
		if len(vals) == 0 {
			hl.remove(n)
			return stOK
		}
		hl.set(n, vals)
		return stOK
	}
}

// headerInsert implements header_insert and header_append(h, name_ptr,
// name_len, value_ptr, value_len) of fastly_http_req and fastly_http_resp:
// insert replaces the named header's values with value, append adds value
// after them.
//
// Status: $ok; $inval for a name that is not a token or a value with a
// control character.
//
// Differs: no known difference.
func headerInsert(get headerHolder, appendMode bool) hostFn {
	return func(c *call) status {
		hl, ok := get(c, c.u32(0))
		if !ok {
			return stBadf
		}
		name, ok1 := c.argBytes(1)
		val, ok2 := c.argBytes(3)
		if !ok1 || !ok2 || !validHeaderName(name) || !validHeaderValue(val) {
			return stInval
		}
		strs := &c.inst.strs
		v := strs.str(val)
		i := hl.index(name)
		switch {
		case i < 0:
			*hl = append(*hl, hfield{name: strs.str(name), vals: strs.one(v)})
		case appendMode:
			old := (*hl)[i].vals
			(*hl)[i].vals = append(old[:len(old):len(old)], v)
		default:
			(*hl)[i].vals = strs.one(v)
		}
		return stOK
	}
}

// headerRemove implements header_remove(h, name_ptr, name_len) of
// fastly_http_req and fastly_http_resp.
//
// Status: $ok; $inval if the header is absent (as on Fastly) or the name
// is over 64 KiB.
//
// Differs: no known difference.
func headerRemove(get headerHolder) hostFn {
	return func(c *call) status {
		hl, name, st := headerAndName(c, get)
		if st != stOK {
			return st
		}
		if !hl.remove(string(name)) {
			return stInval
		}
		return stOK
	}
}
