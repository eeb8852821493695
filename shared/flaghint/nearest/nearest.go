// Package nearest finds the known name a misspelt one most likely meant.
// It is flaghint's Nearest without flaghint's imports (flag, net,
// regexp, encoding/json), so that the Cloudflare worker's TinyGo module
// (wrangler/worker), which checks its vars' names with it, does not pay
// for their initialisers.
package nearest

// Nearest returns the one of known nearest to name, when it differs by
// at most two edits (the first in sort order of those as near), else "":
// the setting a misspelt name most likely meant.
func Nearest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

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
