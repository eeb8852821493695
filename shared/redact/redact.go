// Package redact spells a URL (or a value that should have been one) for
// an error message or a log line without the credentials in it. A URL a
// user configured may carry a password (redis://:PASS@host,
// http://user:PASS@clickhouse:8123), a token in its user information or
// query, and a refused one still holds whatever was typed into it; the
// message goes to a terminal, a journal and log collectors.
package redact

import (
	"net/url"
	"strings"
)

// Hidden is what stands in for a secret.
const Hidden = "xxxxx"

// URL returns s with its secrets replaced by Hidden: a password in the
// user information (a user alone is taken for a token), and the values of
// query parameters whose names say they hold one (password, token, secret,
// key, auth, sig, as in access_token or api_key). A value that does not
// parse as a URL with a scheme and host is cut at the first character
// that may begin a secret (a ':' after the scheme's "//", '@', '?', '#',
// '&', a blank), and "…" marks the cut.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), Hidden)
			} else {
				u.User = url.User(Hidden)
			}
		}
		if u.RawQuery != "" {
			q := u.Query()
			for k := range q {
				if secretName(k) {
					q[k] = []string{Hidden}
				}
			}
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return Cut(s)
}

// Cut returns s up to the first character that may begin a secret (see
// URL), with "…" where it was cut: for a value that is not a URL, such as
// a header "Authorization Bearer TOKEN" missing its colon.
func Cut(s string) string {
	rest := s
	if _, after, ok := strings.Cut(s, "://"); ok {
		rest = after
	}
	i := strings.IndexAny(rest, ":@?#& \t")
	if i < 0 {
		return s
	}
	return s[:len(s)-len(rest)+i] + "…"
}

// secretName reports whether a query parameter's name says it holds a
// credential.
func secretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"pass", "token", "secret", "key", "auth", "sig"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
