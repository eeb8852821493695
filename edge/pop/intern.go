package pop

// strCache turns the header names and values a guest passes through
// header_insert and header_append into Go strings without allocating for
// the ones it passes again and again (a module answers every hit with the
// same few headers), and hands out one-value slices from a shared chunk.
// Each instance has its own, touched only on its goroutine.
type strCache struct {
	m    map[string]string
	vals []string // unused one-value slots; handed out front first
}

// Bounds of a strCache: longer strings are not kept, and a full cache is
// emptied (it refills with what the guest still uses), so a guest passing
// unique values pins at most strCacheEntries*strCacheMaxLen bytes.
const (
	strCacheMaxLen  = 128
	strCacheEntries = 256
	valChunk        = 32
)

// str returns b as a string, the same string as last time for bytes seen
// before.
func (c *strCache) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := c.m[string(b)]; ok { // a lookup by []byte key does not allocate
		return s
	}
	s := string(b)
	if len(b) <= strCacheMaxLen {
		if c.m == nil {
			c.m = make(map[string]string, strCacheEntries)
		} else if len(c.m) >= strCacheEntries {
			clear(c.m)
		}
		c.m[s] = s
	}
	return s
}

// one returns []string{v} with its capacity ending at v, so an append
// to it copies rather than writing into the next slot (headerList never
// appends in place: see appendValue). Slots are never reused: a chunk
// lives as long as any header holding one of its slots.
func (c *strCache) one(v string) []string {
	if len(c.vals) == 0 {
		c.vals = make([]string, valChunk)
	}
	s := c.vals[:1:1]
	s[0] = v
	c.vals = c.vals[1:]
	return s
}
