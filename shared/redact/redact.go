// Package redact spells a URL (or a value that should have been one) for
// an error message or a log line without the credentials in it. A URL a
// user configured may carry a password (redis://:PASS@host,
// http://user:PASS@clickhouse:8123), a token in its user information,
// query or fragment (?access_token=, ?dd-api-key=), and a refused one
// still holds whatever was typed into it; the message goes to a
// terminal, a journal and log collectors.
package redact

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Hidden is what stands in for a secret.
const Hidden = "xxxxx"

// URL returns s as scheme://host/path, the parts a message about a URL
// needs (where it goes), with what may hold a secret hidden: a password
// in the user information as Hidden (a user alone is taken for a token,
// and hidden too), a path segment that looks like a token (see Path),
// and a query or fragment, whatever its parameters' names, as "?…" or
// "#…". A value that does not parse as a URL with a scheme and host is
// Cut.
func URL(s string) string {
	u, err := url.Parse(s)
	// A password with a '/' in it (u:123/ss@h) parses as a host, a port
	// and a path holding the rest of it: an '@' in the path is that.
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || strings.Contains(u.EscapedPath(), "@") {
		return Cut(s)
	}
	out := u.Scheme + "://"
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			out += u.User.Username() + ":" + Hidden + "@"
		} else {
			out += Hidden + "@"
		}
	}
	out += hostPath(u.Host, u.EscapedPath())
	if u.RawQuery != "" || u.ForceQuery {
		out += "?…"
	}
	if u.Fragment != "" {
		out += "#…"
	}
	return out
}

// Cut returns s up to the first character that may begin a secret (a
// ':' after the scheme's "//", '@', '?', '#', '&', '=', a blank), with
// "…" where it was cut, and its path spelled by Path: for a value that
// is not a URL, such as a header
// "Authorization Bearer TOKEN" missing its colon.
func Cut(s string) string {
	rest := s
	if _, after, ok := strings.Cut(s, "://"); ok {
		rest = after
	}
	scheme := s[:len(s)-len(rest)]
	cut := ""
	if i := strings.IndexAny(rest, ":@?#&= \t"); i >= 0 {
		rest, cut = rest[:i], "…"
	}
	// The host is kept (it may look like a token:
	// endpoint1.collection.example.com); the path after it is spelled
	// by Path, and so is a value that is not a URL, such as a bare path.
	host := ""
	if scheme != "" {
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			host, rest = rest[:j], rest[j:]
		} else {
			host, rest = rest, ""
		}
	}
	return scheme + hostPath(host, rest) + cut
}

// A collector whose URLs hold their token where Path cannot see it: in
// the host's first label (Pipedream's https://TOKEN.m.pipedream.net), or
// in a path segment too short to look like one (Zapier's
// /hooks/catch/ACCOUNT/TOKEN/, seven characters).
var tokenHosts = []struct {
	suffix     string // of the host, lower case
	firstLabel bool   // the host's first label is the token
	pathFrom   int    // every path segment from this one ("" is 0) is
}{
	{suffix: ".m.pipedream.net", firstLabel: true},
	{suffix: "hooks.zapier.com", pathFrom: 4},
}

// hostPath spells host and the escaped path p after it, with what looks
// like a token in either hidden: Path, and tokenHosts.
func hostPath(host, p string) string {
	name := strings.ToLower(host)
	if h, _, ok := strings.Cut(name, ":"); ok && !strings.HasPrefix(name, "[") {
		name = h // the port
	}
	for _, th := range tokenHosts {
		if !strings.HasSuffix(name, th.suffix) {
			continue
		}
		if th.firstLabel && len(name) > len(th.suffix) {
			host = Hidden + host[strings.IndexByte(host, '.'):]
		}
		if th.pathFrom > 0 {
			segs := strings.Split(p, "/")
			for i := th.pathFrom; i < len(segs); i++ {
				if segs[i] != "" {
					segs[i] = Hidden
				}
			}
			p = strings.Join(segs, "/")
		}
	}
	return host + Path(p)
}

// Path returns an escaped URL path (or anything split by '/') with each
// segment that looks like a token as Hidden: 16 characters or more of
// letters, digits and "-._~:%+=" with a piece (between "-._~:") of 5 or
// more that mixes letters and digits or holds "%+=", or of 20 or more
// letters in both cases, or of 24 or more letters. Collectors that take their token in the path
// rather than a header or the query (Sumo Logic's HTTP sources, Loggly's
// bulk endpoint, Slack's, Discord's and Telegram's webhooks) would
// otherwise show it in every message naming them; a segment of words and
// numbers (/ingest/ndjson, /edgepixel-logs-2025, /eu-west-1,
// /pop-2025-06-01.ndjson) is kept.
func Path(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if tokenLike(seg) {
			segs[i] = Hidden
		}
	}
	return strings.Join(segs, "/")
}

func tokenLike(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	for piece := range strings.FieldsFuncSeq(seg, func(r rune) bool { return strings.ContainsRune("-._~:", r) }) {
		letters, digits, lower, upper, other := 0, 0, false, false, false
		for _, c := range []byte(piece) {
			switch {
			case c >= '0' && c <= '9':
				digits++
			case c >= 'a' && c <= 'z':
				letters, lower = letters+1, true
			case c >= 'A' && c <= 'Z':
				letters, upper = letters+1, true
			case c == '%' || c == '+' || c == '=':
				other = true
			default:
				return false // not a token's alphabet: a word, a name
			}
		}
		switch {
		case len(piece) >= 5 && (letters > 0 && digits > 0 || other):
			return true
		case letters >= 20 && digits == 0 && lower && upper, letters >= 24:
			// Letters alone: in both cases, or too many for a word
			// (a Slack token of lower-case letters alone).
			return true
		}
	}
	return false
}

// Error returns err with the URL of the *url.Error in its chain, if
// any, spelled by URL: a url.Error's message quotes its URL whole
// (net/http hides a password in it, not a token in its query; url.Parse
// hides nothing). The result wraps err, whose message a wrapping
// fmt.Errorf has already written, so the URL is replaced in the text.
func Error(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	orig, red := ue.URL, URL(ue.URL)
	said := err.Error()
	msg := said
	// url.Parse's own words quote the piece it stumbled on, which may be
	// a password read as a port (invalid port ":Pa55word" after host): a
	// tester's. They are kept, the piece not.
	if ue.Op == "parse" && ue.Err != nil {
		inner := ue.Err.Error()
		msg = strings.ReplaceAll(msg, inner, unquoted(inner))
	}
	if orig == red && msg == said {
		return err
	}
	msg = strings.ReplaceAll(msg, strconv.Quote(orig), strconv.Quote(red))
	msg = strings.ReplaceAll(msg, orig, red)
	ue.URL = red
	return &redacted{msg, err}
}

// unquoted returns s with what it quotes ("...") as "…".
func unquoted(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			break
		}
		b.WriteString(s[:i] + `"…"`)
		s = s[i+1+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

// redacted is an error said without its secrets: Error is msg, and it
// wraps err.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
