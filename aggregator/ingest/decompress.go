package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Content codings the handlers take. A body is compressed with at most one
// of them; "identity" is the same as none.
const (
	EncodingGzip = "gzip"
	EncodingZstd = "zstd"
)

// errTooLarge means a body decompressed to more than the limit.
var errTooLarge = errors.New("decompressed body over the limit")

// errUnsupportedEncoding means Content-Encoding names a coding we do not
// take.
var errUnsupportedEncoding = errors.New("unsupported Content-Encoding")

// parseEncoding returns the one coding of a Content-Encoding header value:
// "" for none or identity, EncodingGzip or EncodingZstd.
func parseEncoding(h string) (string, error) {
	var out string
	for _, c := range strings.Split(h, ",") {
		switch c = strings.ToLower(strings.TrimSpace(c)); c {
		case "", "identity":
		case "gzip", "x-gzip", "zstd":
			if out != "" { // stacked codings: nobody sends these to us
				return "", fmt.Errorf("%w: %q (at most one coding)", errUnsupportedEncoding, h)
			}
			out = strings.TrimPrefix(c, "x-")
		default:
			return "", fmt.Errorf("%w: %q (use gzip or zstd)", errUnsupportedEncoding, c)
		}
	}
	return out, nil
}

// zstd decoders are reused: building one allocates its tables. Concurrency
// 1 makes streaming decodes synchronous (no goroutines left behind by a
// pooled decoder), and the window bound caps what a frame header can make
// it allocate, whatever the frame claims.
var zstdPool = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
}}

var gzipPool sync.Pool // *gzip.Reader

// decompress decodes body with coding into out (coding "" is not for
// here: the body is used as it is). It never produces more than limit
// bytes: the output is read through a bounded reader into out, which
// grows only as output is produced, so a small body that expands
// enormously (a decompression bomb) costs at most limit bytes of memory
// and the work to produce them, and fails with errTooLarge.
func decompress(coding string, body []byte, limit int64, out *buffer) error {
	var r io.Reader
	switch coding {
	case EncodingGzip:
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(body))
		} else {
			err = zr.Reset(bytes.NewReader(body))
		}
		if err != nil {
			if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) {
				return err // its text says gzip already
			}
			return fmt.Errorf("gzip: %w", err)
		}
		defer gzipPool.Put(zr)
		r = zr
	case EncodingZstd:
		d := zstdPool.Get().(*zstd.Decoder)
		// A *bytes.Reader, not a *bytes.Buffer: given something with
		// Bytes(), Reset decodes the whole input at once (DecodeAll),
		// around the bounded reader below.
		if err := d.Reset(bytes.NewReader(body)); err != nil {
			zstdPool.Put(d)
			return fmt.Errorf("zstd: %w", err)
		}
		defer func() {
			d.Reset(nil) // drop the reference to body
			zstdPool.Put(d)
		}()
		r = d
	default:
		return fmt.Errorf("%w: %q", errUnsupportedEncoding, coding)
	}
	if err := out.readAll(r, limit); err != nil {
		if errors.Is(err, errTooLarge) || errors.Is(err, errOverloaded) {
			return err
		}
		return fmt.Errorf("%s: %w", coding, err)
	}
	return nil
}
