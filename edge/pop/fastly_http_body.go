package pop

// fastly_http_body: bodies of requests and responses (body.go) and their
// trailers (trailers.go).
var fastlyHTTPBody = hostModule{name: "fastly_http_body", funcs: []hostFunc{
	{"new", i32("body_handle_out"), bodyNew},
	{"read", i32("h", "buf", "buf_len", "nread_out"), bodyRead},
	{"write", i32("h", "buf", "buf_len", "end", "nwritten_out"), bodyWrite},
	{"append", i32("dest", "src"), bodyAppend},
	{"close", i32("h"), bodyEnd(nil)},
	{"abandon", i32("h"), bodyEnd(errAbandoned)},
	{"known_length", i32("h", "length_out"), bodyKnownLength},
	{"trailer_append", i32("h", "name_ptr", "name_len", "value_ptr", "value_len"), bodyTrailerAppend},
	{"trailer_names_get", i32("h", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), bodyTrailerNamesGet},
	{"trailer_value_get", i32("h", "name_ptr", "name_len", "value", "value_max_len", "nwritten_out"), bodyTrailerValueGet},
	{"trailer_values_get", i32("h", "name_ptr", "name_len", "buf", "buf_len", "cursor", "ending_cursor_out", "nwritten_out"), bodyTrailerValuesGet},
}}

func (inst *instance) getBody(h uint32) (*body, bool) { return lookup[*body](&inst.tab, h) }

// bodyNew implements fastly_http_body.new(body_handle_out): a new, empty
// body.
//
// Status: $ok.
//
// Differs: no known difference.
func bodyNew(c *call) status {
	h := c.inst.tab.add(newBody(), c.inst.gen, false)
	return c.putHandle(c.u32(0), h)
}

// bodyRead implements fastly_http_body.read(h, buf, buf_len, nread_out):
// reads up to buf_len bytes from the front of the body, blocking on a
// network body (the client's, a backend response's) until some arrive.
// nread_out 0 means the body has ended; its trailers are then available.
//
// Status: $ok; $inval for a streaming body, which the guest may only
// write; $error when reading from the network fails.
//
// Differs: no known difference.
func bodyRead(c *call) status {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return stBadf
	}
	if b.streaming {
		return stInval
	}
	dst, ok := c.bytes(c.u32(1), c.u32(2))
	if !ok {
		return stInval
	}
	n, err := b.read(dst)
	if err != nil {
		c.inst.s.log.Debug("body read failed", "err", err)
		return stError
	}
	if !c.putU32(c.u32(3), uint32(n)) {
		return stInval
	}
	return stOK
}

// bodyWrite implements fastly_http_body.write(h, buf, buf_len, end,
// nwritten_out): adds the bytes at the back (end 0) or the front (end 1)
// of the body, all of them. On a streaming body the write blocks while
// the consumer (client or backend) is 256 KiB behind (maxStreamBuffer).
//
// Status: $ok; $inval for another end, or the front of a streaming body;
// $error when the instance is terminated while the write waits.
//
// Differs: no known difference. Bytes written after the consumer went
// away are discarded and still reported written.
func bodyWrite(c *call) status {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return stBadf
	}
	p, ok := c.bytes(c.u32(1), c.u32(2))
	if !ok {
		return stInval
	}
	end := c.u32(3)
	if end > 1 || (end == 1 && b.streaming) {
		return stInval
	}
	if err := b.write(c.inst.ctx, p, end == 1); err != nil {
		return stError
	}
	if !c.putU32(c.u32(4), uint32(len(p))) {
		return stInval
	}
	return stOK
}

// bodyAppend implements fastly_http_body.append(dest, src): moves src's
// content and trailers to the back of dest and consumes src. Content that
// is still a network reader is moved as a reader, so passing a backend
// response through to the client never copies it into guest memory.
//
// Status: $ok; $inval if dest and src are the same body or src is
// streaming.
//
// Differs: no known difference.
func bodyAppend(c *call) status {
	dst, ok1 := c.inst.getBody(c.u32(0))
	src, ok2 := c.inst.getBody(c.u32(1))
	if !ok1 || !ok2 {
		return stBadf
	}
	if dst == src || src.streaming {
		return stInval
	}
	c.inst.tab.free(c.u32(1))
	dst.appendBody(src)
	return stOK
}

// bodyEnd implements fastly_http_body.close(h) and abandon(h): ends a
// streaming body (close cleanly, abandon with an error, so the consumer
// sees the body incomplete and the client's exchange is aborted), or
// releases any other body. The handle is consumed.
//
// Status: $ok.
//
// Differs: no known difference.
func bodyEnd(err error) hostFn {
	return func(c *call) status {
		b, ok := take[*body](&c.inst.tab, c.u32(0))
		if !ok {
			return stBadf
		}
		if b.streaming {
			b.finish(err)
		} else {
			b.release()
		}
		return stOK
	}
}

