// Package interrupt instruments a WebAssembly module so that its host can
// stop it cheaply: every loop of every function begins by counting down
// a fuel global, and each time it runs out (every RefillEvery loop
// iterations) the guest leaves its compiled code for a moment (memory.grow
// by 0 pages, which wazero serves in Go) and reads a mutable i32 global
// the module exports under FlagExport, trapping (unreachable) when it is
// not zero. The host sets the flag from any goroutine and the guest stops
// within RefillEvery loop iterations.
//
// The regular visit to Go is needed as much as the flag: compiled code
// cannot be preempted by the Go scheduler, so a guest spinning without
// ever leaving it would hold up every stop-the-world phase of the host's
// garbage collector, and with it the whole process, including the timer
// that would set its flag.
//
// This is what wasmtime calls epoch interruption. wazero's own way to stop
// a running guest (RuntimeConfig.WithCloseOnContextDone) leaves the
// compiled code for Go at every loop iteration to ask whether the module
// was closed, which costs a guest most of its time in tight loops (a
// garbage collector's marking, string searches). Reading a global is one
// load and a branch.
//
// The instrumented module differs only in the code section, the global and
// export sections (one more of each) and in having no DWARF sections
// (their code offsets would no longer hold); function and global indices
// are unchanged. The module must have a memory. Only the instructions of WebAssembly 2.0 without SIMD
// (including bulk memory, reference types, sign extension, saturating
// conversions, multi-value and tail calls) are understood: Module reports
// ErrUnsupported for anything else, and the host should then stop the
// guest some other way. The binary format is that of the WebAssembly Core
// Specification 2.0, chapter 5.
package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// FlagExport is the export name of the flag global Module adds.
const FlagExport = "edgepixel_pop.interrupt"

// RefillEvery is how many loop iterations pass between two visits to the
// host and readings of the flag.
const RefillEvery = 10000

// ErrUnsupported is reported for a module using instructions or sections
// Module does not understand.
var ErrUnsupported = errors.New("interrupt: module uses instructions this instrumenter does not know")

const (
	secCustom = 0
	secImport = 2
	secGlobal = 6
	secExport = 7
	secCode   = 10
)

// order is where a section belongs among the known sections (custom
// sections, 0, may appear anywhere). The tag section (13) sits between
// memory and global, the data count section (12) between element and code.
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Module returns wasm with every loop checking the exported flag global.
func Module(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, errors.New("interrupt: not a WebAssembly 1.0 binary module")
	}
	var secs []section
	for r := (reader{b: wasm, off: 8}); r.off < len(r.b); {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("interrupt: reading sections: %w", r.err)
		}
		secs = append(secs, section{id, body})
	}
	// The flag's index comes after every imported and defined global.
	var globals uint32
	for _, s := range secs {
		switch s.id {
		case secImport:
			n, err := importedGlobals(s.body)
			if err != nil {
				return nil, err
			}
			globals += n
		case secGlobal:
			r := reader{b: s.body}
			globals += r.u32()
			if r.err != nil {
				return nil, fmt.Errorf("interrupt: global section: %w", r.err)
			}
		}
	}
	flag, fuel := globals, globals+1
	if !hasMemory(secs) {
		return nil, fmt.Errorf("%w (the module has no memory)", ErrUnsupported)
	}

	out := append([]byte(nil), wasm[:8]...)
	var haveGlobal, haveExport bool
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	// Missing global or export sections are added where they belong.
	addMissing := func(before byte) {
		if !haveGlobal && (before == 0 || order[before] > order[secGlobal]) {
			haveGlobal = true
			emit(secGlobal, appendVec(nil, 0, newGlobals))
		}
		if !haveExport && (before == 0 || order[before] > order[secExport]) {
			haveExport = true
			emit(secExport, appendVec(nil, 0, newExport(flag)))
		}
	}
	for _, s := range secs {
		if s.id != secCustom {
			addMissing(s.id)
		}
		switch s.id {
		case secCustom:
			r := reader{b: s.body}
			name := r.name()
			if r.err == nil && strings.HasPrefix(name, ".debug_") {
				continue // DWARF: its code offsets no longer hold
			}
			emit(s.id, s.body)
		case secGlobal:
			haveGlobal = true
			b, err := appendItem(s.body, newGlobals)
			if err != nil {
				return nil, err
			}
			emit(s.id, b)
		case secExport:
			haveExport = true
			b, err := appendItem(s.body, newExport(flag))
			if err != nil {
				return nil, err
			}
			emit(s.id, b)
		case secCode:
			b, err := instrumentCode(s.body, flag, fuel)
			if err != nil {
				return nil, err
			}
			emit(s.id, b)
		default:
			emit(s.id, s.body)
		}
	}
	addMissing(0)
	return out, nil
}

// newGlobals are the flag, (global (mut i32) (i32.const 0)), and the
// fuel, (global (mut i32) (i32.const 0)): two items of the global vector.
var newGlobals = []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B}

func newExport(idx uint32) []byte {
	b := binary.AppendUvarint(nil, uint64(len(FlagExport)))
	b = append(b, FlagExport...)
	b = append(b, 0x03) // a global
	return binary.AppendUvarint(b, uint64(idx))
}

// appendVec encodes a vector of n existing items (rest, already encoded)
// followed by item (the two globals count as two items).
func appendVec(rest []byte, n uint32, item []byte) []byte {
	added := uint64(1)
	if bytes.Equal(item, newGlobals) {
		added = 2
	}
	b := binary.AppendUvarint(nil, uint64(n)+added)
	b = append(b, rest...)
	return append(b, item...)
}

// appendItem adds item to the vector that is a section's body.
func appendItem(body, item []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("interrupt: %w", r.err)
	}
	return appendVec(body[r.off:], n, item), nil
}

