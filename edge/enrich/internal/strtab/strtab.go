// Package strtab holds the lookup structures the enrichment packages'
// generated tables are made of: a hashed set of strings and a multi-pattern
// substring matcher. Both are plain arrays and one string, so a table is
// laid out in the module's data section at compile time (by the gc compiler
// and by TinyGo alike) and costs nothing when an instance starts: no maps,
// no pointers for the garbage collector to scan, no init functions.
//
// The tables are written by edge/enrich/internal/gen; nothing here allocates.
package strtab

import "strings"

// Set is a list of distinct strings, each with a small value, indexed by
// hash. Entry i is Data[Off[i]:Off[i+1]] and Val[i] is its value (for
// example an index into a list of names); entries are in byte order, so
// that a generated table reads well in a diff.
//
// Slot is an open-addressing hash table of the entries: its length is a
// power of two, at least twice the entries, and slot Hash(e) mod len
// (probing on linearly past occupied slots) holds i+1 for entry i, 0 for
// none. A lookup costs a hash of the key and about one comparison, where
// bisecting the public suffix list took fourteen.
type Set struct {
	Data string
	Off  []uint32
	Val  []uint16
	Slot []uint16
}

// Len returns the number of entries.
func (s *Set) Len() int { return len(s.Off) - 1 }

// At returns entry i.
func (s *Set) At(i int) string { return s.Data[s.Off[i]:s.Off[i+1]] }

// Hash is the 32-bit FNV-1a hash of s, the Slot index's.
func Hash(s string) uint32 { return hashOn(fnvOffset, s) }

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// hashOn continues FNV-1a hash h over s, so the hash of a+b is
// hashOn(Hash(a), b).
func hashOn(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= fnvPrime
	}
	return h
}

// Lookup returns the value of key and whether key is in the set.
func (s *Set) Lookup(key string) (uint16, bool) {
	return s.lookupJoin(key, "")
}

// LookupSuffix looks host up, then each of its parent domains (host less
// its leftmost labels, one at a time) until one is in the set: the entry
// "example.com" covers "www.example.com" and "a.b.example.com". It returns
// the value and the matched entry, or ok false.
func (s *Set) LookupSuffix(host string) (val uint16, entry string, ok bool) {
	for h := host; h != ""; {
		if v, found := s.Lookup(h); found {
			return v, h, true
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	return 0, "", false
}

// Uint32Set is a sorted list of distinct numbers (ASNs).
type Uint32Set []uint32

// Contains reports whether n is in the set.
func (s Uint32Set) Contains(n uint32) bool {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case s[m] == n:
			return true
		case s[m] < n:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// Matcher finds which of many literal patterns (each at least 2 bytes)
// occur in a string, case-sensitively. Patterns are sorted by their first
// two bytes; Pair lists the distinct two-byte prefixes (big-endian) and
// Start[j] is the index of the first pattern whose prefix is Pair[j]
// (Start has one more entry, the pattern count). Bits is a bitmap of the
// prefixes (bit p of the 65536 set when a pattern begins with p) and Bits2
// the same of the patterns' third and fourth bytes (Short marks the
// prefixes of patterns shorter than 4 bytes, which have none), so that
// nearly every position of a string is passed over with two loads.
//
// Pattern i is Data[Off[i]:Off[i+1]]; Anchor[i] reports whether it only
// matches at the start of the string; Val[i] is its value.
type Matcher struct {
	Bits   *[8192]byte
	Bits2  *[8192]byte
	Short  *[8192]byte
	Pair   []uint16
	Start  []uint16
	Data   string
	Off    []uint32
	Anchor []bool
	Val    []uint16
}

// Pattern returns pattern i.
func (m *Matcher) Pattern(i int) string { return m.Data[m.Off[i]:m.Off[i+1]] }

// Find returns the index of a pattern that occurs in s: of those that
// begin at the leftmost position where any does, the longest. ok is false
// when none occurs.
func (m *Matcher) Find(s string) (idx int, ok bool) {
	for i := 0; i+1 < len(s); i++ {
		p := uint16(s[i])<<8 | uint16(s[i+1])
		if m.Bits[p>>3]&(1<<(p&7)) == 0 {
			continue
		}
		if m.Short[p>>3]&(1<<(p&7)) == 0 {
			if i+3 >= len(s) {
				continue
			}
			if q := uint16(s[i+2])<<8 | uint16(s[i+3]); m.Bits2[q>>3]&(1<<(q&7)) == 0 {
				continue
			}
		}
		j := m.pairIndex(p)
		if j < 0 {
			continue
		}
		best, bestLen := -1, 0
		rest := s[i:]
		for k := int(m.Start[j]); k < int(m.Start[j+1]); k++ {
			pat := m.Pattern(k)
			// The group's patterns share their first two bytes: most fail
			// on the third, checked here before a call to compare them.
			if len(pat) <= bestLen || len(pat) > len(rest) || len(pat) > 2 && pat[2] != rest[2] {
				continue
			}
			if rest[:len(pat)] == pat && (i == 0 || !m.Anchor[k]) {
				best, bestLen = k, len(pat)
			}
		}
		if best >= 0 {
			return best, true
		}
	}
	return -1, false
}

func (m *Matcher) pairIndex(p uint16) int {
	lo, hi := 0, len(m.Pair)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch {
		case m.Pair[mid] == p:
			return mid
		case m.Pair[mid] < p:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return -1
}

// LookupSuffixJoin is LookupSuffix of the concatenation a+b, without
// making it.
func (s *Set) LookupSuffixJoin(a, b string) (uint16, bool) {
	for {
		if v, ok := s.lookupJoin(a, b); ok {
			return v, true
		}
		i := strings.IndexByte(a, '.')
		if i < 0 {
			return 0, false
		}
		a = a[i+1:]
	}
}

// lookupJoin is Lookup of a+b.
func (s *Set) lookupJoin(a, b string) (uint16, bool) {
	if len(s.Slot) == 0 {
		return 0, false
	}
	mask := uint32(len(s.Slot) - 1)
	n := uint32(len(a) + len(b))
	for h := hashOn(hashOn(fnvOffset, a), b) & mask; ; h = (h + 1) & mask {
		e := s.Slot[h]
		if e == 0 {
			return 0, false
		}
		i := int(e) - 1
		if off := s.Off[i]; s.Off[i+1]-off == n && s.Data[off:off+uint32(len(a))] == a && s.Data[off+uint32(len(a)):s.Off[i+1]] == b {
			return s.Val[i], true
		}
	}
}
