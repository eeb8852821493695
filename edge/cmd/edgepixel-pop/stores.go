package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// storeWarnings are a warning for each store name and key of m that the
// edge module does not read: a config store, dictionary or secret store
// named other than edgepixel, and a key of the edgepixel ones that is
// none of storekeys'. Fastly's stores take any name and key, so a
// misspelt one ("edgepixl", "jurnal") would otherwise leave its settings
// silently unapplied. Each names the one most likely meant.
func storeWarnings(m *fastlytoml.Manifest) []string {
	var out []string
	ls := &m.LocalServer
	for _, t := range []struct {
		kind  string
		names []string
	}{
		{"config store", slices.Collect(maps.Keys(ls.ConfigStores))},
		{"dictionary", slices.Collect(maps.Keys(ls.Dictionaries))},
		{"secret store", slices.Collect(maps.Keys(ls.SecretStores))},
	} {
		for _, name := range slices.Sorted(slices.Values(t.names)) {
			if name == storekeys.Store {
				continue
			}
			w := fmt.Sprintf("%s %q is not one the edge module opens (it opens %s), so its entries do nothing", t.kind, name, storekeys.Store)
			if flaghint.Nearest(name, []string{storekeys.Store}) != "" {
				w += "; did you mean " + storekeys.Store + "?"
			}
			out = append(out, w)
		}
	}
	// The module reads its settings from either.
	configs := []map[string]string{ls.ConfigStores[storekeys.Store], ls.Dictionaries[storekeys.Store]}
	for _, s := range configs {
		if s != nil {
			out = append(out, unknownKeys("config store", slices.Collect(maps.Keys(s)), storekeys.Config)...)
		}
	}
	if s := ls.SecretStores[storekeys.Store]; s != nil {
		out = append(out, unknownKeys("secret store", slices.Collect(maps.Keys(s)), storekeys.Secret)...)
	}
	// A backend name the POP has no backend for: every batch would fail
	// (fastly status inval) and go to the fallback, or be lost, while
	// /healthz said ok (a tester's "agregator").
	backends := slices.Sorted(maps.Keys(ls.Backends))
	have := strings.Join(backends, ", ")
	if have == "" {
		have = "none"
	}
	set := false
	for _, s := range configs {
		// With log_endpoint set the module delivers through it alone.
		if s[storekeys.Backend] != "" || s[wire.ConfigLogEndpoint] != "" {
			set = true
		}
		if s[storekeys.Backend] != "" {
			out = append(out, backendWarnings(fmt.Sprintf("config store %s sets %s = %q", storekeys.Store, storekeys.Backend, s[storekeys.Backend]), s[storekeys.Backend], backends, have)...)
		}
	}
	// Unset, the module's default: a backend table misspelt
	// ([local_server.backends.agregator]) said nothing either (a
	// tester's). A manifest with no backend at all delivers by its
	// journal alone, or is a test's.
	if !set && (configs[0] != nil || configs[1] != nil) && len(backends) > 0 {
		out = append(out, backendWarnings(fmt.Sprintf("config store %s sets no %s, so the module delivers to %q", storekeys.Store, storekeys.Backend, storekeys.DefaultBackend), "", backends, have)...)
	}
	return out
}

// backendWarnings warn of each backend that value (the config store's
// backend, or "" for the module's default) names and backends (the
// manifest's, have as the warning lists them) lacks: said says where the
// name comes from.
func backendWarnings(said, value string, backends []string, have string) []string {
	var out []string
	for _, name := range storekeys.Backends(value) {
		if slices.Contains(backends, name) {
			continue
		}
		w := fmt.Sprintf("%s, but [local_server.backends] has no backend %q (it has %s): every batch to it fails and goes to the fallback log endpoint, or is lost",
			said, name, have)
		if near := flaghint.Nearest(name, backends); near != "" {
			w += "; did you mean " + near + "?"
		}
		out = append(out, w)
	}
	return out
}

