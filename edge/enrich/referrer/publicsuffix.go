package referrer

import "strings"

// The kinds of Public Suffix List rule, as bits of a publicSuffixes value
// (edge/enrich/internal/gen writes them).
const (
	pslNormal       = 1
	pslWildcard     = 2
	pslException    = 4
	pslPrivateShift = 3 // a private-section rule's bits are shifted so
)

// publicSuffix returns the public suffix of host, a lower-case ASCII
// domain name, by the Public Suffix List's algorithm
// (https://publicsuffix.org/list/, "Algorithm"): the longest matching
// rule wins, an exception rule over any other, and with no matching rule
// the suffix is the last label. It answers as golang.org/x/net/publicsuffix
// does for the same list (the tests hold it to that and to
// github.com/weppos/publicsuffix-go), from a table laid out at compile
// time: that library would bring net/http into the module, and the
// Cloudflare worker must do without it.
//
// With icann, only the rules of the list's ICANN section count (the
// private section's blogspot.com or github.io are a registrable domain's
// labels then): what a source list's "google.{}" stands for.
func publicSuffix(host string, icann bool) string {
	suffix, prev := "", ""
	for s := host; ; {
		v, _ := publicSuffixes.Lookup(s)
		if icann {
			v &= 1<<pslPrivateShift - 1
		} else {
			v |= v >> pslPrivateShift
		}
		if v&pslException != 0 {
			// The exception's domain less its leftmost label.
			_, after, _ := strings.Cut(s, ".")
			return after
		}
		if suffix == "" {
			switch {
			case v&pslWildcard != 0 && prev != "":
				suffix = prev // one label more than the wildcard's domain
			case v&pslNormal != 0:
				suffix = s
			}
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			if suffix == "" {
				suffix = s // the default rule, "*"
			}
			return suffix
		}
		prev, s = s, s[i+1:]
	}
}
