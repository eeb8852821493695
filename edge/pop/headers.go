package pop

import (
	"bytes"
	"net/http"
	"net/textproto"
)

// headerList is an ordered header map: one field per distinct name (matched
// case-insensitively), values in insertion order. Names are reported to
// guests in lower case, as Fastly's hyper-based hosts do.
//
// Value slices may be shared with the net/http header they came from, so
// they are never appended to in place (see appendValue).
type headerList []hfield

type hfield struct {
	name string
	vals []string
}

func (h headerList) index(name []byte) int {
	for i := range h {
		if equalFold(name, h[i].name) {
			return i
		}
	}
	return -1
}

func (h headerList) indexString(name string) int {
	for i := range h {
		if equalFold(name, h[i].name) {
			return i
		}
	}
	return -1
}

// get returns the values of name (nil if absent).
func (h headerList) get(name string) []string {
	if i := h.indexString(name); i >= 0 {
		return h[i].vals
	}
	return nil
}

func (h *headerList) set(name string, vals []string) {
	if i := h.indexString(name); i >= 0 {
		(*h)[i].vals = vals
		return
	}
	*h = append(*h, hfield{name: name, vals: vals})
}

func (h *headerList) appendValue(name, v string) {
	if i := h.indexString(name); i >= 0 {
		old := (*h)[i].vals
		(*h)[i].vals = append(old[:len(old):len(old)], v)
		return
	}
	*h = append(*h, hfield{name: name, vals: []string{v}})
}

func (h *headerList) remove(name string) bool {
	i := h.indexString(name)
	if i < 0 {
		return false
	}
	*h = append((*h)[:i], (*h)[i+1:]...)
	return true
}

// fromHTTP converts a net/http header; the value slices are shared.
func fromHTTP(src http.Header) headerList {
	h := make(headerList, 0, len(src))
	for k, v := range src {
		h = append(h, hfield{name: k, vals: v})
	}
	return h
}

// toHTTP copies the fields into dst with canonical keys, skipping names for
// which skip returns true.
func (h headerList) toHTTP(dst http.Header, skip func(canonical string) bool) {
	for _, f := range h {
		if len(f.vals) == 0 {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(f.name)
		if skip != nil && skip(k) {
			continue
		}
		dst[k] = append(dst[k], f.vals...)
	}
}

func (h headerList) clone() headerList {
	out := make(headerList, len(h))
	for i, f := range h {
		out[i] = hfield{name: f.name, vals: append([]string(nil), f.vals...)}
	}
	return out
}

// equalFold compares ASCII header names case-insensitively.
func equalFold[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name []byte) bool {
	if len(name) == 0 || len(name) > maxHeaderNameLen {
		return false
	}
	for _, c := range name {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

const maxHeaderNameLen = 1<<16 - 1

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// validHeaderValue rejects control characters other than horizontal tab
// (what a header value may not contain on the wire).
func validHeaderValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// --- hostcall implementations shared by requests and responses ---

// headerHolder resolves a handle to the header list it owns.
type headerHolder func(c *call, h uint32) (*headerList, bool)

func reqHeaders(c *call, h uint32) (*headerList, bool) {
	r, ok := lookup[*reqObj](&c.inst.tab, h)
	if !ok {
		return nil, false
	}
	return &r.header, true
}

func respHeaders(c *call, h uint32) (*headerList, bool) {
	r, ok := lookup[*respObj](&c.inst.tab, h)
	if !ok {
		return nil, false
	}
	return &r.header, true
}

// writeMulti implements the multi-value cursor protocol used by
// header_names_get / header_values_get: starting at cursor, write as many
// complete NUL-terminated items as fit. If not even the first fits, report
// its needed size in nwritten with $buflen (the SDK retries with that size).
// ending_cursor is the index of the first unwritten item, or -1 when done.
func writeMulti(c *call, n int, item func(i int) string, lower bool, buf, bufLen, cursor, endOut, nwOut uint32) status {
	var written uint32
	i := int(cursor)
	for ; i < n; i++ {
		v := item(i)
		need := uint32(len(v)) + 1
		if written+need > bufLen {
			if written == 0 {
				if !c.putU32(nwOut, need) {
					return stInval
				}
				return stBufLen
			}
			break
		}
		dst, ok := c.bytes(buf+written, need)
		if !ok {
			return stInval
		}
		copy(dst, v)
		if lower {
			for j := 0; j < len(v); j++ {
				if b := dst[j]; 'A' <= b && b <= 'Z' {
					dst[j] = b + 'a' - 'A'
				}
			}
		}
		dst[len(v)] = 0
		written += need
	}
	end := int64(-1)
	if i < n {
		end = int64(i)
	}
	if !c.putU64(endOut, uint64(end)) || !c.putU32(nwOut, written) {
		return stInval
	}
	return stOK
}

// (h, buf, buf_len, cursor, ending_cursor_out, nwritten_out)
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

// headerAndName resolves what the lookup hostcalls share: the header list
// of the handle in argument 0 and the name in arguments 1-2.
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

// (h, name_ptr, name_len, value, value_max_len, nwritten_out)
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

// (h, name_ptr, name_len, buf, buf_len, cursor, ending_cursor_out, nwritten_out)
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

// (h, name_ptr, name_len, values_ptr, values_len): values NUL-separated.
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

// (h, name_ptr, name_len, value_ptr, value_len)
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
		if appendMode {
			hl.appendValue(string(name), string(val))
		} else {
			hl.set(string(name), []string{string(val)})
		}
		return stOK
	}
}

// (h, name_ptr, name_len): removing an absent header is $inval, as on Fastly.
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
