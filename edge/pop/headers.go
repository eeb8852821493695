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
		if dst[k] == nil {
			// The list's values are done with (the response was sent),
			// so they are shared rather than copied; capped so that an
			// append to dst[k] cannot write into them.
			dst[k] = f.vals[:len(f.vals):len(f.vals)]
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
