// Package hostcall binds, directly, the few Fastly Compute hostcalls the
// edge module's serving loop needs: the downstream request, its headers
// and body, the client address, geolocation, and a complete response.
//
// compute-sdk-go's fsthttp builds a full net/http-style request for every
// visitor: it parses the URL, reads every header into a map, creates a
// context and a ResponseWriter. Standard Go compiled to WebAssembly runs that
// work about ten times slower than native code, and measured under the POP
// it cost several times the pixel's own work. The pixel reads two headers
// and answers 43 bytes, so it calls the ABI itself; everything off the hot
// path (stores, backend delivery) still goes through compute-sdk-go.
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
	return fmt.Errorf("%s: fastly status %d", call, uint32(s))
}

type handle = uint32

// invalid is the ABI's invalid handle value.
const invalid handle = 0xFFFFFFFE

// Request is a downstream request and its body.
type Request struct{ req, body handle }

// Downstream returns the request that started this execution.
func Downstream() (Request, error) {
	r := Request{invalid, invalid}
	if st := bodyDownstreamGet(&r.req, &r.body); st != statusOK {
		return Request{}, st.err("body_downstream_get")
	}
	return r, nil
}

// Next waits at most timeout for another request to this instance (a
// reusable sandbox). It reports false when the platform has none to give:
// the timeout passed or the instance should end.
func Next(timeout time.Duration) (Request, bool, error) {
	var (
		mask uint32
		opts struct{ timeoutMs uint64 }
		p    handle = invalid
	)
	if timeout > 0 {
		mask |= 1 << 1 // $timeout
		opts.timeoutMs = uint64(max(timeout.Milliseconds(), 1))
	}
	if st := nextRequest(mask, &opts.timeoutMs, &p); st != statusOK {
		return Request{}, false, st.err("next_request")
	}
	r := Request{invalid, invalid}
	switch st := nextRequestWait(p, &r.req, &r.body); st {
	case statusOK:
		return r, true, nil
	case statusNone:
		return Request{}, false, nil
	default:
		return Request{}, false, st.err("next_request_wait")
	}
}

// Method appends the request method to buf.
func (r Request) Method(buf []byte) ([]byte, error) {
	return grow(buf, "method_get", func(p *byte, n uint32, nw *uint32) status { return methodGet(r.req, p, n, nw) })
}

// URI appends the request's full URI (scheme://host/path?query) to buf.
func (r Request) URI(buf []byte) ([]byte, error) {
	return grow(buf, "uri_get", func(p *byte, n uint32, nw *uint32) status { return uriGet(r.req, p, n, nw) })
}

// Header appends the first value of the named header to buf; false if the
// request has no such header. The buffer returned may have grown even
// when nothing was appended: keep it for the next call.
func (r Request) Header(name string, buf []byte) ([]byte, bool, error) {
	np, nl := strPtr(name)
	out, err := grow(buf, "header_value_get", func(p *byte, n uint32, nw *uint32) status {
		return headerValueGet(r.req, np, nl, p, n, nw)
	})
	if errors.Is(err, errNone) {
		return out, false, nil
	}
	return out, err == nil, err
}

// ClientIP is the address of the visitor.
func (r Request) ClientIP() (netip.Addr, error) {
	var b [16]byte
	var n uint32
	if st := downstreamClientIP(r.req, &b[0], &n); st != statusOK {
		return netip.Addr{}, st.err("downstream_client_ip_addr")
	}
	switch n {
	case 4:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case 16:
		return netip.AddrFrom16(b), nil
	}
	return netip.Addr{}, fmt.Errorf("downstream_client_ip_addr: %d-byte address", n)
}

// ReadBody appends the request body to buf, stopping after max+1 bytes so
// an oversized body is detected without reading all of it.
func (r Request) ReadBody(buf []byte, max int) ([]byte, error) {
	for len(buf) <= max {
		if cap(buf)-len(buf) < 4096 {
			buf = append(buf, make([]byte, 16<<10)...)[:len(buf)]
		}
		free := buf[len(buf):cap(buf)]
		var n uint32
		if st := bodyRead(r.body, &free[0], uint32(len(free)), &n); st != statusOK {
			return buf, st.err("body read")
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+int(n)]
	}
	return buf, nil
}

// Geo appends the platform's geolocation record for ip (JSON) to buf.
func Geo(ip netip.Addr, buf []byte) ([]byte, error) {
	a := ip.AsSlice()
	return grow(buf, "geo lookup", func(p *byte, n uint32, nw *uint32) status {
		return geoLookup(&a[0], uint32(len(a)), p, n, nw)
	})
}

// Send answers the downstream request with a complete response: status,
// headers in order, and body. The response and body are consumed.
func Send(statusCode int, header func(yield func(name, value string) bool), body []byte) error {
	var resp, b handle = invalid, invalid
	if st := respNew(&resp); st != statusOK {
		return st.err("resp new")
	}
	// A new response is 200 OK (as Fastly's and Viceroy's are): a pixel
	// answer needs no call to say so.
	if statusCode != 200 {
		if st := respStatusSet(resp, uint32(statusCode)); st != statusOK {
			return st.err("resp status_set")
		}
	}
	var err error
	header(func(name, value string) bool {
		np, nl := strPtr(name)
		vp, vl := strPtr(value)
		if st := respHeaderAppend(resp, np, nl, vp, vl); st != statusOK {
			err = st.err("resp header_append " + name)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	if st := bodyNew(&b); st != statusOK {
		return st.err("body new")
	}
	for len(body) > 0 {
		var n uint32
		if st := bodyWrite(b, &body[0], uint32(len(body)), 0, &n); st != statusOK {
			return st.err("body write")
		}
		body = body[n:]
	}
	if st := respSendDownstream(resp, b, 0); st != statusOK {
		return st.err("send_downstream")
	}
	return nil
}

var errNone = errors.New("none")

// grow implements the ABI's buffer protocol: a call that does not fit
// answers $buflen with the length it needs, and is repeated with that much
// room. $none means "no such value".
//
// The buffer returned has the room it grew to (also with errNone), so a
// caller that keeps it allocates only while its values keep getting
// longer.
func grow(buf []byte, call string, f func(p *byte, n uint32, nw *uint32) status) ([]byte, error) {
	buf = slices.Grow(buf, 256)
	for range 2 {
		free := buf[len(buf):cap(buf)]
		var n uint32
		switch st := f(&free[0], uint32(len(free)), &n); st {
		case statusOK:
			return buf[:len(buf)+int(n)], nil
		case statusNone:
			return buf, errNone
		case statusBufLen:
			buf = slices.Grow(buf, int(n))
		default:
			return buf, st.err(call)
		}
	}
	return buf, fmt.Errorf("%s: value kept growing", call)
}
