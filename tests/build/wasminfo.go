package build

import (
	"bytes"
	"errors"
	"fmt"
)

// Producers reads a WebAssembly module's "producers" custom section: for
// each field ("language", "processed-by", "sdk") the tools named in it and
// their versions. The format is the tool-conventions one
// (github.com/WebAssembly/tool-conventions, ProducersSection.md); both Go
// and TinyGo write it. A module without the section has none.
func Producers(wasm []byte) (map[string]map[string]string, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, errors.New("not a WebAssembly module")
	}
	d := decoder{b: wasm[8:]}
	for len(d.b) > 0 {
		id := d.byte()
		body := decoder{b: d.bytes(int(d.uleb()))}
		if d.err != nil {
			return nil, d.err
		}
		if id != 0 || body.name() != "producers" {
			continue
		}
		out := map[string]map[string]string{}
		for n := body.uleb(); n > 0 && body.err == nil; n-- {
			field := body.name()
			tools := map[string]string{}
			for m := body.uleb(); m > 0 && body.err == nil; m-- {
				tool := body.name()
				tools[tool] = body.name()
			}
			out[field] = tools
		}
		return out, body.err
	}
	return nil, nil
}

// Identify tells which toolchain built a module, from its producers
// section: TinyGo names itself under processed-by, Go names "Go" as the
// language.
func Identify(wasm []byte) (Toolchain, error) {
	p, err := Producers(wasm)
	if err != nil {
		return "", err
	}
	switch {
	case p["processed-by"]["TinyGo"] != "":
		return TinyGo, nil
	case p["language"]["Go"] != "":
		return Go, nil
	}
	return "", fmt.Errorf("no toolchain this package knows in the producers section %v", p)
}

// decoder reads the module's LEB128 numbers and length-prefixed bytes;
// the first error sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("truncated WebAssembly module")
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uleb() uint64 {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c := d.byte()
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.fail()
	return 0
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) name() string { return string(d.bytes(int(d.uleb()))) }
