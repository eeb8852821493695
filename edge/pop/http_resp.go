package pop

import (
	"net/netip"
)

// respObj is the object behind a response handle: one the guest builds for
// the client, or one received from a backend.
type respObj struct {
	status        int
	version       uint32
	header        headerList
	manualFraming bool
	// remote is the backend address a received response came from.
	remote netip.AddrPort
}

func (inst *instance) getResp(h uint32) (*respObj, bool) { return lookup[*respObj](&inst.tab, h) }

// new(resp_out)
func respNew(c *call) status {
	r := &respObj{status: 200, version: httpV11}
	return c.putHandle(c.u32(0), c.inst.tab.add(r, c.inst.gen, false))
}

// close(h)
func respClose(c *call) status {
	if _, ok := take[*respObj](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	return stOK
}

// status_get(h, status_out u16)
func respStatusGet(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	if !c.putU16(c.u32(1), uint16(r.status)) {
		return stInval
	}
	return stOK
}

// status_set(h, status): 100..999 like an HTTP status code.
func respStatusSet(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	s := c.u32(1)
	if s < 100 || s > 999 {
		return stInval
	}
	r.status = int(s)
	return stOK
}

// version_get(h, version_out)
func respVersionGet(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	if !c.putU32(c.u32(1), r.version) {
		return stInval
	}
	return stOK
}

// version_set(h, version)
func respVersionSet(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	if v := c.u32(1); v <= httpV3 {
		r.version = v
		return stOK
	}
	return stInval
}

// framing_headers_mode_set(h, mode)
func respFramingMode(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	return setFraming(&r.manualFraming, c.u32(1))
}

// get_addr_dest_ip(h, addr_out[16], nwritten_out)
func respAddrDestIP(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	if !r.remote.IsValid() {
		return stNone
	}
	return putIP(c, r.remote.Addr(), c.u32(1), c.u32(2))
}

// get_addr_dest_port(h, port_out u16)
func respAddrDestPort(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	if !r.remote.IsValid() {
		return stNone
	}
	if !c.putU16(c.u32(1), r.remote.Port()) {
		return stInval
	}
	return stOK
}

// putIP writes 4 octets for IPv4 (including v4-mapped) and 16 for IPv6.
func putIP(c *call, a netip.Addr, out, nwOut uint32) status {
	a = a.Unmap()
	var b []byte
	if a.Is4() {
		v := a.As4()
		b = v[:]
	} else {
		v := a.As16()
		b = v[:]
	}
	if !c.putBytes(out, b) || !c.putU32(nwOut, uint32(len(b))) {
		return stInval
	}
	return stOK
}

// send_downstream(resp, body, streaming): hand the response to the client.
// With streaming the body handle stays open for writing and the client
// receives what the guest writes as it writes it; the HTTP exchange ends
// when the guest closes the body. Without streaming the body is complete
// and consumed.
func respSendDownstream(c *call) status {
	inst := c.inst
	rh, bh, streaming := c.u32(0), c.u32(1), c.u32(2)
	r, ok1 := inst.getResp(rh)
	b, ok2 := inst.getBody(bh)
	if !ok1 || !ok2 {
		return stBadf
	}
	if streaming > 1 || b.streaming {
		return stInval
	}
	ds := inst.cur
	if ds == nil || ds.responded {
		// No client is waiting, or it already has its response.
		return stError
	}
	out := outcome{status: r.status, header: r.header, manual: r.manualFraming, body: b}
	if r.status < 200 {
		// Of the informational responses only 103 Early Hints may be
		// sent; any other 1xx is $inval, and the client gets a 500 if
		// the guest sends nothing else (Fastly's behaviour, and
		// Viceroy's since 0.16.1).
		if r.status != 103 { // Early Hints
			return stInval
		}
		// Early Hints precede the real response. fsthttp sends the final
		// response with the same handles, so neither is consumed, and
		// the header is copied.
		out.header, out.body = r.header.clone(), nil
		ds.send(out)
		return stOK
	}
	inst.tab.free(rh)
	ds.responded = true
	if streaming == 1 {
		b.makeStreaming()
		ds.stream = b
	} else {
		inst.tab.free(bh)
		b.finish(nil)
	}
	ds.send(out)
	return stOK
}

// setFraming applies framing_headers_mode_set's mode, shared by requests
// and responses: 0 lets the host derive Content-Length/Transfer-Encoding,
// 1 sends the guest's own.
func setFraming(manual *bool, mode uint32) status {
	if mode > 1 {
		return stInval
	}
	*manual = mode == 1
	return stOK
}
