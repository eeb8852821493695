//go:build !wasip1

package hostcall

// Off the platform every hostcall is unsupported; see the package comment.

func strPtr(s string) (*byte, uint32) { return nil, uint32(len(s)) }

func bodyDownstreamGet(req, body *handle) status                        { return statusUnsupported }
func nextRequest(mask uint32, opts *uint64, promise *handle) status     { return statusUnsupported }
func nextRequestWait(p handle, req, body *handle) status                { return statusUnsupported }
func methodGet(h handle, buf *byte, bufLen uint32, nw *uint32) status   { return statusUnsupported }
func uriGet(h handle, buf *byte, bufLen uint32, nw *uint32) status      { return statusUnsupported }
func downstreamClientIP(h handle, addr *byte, nw *uint32) status        { return statusUnsupported }
func bodyRead(h handle, buf *byte, bufLen uint32, nread *uint32) status { return statusUnsupported }
func respNew(h *handle) status                                          { return statusUnsupported }
func respStatusSet(h handle, status uint32) status                      { return statusUnsupported }
func bodyNew(h *handle) status                                          { return statusUnsupported }
func respSendDownstream(resp, body handle, streaming uint32) status     { return statusUnsupported }
func geoLookup(addr *byte, addrLen uint32, buf *byte, bufLen uint32, nw *uint32) status {
	return statusUnsupported
}
func headerValueGet(h handle, name *byte, nameLen uint32, buf *byte, bufLen uint32, nw *uint32) status {
	return statusUnsupported
}
func respHeaderAppend(h handle, name *byte, nameLen uint32, value *byte, valueLen uint32) status {
	return statusUnsupported
}
func bodyWrite(h handle, buf *byte, bufLen uint32, end uint32, nw *uint32) status {
	return statusUnsupported
}
func reqNew(h *handle) status                                      { return statusUnsupported }
func reqClose(h handle) status                                     { return statusUnsupported }
func reqMethodSet(h handle, method *byte, methodLen uint32) status { return statusUnsupported }
func reqURISet(h handle, uri *byte, uriLen uint32) status          { return statusUnsupported }
func reqCacheOverrideSet(h handle, tag, ttl, staleWhileRevalidate uint32) status {
	return statusUnsupported
}
func reqHeaderAppend(h handle, name *byte, nameLen uint32, value *byte, valueLen uint32) status {
	return statusUnsupported
}
func reqSend(req, body handle, backend *byte, backendLen uint32, resp, respBody *handle) status {
	return statusUnsupported
}
func respStatusGet(h handle, status *uint16) status { return statusUnsupported }
func respHeaderValueGet(h handle, name *byte, nameLen uint32, buf *byte, bufLen uint32, nw *uint32) status {
	return statusUnsupported
}
func bodyClose(h handle) status { return statusUnsupported }
func respClose(h handle) status { return statusUnsupported }
