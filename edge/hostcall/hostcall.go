// Package hostcall binds, directly, the few Fastly Compute hostcalls the
// edge module's serving loop needs: the downstream request, its headers
// and body, the client address, geolocation, and a complete response;
// and a request to a backend, for delivery (backend.go).
//
// compute-sdk-go's fsthttp builds a full net/http-style request for every
// visitor: it parses the URL, reads every header into a map, creates a
// context and a ResponseWriter. Standard Go compiled to WebAssembly runs that
// work about ten times slower than native code, and measured under the POP
// it cost several times the pixel's own work. The pixel reads two headers
// and answers 43 bytes, so it calls the ABI itself; the stores and log
// endpoints, off the hot path, still go through compute-sdk-go.
//
// The calls follow compute-at-edge.witx as compute-sdk-go v1.9.0 declares
// them. Outside GOOS=wasip1 every call answers ErrUnsupported, so the
// packages that use this one still build and test natively.
package hostcall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// status is a $fastly_status.
type status uint32

const (
	statusOK          status = 0
	statusError       status = 1
	statusInval       status = 2
	statusBadf        status = 3
	statusBufLen      status = 4
	statusUnsupported status = 5
	statusNone        status = 10
)

// ErrUnsupported is what every call answers on a host without the ABI.
var ErrUnsupported = errors.New("hostcall: unsupported by this host")

func (s status) err(call string) error {
	switch s {
	case statusOK:
		return nil
	case statusUnsupported:
		return fmt.Errorf("%s: %w", call, ErrUnsupported)
	}
	return fmt.Errorf("%s: fastly status %d (%s)", call, uint32(s), s.name())
}

// statusNames are the $fastly_status names in the witx definition
// (compute-at-edge.witx; compute-sdk-go's FastlyStatus), by value, so a
// logged error says "limitexceeded" rather than only 13.
var statusNames = [...]string{"ok", "error", "inval", "badf", "buflen", "unsupported", "badalign",
	"httpinvalid", "httpuser", "httpincomplete", "none", "httpheadtoolarge", "httpinvalidstatus",
	"limitexceeded", "again"}

func (s status) name() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

type handle = uint32

// invalid is the ABI's invalid handle value.
const invalid handle = 0xFFFFFFFE

// Request is a downstream request and its body.
type Request struct{ req, body handle }

// The calls' out-parameters. A pointer to a local passed to an import
// makes TinyGo allocate the local on the heap, at every call; these live
// in the data section instead. A guest runs one thread, and no call here
// yields to another goroutine between writing and reading them.
var (
	outA, outB handle
	outN       uint32
	outAddr    [16]byte
	outStatus  uint16
	// drain is where BackendResponse.Close reads a body it discards.
	drain    [512]byte
	nextOpts struct{ timeoutMs uint64 }
)

// Downstream returns the request that started this execution.
func Downstream() (Request, error) {
	outA, outB = invalid, invalid
	if st := bodyDownstreamGet(&outA, &outB); st != statusOK {
		return Request{}, st.err("body_downstream_get")
	}
	return Request{outA, outB}, nil
}

// Next waits at most timeout for another request to this instance (a
// reusable sandbox). It reports false when the platform has none to give:
// the timeout passed or the instance should end.
func Next(timeout time.Duration) (Request, bool, error) {
	var mask uint32
	nextOpts.timeoutMs = 0
	if timeout > 0 {
		mask |= 1 << 1 // $timeout
		nextOpts.timeoutMs = uint64(max(timeout.Milliseconds(), 1))
	}
	outA = invalid
	if st := nextRequest(mask, &nextOpts.timeoutMs, &outA); st != statusOK {
		return Request{}, false, st.err("next_request")
	}
	p := outA
	outA, outB = invalid, invalid
	switch st := nextRequestWait(p, &outA, &outB); st {
	case statusOK:
		return Request{outA, outB}, true, nil
	case statusNone:
		return Request{}, false, nil
	default:
		return Request{}, false, st.err("next_request_wait")
	}
}

// Method appends the request method to buf.
func (r Request) Method(buf []byte) ([]byte, error) {
	return grow(buf, bufCall{op: opMethod, h: r.req})
}

// URI appends the request's full URI (scheme://host/path?query) to buf.
func (r Request) URI(buf []byte) ([]byte, error) {
	return grow(buf, bufCall{op: opURI, h: r.req})
}

// Header appends the first value of the named header to buf; false if the
// request has no such header. The buffer returned may have grown even
// when nothing was appended: keep it for the next call.
func (r Request) Header(name string, buf []byte) ([]byte, bool, error) {
	np, nl := strPtr(name)
	// found rather than err == errNone: TinyGo compares two interfaces
	// through its reflection (runtime.interfaceEqual), a cost on every
	// header read.
	return growFound(buf, bufCall{op: opHeader, h: r.req, p: np, n: nl})
}

// ClientIP is the address of the visitor.
func (r Request) ClientIP() (netip.Addr, error) {
	outN = 0
	if st := downstreamClientIP(r.req, &outAddr[0], &outN); st != statusOK {
		return netip.Addr{}, st.err("downstream_client_ip_addr")
	}
	switch outN {
	case 4:
		return netip.AddrFrom4([4]byte(outAddr[:4])), nil
	case 16:
		return netip.AddrFrom16(outAddr), nil
	}
	return netip.Addr{}, fmt.Errorf("downstream_client_ip_addr: %d-byte address", outN)
}

