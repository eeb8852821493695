package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// The aggregator secret is checked when the POP starts and whenever it
// changes. With the journal on, the module signs a batch only when the
// journal cannot take a line; a wrong aggregator_secret then showed only
// at that moment, when each batch the aggregator refuses is an event lost
// (a new-user tester's). The check sends each backend the module sends
// batches to a signed batch of no events, which the aggregator verifies
// as any other and stores nothing of.

// secretCheckFor is how long a check keeps trying a backend that does not
// answer (the aggregator may start after the POP); secretCheckRetry is
// the first wait between tries, doubled up to a minute. secretCheckEvery
// is how often the stores are looked at for a change to check again.
var (
	secretCheckFor   = 10 * time.Minute
	secretCheckRetry = time.Second
	secretCheckEvery = 5 * time.Second
)

// probeFunc sends a request to a backend as the module's would go:
// pop.Server.Probe.
type probeFunc func(ctx context.Context, backend, method, rawURL string, header http.Header, body []byte) (int, error)

// watchSecret checks the secret the module signs with against the
// backends it sends to, at start and whenever the store's entries the
// check depends on change (a reload, a rotated secret file), until ctx
// ends. stores is pop.Server.Stores; backends are the POP's
// [local_server.backends] (which it holds from its start). A check under
// way when the entries change is ended: its answer would be stale.
func watchSecret(ctx context.Context, probe probeFunc, stores func(string) (map[string]string, map[string][]byte), backends map[string]fastlytoml.Backend, log *slog.Logger) {
	var last string
	cancel := func() {}
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for {
		config, secrets := stores(storekeys.Store)
		secret := bytes.TrimSpace(secrets[storekeys.AggregatorSecret])
		var names []string
		for _, name := range storekeys.Backends(config[storekeys.Backend]) {
			if _, ok := backends[name]; ok {
				names = append(names, name) // storeWarnings names the others
			}
		}
		ingestURL := config[storekeys.IngestURL]
		if ingestURL == "" {
			ingestURL = storekeys.DefaultIngestURL
		}
		// The module signs nothing without a secret (it says so itself)
		// or with a log_endpoint, to which it writes events instead.
		if len(secret) == 0 || config[wire.ConfigLogEndpoint] != "" {
			names = nil
		}
		if key := fmt.Sprint(secret, names, ingestURL); key != last {
			last = key
			cancel()
			wg.Wait()
			cctx, c := context.WithCancel(ctx)
			cancel = c
			for _, name := range names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					checkSecret(cctx, probe, name, ingestURL, secret, log)
				}()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(secretCheckEvery):
		}
	}
}

// checkSecret checks that backend takes batches signed with secret,
// sending it a signed batch of no events at ingestURL: an answer of 2xx
// is logged at debug level; 401 or 403 as an error naming what to
// compare (the refusal also stays on /healthz and
// edgepixel_pop_backend_failing until a request to the backend succeeds:
// pop.Server.Probe); no answer, 429 or 5xx is tried again until
// secretCheckFor has passed, then left to the module's deliveries, which
// report their own failures.
func checkSecret(ctx context.Context, probe probeFunc, backend, ingestURL string, secret []byte, log *slog.Logger) {
	body := (&wire.Encoded{}).AppendBatch(nil, 0)
	wait := secretCheckRetry
	deadline := time.Now().Add(secretCheckFor)
	for {
		ts := time.Now().Unix()
		h := http.Header{
			"Content-Type":       {wire.ContentType},
			wire.HeaderTimestamp: {strconv.FormatInt(ts, 10)},
			wire.HeaderSignature: {wire.Sign(secret, ts, body)},
		}
		code, err := probe(ctx, backend, http.MethodPost, ingestURL, h, body)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && code >= 200 && code < 300:
			log.Debug("the aggregator takes aggregator_secret", "backend", backend, "status", code)
			return
		case err == nil && (code == http.StatusUnauthorized || code == http.StatusForbidden):
			log.Error("the aggregator refuses batches signed with aggregator_secret: compare secret store edgepixel's aggregator_secret with the aggregator's --secret-file (sha256sum of each). Until then a hit reaches it only through the journal, and one the journal cannot take is lost",
				"backend", backend, "url", ingestURL, "status", code)
			return
		case err == nil && code != http.StatusTooManyRequests && code < 500:
			// Another answer (404: a wrong path) is a delivery
			// problem, which the module's batches meet and /healthz
			// lists, not the secret's.
			log.Warn("could not check aggregator_secret: the backend answered neither yes nor no", "backend", backend, "url", ingestURL, "status", code)
			return
		case time.Now().After(deadline):
			log.Warn("could not check aggregator_secret: the backend did not answer", "backend", backend, "url", ingestURL, "for", secretCheckFor, "status", code, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}
