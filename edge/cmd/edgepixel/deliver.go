package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/edge/hostcall"
	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/storekeys"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/fastly/compute-sdk-go/rtlog"
)

// Delivery (see pixel.Batcher for the paths and their order).
//
// Config store keys:
//
//	backend                the aggregator backend, or several separated by
//	                       commas ("aggregator,aggregator2"): a batch goes to
//	                       one and, if that one does not answer or answers
//	                       429 or 5xx, to the next, all within one attempt;
//	                       each attempt starts one further along the list,
//	                       which spreads batches over the aggregators. The
//	                       aggregators must share one Redis (Cluster) for
//	                       dedupe: a batch's bytes, and so its event ids, are
//	                       the same whichever of them takes it, so a batch
//	                       that reached one whose answer was lost is stored
//	                       once. Default "aggregator".
//	journal                a log endpoint each hit's line is written to
//	                       before the visitor is answered; for hosts whose
//	                       endpoint queues on disk (edgepixel-pop with
//	                       queue=DIR). Unset: no journal (Fastly).
//	fallback_log_endpoint  the log endpoint that takes what batches cannot
//	                       deliver; default edgepixel_fallback (the
//	                       endpoint edge/fastly.toml's [setup] creates,
//	                       streaming to the aggregator's /ingest/ndjson);
//	                       "none" turns it off.
//	log_endpoint           deliver by log lines only, no batches (the
//	                       fallback endpoint is then this one).
//
// The names are resolved once per instance.

// logWriter returns a function writing one line to the log endpoint
// name. A name the platform does not know fails every write, so what
// would go there is counted as lost rather than vanishing. Its error
// names the endpoint: the SDK's says only "Fastly error: Error", and the
// cause (on the self-hosted POP: a queue full, or a disk that cannot
// write) is in the host's log, not the guest's (tester90).
func logWriter(name string) func([]byte) error {
	ep := rtlog.Open(name)
	return func(line []byte) error {
		if _, err := ep.Write(line); err != nil {
			return fmt.Errorf("log endpoint %s refused the entry (%w; the host's log says why)", name, err)
		}
		return nil
	}
}

// setupDelivery points the batcher at the journal and fallback endpoints
// named in c.
func setupDelivery(c *config) {
	batcher.Counts.Pop = c.pop
	switch fallback := storekeys.FallbackLogEndpoint(c.fallbackName); {
	case c.logName != "":
		batcher.Fallback = logWriter(c.logName)
	case fallback != "":
		batcher.Fallback = logWriter(fallback)
	}
	if c.journalName != "" {
		batcher.Journal = logWriter(c.journalName)
	}
}

// flush delivers the buffer after the visitor was answered. Failures are
// logged; what the fallback did not take stays buffered for the next
// flush.
func flush() {
	if cfg.logName != "" {
		n := batcher.Len()
		if err := batcher.Spill(time.Now()); err != nil {
			fmt.Fprintf(os.Stderr, "edgepixel: logging %d events to %s: %v (%d still buffered)\n", n, cfg.logName, err, batcher.Len())
		}
		return
	}
	n := batcher.Len()
	if err := batcher.Flush(cfg.secret, send, time.Now, time.Sleep); err != nil {
		// The backend's name, and the path alone: the URL's host is a
		// name Fastly routes by, not the aggregator's address, which
		// the service's (or the POP's fastly.toml) backend holds (a
		// new-user tester took "http://aggregator/ingest" for a
		// misconfigured address).
		path, _ := splitURI([]byte(cfg.ingestURL))
		fmt.Fprintf(os.Stderr, "edgepixel: delivering %d events to backend %s, POST %s: %v\n", n, strings.Join(cfg.backends, ","), path, err)
	}
}

// finish delivers what is left as the instance ends, through every path;
// what none took is counted (delivery_failed) and said here too, since
// the counts may not have reached the aggregator either.
func finish() {
	var lost int
	var err error
	if cfg.logName != "" {
		lost, err = batcher.End(time.Now())
	} else {
		lost, err = batcher.Close(cfg.secret, send, time.Now, time.Sleep)
	}
	if lost > 0 {
		fmt.Fprintf(os.Stderr, "edgepixel: %d events lost (%s) as the instance ended: %v\n", lost, wire.DropDeliveryFailed, err)
	}
	if t := batcher.Counts.Total(); len(t.Drops) > 0 {
		fmt.Fprintf(os.Stderr, "edgepixel: instance %s: %d hits, %d events, drops %v\n", batcher.Counts.Instance, t.Hits, t.Events, t.Drops)
	}
}

// nextBackend is where the next attempt starts in cfg.backends. Each
// instance starts at a random place, so that instances spread their
// first batches too.
var nextBackend = func() int {
	var b [1]byte
	rand.Read(b[:])
	return int(b[0])
}()

// backendRest is how long a backend that failed is tried last.
const backendRest = 5 * time.Second

// failedAt is when each of cfg.backends last failed (zero: never).
var failedAt []time.Time

// send makes one attempt at delivering a batch: to each backend in turn,
// from nextBackend on, until one answers with anything but 429 or 5xx.
// A backend that failed within backendRest is tried after the others,
// so that a dead aggregator costs a batch no time while another answers.
// It returns that answer, or the last failure.
func send(b *pixel.Request) (int, time.Duration, error) {
	n := len(cfg.backends)
	if len(failedAt) != n {
		failedAt = make([]time.Time, n)
	}
	start := nextBackend % n
	nextBackend++
	now := time.Now()
	order := make([]int, 0, n)
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < n; i++ {
			k := (start + i) % n
			if resting := now.Sub(failedAt[k]) < backendRest; resting == (pass == 1) {
				order = append(order, k)
			}
		}
	}
	var status int
	var retry time.Duration
	var err error
	for _, k := range order {
		status, retry, err = sendTo(cfg.backends[k], b)
		if err == nil && status != 429 && status < 500 {
			return status, retry, nil
		}
		failedAt[k] = time.Now()
		if n > 1 {
			fmt.Fprintf(os.Stderr, "edgepixel: backend %s: status %d, %v; trying the next\n", cfg.backends[k], status, err)
		}
	}
	return status, retry, err
}

// sendTo posts the batch to one backend.
func sendTo(backend string, b *pixel.Request) (int, time.Duration, error) {
	req, err := hostcall.NewBackendRequest("POST", cfg.ingestURL)
	if err != nil {
		return 0, 0, err
	}
	for _, h := range [...][2]string{
		{"Content-Type", wire.ContentType},
		{wire.HeaderTimestamp, b.Timestamp},
		{wire.HeaderSignature, b.Signature},
	} {
		if err := req.AppendHeader(h[0], h[1]); err != nil {
			return 0, 0, err
		}
	}
	resp, err := req.Send(backend, b.Body)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Close()
	status, err := resp.StatusCode()
	if err != nil {
		return 0, 0, err
	}
	var retry time.Duration
	if v, ok, _ := resp.Header("Retry-After", nil); ok {
		if s, err := strconv.Atoi(string(v)); err == nil {
			retry = time.Duration(s) * time.Second
		}
	}
	return status, retry, nil
}