// importedGlobals counts the globals among a module's imports.
func importedGlobals(body []byte) (uint32, error) {
	r := reader{b: body}
	var globals uint32
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
		case 0x01: // table: reference type, limits
			r.byte()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: value type, mutability
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("%w (import kind %#x)", ErrUnsupported, kind)
		}
	}
	if r.err != nil {
		return 0, fmt.Errorf("interrupt: import section: %w", r.err)
	}
	return globals, nil
}

// hasMemory reports whether the module defines or imports a memory.
func hasMemory(secs []section) bool {
	for _, s := range secs {
		switch s.id {
		case 5:
			r := reader{b: s.body}
			if r.u32() > 0 {
				return true
			}
		case secImport:
			r := reader{b: s.body}
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.name()
				r.name()
				switch r.byte() {
				case 0x00:
					r.u32()
				case 0x01:
					r.byte()
					r.limits()
				case 0x02:
					return true
				case 0x03:
					r.byte()
					r.byte()
				case 0x04:
					r.byte()
					r.u32()
				}
			}
		}
	}
	return false
}

// instrumentCode rewrites the code section: each body gets the check after
// every loop instruction:
//
//	global.get fuel  i32.eqz
//	if
//	  i32.const RefillEvery  global.set fuel
//	  i32.const 0  memory.grow  drop      ;; a visit to the host
//	  global.get flag  if unreachable end
//	else
//	  global.get fuel  i32.const 1  i32.sub  global.set fuel
//	end
func instrumentCode(body []byte, flag, fuel uint32) ([]byte, error) {
	g := func(b []byte, op byte, idx uint32) []byte { return binary.AppendUvarint(append(b, op), uint64(idx)) }
	check := g(nil, 0x23, fuel)
	check = append(check, 0x45, 0x04, 0x40, 0x41)
	check = appendSLEB(check, RefillEvery)
	check = g(check, 0x24, fuel)
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1A)
	check = g(check, 0x23, flag)
	check = append(check, 0x04, 0x40, 0x00, 0x0B, 0x05)
	check = g(check, 0x23, fuel)
	check = append(check, 0x41, 0x01, 0x6B)
	check = g(check, 0x24, fuel)
	check = append(check, 0x0B)

	r := reader{b: body}
	n := r.u32()
	out := binary.AppendUvarint(make([]byte, 0, len(body)+len(body)/8), uint64(n))
	var fn []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			break
		}
		var err error
		if fn, err = instrumentBody(fn[:0], code, check); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if r.err != nil {
		return nil, fmt.Errorf("interrupt: code section: %w", r.err)
	}
	if r.off != len(body) {
		return nil, errors.New("interrupt: code section: trailing bytes")
	}
	return out, nil
}

// instrumentBody appends the instrumented function body code to out.
// Instructions are copied unchanged; only their immediates are decoded, to
// find where the next instruction starts.
func instrumentBody(out, code, check []byte) ([]byte, error) {
	r := reader{b: code}
	for n := r.u32(); n > 0 && r.err == nil; n-- { // locals: count, type
		r.u32()
		r.byte()
	}
	copied := 0
	for r.err == nil && r.off < len(code) {
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x04: // block, if
			r.s33()
		case op == 0x03: // loop
			r.s33()
			out = append(out, code[copied:r.off]...)
			out = append(out, check...)
			copied = r.off
		case op <= 0x01 || op == 0x05 || op == 0x0B || op == 0x0F || op == 0x1A || op == 0x1B || op == 0xD1:
			// unreachable, nop, else, end, return, drop, select, ref.is_null
		case op == 0x0C || op == 0x0D || op == 0x10 || op == 0x12 || op == 0xD2:
			r.u32() // br, br_if, call, return_call, ref.func
		case op == 0x0E: // br_table
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.u32()
			r.u32()
		case op == 0x1C: // select t*
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.byte()
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3E: // loads and stores: memarg
			r.u32()
			r.u32()
		case op == 0x3F || op == 0x40: // memory.size, memory.grow
			r.byte()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			r.s64()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op >= 0x45 && op <= 0xC4: // numeric, no immediates
		case op == 0xD0: // ref.null t
			r.byte()
		case op == 0xFC:
			switch sub := r.u32(); {
			case sub <= 7: // saturating truncations
			case sub == 8: // memory.init data, mem
				r.u32()
				r.byte()
			case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
				r.u32() // data.drop, elem.drop, table.grow, table.size, table.fill
			case sub == 10: // memory.copy mem, mem
				r.byte()
				r.byte()
			case sub == 11: // memory.fill mem
				r.byte()
			case sub == 12 || sub == 14: // table.init, table.copy
				r.u32()
				r.u32()
			default:
				return nil, fmt.Errorf("%w (0xfc %d)", ErrUnsupported, sub)
			}
		default:
			return nil, fmt.Errorf("%w (opcode %#x)", ErrUnsupported, op)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("interrupt: %w", r.err)
	}
	return append(out, code[copied:]...), nil
}

// appendSLEB appends v in the signed LEB128 encoding of i32.const.
func appendSLEB(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// reader decodes the binary format's primitives; the first error sticks.
type reader struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end of module")

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = errShort
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || n > 5 || v > 1<<32-1 {
		r.err = errors.New("bad u32")
		return 0
	}
	r.off += n
	return uint32(v)
}

// s33 reads a block type (a value type or 0x40 as a one-byte negative
// number, else a type index); s64 an i32 or i64 constant. Only their length
// matters here.
func (r *reader) s33() { r.sleb(5) }
func (r *reader) s64() { r.sleb(10) }

func (r *reader) sleb(max int) {
	for i := 0; i < max; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	if r.err == nil {
		r.err = errors.New("bad signed integer")
	}
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}