// ReadBody appends the request body to buf, stopping after max+1 bytes so
// an oversized body is detected without reading all of it.
func (r Request) ReadBody(buf []byte, max int) ([]byte, error) {
	for len(buf) <= max {
		if cap(buf)-len(buf) < 4096 {
			buf = append(buf, make([]byte, 16<<10)...)[:len(buf)]
		}
		free := buf[len(buf):cap(buf)]
		outN = 0
		if st := bodyRead(r.body, &free[0], uint32(len(free)), &outN); st != statusOK {
			return buf, st.err("body read")
		}
		if outN == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+int(outN)]
	}
	return buf, nil
}

// Geo appends the platform's geolocation record for ip (JSON) to buf.
func Geo(ip netip.Addr, buf []byte) ([]byte, error) {
	// The address goes in the data section, not a slice of its own.
	n := uint32(4)
	if ip.Is4() {
		a := ip.As4()
		copy(outAddr[:], a[:])
	} else {
		outAddr = ip.As16()
		n = 16
	}
	return grow(buf, bufCall{op: opGeo, p: &outAddr[0], n: n})
}

// Response is a response being built for the downstream request: make it
// with NewResponse, add headers in order, and Send it. Adding headers one
// call at a time, rather than passing a function that yields them, keeps
// the hot path free of closures, which TinyGo allocates on the heap.
type Response struct{ h handle }

// NewResponse starts a response with statusCode.
func NewResponse(statusCode int) (Response, error) {
	outA = invalid
	if st := respNew(&outA); st != statusOK {
		return Response{}, st.err("resp new")
	}
	resp := Response{outA}
	// A new response is 200 OK (as Fastly's and Viceroy's are): a pixel
	// answer needs no call to say so.
	if statusCode != 200 {
		if st := respStatusSet(resp.h, uint32(statusCode)); st != statusOK {
			return Response{}, st.err("resp status_set")
		}
	}
	return resp, nil
}

// AppendHeader adds a header field after those added before.
func (resp Response) AppendHeader(name, value string) error {
	np, nl := strPtr(name)
	vp, vl := strPtr(value)
	if st := respHeaderAppend(resp.h, np, nl, vp, vl); st != statusOK {
		return st.err("resp header_append " + name)
	}
	return nil
}

// Send answers the downstream request with resp and body, complete. The
// response and body are consumed.
func (resp Response) Send(body []byte) error {
	b, err := newBody(body)
	if err != nil {
		return err
	}
	if st := respSendDownstream(resp.h, b, 0); st != statusOK {
		return st.err("send_downstream")
	}
	return nil
}

// newBody makes a body holding data.
func newBody(data []byte) (handle, error) {
	outA = invalid
	if st := bodyNew(&outA); st != statusOK {
		return invalid, st.err("body new")
	}
	b := outA
	for len(data) > 0 {
		outN = 0
		if st := bodyWrite(b, &data[0], uint32(len(data)), 0, &outN); st != statusOK {
			bodyClose(b)
			return invalid, st.err("body write")
		}
		data = data[outN:]
	}
	return b, nil
}

var errNone = errors.New("none")

// bufCall is one call of the ABI's buffer protocol (grow): which, and
// its arguments before the buffer. A value rather than a function value,
// which TinyGo would allocate with its captured arguments at every call.
type bufCall struct {
	op opCode
	h  handle
	p  *byte // header name, or address
	n  uint32
}

type opCode uint8

const (
	opMethod opCode = iota
	opURI
	opHeader
	opGeo
	opRespHeader
)

func (c bufCall) do(buf *byte, bufLen uint32, nw *uint32) status {
	switch c.op {
	case opMethod:
		return methodGet(c.h, buf, bufLen, nw)
	case opURI:
		return uriGet(c.h, buf, bufLen, nw)
	case opHeader:
		return headerValueGet(c.h, c.p, c.n, buf, bufLen, nw)
	case opGeo:
		return geoLookup(c.p, c.n, buf, bufLen, nw)
	case opRespHeader:
		return respHeaderValueGet(c.h, c.p, c.n, buf, bufLen, nw)
	}
	return statusInval
}

func (c bufCall) name() string {
	return [...]string{"method_get", "uri_get", "header_value_get", "geo lookup", "resp header_value_get"}[c.op]
}

// grow implements the ABI's buffer protocol: a call that does not fit
// answers $buflen with the length it needs, and is repeated with that much
// room. $none means "no such value".
//
// The buffer returned has the room it grew to (also with errNone), so a
// caller that keeps it allocates only while its values keep getting
// longer.
func grow(buf []byte, c bufCall) ([]byte, error) {
	out, found, err := growFound(buf, c)
	if err == nil && !found {
		return out, errNone
	}
	return out, err
}

// growFound is grow reporting an absent value as found false, err nil.
func growFound(buf []byte, c bufCall) ([]byte, bool, error) {
	buf = slices.Grow(buf, 256)
	for range 2 {
		free := buf[len(buf):cap(buf)]
		outN = 0
		switch st := c.do(&free[0], uint32(len(free)), &outN); st {
		case statusOK:
			return buf[:len(buf)+int(outN)], true, nil
		case statusNone:
			return buf, false, nil
		case statusBufLen:
			buf = slices.Grow(buf, int(outN))
		default:
			return buf, false, st.err(c.name())
		}
	}
	return buf, false, fmt.Errorf("%s: value kept growing", c.name())
}
