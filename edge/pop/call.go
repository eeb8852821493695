package pop

import (
	"net/netip"

	"github.com/tetratelabs/wazero/api"
)

// call is the view a hostcall implementation gets of one invocation: the
// calling instance, its linear memory and the raw argument stack. Every
// instance owns one call value that is reused for each hostcall (hostcalls of
// an instance run one at a time on its goroutine), so dispatch does not
// allocate.
//
// All pointer accessors are bounds-checked against guest memory and report
// failure instead of panicking: a guest passing a bad pointer gets $inval,
// never a host crash.
type call struct {
	inst  *instance
	mem   api.Memory
	stack []uint64
}

func (c *call) u32(i int) uint32 { return uint32(c.stack[i]) }
func (c *call) u64(i int) uint64 { return c.stack[i] }

// bytes returns a view of guest memory [ptr, ptr+n). The slice aliases
// guest memory: copy it before keeping it beyond the hostcall.
func (c *call) bytes(ptr, n uint32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	return c.mem.Read(ptr, n)
}

// argBytes is bytes for a (ptr, len) argument pair at stack positions i, i+1.
func (c *call) argBytes(i int) ([]byte, bool) {
	return c.bytes(c.u32(i), c.u32(i+1))
}

// argString copies a (ptr, len) argument pair into a Go string.
func (c *call) argString(i int) (string, bool) {
	b, ok := c.argBytes(i)
	if !ok {
		return "", false
	}
	return string(b), true
}

func (c *call) putU16(ptr uint32, v uint16) bool { return c.mem.WriteUint16Le(ptr, v) }
func (c *call) putU32(ptr uint32, v uint32) bool { return c.mem.WriteUint32Le(ptr, v) }
func (c *call) putU64(ptr uint32, v uint64) bool { return c.mem.WriteUint64Le(ptr, v) }

func (c *call) putBytes(ptr uint32, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	return c.mem.Write(ptr, b)
}

func (c *call) putString(ptr uint32, s string) bool {
	if len(s) == 0 {
		return true
	}
	dst, ok := c.mem.Read(ptr, uint32(len(s)))
	if !ok {
		return false
	}
	copy(dst, s)
	return true
}

// writeOut implements the common "(buf, buf_len, nwritten_out)" result
// protocol: if the value does not fit, the needed length goes to nwritten_out
// and the status is $buflen, which makes the SDK retry with a buffer of
// exactly that size.
func writeOut[T string | []byte](c *call, v T, buf, bufLen, nwrittenOut uint32) status {
	n := uint32(len(v))
	if n > bufLen {
		if !c.putU32(nwrittenOut, n) {
			return stInval
		}
		return stBufLen
	}
	dst, ok := c.bytes(buf, n)
	if !ok {
		return stInval
	}
	copy(dst, v)
	if !c.putU32(nwrittenOut, n) {
		return stInval
	}
	return stOK
}

// putHandle writes a freshly allocated handle to out; if the pointer is bad
// the handle is released again so a failing call leaks nothing.
func (c *call) putHandle(out, h uint32) status {
	if !c.putU32(out, h) {
		c.inst.tab.free(h)
		return stInval
	}
	return stOK
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

// putIP writes 4 octets for IPv4 (including v4-mapped) and 16 for IPv6.
func putIP(c *call, a netip.Addr, out, nwOut uint32) status {
	a = a.Unmap()
	v := a.As16()
	b := v[:]
	if a.Is4() {
		b = v[12:]
	}
	// Copied into a view of guest memory: passing b to Memory.Write, an
	// interface method, would move the array to the heap.
	dst, ok := c.bytes(out, uint32(len(b)))
	if !ok {
		return stInval
	}
	copy(dst, b)
	return c.putU32Status(nwOut, uint32(len(b)))
}

// putU32Status writes v to ptr: $ok, or $inval for a bad pointer.
func (c *call) putU32Status(ptr, v uint32) status {
	if !c.putU32(ptr, v) {
		return stInval
	}
	return stOK
}
