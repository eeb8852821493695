package urlescape

import (
	"strings"
	"unsafe"
)

// Page is a page address split into its parts, each in the one spelling
// edgepixel stores a page by, whatever path it came in by (the edge's
// pixel and POSTs, edge/enrich/pageurl; an NDJSON import, aggregator/
// ingest): RFC 3986 section 6.2.2's syntax-based normalisation and a few
// scheme-based rules (section 6.2.3):
//
//   - the scheme and host in lower case, the host in its ASCII form and
//     without user information, a trailing dot or the scheme's default
//     port (HostPort);
//   - the path's percent-encoding normalised (Normalize, Path), a
//     backslash read as '/' (as browsers read http(s) URLs), dot segments
//     removed (RemoveDots), and "/" for an empty path after a scheme or
//     authority; a path that would read as an authority ("//x" with none)
//     or, relative, as a scheme ("a:b" once decoded) gets a dot segment
//     first (RFC 3986 sections 5.3 and 4.2);
//   - the fragment dropped: it never reaches a server and names a place in
//     the page, not another page;
//   - a ";jsessionid=..." path parameter dropped (withoutSessionIDs): a
//     Java servlet container's session id written into the address
//     (Jakarta Servlet specification, "URL Rewriting"), which is a
//     credential, and splits one page into one per session.
//
// The query is left to the caller (Query is as given): the edge drops
// tracking parameters from it, an import keeps them (they may be all it
// says of a campaign). String puts the parts back together.
type Page struct {
	Scheme   string // lower case; "" for a relative reference
	HostPort string // host[:port] as stored; "" without an authority
	Host     string // the host alone
	Path     string
	Query    string // as given, without its '?'

	authority bool
	src       string // the input, trimmed, without its fragment
}

// ParsePage splits and normalises raw as Page says. It never fails:
// input it cannot read as a URL is taken for a path.
func ParsePage(raw string) Page {
	s := strings.TrimSpace(raw)
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	p := Page{src: s}
	rest, scheme := s, ""
	if i := SchemeEnd(s); i > 0 {
		scheme, rest = s[:i], s[i+1:]
	}
	p.authority = strings.HasPrefix(rest, "//")
	if p.authority {
		rest = rest[2:]
		end := strings.IndexAny(rest, "/?\\")
		if end < 0 {
			end = len(rest)
		}
		p.HostPort, rest = rest[:end], rest[end:]
	}
	path := rest
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		path, p.Query = rest[:i], rest[i+1:]
	}
	p.Scheme = LowerASCII(scheme)
	if p.authority {
		p.Host, p.HostPort = HostPort(p.HostPort, p.Scheme)
	}
	p.Path = pagePath(path, p.authority || scheme != "")
	if !p.authority && strings.HasPrefix(p.Path, "//") {
		p.Path = "/." + p.Path // not to be read as an authority
	}
	if scheme == "" && !p.authority && SchemeEnd(p.Path) > 0 {
		p.Path = "./" + p.Path // not to be read as a scheme
	}
	return p
}

// pagePath normalises a path's escapes and removes its dot segments.
func pagePath(path string, absolute bool) string {
	path = strings.ReplaceAll(path, "\\", "/")
	path = Normalize(path, Path)
	if strings.IndexByte(path, ';') >= 0 {
		// Before the dots go: "..;jsessionid=1" is a dot segment once
		// the parameter has gone, as a servlet container reads it.
		path = withoutSessionIDs(path)
	}
	if strings.Contains(path, "/.") || strings.HasPrefix(path, ".") {
		path = RemoveDots(path)
	}
	// After the dots go: "a:." has no path left, as "a:" has none.
	if absolute && path == "" {
		return "/"
	}
	return path
}

// sessionParam is the path parameter a servlet container keeps a
// session's id in when cookies are off (Jakarta Servlet specification,
// "URL Rewriting": "http://host/path;jsessionid=1234"); its name is
// matched in any case.
const sessionParam = "jsessionid"

// withoutSessionIDs is path without its sessionParam parameters: each
// ";jsessionid" or ";jsessionid=value" up to the next ';' or '/'. Other
// parameters stay.
func withoutSessionIDs(path string) string {
	var b []byte // made on the first parameter dropped
	kept := 0    // path[:kept] is in b, or wanted as it is
	for i := 0; i < len(path); i++ {
		if path[i] != ';' {
			continue
		}
		end := i + 1 + strings.IndexAny(path[i+1:], ";/")
		if end == i {
			end = len(path)
		}
		name, _, _ := strings.Cut(path[i+1:end], "=")
		if !strings.EqualFold(name, sessionParam) {
			continue
		}
		if b == nil {
			b = make([]byte, 0, len(path))
		}
		b = append(b, path[kept:i]...)
		kept = end
		i = end - 1
	}
	if b == nil {
		return path
	}
	b = append(b, path[kept:]...)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// String returns the address of p with query (normalised by the caller;
// "" for none, which drops the '?'). When that is the input as it was, it
// is the input itself, without allocating.
func (p *Page) String(query string) string {
	colon, slashes, qmark := "", "", ""
	if p.Scheme != "" {
		colon = ":"
	}
	if p.authority {
		slashes = "//"
	}
	if query != "" {
		qmark = "?"
	}
	parts := [7]string{p.Scheme, colon, slashes, p.HostPort, p.Path, qmark, query}
	if isConcat(p.src, parts) {
		return p.src
	}
	return concat(parts)
}

// isConcat reports whether s is the parts joined. (An array, not a
// variadic slice, which TinyGo would put on the heap.)
func isConcat(s string, parts [7]string) bool {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n != len(s) {
		return false
	}
	for _, p := range parts {
		if s[:len(p)] != p {
			return false
		}
		s = s[len(p):]
	}
	return true
}

// concat joins parts with one allocation (TinyGo joins a+b+c pairwise,
// and its strings.Builder escapes to the heap itself: a second one).
func concat(parts [7]string) string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
