// Package tracker holds s.js, the small script a page that can run
// JavaScript loads instead of (or beside) the pixel: it sends a pageview
// with what an <img> cannot see (the page's own referrer, the screen
// width, the client's clock), single-page-app views, custom events, and
// the page's consent word. While the page is shown it sends by fetch,
// whose failure it sees: a send that gets no answer fails over to a
// second endpoint and is tried again after 1, 4 and 16 s. A hidden page,
// which may be gone before an answer, sends by sendBeacon (a beacon's
// failure is not seen: its fallback was never taken, found by a tester). Each event carries a
// UUIDv7 event_id, so a retry is stored once (event.ParseClientIDSkewed). A copy of a
// page saved to disk and opened from it sends nothing: its file: (or
// Android's content:) URL names the person's folders, and the edge would
// drop it (bad_url); its edgepixel does nothing, so the page's own calls
// do not throw.
//
// The edge serves Script at /s.js, or Gzip to clients that accept gzip
// (RFC 9110 section 8.4), with ETag and a day's caching.
//
// s.js is the commented source; what is served is s.min.js, written from
// it by go generate (internal/minify), so that a page downloads no
// comments.
package tracker

import _ "embed"

//go:generate go run ./internal/gen

// Script is s.js minified (s.min.js); internal/minify's TestServedFresh checks it is.
//
//go:embed s.min.js
var Script []byte

// Gzip is Script gzip-compressed (s.min.js.gz).
//
//go:embed s.min.js.gz
var Gzip []byte

// ETag is Script's strong entity tag, and GzipETag Gzip's: a strong tag
// names one representation's exact bytes, so the gzip and the plain body
// must not share one (RFC 9110 section 8.8.3; a cache holding one would
// otherwise answer a revalidation of the other with 304). The suffix
// keeps them computed once, from Script alone.
const (
	ETag     = `"` + scriptTag + `"`
	GzipETag = `"` + scriptTag + `-gzip"`
)

// CacheControl lets browsers and CDNs keep the script a day, and use a
// stale copy for a week while they revalidate (RFC 5861).
const CacheControl = "public, max-age=86400, stale-while-revalidate=604800"
