package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/fastly/compute-sdk-go/fsthttp"
	"github.com/fastly/compute-sdk-go/rtlog"
)

// Delivery (see pixel.Batcher for the paths and their order).
//
// Config store keys:
//
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

// defaultFallback is the fallback endpoint's name unless configured.
const defaultFallback = "edgepixel_fallback"

// logWriter returns a function writing one line to the log endpoint
// name. A name the platform does not know fails every write, so what
// would go there is counted as lost rather than vanishing.
func logWriter(name string) func([]byte) error {
	ep := rtlog.Open(name)
	return func(line []byte) error {
		_, err := ep.Write(line)
		return err
	}
}

// setupDelivery points the batcher at the journal and fallback endpoints
// named in c.
func setupDelivery(c *config) {
	batcher.Counts.Pop = c.pop
	switch {
	case c.logName != "":
		batcher.Fallback = logWriter(c.logName)
	case c.fallbackName != "none":
		if c.fallbackName == "" {
			c.fallbackName = defaultFallback
		}
		batcher.Fallback = logWriter(c.fallbackName)
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
		fmt.Fprintf(os.Stderr, "edgepixel: delivering %d events to %s: %v\n", n, cfg.backend, err)
	}
}

// finish delivers what is left as the instance ends, through every path;
// what none took is counted (delivery_failed) and said here too, since
// the counts may not have reached the aggregator either.
func finish() {
	var lost int
	var err error
	if cfg.logName != "" {
		if err = batcher.Spill(time.Now()); err != nil {
			lost = batcher.Len()
		}
	} else {
		lost, err = batcher.Close(cfg.secret, send, time.Now, time.Sleep)
	}
	if lost > 0 {
		fmt.Fprintf(os.Stderr, "edgepixel: %d events lost (%s) as the instance ended: %v\n", lost, pixel.DropDeliveryFailed, err)
	}
	if t := batcher.Counts.Total(); len(t.Drops) > 0 {
		fmt.Fprintf(os.Stderr, "edgepixel: instance %s: %d hits, %d events, drops %v\n", batcher.Counts.Instance, t.Hits, t.Events, t.Drops)
	}
}

func send(b *pixel.Request) (int, time.Duration, error) {
	req, err := fsthttp.NewRequest("POST", cfg.ingestURL, bytes.NewReader(b.Body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set(wire.HeaderTimestamp, b.Timestamp)
	req.Header.Set(wire.HeaderSignature, b.Signature)
	req.CacheOptions.Pass = true
	resp, err := req.Send(context.Background(), cfg.backend)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	var retry time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retry = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retry, nil
}
