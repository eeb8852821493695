package hostcall

// BackendRequest is a request to a named backend (Fastly's
// fastly_http_req handle): make it with NewBackendRequest, add headers in
// order, and Send it. The module sends its batches with it rather than
// with fsthttp, whose Request.Send starts a goroutine to stream a body of
// unknown length: a reachable go statement needs TinyGo's asyncify
// scheduler, which instruments every call in the module
// (tests/cmd/edgepixel-bench/HISTORY.md, "The goroutine scheduler").
type BackendRequest struct{ h handle }

// cacheOverridePass is $cache_override_tag's pass flag: the request goes
// to the backend and its answer is not cached (compute-at-edge.witx).
const cacheOverridePass = 1 << 0

// NewBackendRequest starts a request with method and an absolute uri,
// passed through the cache to the backend. On an error no handle is left
// open.
func NewBackendRequest(method, uri string) (BackendRequest, error) {
	outA = invalid
	if st := reqNew(&outA); st != statusOK {
		return BackendRequest{}, st.err("req new")
	}
	r := BackendRequest{outA}
	mp, ml := strPtr(method)
	up, ul := strPtr(uri)
	var err error
	if st := reqMethodSet(r.h, mp, ml); st != statusOK {
		err = st.err("req method_set")
	} else if st := reqURISet(r.h, up, ul); st != statusOK {
		err = st.err("req uri_set")
	} else if st := reqCacheOverrideSet(r.h, cacheOverridePass, 0, 0); st != statusOK {
		err = st.err("req cache_override_set")
	}
	if err != nil {
		r.Discard()
		return BackendRequest{}, err
	}
	return r, nil
}

// Discard releases a request that will not be sent (fastly_http_req
// close); Send consumes the request instead.
func (r BackendRequest) Discard() { reqClose(r.h) }

// AppendHeader adds a header field after those added before.
func (r BackendRequest) AppendHeader(name, value string) error {
	np, nl := strPtr(name)
	vp, vl := strPtr(value)
	if st := reqHeaderAppend(r.h, np, nl, vp, vl); st != statusOK {
		return st.err("req header_append " + name)
	}
	return nil
}

// BackendResponse is a backend's answer to a BackendRequest; Close it.
type BackendResponse struct{ h, body handle }

// Send sends r with body to backend and waits for the response's status
// and headers (fastly_http_req send). The request is consumed. An error
// is a request the backend did not answer: not defined, not reachable,
// timed out. The host takes the request and its body whether or not the
// send succeeds (as Viceroy does).
func (r BackendRequest) Send(backend string, body []byte) (BackendResponse, error) {
	b, err := newBody(body)
	if err != nil {
		r.Discard()
		return BackendResponse{}, err
	}
	bp, bl := strPtr(backend)
	outA, outB = invalid, invalid
	if st := reqSend(r.h, b, bp, bl, &outA, &outB); st != statusOK {
		return BackendResponse{}, st.err("req send to backend " + backend)
	}
	return BackendResponse{outA, outB}, nil
}

// StatusCode is the response's HTTP status.
func (resp BackendResponse) StatusCode() (int, error) {
	outStatus = 0
	if st := respStatusGet(resp.h, &outStatus); st != statusOK {
		return 0, st.err("resp status_get")
	}
	return int(outStatus), nil
}

// Header appends the first value of the named response header to buf;
// false if the response has none.
func (resp BackendResponse) Header(name string, buf []byte) ([]byte, bool, error) {
	np, nl := strPtr(name)
	return growFound(buf, bufCall{op: opRespHeader, h: resp.h, p: np, n: nl})
}

// Close reads what is left of the response's body, to let the host reuse
// its connection, and releases the body and the response: an instance
// serves requests for minutes (a reusable sandbox) and sends a batch
// every fraction of a second, so handles left open would pile up.
func (resp BackendResponse) Close() error {
	for {
		outN = 0
		if st := bodyRead(resp.body, &drain[0], uint32(len(drain)), &outN); st != statusOK {
			return st.err("body read")
		}
		if outN == 0 {
			break
		}
	}
	if st := bodyClose(resp.body); st != statusOK {
		return st.err("body close")
	}
	if st := respClose(resp.h); st != statusOK {
		return st.err("resp close")
	}
	return nil
}
