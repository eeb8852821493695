package storekeys

import (
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/shared/flaghint/nearest"
)

// Names are keys in Config's form (a key ending in Site stands for its
// prefix followed by any site id), for telling whether a key is one of
// them and, when it is not, which one it most likely misspells. The POP
// checks fastly.toml's stores with them, the worker its vars and secrets.
type Names struct {
	exact, prefixes []string
}

// NewNames returns the Names of the keys of lists.
func NewNames(lists ...[]string) Names {
	var n Names
	for _, k := range slices.Concat(lists...) {
		if p, ok := strings.CutSuffix(k, Site); ok {
			if !slices.Contains(n.prefixes, p) {
				n.prefixes = append(n.prefixes, p)
			}
		} else if !slices.Contains(n.exact, k) {
			n.exact = append(n.exact, k)
		}
	}
	return n
}

// Exact reports whether key is one of the names that stand for no site.
func (n Names) Exact(key string) bool { return slices.Contains(n.exact, key) }

// Prefix returns the prefix of a site's key ("site.", "pixel_key.") that
// key begins with and goes on after, or "".
func (n Names) Prefix(key string) string {
	for _, p := range n.prefixes {
		if len(key) > len(p) && strings.HasPrefix(key, p) {
			return p
		}
	}
	return ""
}

// Has reports whether key is one of the names, or a site's key.
func (n Names) Has(key string) bool { return n.Exact(key) || n.Prefix(key) != "" }

// Nearest returns the name key most likely misspells, or "": a whole
// name (also in other letter case, or without its unit: "batch_wait" for
// batch_wait_ms), or a site's key with key's part after its first dot
// ("sites.shop.example" suggests "site.shop.example"; "site" alone,
// "site.SITE").
func (n Names) Nearest(key string) string {
	lower := strings.ToLower(key)
	// Compared in lower case both ways: the bindings' names are in
	// capitals (a misspelt SPOOL was taken for pop).
	folded := make([]string, len(n.exact))
	for i, k := range n.exact {
		folded[i] = strings.ToLower(k)
	}
	if near := nearest.Nearest(lower, folded); near != "" {
		return n.exact[slices.Index(folded, near)]
	}
	for _, unit := range [...]string{"_ms", "_s"} {
		if k := lower + unit; slices.Contains(n.exact, k) {
			return k
		}
	}
	head, rest, ok := strings.Cut(key, ".")
	if !ok || rest == "" {
		if p := nearest.Nearest(key+".", n.prefixes); p != "" {
			return p + Site
		}
		return ""
	}
	if p := nearest.Nearest(head+".", n.prefixes); p != "" {
		return p + rest
	}
	return ""
}
