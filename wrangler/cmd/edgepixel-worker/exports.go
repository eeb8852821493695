//go:build wasip1

package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/wrangler/worker"
)

// The exports' memory protocol. The JavaScript asks ep_buffer for an input
// buffer of n bytes, writes into it, and calls an export with the lengths
// of what it wrote. An export's answer is at the address it returns: a
// little-endian uint32 length, then that many bytes, laid out as the
// export says. The input and output buffers are reused; the Go heap never
// moves, but the wasm memory may grow during any call, so the JavaScript
// takes a fresh view of it after each.
var (
	w   *worker.Worker
	in  []byte
	out []byte
	req worker.Request
)

//go:wasmexport ep_buffer
func epBuffer(n uint32) uint32 {
	if uint32(cap(in)) < n {
		in = make([]byte, n)
	}
	in = in[:n]
	if n == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&in[0])))
}

// ep_max_body is the most body bytes the worker reads of a request
// (pixel.MaxPostBody and one more, to tell an oversized body).
//
//go:wasmexport ep_max_body
func epMaxBody() uint32 { return pixel.MaxPostBody + 1 }

// ep_init reads the Worker's environment from the input buffer's first n
// bytes, "key\x00value\x00" for each string var and secret, and makes
// the worker. Configuration problems are written to stderr (the
// worker's console); the worker serves anyway.
//
//go:wasmexport ep_init
func epInit(n uint32) {
	env := map[string]string{}
	s := string(in[:n])
	for s != "" {
		var k, v string
		k, s, _ = strings.Cut(s, "\x00")
		v, s, _ = strings.Cut(s, "\x00")
		env[k] = v
	}
	c, err := worker.ParseConfig(func(k string) string { return env[k] })
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: worker config: %v\n", err)
	}
	switch {
	case c.IngestURL == "" && c.NDJSONURL == "":
		fmt.Fprintf(os.Stderr, "edgepixel: no %s: hits are answered but cannot be delivered (set it in wrangler.toml [vars])\n", worker.ConfigIngestURL)
	case len(c.Secret) == 0 && c.LogToken == "":
		fmt.Fprintf(os.Stderr, "edgepixel: no %s secret: hits are answered but cannot be delivered (wrangler secret put %s)\n", worker.ConfigSecret, worker.ConfigSecret)
	}
	w = worker.New(c)
}

// ep_serve serves the request whose block (worker.ParseRequest) is the
// input buffer's first textLen bytes and whose body the next bodyLen.
// Answer: status, delivery handle (0: none), header bytes, body bytes
// (uint32 each), the headers as "name: value\n" lines, the body.
//
//go:wasmexport ep_serve
func epServe(textLen, bodyLen uint32) uint32 {
	if err := worker.ParseRequest(string(in[:textLen]), in[textLen:textLen+bodyLen], &req); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
		return answer(500, 0, nil, nil)
	}
	resp, h := w.Serve(&req, time.Now())
	req = worker.Request{}
	return answer(uint32(resp.Status), h, resp.Header, resp.Body)
}

// ep_next advances delivery h after outcome (worker.Start, Delivered,
// Failed). Answer: empty when the delivery has ended, else retry (1: the
// same bytes may be sent again), header bytes, body bytes (uint32 each),
// the URL and the headers as lines, the body.
//
//go:wasmexport ep_next
func epNext(h, outcome uint32) uint32 {
	d, err := w.Next(h, int(outcome))
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
	}
	if d == nil {
		out = append(out[:0], 0, 0, 0, 0)
		return uint32(uintptr(unsafe.Pointer(&out[0])))
	}
	retry := uint32(0)
	if d.Retry {
		retry = 1
	}
	return answer(retry, 0, append([]pixel.Field{{Name: d.URL}}, d.Header...), d.Body)
}

// answer lays out two words, the header lines and the body, after the
// length word. A field with an empty value is written as a bare line
// (the URL of ep_next).
func answer(a, b uint32, hdr []pixel.Field, body []byte) uint32 {
	out = append(out[:0], make([]byte, 20)...)
	for _, f := range hdr {
		out = append(out, f.Name...)
		if f.Value != "" {
			out = append(out, ": "...)
			out = append(out, f.Value...)
		}
		out = append(out, '\n')
	}
	nh := len(out) - 20
	out = append(out, body...)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)-4))
	binary.LittleEndian.PutUint32(out[4:], a)
	binary.LittleEndian.PutUint32(out[8:], b)
	binary.LittleEndian.PutUint32(out[12:], uint32(nh))
	binary.LittleEndian.PutUint32(out[16:], uint32(len(body)))
	return uint32(uintptr(unsafe.Pointer(&out[0])))
}
