// Package storekeys names the entries the edge module (edge/cmd/edgepixel)
// reads from its config store and its secret store, both named
// "edgepixel": one list, which the module reads by and a host that holds
// the stores checks them against.
//
// Fastly's config and secret stores take any key, and a guest can only ask
// for a key by name: the fastly_config_store and fastly_secret_store ABI
// modules have no call that lists a store. A misspelt key ("jurnal",
// "site_defualt") is therefore read as absent, and its setting silently
// does not apply. A host that holds the stores' contents, such as the POP
// with fastly.toml's [local_server], checks them against Config and
// Secret (edge/cmd/edgepixel-pop).
package storekeys

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Store is the name of both the config store and the secret store the
// module opens. A dictionary of that name serves as the config store
// (Fastly's config store ABI opens dictionaries too).
const Store = "edgepixel"

// Config store keys the module reads itself; the rest are edge/pixel's
// (sites, CORS) and shared/wire's (log endpoints), listed in Config.
const (
	Pop             = "pop"               // the events' pop column; default $FASTLY_POP
	Backend         = "backend"           // the aggregator backend, or several separated by commas
	IngestURL       = "ingest_url"        // the URL batches are posted to through Backend
	BatchMaxEvents  = "batch_max_events"  // events per batch at most
	BatchMaxAgeMS   = "batch_max_age_ms"  // milliseconds a buffered event waits at most
	RateLimitClient = "rate_limit_client" // hits per second one client address may send
	RateLimitSite   = "rate_limit_site"   // hits per second one site may receive
)

// ParseRateLimit reads the value of RateLimitClient or RateLimitSite:
// hits a second, averaged over 10 s, from 10 to 10000, the range of a
// rate Fastly's Edge Rate Limiter takes (its docs' "rate limiting"
// policy); 0 for none, as is "" (the key unset). The error says that no
// limit applies: the module reads a value it cannot take as none, and a
// host checking the store warns with it.
func ParseRateLimit(value string) (uint32, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n != 0 && (n < 10 || n > 10000) {
		return 0, fmt.Errorf("%q is not a rate from 10 to 10000 hits a second (0 or unset: none), so no limit applies", value)
	}
	return uint32(n), nil
}

// The module's defaults for Backend and IngestURL: a batch goes to the
// backend named aggregator, and its URL's path is /ingest (its host only
// names the request; the backend decides where it goes).
const (
	DefaultBackend   = "aggregator"
	DefaultIngestURL = "http://aggregator/ingest"
)

// Backends returns the backend names of a Backend value, separated by
// commas with spaces around them allowed, in order; DefaultBackend when
// it names none.
func Backends(v string) []string {
	var out []string
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		out = []string{DefaultBackend}
	}
	return out
}

// DefaultFallbackLogEndpoint is the log endpoint the module writes what
// the aggregator did not take to, unless wire.ConfigFallbackLogEndpoint
// names another (or "none").
const DefaultFallbackLogEndpoint = "edgepixel_fallback"

// FallbackLogEndpoint returns the log endpoint that value, the config
// store's wire.ConfigFallbackLogEndpoint, names: DefaultFallbackLogEndpoint
// when it is empty, "" when it is "none" (what batches cannot deliver is
// then lost).
func FallbackLogEndpoint(value string) string {
	switch value {
	case "":
		return DefaultFallbackLogEndpoint
	case "none":
		return ""
	}
	return value
}

// JournalLogEndpoint is the log endpoint the README, make run and the
// POP's checks give the journal (wire.ConfigJournal). The module has no
// default journal: the key names it.
const JournalLogEndpoint = "edgepixel_journal"

// Secret store entries beyond privacy.SaltKeys.
const (
	// AggregatorSecret signs batches (the aggregator's --secret).
	AggregatorSecret = "aggregator_secret"
	// PixelKeyPrefix begins a site's pixel signing key, PixelKeyPrefix +
	// SITE, and the key before it while rotating, PixelKeyPrefix + SITE +
	// ".previous".
	PixelKeyPrefix = "pixel_key."
)

// PixelKeys returns the secret store entries of site's current and
// previous pixel signing keys.
func PixelKeys(site string) [2]string {
	return [2]string{PixelKeyPrefix + site, PixelKeyPrefix + site + ".previous"}
}

// Site stands for any site id in a key of Config or Secret.
const Site = "SITE"

// Config is every config store key the module reads. A key ending in
// SITE stands for that prefix followed by any site id.
var Config = []string{
	Pop, Backend, IngestURL, wire.ConfigLogEndpoint, wire.ConfigJournal, wire.ConfigFallbackLogEndpoint,
	BatchMaxEvents, BatchMaxAgeMS, pixel.ConfigCORSOrigins, pixel.ConfigCORSDefault,
	pixel.ConfigSites, pixel.ConfigUnknownSites, pixel.ConfigSiteDefault, pixel.ConfigSitePrefix + Site,
	RateLimitClient, RateLimitSite,
}

// Secret is every secret store entry the module reads, in Config's form.
var Secret = []string{AggregatorSecret, privacy.SaltKeys[0], privacy.SaltKeys[1], PixelKeyPrefix + Site, PixelKeyPrefix + Site + ".previous"}