// bodyKnownLength implements fastly_http_body.known_length(h, length_out):
// the body's total length as a u64, when it is determined: every part is
// bytes or a reader of known length and, for a streaming body, the guest
// has closed it.
//
// Status: $ok; $none when the length is not known.
//
// Differs: no known difference.
func bodyKnownLength(c *call) status {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return stBadf
	}
	n, ok := b.knownLength()
	if !ok {
		return stNone
	}
	if !c.putU64(c.u32(1), uint64(n)) {
		return stInval
	}
	return stOK
}

// trailerBody resolves the body handle of a trailer getter: $badf for a
// bad handle, $inval for a streaming body, $again until the body has been
// read to its end.
func trailerBody(c *call) (*body, status) {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return nil, stBadf
	}
	b.mu.Lock()
	streaming, ready := b.streaming, b.trailersReady
	b.mu.Unlock()
	if streaming {
		return nil, stInval
	}
	if !ready {
		return nil, stAgain
	}
	return b, stOK
}

// bodyTrailerAppend implements fastly_http_body.trailer_append(h,
// name_ptr, name_len, value_ptr, value_len): adds a trailer, on any body,
// streaming ones included (that is how a guest ends a streamed response
// or backend request with trailers). Trailers travel with the body: a
// body with trailers goes out chunked.
//
// Status: $ok; $inval for a name that is not a token or a value with a
// control character.
//
// Differs: no known difference.
func bodyTrailerAppend(c *call) status {
	b, ok := c.inst.getBody(c.u32(0))
	if !ok {
		return stBadf
	}
	name, ok1 := c.argBytes(1)
	val, ok2 := c.argBytes(3)
	if !ok1 || !ok2 || !validHeaderName(name) || !validHeaderValue(val) {
		return stInval
	}
	b.mu.Lock()
	b.trailers.appendValue(string(name), string(val))
	b.mu.Unlock()
	return stOK
}

// bodyTrailerNamesGet implements fastly_http_body.trailer_names_get(h, buf,
// buf_len, cursor, ending_cursor_out, nwritten_out): the trailer names,
// lower case, as header_names_get.
//
// Status: $ok; $again until the body has been read to its end (trailers
// come after the content); $inval for a streaming body; $buflen as
// header_names_get.
//
// Differs: no known difference; the rules are Viceroy's.
func bodyTrailerNamesGet(c *call) status {
	b, st := trailerBody(c)
	if st != stOK {
		return st
	}
	t := b.trailerSnapshot()
	return writeMulti(c, len(t), func(i int) string { return t[i].name }, true,
		c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5))
}

// trailerAndName is trailerBody plus the name in arguments 1-2.
func trailerAndName(c *call) (headerList, []byte, status) {
	b, st := trailerBody(c)
	if st != stOK {
		return nil, nil, st
	}
	name, ok := c.argBytes(1)
	if !ok || len(name) > maxHeaderNameLen {
		return nil, nil, stInval
	}
	return b.trailerSnapshot(), name, stOK
}

// bodyTrailerValueGet implements fastly_http_body.trailer_value_get(h,
// name_ptr, name_len, value, value_max_len, nwritten_out): the first value
// of the named trailer, as header_value_get.
//
// Status: $ok; $none if absent; $again and $inval as trailer_names_get;
// $buflen as header_value_get.
//
// Differs: no known difference; the rules are Viceroy's.
func bodyTrailerValueGet(c *call) status {
	t, name, st := trailerAndName(c)
	if st != stOK {
		return st
	}
	i := t.index(name)
	if i < 0 || len(t[i].vals) == 0 {
		return stNone
	}
	return writeOut(c, t[i].vals[0], c.u32(3), c.u32(4), c.u32(5))
}

// bodyTrailerValuesGet implements fastly_http_body.trailer_values_get(h,
// name_ptr, name_len, buf, buf_len, cursor, ending_cursor_out,
// nwritten_out): the named trailer's values, as header_values_get.
//
// Status: $ok; $again and $inval as trailer_names_get; $buflen as
// header_values_get.
//
// Differs: no known difference; the rules are Viceroy's.
func bodyTrailerValuesGet(c *call) status {
	t, name, st := trailerAndName(c)
	if st != stOK {
		return st
	}
	var vals []string
	if i := t.index(name); i >= 0 {
		vals = t[i].vals
	}
	return writeMulti(c, len(vals), func(i int) string { return vals[i] }, false,
		c.u32(3), c.u32(4), c.u32(5), c.u32(6), c.u32(7))
}
