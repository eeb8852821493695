package main

import (
	"fmt"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/logsink"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/flaghint"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// checkDelivery refuses a configuration in which the edge module hands
// its events to a log endpoint that nobody configured. Such an endpoint
// prints to stdout (Viceroy's behaviour, kept for local use), and the
// module counts a journal line as delivered once written: every hit would
// be answered and none would reach the aggregator. An endpoint configured
// as stdout on purpose (--log-endpoint NAME=stdout), or a catch-all "*",
// passes.
func checkDelivery(m *fastlytoml.Manifest, eps []logsink.Endpoint) error {
	if m == nil {
		return nil
	}
	store := edgepixelStore(m)
	configured := map[string]bool{}
	var names []string
	for _, ep := range eps {
		configured[ep.Name] = true
		names = append(names, ep.Name)
	}
	if configured["*"] {
		return nil
	}
	for _, key := range []string{wire.ConfigJournal, wire.ConfigFallbackLogEndpoint, wire.ConfigLogEndpoint} {
		name := store[key]
		if name == "" || configured[name] || key == wire.ConfigFallbackLogEndpoint && name == "none" {
			continue
		}
		if near := flaghint.Nearest(name, names); near != "" {
			// A name misspelt in the store or on the command line, most
			// likely, not a missing flag: which one, only the user knows
			// (a tester was told to copy a flag's typo into the store).
			return fmt.Errorf("config store edgepixel sets %s = %q, but the log endpoint configured is %q: one of the two names is misspelt (the module's default is %s). Its lines would only be printed to stdout, and no event would reach the aggregator",
				key, name, near, defaultEndpoint(key))
		}
		return fmt.Errorf("config store edgepixel sets %s = %q, but no log endpoint %q is configured: its lines would only be printed to stdout, and no event would reach the aggregator. "+
			"Add --log-endpoint '%s=https://AGGREGATOR/ingest/ndjson?bearer_file=/etc/edgepixel/log-token' (the aggregator's --log-token-file; with --log-queue-dir DIR; README: Your own machines), or --log-endpoint %s=stdout to print them on purpose",
			key, name, name, name, name)
	}
	return nil
}

// defaultEndpoint is the name the README and make run give the endpoint
// of key: edgepixel_journal for the journal, the module's default
// fallback for the fallback.
func defaultEndpoint(key string) string {
	if key == wire.ConfigJournal {
		return storekeys.JournalLogEndpoint
	}
	return storekeys.DefaultFallbackLogEndpoint
}
