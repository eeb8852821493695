package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/redact"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// The aggregator secret is checked when the POP starts and whenever it
// changes. With the journal on, the module signs a batch only when the
// journal cannot take a line; a wrong aggregator_secret then showed only
// at that moment, when each batch the aggregator refuses is an event lost
// (a new-user tester's). The check sends each backend the module sends
// batches to a signed batch of no events, which the aggregator verifies
// as any other and stores nothing of.

// secretCheckEvery is how often the stores are looked at for a change to
// check again; secretCheckRetry the first wait before asking a backend
// that did not answer again, doubled up to secretCheckRetryMax, for as
// long as it does not answer (it is reported after secretWarnAfter).
//
// secretRecheck is how often a backend that refused the secret is asked
// again, so that /healthz keeps saying so (a backend's failure is listed
// for 10 minutes after its last request) and stops soon after it takes
// it (at 5 minutes, /healthz said degraded that long after the fix).
// secretConfirmEvery is how often a backend that took it is asked again:
// the secret may change on the aggregator's side, and with the journal
// on no batch says so until the journal fails, when every batch is
// refused (a tester restarted the aggregator with another secret; the
// POP's /healthz said ok). Both stay well under the aggregator's limit on
// failed credential checks (--auth-rate).
var (
	secretCheckEvery    = 5 * time.Second
	secretCheckRetry    = time.Second
	secretCheckRetryMax = time.Minute
	secretWarnAfter     = time.Minute
	secretRecheck       = 30 * time.Second
	secretConfirmEvery  = time.Minute
)

// probeFunc sends a request to a backend as the module's would go:
// pop.Server.Probe.
type probeFunc func(ctx context.Context, backend, method, rawURL string, header http.Header, body []byte) (int, []byte, error)

// secretCheck is what a check of one backend needs.
type secretCheck struct {
	backend, ingestURL string
	// address is the backend's url in fastly.toml, where the check goes:
	// ingestURL's host only names the request (a tester read
	// url=http://aggregator/ingest as where it went).
	address string
	secret  []byte
	// fate says what becomes of the events while the aggregator refuses
	// the secret, by the module's configuration.
	fate string
	// open is whether an earlier check of the backend logged a refusal
	// or a warning that no answer has ended since; noted is told when
	// this check logs one (true) or ends it (false).
	open  bool
	noted func(open bool)
}

