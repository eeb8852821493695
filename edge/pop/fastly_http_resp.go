package pop

// fastly_http_resp: responses, those a guest builds for the client and
// those received from backends. The header calls are fastly_http_req's
// (fastly_http_req.go) with the response handle lookup.
var fastlyHTTPResp = hostModule{name: "fastly_http_resp", funcs: []hostFunc{
	{"new", i32("resp_handle_out"), respNew},
	{"close", i32("h"), respClose},
	{"status_get", i32("h", "status_out"), respStatusGet},
	{"status_set", i32("h", "status"), respStatusSet},
	{"version_get", i32("h", "version_out"), respVersionGet},
	{"version_set", i32("h", "version"), respVersionSet},
	{"header_names_get", i32("h", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), headerNamesGet(respHeaders)},
	{"header_value_get", i32("h", "name_ptr", "name_len", "value", "value_max_len", "nwritten_out"), headerValueGet(respHeaders)},
	{"header_values_get", i32("h", "name_ptr", "name_len", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), headerValuesGet(respHeaders)},
	{"header_values_set", i32("h", "name_ptr", "name_len", "values_ptr", "values_len"), headerValuesSet(respHeaders)},
	{"header_insert", i32("h", "name_ptr", "name_len", "value_ptr", "value_len"), headerInsert(respHeaders, false)},
	{"header_append", i32("h", "name_ptr", "name_len", "value_ptr", "value_len"), headerInsert(respHeaders, true)},
	{"header_remove", i32("h", "name_ptr", "name_len"), headerRemove(respHeaders)},
	{"framing_headers_mode_set", i32("h", "mode"), respFramingMode},
	{"send_downstream", i32("h", "b", "streaming"), respSendDownstream},
	{"get_addr_dest_ip", i32("h", "addr_octets_out", "nwritten_out"), respAddrDestIP},
	{"get_addr_dest_port", i32("h", "port_out"), respAddrDestPort},
}}

func (inst *instance) getResp(h uint32) (*respObj, bool) { return lookup[*respObj](&inst.tab, h) }

// respNew implements fastly_http_resp.new(resp_handle_out): a new response,
// 200 over HTTP/1.1 with no headers.
//
// Status: $ok.
//
// Differs: no known difference.
func respNew(c *call) status {
	// Room for a typical answer's headers up front, in the object
	// itself, rather than growing the list at the first, second and
	// fourth header_append.
	r := &respObj{status: 200, version: httpV11}
	r.header = r.hbuf[:0]
	return c.putHandle(c.u32(0), c.inst.tab.add(r, c.inst.gen, false))
}

// respClose implements fastly_http_resp.close(h): releases a response
// handle.
//
// Status: $ok.
//
// Differs: no known difference.
func respClose(c *call) status {
	if _, ok := take[*respObj](&c.inst.tab, c.u32(0)); !ok {
		return stBadf
	}
	return stOK
}

// respStatusGet implements fastly_http_resp.status_get(h, status_out):
// writes the status code as a u16.
//
// Status: $ok.
//
// Differs: no known difference.
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

// respStatusSet implements fastly_http_resp.status_set(h, status).
//
// Status: $ok; $inval outside 100..999, the range of an HTTP status code.
//
// Differs: no known difference.
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

// respVersionGet implements fastly_http_resp.version_get(h, version_out):
// writes the response's $http_version.
//
// Status: $ok.
//
// Differs: no known difference.
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

// respVersionSet implements fastly_http_resp.version_set(h, version).
//
// Status: $ok; $inval for a value that is not an $http_version.
//
// Differs: the client gets the response in the protocol of its own
// connection whatever the version says.
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

// respFramingMode implements fastly_http_resp.framing_headers_mode_set(h,
// mode): as for requests (setFraming).
//
// Status: $ok; $inval for a mode other than 0 or 1.
//
// Differs: no known difference.
func respFramingMode(c *call) status {
	r, ok := c.inst.getResp(c.u32(0))
	if !ok {
		return stBadf
	}
	return setFraming(&r.manualFraming, c.u32(1))
}

// respAddrDestIP implements fastly_http_resp.get_addr_dest_ip(h,
// addr_octets_out, nwritten_out): the IP address a backend response came
// from, 4 or 16 octets (putIP).
//
// Status: $ok; $none for a response the guest built, or from a backend
// named by hostname rather than address.
//
// Differs: Fastly reports the address it connected to; this POP knows it
// only when the backend URL gives one.
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

// respAddrDestPort implements fastly_http_resp.get_addr_dest_port(h,
// port_out): the port a backend response came from, as a u16.
//
// Status: $ok; $none as for get_addr_dest_ip.
//
// Differs: as get_addr_dest_ip.
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

// respSendDownstream implements fastly_http_resp.send_downstream(h, b,
// streaming): hands the response to the client. Without streaming the
// body is complete and both handles are consumed. With streaming the body
// handle stays open for writing and the client receives what the guest
// writes as it writes it; the HTTP exchange ends when the guest closes the
// body. Of the informational responses only 103 Early Hints may be sent:
// it goes out ahead of the final one and consumes neither handle (fsthttp
// sends the final response with the same ones).
//
// Status: $ok; $inval for a streaming value other than 0 or 1, a body
// already streaming, or a 1xx status other than 103 (the client then gets
// a 500 if the guest sends nothing else); $error when no client is waiting
// or it already has its response.
//
// Differs: no known difference (Viceroys before 0.16.1 sent any 1xx).
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
	if inst.segOpen && inst.segAnswer < 0 {
		// One more clock reading, only while guest time is measured: where
		// the answer ends and the work after it (GuestSample) begins.
		inst.segAnswer = inst.guestUsed() - inst.segStart
	}
	return stOK
}
