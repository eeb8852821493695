package worker

import (
	"crypto/rand"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// # The spool
//
// A batch that neither the aggregators' /ingest nor their /ingest/ndjson
// took within Config.DeliveryDeadline goes to the spool: a Durable Object
// (src/spool.js, bound as SPOOL) that stores the batch's bytes on disk
// before it answers, and delivers them from its alarm, oldest first, with
// waits from Config.SpoolRetry doubling to Config.SpoolRetryMax, until an
// aggregator acknowledges each; then it deletes it. The bytes are the
// batch as pixel.Batcher took it, so its events keep their ids and its
// counts their instance: a delivery whose answer was lost and is sent
// again is stored once by the aggregator's dedupe, and counts are
// cumulative per instance. The aggregator refuses signatures older than
// its replay window (5 minutes by default), so the spool signs each
// delivery afresh (SpoolDelivery).
//
// The spool is bounded (Config.SpoolMaxBytes, Config.SpoolMaxAge). A
// batch it cannot keep, or that the aggregator refuses for good (400,
// 413), is replaced by SpoolLost's records, a few bytes that count its
// events as wire.DropDeliveryFailed and carry its counts, and are
// delivered like any batch: every loss is counted, in the aggregator's
// edge_counters, as on Fastly.

// ErrNowhere is SpoolDelivery's error when the worker has no URL to
// deliver to (none set, or only placeholders): the spool keeps the batch
// and tries again later, since the URL is a var that a deploy sets, and
// the spool outlives deploys.
var ErrNowhere = fmt.Errorf("worker: the spool has nowhere to deliver, so it keeps its batches: set %s (or %s)", ConfigIngestURL, ConfigNDJSONURL)

// SpoolDelivery returns the POST that delivers batch, a batch the spool
// holds, now: to ingest_url signed at now when the worker has the
// aggregator secret, else as NDJSON lines to ndjson_url (signed, or with
// the log token). It fails with ErrNowhere when the worker has no URL to
// send it to, and with another error when batch does not decode. The
// Delivery is valid until the next call of SpoolDelivery, Next or Serve.
func (w *Worker) SpoolDelivery(batch []byte, now time.Time) (*Delivery, error) {
	if len(w.cfg.Secret) > 0 && w.cfg.IngestURL != "" {
		ts := now.Unix()
		return w.delivery(w.cfg.IngestURL, wire.ContentType, batch, strconv.FormatInt(ts, 10), wire.Sign(w.cfg.Secret, ts, batch), true), nil
	}
	if w.cfg.NDJSONURL == "" {
		return nil, ErrNowhere
	}
	evs, c, err := wire.DecodeBatch(w.spoolEvs[:0], batch)
	w.spoolEvs = evs
	if err != nil {
		return nil, fmt.Errorf("worker: a spooled batch does not decode: %v", err)
	}
	w.spoolLines = AppendNDJSON(w.spoolLines[:0], evs, c)
	clear(w.spoolEvs)
	var ts, sig string
	if len(w.cfg.Secret) > 0 {
		ts, sig = strconv.FormatInt(now.Unix(), 10), wire.Sign(w.cfg.Secret, now.Unix(), w.spoolLines)
	}
	d := w.delivery(w.cfg.NDJSONURL, "application/x-ndjson", w.spoolLines, ts, sig, true)
	d.Fallback = true
	if sig == "" && w.cfg.LogToken != "" {
		d.Header = append(d.Header, pixel.Field{Name: "Authorization", Value: "Bearer " + w.cfg.LogToken})
	}
	return d, nil
}

// SpoolLost returns what the spool keeps in place of batch when it must
// drop it (past its bounds, or refused for good), and how many events
// batch held. The records are batches without events: the batch's own
// counts when it carried any (its instance's cumulative counts, which may
// be the last report of that instance), and the loss: a counters record
// of a new instance (minted at now, so that it adds to, never replaces,
// any other instance's counts) holding, per site, batch's events as
// wire.DropDeliveryFailed, split into records of at most
// wire.MaxCounterSites sites.
func (w *Worker) SpoolLost(batch []byte, now time.Time) (records [][]byte, events int, err error) {
	evs, c, err := wire.DecodeBatch(nil, batch)
	if err != nil {
		return nil, 0, fmt.Errorf("worker: a spooled batch does not decode: %v", err)
	}
	if c != nil {
		records = append(records, wire.AppendWithCounters(nil, nil, c))
	}
	if len(evs) == 0 {
		return records, 0, nil
	}
	per := map[string]uint64{}
	for i := range evs {
		per[evs[i].Site]++
	}
	sites := make([]string, 0, len(per))
	for s := range per {
		sites = append(sites, s)
	}
	sort.Strings(sites)
	pop := w.cfg.Pop
	switch {
	case c != nil && c.Pop != "":
		pop = c.Pop
	case evs[0].Pop != "":
		pop = evs[0].Pop
	case pop == "":
		pop = "unknown"
	}
	for len(sites) > 0 {
		k := min(len(sites), wire.MaxCounterSites)
		lost := wire.Counters{Pop: pop}
		if lost.Instance, err = event.NewID(now.UnixMilli(), rand.Reader); err != nil {
			return nil, 0, err
		}
		for _, s := range sites[:k] {
			lost.Sites = append(lost.Sites, wire.SiteCounts{Site: s, Time: now.UnixMilli(),
				Drops: []wire.Drop{{Reason: wire.DropDeliveryFailed, N: per[s]}}})
		}
		records = append(records, wire.AppendWithCounters(nil, nil, &lost))
		sites = sites[k:]
	}
	return records, len(evs), nil
}
