package worker

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/flaghint/nearest"
	"github.com/edgepixel/edgepixel/shared/pixelsign"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Vars are the var and secret names the worker reads beyond the Fastly
// module's config and secret store keys it shares (storekeys.Config and
// storekeys.Secret, less fastlyOnly): the one list CheckNames knows the
// worker's own names by. A name added to ParseConfig belongs here.
var Vars = []string{
	ConfigNDJSONURL, ConfigLogToken, ConfigBatchWait, ConfigDeliveryDeadline,
	ConfigSpoolRetry, ConfigSpoolRetryMax, ConfigSpoolMaxBytes, ConfigSpoolMaxAge,
	ConfigKVCache,
}

// Bindings are the worker's bindings (src/edgepixel.js): the spool's
// Durable Object namespace and the KV namespaces of the salts and the
// settings. The JavaScript passes a binding to Go by its name alone (an
// empty value), for CheckNames and CheckSpool.
var Bindings = []string{SpoolBinding, "SALTS", "SETTINGS"}

// SpoolBinding is the binding of the spool's Durable Object namespace
// (wrangler.toml's [[durable_objects.bindings]]).
const SpoolBinding = "SPOOL"

// CheckSpool says what is lost when names (the worker's vars, secrets
// and bindings) bind no spool: nil when one is bound.
func CheckSpool(names []string) error {
	if slices.Contains(names, SpoolBinding) {
		return nil
	}
	return fmt.Errorf("no %s binding (the spool's Durable Object namespace, wrangler.toml's [[durable_objects.bindings]] name = %q): the batches the aggregators do not take in time are lost, counted as delivery_failed", SpoolBinding, SpoolBinding)
}

// fastlyOnly are the Fastly module's config store keys that mean nothing
// to the worker (it delivers with fetch, not through a backend and log
// endpoints, and batches by batch_wait_ms).
var fastlyOnly = []string{
	storekeys.Backend, wire.ConfigLogEndpoint, wire.ConfigJournal, wire.ConfigFallbackLogEndpoint,
	storekeys.BatchMaxEvents, storekeys.BatchMaxAgeMS,
}

// knownNames returns the names the worker reads: storekeys' less
// fastlyOnly, Vars and Bindings.
func knownNames() storekeys.Names {
	var keys []string
	for _, k := range slices.Concat(storekeys.Config, storekeys.Secret) {
		if !slices.Contains(fastlyOnly, k) {
			keys = append(keys, k)
		}
	}
	return storekeys.NewNames(keys, Vars, Bindings)
}

// CheckNames reports the names among names (the Worker's vars and
// secrets) that the worker does not read, each with the name it most
// likely meant: Workers pass any var, and a misspelt one
// ("site.shop.exmaple", "ingest-url") would otherwise silently leave its
// setting unset, down to a site's pixel signing. With sites (the sites
// var) set, a site.SITE or pixel_key.SITE whose site it does not list
// is reported too: it does nothing for the sites that count (a site
// that sites leaves out is counted only as unknown_sites says, with
// site_default's settings).
func CheckNames(names []string, sites string) error {
	known := knownNames()
	listed := pixel.SiteList(sites)
	var errs []error
	for _, name := range slices.Sorted(slices.Values(names)) {
		if known.Exact(name) {
			continue
		}
		if slices.Contains(fastlyOnly, name) {
			errs = append(errs, fmt.Errorf("%s is a Fastly config store key the worker does not read, so it does nothing (README.md here: Vars and secrets)", name))
			continue
		}
		if p := known.Prefix(name); p != "" {
			site := strings.TrimSuffix(strings.TrimPrefix(name, p), ".previous")
			if len(listed) == 0 || slices.Contains(listed, site) {
				continue
			}
			msg := fmt.Sprintf("%s is for site %q, which sites (%q) does not list, so it does nothing", name, site, sites)
			if near := nearest.Nearest(site, listed); near != "" {
				msg += "; did you mean " + p + near + strings.TrimPrefix(name, p+site) + "?"
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		msg := name + " is not a var, secret or binding the worker reads, so it does nothing"
		if near := known.Nearest(name); near != "" {
			msg += "; did you mean " + near + "?"
		}
		errs = append(errs, errors.New(msg+" (README.md here: Vars and secrets)"))
	}
	return errors.Join(errs...)
}

// CheckPixelKeys reports each site that signs its pixels (sign=reject
// or sign=mark, by its site.SITE var or else site_default) but has no
// pixel_key.SITE secret: a sign=reject site then drops every hit as
// unsigned, and a sign=mark site verifies none, with nothing said at
// all. The sites checked are those the sites var lists and those a
// site.SITE var names (names are the Worker's vars and secrets); the
// SETTINGS KV namespace, read later, is not.
func CheckPixelKeys(names []string, env func(string) string) error {
	var errs []error
	for _, sg := range pixel.SigningSites(names, env) {
		site, key, v := sg.Site, sg.Entry, env(sg.Entry)
		found := false
		for _, k := range storekeys.PixelKeys(site) {
			found = found || len(pixelsign.Key([]byte(env(k)))) > 0
		}
		if found {
			continue
		}
		secret := storekeys.PixelKeys(site)[0]
		what := "every hit of " + site + " is dropped as unsigned"
		if sg.Sign == pixel.SignMark {
			what = "no hit of " + site + " can be verified"
		}
		errs = append(errs, fmt.Errorf("%s signs pixels (%q) but there is no %s secret, so %s; add the site's key (edgepixel-sign): wrangler secret put %s", key, v, secret, what, secret))
	}
	return errors.Join(errs...)
}
