// Package etag compares entity tags as HTTP caches send them back, so
// that the edge's script and the aggregator's counter answer 304 to the
// same requests.
package etag

import "strings"

// Match reports whether an If-None-Match header value names tag (a
// quoted entity tag such as `"svg5-2f"`) or is "*". The comparison is
// weak, as RFC 9110 section 13.1.2 asks of If-None-Match: `W/"x"`
// matches `"x"`, since a proxy that compresses a body (nginx's gzip)
// weakens the tag it passes on. The value may list several tags.
func Match(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == tag || t == "*" {
			return true
		}
	}
	return false
}
