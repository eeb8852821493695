package worker

import (
	"errors"
	"strings"
)

// Request is one visitor request as the worker's JavaScript (wrangler/src)
// hands it over: the text block ParseRequest reads, and the body.
type Request struct {
	Method string
	URL    string // absolute, as request.url gives it
	CF     CF
	// headers are "name:value\n" lines, names lower case as the Fetch
	// API's Headers iterator gives them.
	headers string
	Body    []byte
}

// CF is what Cloudflare's request.cf says about the visitor
// (https://developers.cloudflare.com/workers/runtime-apis/request/#incomingrequestcfproperties).
// Fields are "" when Cloudflare did not say (workerd run locally says
// nothing unless told).
type CF struct {
	Country string // ISO 3166-1 alpha-2 ("T1" for Tor)
	Region  string // regionCode: ISO 3166-2 subdivision code without the country ("CA")
	City    string
	ASN     string // decimal autonomous system number
	// BotScore is botManagement.score, 1 (surely a bot) to 99 (surely a
	// person), or "verified" for botManagement.verifiedBot; Bot
	// Management plans only.
	BotScore string
	Colo     string // IATA code of the data center that took the request
}

// The request block's lines, in order (see ParseRequest).
const requestLines = 8

// ErrBadRequest means the request block is not what wrangler/src writes:
// a bug on one side of the boundary, never a visitor's doing.
var ErrBadRequest = errors.New("worker: malformed request block")

// ParseRequest reads the request block the JavaScript writes: UTF-8
// lines ended by '\n', in this order:
//
//	method
//	url
//	cf.country
//	cf.regionCode
//	cf.city
//	cf.asn
//	cf.botManagement.score, or "verified" for a verified bot
//	cf.colo
//	name:value         one line per header, names lower case
//
// No field can hold a newline: a URL's are percent-encoded, and header
// values cannot carry CR or LF (RFC 9110 section 5.5); the JavaScript
// replaces them in the cf strings. The strings share text's memory
// unless copied: text must not change while r is in use.
func ParseRequest(text string, body []byte, r *Request) error {
	var f [requestLines]string
	for i := range f {
		var ok bool
		f[i], text, ok = strings.Cut(text, "\n")
		if !ok {
			return ErrBadRequest
		}
	}
	*r = Request{
		Method: f[0], URL: f[1],
		CF:      CF{Country: f[2], Region: f[3], City: f[4], ASN: f[5], BotScore: f[6], Colo: f[7]},
		headers: text,
		Body:    body,
	}
	return nil
}

// Header returns the value of the first header called name (any case),
// "" if there is none.
func (r *Request) Header(name string) string {
	h := r.headers
	for h != "" {
		var line string
		line, h, _ = strings.Cut(h, "\n")
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// splitURL returns the path and raw query of an absolute URL
// (scheme://authority/path?query#fragment) without net/url, which costs
// more than the rest of a hit in wasm and is not needed for two parts.
func splitURL(u string) (path, rawQuery string) {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		if j := strings.IndexAny(u, "/?#"); j >= 0 {
			u = u[j:]
		} else {
			u = ""
		}
	}
	u, _, _ = strings.Cut(u, "#")
	path, rawQuery, _ = strings.Cut(u, "?")
	if path == "" {
		path = "/"
	}
	return path, rawQuery
}
