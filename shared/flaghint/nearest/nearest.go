// Package nearest finds the known name a misspelt one most likely meant.
// It is flaghint's Nearest without flaghint's imports (flag, net,
// regexp, encoding/json), so that the Cloudflare worker's TinyGo module
// (wrangler/worker), which checks its vars' names with it, does not pay
// for their initialisers.
package nearest

// Nearest returns the one of known nearest to name, when it differs by
// at most two edits (the first in sort order of those as near), else "":
// the setting a misspelt name most likely meant. Failing that, a
// ...-file setting for a ...-path name, or the one
// known name that name's words (split at '_' or, in a flag's name, '-')
// differ from only at the end:
// a word added (EDGEPIXEL_AGG_CLICKHOUSE_URL for EDGEPIXEL_AGG_CLICKHOUSE),
// left out (EDGEPIXEL_POP_GEOIP for EDGEPIXEL_POP_GEOIP_DB) or its last
// word spelt with the same first four letters (..._TRUSTED_PROXY for
// ..._TRUSTED_PROXIES), or a word left out or added in the middle
// (EDGEPIXEL_POP_QUEUE_DIR for EDGEPIXEL_POP_LOG_QUEUE_DIR), as new users
// wrote them (and --trusted-proxy, --geoip and --redis-url); none when
// several are.
func Nearest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best != "" {
		return best
	}
	// A file's path is given by a ...-file setting: --secret-path meant
	// --secret-file, not --secret, which takes the secret itself.
	if i := lastSep(name); i >= 0 {
		for _, w := range [...][2]string{{"path", "file"}, {"PATH", "FILE"}} {
			if name[i+1:] == w[0] {
				for _, k := range known {
					if k == name[:i+1]+w[1] {
						return k
					}
				}
			}
		}
	}
	rival := false
	for _, k := range known {
		switch {
		case sameButLastWord(name, k) || oneWordApart(name, k):
			if best != "" {
				return "" // more than one: the user must choose
			}
			best = k
		case wordsMore(name, k):
			// Not said for itself (--max-conns-per-addr is not
			// --max-conns), but it may be what was meant.
			rival = true
		}
	}
	if rival {
		return ""
	}
	return best
}

// wordsMore reports whether one of a and b is the other with words more
// at its end.
func wordsMore(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return len(b) > len(a) && b[:len(a)] == a && isSep(b[len(a)])
}

// sameButLastWord reports whether a and b differ only in their last
// word, whose first four bytes they share. (A word more or less at the
// end is oneWordApart's: one only, as --max-conns-per-addr is not
// --max-conns.)
func sameButLastWord(a, b string) bool {
	i, j := lastSep(a), lastSep(b)
	if i < 0 || i != j || a[:i] != b[:j] {
		return false
	}
	wa, wb := a[i+1:], b[j+1:]
	return len(wa) >= 4 && len(wb) >= 4 && wa[:4] == wb[:4]
}

// oneWordApart reports whether one of a and b is the other with one more
// word, anywhere.
func oneWordApart(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for s := 0; s < len(b); {
		e := s
		for e < len(b) && !isSep(b[e]) {
			e++
		}
		switch {
		case s > 0 && len(b)-(e-s+1) == len(a) && b[:s-1]+b[e:] == a: // "_WORD" left out
			return true
		case s == 0 && e < len(b) && b[e+1:] == a: // "WORD_" at the start
			return true
		}
		s = e + 1
	}
	return false
}

func lastSep(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if isSep(s[i]) {
			return i
		}
	}
	return -1
}

// isSep reports whether c separates words: '_' in environment
// variables' and stores' names, '-' in flags'.
func isSep(c byte) bool { return c == '_' || c == '-' }

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
