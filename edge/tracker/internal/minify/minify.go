// Package minify turns s.js, the tracker's commented source, into what
// the edge serves: the script minified (github.com/tdewolff/minify's
// JavaScript minifier: comments and spaces go, local names shorten) under
// a one-line header that names the source, and that gzip-compressed. The
// comments say why the script does what it does; a page should not
// download them.
package minify

import (
	"bytes"
	"compress/gzip"
	"fmt"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"
)

// Header opens the served script: where its commented source is.
const Header = "/* edgepixel tracker, minified from edge/tracker/s.js (github.com/edgepixel/edgepixel), which says how to use it */\n"

// Script returns src (JavaScript) minified, under Header, ending in a
// newline. Errors are the minifier's parse errors.
func Script(src []byte) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString(Header)
	if err := js.Minify(minify.New(), &out, bytes.NewReader(src), nil); err != nil {
		return nil, fmt.Errorf("minifying s.js: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Gzip returns b gzip-compressed at the best compression, with no name
// or time in its header, so the same script always gives the same bytes
// with the same Go release.
func Gzip(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression) // the level is valid
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}
