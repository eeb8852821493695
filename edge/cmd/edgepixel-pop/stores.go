package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/flaghint"
)

// manifestWarnings are m's own warnings and one for each key of the
// edgepixel config store (or dictionary) and secret store that the edge
// module does not read: Fastly's stores take any key, so a misspelt one
// ("jurnal") would otherwise leave its setting silently unapplied.
func manifestWarnings(m *fastlytoml.Manifest) []string {
	out := append([]string(nil), m.Warnings...)
	ls := &m.LocalServer
	for _, s := range []map[string]string{ls.ConfigStores[storekeys.Store], ls.Dictionaries[storekeys.Store]} {
		if s != nil {
			out = append(out, unknownKeys("config store", slices.Collect(maps.Keys(s)), storekeys.Config)...)
		}
	}
	if s := ls.SecretStores[storekeys.Store]; s != nil {
		out = append(out, unknownKeys("secret store", slices.Collect(maps.Keys(s)), storekeys.Secret)...)
	}
	return out
}

// unknownKeys returns a warning for each of keys that is none of known
// (storekeys.Config or storekeys.Secret, where a key ending in
// storekeys.Site stands for any site), in sorted order, naming the
// nearest known key when one is a likely misspelling. kind names the
// store in the warnings ("config store", "secret store").
func unknownKeys(kind string, keys, known []string) []string {
	var exact, prefixes []string
	for _, k := range known {
		if p, ok := strings.CutSuffix(k, storekeys.Site); ok {
			prefixes = append(prefixes, p)
		} else {
			exact = append(exact, k)
		}
	}
	var out []string
	for _, key := range slices.Sorted(slices.Values(keys)) {
		if matches(key, exact, prefixes) {
			continue
		}
		w := fmt.Sprintf("%s %s: key %q is not one the edge module reads, so it does nothing", kind, storekeys.Store, key)
		if near := nearest(key, exact, prefixes); near != "" {
			w += "; did you mean " + near + "?"
		}
		out = append(out, w+" (the keys are "+strings.Join(known, ", ")+"; README: The edge module)")
	}
	return out
}

func matches(key string, exact, prefixes []string) bool {
	for _, k := range exact {
		if key == k {
			return true
		}
	}
	for _, p := range prefixes {
		if len(key) > len(p) && strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// nearest is the known key key most likely misspells: a whole key, or a
// prefix key with key's part after its first dot ("sites.example.com"
// suggests "site.example.com").
func nearest(key string, exact, prefixes []string) string {
	if near := flaghint.Nearest(key, exact); near != "" {
		return near
	}
	head, rest, ok := strings.Cut(key, ".")
	if !ok || rest == "" {
		if p := flaghint.Nearest(key+".", prefixes); p != "" {
			return p + storekeys.Site
		}
		return ""
	}
	if p := flaghint.Nearest(head+".", prefixes); p != "" {
		return p + rest
	}
	return ""
}
