package pop

import (
	"net/url"
)

// reqObj is the object behind a request handle: the client request of the
// current execution, or one the guest builds to send to a backend.
type reqObj struct {
	method  string
	uri     string
	version uint32
	header  headerList
	// manualFraming: the guest's Content-Length / Transfer-Encoding
	// headers are used as given instead of being derived from the body.
	manualFraming bool
	autoGzip      bool
	// ds is set on the client request of a downstream execution; the
	// downstream_* metadata hostcalls require it.
	ds *downstream
}

// HTTP versions ($http_version).
const (
	httpV09 = 0
	httpV10 = 1
	httpV11 = 2
	httpV2  = 3
	httpV3  = 4
)

func versionOf(major, minor int) uint32 {
	switch {
	case major == 0:
		return httpV09
	case major == 1 && minor == 0:
		return httpV10
	case major == 2:
		return httpV2
	case major == 3:
		return httpV3
	}
	return httpV11
}

func (inst *instance) getReq(h uint32) (*reqObj, bool) { return lookup[*reqObj](&inst.tab, h) }

// new(req_out)
func reqNew(c *call) status {
	r := &reqObj{method: "GET", uri: "/", version: httpV11}
	return c.putHandle(c.u32(0), c.inst.tab.add(r, c.inst.gen, false))
}

// close(h)
func reqClose(c *call) status {
	if _, ok := take[*reqObj](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	return stOK
}

// method_get(h, buf, buf_len, nwritten_out)
func reqMethodGet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, r.method, c.u32(1), c.u32(2), c.u32(3))
}

// method_set(h, ptr, len)
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

// uri_get(h, buf, buf_len, nwritten_out)
func reqURIGet(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, r.uri, c.u32(1), c.u32(2), c.u32(3))
}

// uri_set(h, ptr, len): a URI over Fastly's URL limit could never be sent,
// so it is refused here rather than at send time.
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

// version_get(h, version_out)
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

// version_set(h, version)
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

// cache_override_set(h, tag, ttl, swr) and cache_override_v2_set(..., sk_ptr,
// sk_len): the local POP has no cache, so overrides are accepted and have
// no effect (as in Viceroy).
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

// framing_headers_mode_set(h, mode): 0 automatic, 1 manual.
func reqFramingMode(c *call) status {
	r, ok := c.inst.getReq(c.u32(0))
	if !ok {
		return stBadf
	}
	return setFraming(&r.manualFraming, c.u32(1))
}

// auto_decompress_response_set(h, encodings): bit 0 = gzip.
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