// watchSecret checks the secret the module signs with against the
// backends it sends to, at start and whenever the store's entries the
// check depends on change (a reload, a rotated secret file), until ctx
// ends. stores is pop.Server.Stores; backends are the POP's
// [local_server.backends] (which it holds from its start). A check under
// way when the entries change is ended: its answer would be stale.
func watchSecret(ctx context.Context, probe probeFunc, stores func(string) (map[string]string, map[string][]byte), backends map[string]fastlytoml.Backend, log *slog.Logger) {
	var last string
	// Backends whose refusal or warning is still open, across checks: a
	// secret fixed on this side (a rotated file starts a new check) is
	// said to be taken at info level too.
	var mu sync.Mutex
	open := map[string]bool{}
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
		fate := secretFate(config)
		if key := fmt.Sprint(secret, names, ingestURL, fate); key != last {
			last = key
			cancel()
			wg.Wait()
			cctx, c := context.WithCancel(ctx)
			cancel = c
			if _, err := url.Parse(ingestURL); err != nil && len(names) > 0 {
				// Not worth asking: the module's batches fail alike,
				// before they are sent.
				log.Warn("could not check aggregator_secret: config store edgepixel's ingest_url does not parse; the module cannot send a batch either", "err", err)
				names = nil
			}
			for _, name := range names {
				wg.Add(1)
				var address string
				if u := backends[name].URL; u != nil {
					address = u.String()
				}
				go func() {
					defer wg.Done()
					for {
						mu.Lock()
						was := open[name]
						mu.Unlock()
						checkSecret(cctx, probe, secretCheck{backend: name, address: address, ingestURL: ingestURL, secret: secret, fate: fate, open: was,
							noted: func(o bool) { mu.Lock(); open[name] = o; mu.Unlock() }}, log)
						select {
						case <-cctx.Done():
							return
						case <-time.After(secretConfirmEvery):
						}
					}
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

// secretFate says what becomes of the events while the aggregator
// refuses the module's batches, by config (the edgepixel config store):
// with a journal each hit still reaches it that way, and a batch goes
// only when the journal cannot take a line; without one every batch
// goes to the fallback log endpoint, or is lost when it is "none".
func secretFate(config map[string]string) string {
	fate := "its events are lost (fallback_log_endpoint is none)"
	if fallback := storekeys.FallbackLogEndpoint(config[wire.ConfigFallbackLogEndpoint]); fallback != "" {
		fate = "its events go to the fallback log endpoint " + fallback + " instead"
	}
	if journal := config[wire.ConfigJournal]; journal != "" {
		return "each hit still reaches it through the journal log endpoint " + journal + ", but a batch, sent when the journal cannot take a line, is refused and " + fate
	}
	return "every batch is refused, and " + fate
}

// checkSecret checks that c.backend takes batches signed with c.secret,
// sending it a signed batch of no events at c.ingestURL, which an
// aggregator verifies as any other and stores nothing of:
//   - 2xx: logged at debug level, or at info after a refusal or a
//     warning;
//   - 401 or 403: an error saying what to compare (the secrets, or the
//     clocks when the aggregator says the batch's time is out of its
//     window: wire.ReasonStale) and what becomes of the events; asked
//     again every secretRecheck, so that /healthz and
//     edgepixel_pop_backend_failing keep the refusal (pop.Server.Probe)
//     and drop it once the aggregator takes the secret;
//   - no answer, 429 or 5xx: asked again, sooner at first; a warning once
//     it has lasted secretWarnAfter;
//   - any other answer (404: a wrong path): a warning, and asked again
//     as a refusal is; the module's batches meet it too.
func checkSecret(ctx context.Context, probe probeFunc, c secretCheck, log *slog.Logger) {
	body := (&wire.Encoded{}).AppendBatch(nil, 0)
	wait := secretCheckRetry
	began := time.Now()
	said := "" // the last refusal or warning logged
	if c.open {
		said = "before"
	}
	note := func(open bool) {
		if c.noted != nil {
			c.noted(open)
		}
	}
	// say logs a refusal or a warning once while it lasts: key names it
	// (the message itself, where that differs between answers).
	say := func(level slog.Level, key, msg string, attrs ...any) {
		if key != said {
			log.Log(ctx, level, msg, attrs...)
			said = key
			note(true)
		}
	}
	for {
		ts := time.Now().Unix()
		h := http.Header{
			"Content-Type":       {wire.ContentType},
			wire.HeaderTimestamp: {strconv.FormatInt(ts, 10)},
			wire.HeaderSignature: {wire.Sign(c.secret, ts, body)},
		}
		code, answer, err := probe(ctx, c.backend, http.MethodPost, c.ingestURL, h, body)
		attrs := []any{"backend", c.backend, "backend_url", redact.URL(c.address), "url", redact.URL(c.ingestURL)}
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && code >= 200 && code < 300:
			note(false)
			if said != "" {
				log.Info("the aggregator takes aggregator_secret now", attrs...)
			} else {
				log.Debug("the aggregator takes aggregator_secret", append(attrs, "status", code)...)
			}
			return
		case err == nil && (code == http.StatusUnauthorized || code == http.StatusForbidden):
			var a struct{ Reason string }
			json.Unmarshal(answer, &a)
			msg := "the aggregator refuses batches signed with aggregator_secret: compare secret store edgepixel's aggregator_secret with the aggregator's --secret-file (sha256sum of each); until then " + c.fate
			if a.Reason == wire.ReasonStale {
				msg = "the aggregator refuses the batch's time as out of its window (--replay-window, 5 minutes by default): this machine's clock and the aggregator's differ by more; set both by NTP. Until then " + c.fate
			}
			say(slog.LevelError, msg, msg, append(attrs, "status", code)...)
			wait = secretRecheck
		case err == nil && code != http.StatusTooManyRequests && code < 500:
			// A 404 is a wrong path, which the module's batches meet
			// too; asked again as a refusal is, so that /healthz keeps
			// it while the journal sends no batch.
			msg := fmt.Sprintf("could not check aggregator_secret: the backend answered %d, neither yes nor no", code)
			say(slog.LevelWarn, msg, msg, append(attrs, "status", code)...)
			wait = secretRecheck
		default:
			// A certificate refused is said at once: it is a setting
			// to fix, not an aggregator still starting.
			var cert *tls.CertificateVerificationError
			switch {
			case said != "":
			case errors.As(err, &cert):
				say(slog.LevelWarn, "certificate", "could not check aggregator_secret: the backend's TLS certificate is refused (give the backend ca_certificate or cert_host in fastly.toml, or the POP SSL_CERT_FILE); asking it again every minute", append(attrs, "err", err)...)
			case time.Since(began) >= secretWarnAfter:
				say(slog.LevelWarn, "unanswered", "could not check aggregator_secret: the backend has not answered; asking it again every minute", append(attrs, "for", time.Since(began).Round(time.Second), "status", code, "err", err)...)
			}
			if wait == secretRecheck && code != http.StatusTooManyRequests {
				wait = secretCheckRetry // refused, then down; a 429 is the aggregator's limit on refusals
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if wait != secretRecheck {
			wait = min(2*wait, secretCheckRetryMax)
		}
	}
}