// checkManifest is edgepixel-pop's own check of a manifest, at start and
// at each reload (pop.Config.CheckManifest), for the log endpoints eps:
// storeWarnings, and warnings for a log endpoint the module writes no
// line to and for a journal that a crash of the POP would empty; the
// error is checkDelivery's.
func checkManifest(m *fastlytoml.Manifest, eps []logsink.Endpoint) ([]string, error) {
	if m == nil {
		return nil, nil
	}
	out := storeWarnings(m)
	store := edgepixelStore(m)
	out = append(out, valueWarnings(store)...)
	out = append(out, signingKeyWarnings(store, m.LocalServer.SecretStores[storekeys.Store])...)
	out = append(out, saltWarnings(m.LocalServer.SecretStores[storekeys.Store], time.Now())...)
	written := map[string]bool{store[wire.ConfigJournal]: true, store[wire.ConfigLogEndpoint]: true}
	written[storekeys.FallbackLogEndpoint(store[wire.ConfigFallbackLogEndpoint])] = true
	noJournal := unjournaled(m, eps)
	for _, ep := range eps {
		switch {
		case ep.Name == "*" || written[ep.Name]:
		case ep.Name == storekeys.JournalLogEndpoint && noJournal != "":
			out = append(out, noJournal)
		default:
			out = append(out, fmt.Sprintf("log endpoint %s is configured, but the module writes to no log endpoint of that name (config store %s: %s, %s, %s)",
				ep.Name, storekeys.Store, wire.ConfigJournal, wire.ConfigFallbackLogEndpoint, wire.ConfigLogEndpoint))
		}
		if j := store[wire.ConfigJournal]; ep.Name == j && ep.Kind == logsink.HTTP && (ep.Queue == "" || ep.Queue == "memory") {
			out = append(out, fmt.Sprintf("the journal's log endpoint %s queues in memory: a POP crash loses the lines it holds, which the journal is there to keep; give it a disk queue (--log-queue-dir DIR, or queue=DIR in its URL, and not queue=memory)", j))
		}
	}
	return out, checkDelivery(m, eps)
}

// unjournaled is the condition of manifest m whose edgepixel config
// store sets no journal while the journal's log endpoint is among eps (a
// misspelt key, most often, edited in under --watch): hits are then not
// journaled, and a crash of the POP loses those not yet delivered; ""
// when there is none. checkManifest warns of it, and /healthz lists it
// while the manifest in force has it (a tester's POP said ok).
func unjournaled(m *fastlytoml.Manifest, eps []logsink.Endpoint) string {
	if m == nil || edgepixelStore(m)[wire.ConfigJournal] != "" {
		return ""
	}
	for _, ep := range eps {
		if ep.Name == storekeys.JournalLogEndpoint {
			return fmt.Sprintf("log endpoint %s is configured, but config store %s sets no %s: hits are not journaled, and a POP crash loses those not yet delivered; add %s = %q to it",
				ep.Name, storekeys.Store, wire.ConfigJournal, wire.ConfigJournal, ep.Name)
		}
	}
	return ""
}

// saltWarnings are the visitor salts of secrets (the edgepixel secret
// store) that serve a day that is over at now: yesterday's once the first
// privacy.VisitWindow of today has passed, or an older one. Rotation
// (edgepixel-salt, from cron) writes tomorrow's salt over it; while it is
// held, anyone who reads it and the stored events can try every address
// against that day's visitor ids, which deleting it is meant to end.
// A salt that does not parse is warned of too: the module says so only
// at the first hit, on stderr (a tester's).
func saltWarnings(secrets map[string][]byte, now time.Time) []string {
	var out []string
	for _, key := range privacy.SaltKeys {
		v, ok := secrets[key]
		if !ok {
			continue
		}
		salt, err := privacy.ParseSalt(string(v))
		if err != nil {
			out = append(out, fmt.Sprintf("secret store %s: %s is not a visitor salt (%v): the hits of a day it was to serve get no visitor id (no_salt); edgepixel-salt --dir DIR --today writes one", storekeys.Store, key, err))
			continue
		}
		if w := privacy.OverWarning(key, salt, now, "edgepixel-salt, from cron,"); w != "" {
			out = append(out, "secret store "+storekeys.Store+": "+w)
		}
	}
	return out
}

