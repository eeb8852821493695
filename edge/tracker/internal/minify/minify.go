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
	"regexp"
	"strconv"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Header opens the served script: where its commented source is.
const Header = "/* edgepixel tracker, minified from edge/tracker/s.js (github.com/edgepixel/edgepixel), which says how to use it */\n"

// Limits are the edge's values s.js uses, each written in s.js as its
// value after a comment naming it (/*MAX_PROPS_LEN*/4096), which is
// valid JavaScript as it stands: Script checks each against the edge's,
// so that the script and the edge cannot disagree.
var Limits = map[string]int{
	"MAX_PROPS_LEN": event.MaxPropsLen, // props' size, in UTF-8 bytes
}

// limitRE matches a limit in s.js: the comment naming it, then its value.
var limitRE = regexp.MustCompile(`/\*([A-Z_]+)\*/(\d+)`)

// Script returns src (JavaScript) minified, under Header, ending in a
// newline. Errors are a limit (Limits) that src does not write, or
// writes with another value, and the minifier's parse errors.
func Script(src []byte) ([]byte, error) {
	seen := map[string]bool{}
	for _, m := range limitRE.FindAllSubmatch(src, -1) {
		name := string(m[1])
		want, ok := Limits[name]
		if !ok {
			return nil, fmt.Errorf("s.js writes /*%s*/, which is none of the edge's limits", name)
		}
		if got := string(m[2]); got != strconv.Itoa(want) {
			return nil, fmt.Errorf("s.js has %s %s, the edge %d: write the edge's value in s.js", name, got, want)
		}
		seen[name] = true
	}
	for name, v := range Limits {
		if !seen[name] {
			return nil, fmt.Errorf("s.js does not write %s (as /*%s*/%d)", name, name, v)
		}
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
