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
	"strconv"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Header opens the served script: where its commented source is.
const Header = "/* edgepixel tracker, minified from edge/tracker/s.js (github.com/edgepixel/edgepixel), which says how to use it */\n"

// Limits is what s.js names and the edge defines: each name in the
// source is replaced by its value before minifying, so that the script
// and the edge cannot disagree.
var Limits = map[string]int{
	"MAX_PROPS_LEN": event.MaxPropsLen, // props' size, in UTF-8 bytes
}

// Script returns src (JavaScript) with Limits filled in, minified, under
// Header, ending in a newline. Errors are a limit the source does not
// name and the minifier's parse errors.
func Script(src []byte) ([]byte, error) {
	for name, v := range Limits {
		if !bytes.Contains(src, []byte(name)) {
			return nil, fmt.Errorf("s.js does not name %s", name)
		}
		src = bytes.ReplaceAll(src, []byte(name), []byte(strconv.Itoa(v)))
	}
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
