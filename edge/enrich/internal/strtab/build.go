package strtab

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NewSet builds a Set from key → value. The generator and tests use it;
// the modules only read sets the generator wrote out.
func NewSet(m map[string]uint16) Set {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := Set{Off: []uint32{0}}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		s.Off = append(s.Off, uint32(b.Len()))
		s.Val = append(s.Val, m[k])
	}
	s.Data = b.String()
	s.index()
	return s
}

// index fills s.Slot (see Set). It panics past 65,534 entries, which a
// uint16 slot cannot name: the generator's tables are far smaller.
func (s *Set) index() {
	n := s.Len()
	if n > 65534 {
		panic(fmt.Sprintf("strtab: %d entries, at most 65534", n))
	}
	size := 2
	for size < 2*n {
		size *= 2
	}
	s.Slot = make([]uint16, size)
	mask := uint32(size - 1)
	for i := range n {
		h := Hash(s.At(i)) & mask
		for s.Slot[h] != 0 {
			h = (h + 1) & mask
		}
		s.Slot[h] = uint16(i + 1)
	}
}

// Pattern is one literal for NewMatcher.
type Pattern struct {
	Text   string // at least 2 bytes
	Anchor bool   // matches only at the start
	Val    uint16
}

// NewMatcher builds a Matcher. Patterns shorter than 2 bytes are an
// error; duplicates keep the first.
func NewMatcher(pats []Pattern) (Matcher, error) {
	seen := map[Pattern]bool{}
	var ps []Pattern
	for _, p := range pats {
		if len(p.Text) < 2 {
			return Matcher{}, fmt.Errorf("strtab: pattern %q shorter than 2 bytes", p.Text)
		}
		k := Pattern{Text: p.Text, Anchor: p.Anchor}
		if !seen[k] {
			seen[k] = true
			ps = append(ps, p)
		}
	}
	slices.SortStableFunc(ps, func(a, b Pattern) int { return strings.Compare(a.Text, b.Text) })
	if len(ps) > 65535 {
		return Matcher{}, fmt.Errorf("strtab: %d patterns, at most 65535", len(ps))
	}
	m := Matcher{Bits: new([8192]byte), Bits2: new([8192]byte), Short: new([8192]byte), Off: []uint32{0}}
	var b strings.Builder
	for i, p := range ps {
		pair := uint16(p.Text[0])<<8 | uint16(p.Text[1])
		if len(m.Pair) == 0 || m.Pair[len(m.Pair)-1] != pair {
			m.Pair = append(m.Pair, pair)
			m.Start = append(m.Start, uint16(i))
			m.Bits[pair>>3] |= 1 << (pair & 7)
		}
		if len(p.Text) < 4 {
			m.Short[pair>>3] |= 1 << (pair & 7)
		} else {
			q := uint16(p.Text[2])<<8 | uint16(p.Text[3])
			m.Bits2[q>>3] |= 1 << (q & 7)
		}
		b.WriteString(p.Text)
		m.Off = append(m.Off, uint32(b.Len()))
		m.Anchor = append(m.Anchor, p.Anchor)
		m.Val = append(m.Val, p.Val)
	}
	m.Start = append(m.Start, uint16(len(ps)))
	m.Data = b.String()
	return m, nil
}

// GoSource returns Go source declaring var name = s (package strtab
// imported as strtab).
func (s *Set) GoSource(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "var %s = strtab.Set{\n\tData: %s,\n", name, quoteLong(s.Data))
	writeInts(&b, "Off", "uint32", s.Off)
	writeInts(&b, "Val", "uint16", s.Val)
	writeInts(&b, "Slot", "uint16", s.Slot)
	b.WriteString("}\n")
	return b.String()
}

// GoSource returns Go source declaring var name = m.
func (m *Matcher) GoSource(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "var %s = strtab.Matcher{\n", name)
	for _, bm := range []struct {
		field string
		bits  *[8192]byte
	}{{"Bits", m.Bits}, {"Bits2", m.Bits2}, {"Short", m.Short}} {
		fmt.Fprintf(&b, "\t%s: &[8192]byte{", bm.field)
		for i, v := range bm.bits {
			if v != 0 {
				fmt.Fprintf(&b, "%d: %d, ", i, v)
			}
		}
		b.WriteString("},\n")
	}
	writeInts(&b, "Pair", "uint16", m.Pair)
	writeInts(&b, "Start", "uint16", m.Start)
	fmt.Fprintf(&b, "\tData: %s,\n", quoteLong(m.Data))
	writeInts(&b, "Off", "uint32", m.Off)
	b.WriteString("\tAnchor: []bool{")
	for i, a := range m.Anchor {
		if i%16 == 0 {
			b.WriteString("\n\t\t")
		}
		fmt.Fprintf(&b, "%t, ", a)
	}
	b.WriteString("\n\t},\n")
	writeInts(&b, "Val", "uint16", m.Val)
	b.WriteString("}\n")
	return b.String()
}

// Uint32GoSource returns Go source declaring var name = strtab.Uint32Set
// of the sorted, deduplicated ns.
func Uint32GoSource(name string, ns []uint32) string {
	ns = slices.Clone(ns)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	var b strings.Builder
	fmt.Fprintf(&b, "var %s = strtab.Uint32Set{", name)
	for i, n := range ns {
		if i%12 == 0 {
			b.WriteString("\n\t")
		}
		fmt.Fprintf(&b, "%d, ", n)
	}
	b.WriteString("\n}\n")
	return b.String()
}

func writeInts[T uint16 | uint32](b *strings.Builder, field, typ string, vs []T) {
	fmt.Fprintf(b, "\t%s: []%s{", field, typ)
	for i, v := range vs {
		if i%16 == 0 {
			b.WriteString("\n\t\t")
		}
		fmt.Fprintf(b, "%d, ", v)
	}
	b.WriteString("\n\t},\n")
}

// quoteLong quotes s as a concatenation of string literals of about 100
// bytes, so generated files stay readable in a diff. The compiler joins
// them into one constant.
func quoteLong(s string) string {
	if len(s) <= 100 {
		return strconv.Quote(s)
	}
	var b strings.Builder
	b.WriteString("\"\" +")
	for len(s) > 0 {
		n := min(100, len(s))
		b.WriteString("\n\t\t")
		b.WriteString(strconv.Quote(s[:n]))
		s = s[n:]
		if len(s) > 0 {
			b.WriteString(" +")
		}
	}
	return b.String()
}
