package referrer

import "strings"

// The kinds of Public Suffix List rule, as bits of a publicSuffixes value
// (edge/enrich/internal/gen writes them).
const (
	pslNormal       = 1
	pslWildcard     = 2
	pslException    = 4
	pslPrivateShift = 3 // how far a rule of the private section has its bits shifted
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
// all is the suffix by every rule; icann by the rules of the list's ICANN
// section alone (the private section's blogspot.com or github.io are then
// a registrable domain's labels): what a source list's "google.{}" stands
// for. One walk down host's labels answers both.
func publicSuffix(host string) (all, icann string) {
	var w [2]suffixWalk
	for s, prev := host, ""; ; {
		v, _ := publicSuffixes.Lookup(s)
		w[0].step(v|v>>pslPrivateShift, s, prev)
		w[1].step(v&(1<<pslPrivateShift-1), s, prev)
		i := strings.IndexByte(s, '.')
		if i < 0 || w[0].exception && w[1].exception {
			return w[0].end(s), w[1].end(s)
		}
		prev, s = s, s[i+1:]
	}
}

// suffixWalk is publicSuffix's state for one set of rules.
type suffixWalk struct {
	suffix    string
	exception bool // suffix is an exception rule's: it stands
}

// step looks at v, the rules that name s (prev is the name one label
// longer, "" for host itself).
func (w *suffixWalk) step(v uint16, s, prev string) {
	switch {
	case w.exception:
	case v&pslException != 0:
		// The exception's domain less its leftmost label.
		_, w.suffix, _ = strings.Cut(s, ".")
		w.exception = true
	case w.suffix != "":
	case v&pslWildcard != 0 && prev != "":
		w.suffix = prev // one label more than the wildcard's domain
	case v&pslNormal != 0:
		w.suffix = s
	}
}

// end returns the walk's suffix once last, host's last label, was looked
// at: that label (the default rule, "*") when no rule matched.
func (w *suffixWalk) end(last string) string {
	if w.suffix == "" {
		return last
	}
	return w.suffix
}