// valueWarnings are the problems of the edgepixel config store's values
// that edge/pixel parses (sites, site_default, site.SITE, unknown_sites,
// the CORS keys), as the module reports them at each instance's start
// or, for a site's settings, at the site's first hit: said once here at
// the POP's start and at each reload, before any hit.
func valueWarnings(store map[string]string) []string {
	var errs []error
	get := func(k string) string { return store[k] }
	if _, err := pixel.NewSites(get); err != nil {
		errs = append(errs, err)
	}
	if _, err := pixel.ParseOrigins(get(pixel.ConfigCORSOrigins), get(pixel.ConfigCORSDefault)); err != nil {
		errs = append(errs, err)
	}
	for _, k := range []string{storekeys.RateLimitClient, storekeys.RateLimitSite} {
		// The module says so too, but only in its log, once per
		// instance: a tester's rate_limit_client = "5" was no limit at
		// all, with nothing under make run's banner.
		if _, err := storekeys.ParseRateLimit(store[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(store)) {
		if site, ok := strings.CutPrefix(k, pixel.ConfigSitePrefix); ok && site != "" {
			if _, err := pixel.ParseSiteSettings(store[k]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
		}
	}
	var out []string
	for _, err := range errs {
		// errors.Join's: one warning per problem.
		for _, line := range strings.Split(err.Error(), "\n") {
			out = append(out, "config store "+storekeys.Store+": "+line)
		}
	}
	return out
}

// signingKeyWarnings are a warning for each site whose settings in the
// config store check pixel signatures (sign=mark or sign=reject) but
// whose key the secret store lacks (storekeys.PixelKeys), or holds too
// short to verify anything (pixelsign.MinKeyBytes): every signed hit of
// it would be dropped bad_pixel_signature, or stored unverified, with
// nothing said (found by a new-user tester). The sites are
// pixel.SigningSites'; with site_default checking and no sites list, a
// secret store without any pixel key is warned of.
func signingKeyWarnings(store map[string]string, secrets map[string][]byte) []string {
	var out []string
	check := func(site, entry string, sign pixel.SignPolicy) {
		fate := "every signed hit is dropped " + wire.DropBadSignature
		if sign == pixel.SignMark {
			fate = "every signed hit is stored " + pixel.SignatureUnverified
		}
		names := storekeys.PixelKeys(site)
		cur, ok := secrets[names[0]]
		prev, okPrev := secrets[names[1]]
		switch {
		case !ok && !okPrev:
			out = append(out, fmt.Sprintf("config store %s: %s checks pixel signatures of site %s, but secret store %s has no %s: %s; create the key (head -c 32 /dev/urandom | base64 > FILE, the file edgepixel-sign --key-file reads too) and name it in fastly.toml's [local_server.secret_stores] %s = [..., { key = %q, file = \"FILE\" }] (make run: FILE is secrets/%s in its --dir)",
				storekeys.Store, entry, site, storekeys.Store, names[0], fate, storekeys.Store, names[0], names[0]))
		case ok && len(pixelsign.Key(cur)) < pixelsign.MinKeyBytes && len(pixelsign.Key(prev)) < pixelsign.MinKeyBytes:
			out = append(out, fmt.Sprintf("secret store %s: %s has %d bytes, and a key under %d never verifies: for site %s (%s), %s; write a longer key (head -c 32 /dev/urandom | base64)",
				storekeys.Store, names[0], len(pixelsign.Key(cur)), pixelsign.MinKeyBytes, site, entry, fate))
		}
	}
	get := func(k string) string { return store[k] }
	for _, sg := range pixel.SigningSites(slices.Collect(maps.Keys(store)), get) {
		check(sg.Site, sg.Entry, sg.Sign)
	}
	def, _ := pixel.ParseSiteSettings(store[pixel.ConfigSiteDefault]) // its errors are valueWarnings'
	list := pixel.SiteList(store[pixel.ConfigSites])
	if def.Sign != pixel.SignOff && len(list) == 0 && !slices.ContainsFunc(slices.Collect(maps.Keys(secrets)), func(k string) bool { return strings.HasPrefix(k, storekeys.PixelKeyPrefix) }) {
		out = append(out, fmt.Sprintf("config store %s: %s checks pixel signatures of every site without a "+pixel.ConfigSitePrefix+storekeys.Site+" entry, but secret store %s has no %sSITE entry for any: no signed hit verifies; create each site's key as %sSITE (README: Signed pixels)",
			storekeys.Store, pixel.ConfigSiteDefault, storekeys.Store, storekeys.PixelKeyPrefix, storekeys.PixelKeyPrefix))
	}
	return out
}

// edgepixelStore is the config store the module reads, or the dictionary
// of its name.
func edgepixelStore(m *fastlytoml.Manifest) map[string]string {
	if s := m.LocalServer.ConfigStores[storekeys.Store]; s != nil {
		return s
	}
	return m.LocalServer.Dictionaries[storekeys.Store]
}

// unknownKeys returns a warning for each of keys that is none of known
// (storekeys.Config or storekeys.Secret, where a key ending in
// storekeys.Site stands for any site), in sorted order, naming the
// nearest known key when one is a likely misspelling. kind names the
// store in the warnings ("config store", "secret store").
func unknownKeys(kind string, keys, known []string) []string {
	names := storekeys.NewNames(known)
	var out []string
	for _, key := range slices.Sorted(slices.Values(keys)) {
		if names.Has(key) {
			continue
		}
		w := fmt.Sprintf("%s %s: key %q is not one the edge module reads, so it does nothing", kind, storekeys.Store, key)
		if near := names.Nearest(key); near != "" {
			w += "; did you mean " + near + "?"
		}
		out = append(out, w+" (the keys are "+strings.Join(known, ", ")+"; README: The edge module)")
	}
	return out
}
