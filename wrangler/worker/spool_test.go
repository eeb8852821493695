package worker

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// spooled serves events for sites and fails the batch and its fallback:
// the bytes the worker hands to the spool.
func spooled(t *testing.T, w *Worker, body string) []byte {
	t.Helper()
	_, h := serve(t, w, request(t, "POST", "https://px.test/e", "", body), 204)
	w.Next(h, Start)
	w.Next(h, Failed)
	d, err := w.Next(h, Failed)
	if d == nil || !d.Spool || d.URL != "" || err != nil {
		t.Fatalf("after the fallback: %+v %v, want the spool", d, err)
	}
	b := append([]byte(nil), d.Body...)
	if d, err := w.Next(h, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
	return b
}

func TestSpooledIsDeliveredNotLost(t *testing.T) {
	w := newWorker(t, nil)
	b := spooled(t, w, `[{"site":"shop","url":"https://shop.test/1"},{"site":"blog"}]`)
	if w.Spooled() != 2 {
		t.Errorf("Spooled %d, want 2", w.Spooled())
	}
	if c := w.Counts("shop"); c.Dropped(wire.DropDeliveryFailed) != 0 {
		t.Errorf("spooled events counted lost: %+v", c)
	}
	evs, c, err := wire.DecodeBatch(nil, b)
	if err != nil || len(evs) != 2 || c == nil {
		t.Fatalf("the spooled bytes: %d events, counters %v, %v", len(evs), c, err)
	}
	// The slot's counts were reported with the spooled batch.
	_, h := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "", ""), 200)
	d, _ := w.Next(h, Start)
	if evs, _ := wire.Decode(nil, d.Body); len(evs) != 1 {
		t.Errorf("%d events in the next batch, want 1", len(evs))
	}
}

// The spool's delivery is signed when it is sent, not when it was
// spooled: the aggregator refuses signatures older than its window.
func TestSpoolDeliverySignsAfresh(t *testing.T) {
	w := newWorker(t, nil)
	b := spooled(t, w, `[{"site":"shop"}]`)
	later := time.Now().Add(time.Hour)
	d, err := w.SpoolDelivery(b, later)
	if err != nil {
		t.Fatal(err)
	}
	if d.URL != "https://agg.test/ingest" || !bytes.Equal(d.Body, b) || d.Fallback {
		t.Fatalf("%+v", d)
	}
	ts := header(d, wire.HeaderTimestamp)
	if ts != strconv.FormatInt(later.Unix(), 10) {
		t.Errorf("timestamp %s, want %d", ts, later.Unix())
	}
	if err := wire.Verify(secret, ts, header(d, wire.HeaderSignature), d.Body, later, time.Minute); err != nil {
		t.Error(err)
	}
	// With a log token only: NDJSON lines with the bearer token.
	w = newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigLogToken: "tok"})
	d, err = w.SpoolDelivery(b, later)
	if err != nil || d.URL != "https://agg.test/ingest/ndjson" || header(d, "Authorization") != "Bearer tok" || !bytes.Contains(d.Body, []byte(`"site":"shop"`)) {
		t.Fatalf("%+v %v", d, err)
	}
	// No URL, or only the placeholder: the spool keeps the batch.
	for _, u := range []string{"", "https://aggregator.example.com/ingest"} {
		c, _ := ParseConfig(func(k string) string { return map[string]string{ConfigSecret: "s", ConfigIngestURL: u}[k] })
		if _, err := New(c).SpoolDelivery(b, later); !errors.Is(err, ErrNowhere) {
			t.Errorf("ingest_url %q: %v, want ErrNowhere", u, err)
		}
	}
	// A batch that does not decode is another error.
	if _, err := newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigLogToken: "tok"}).SpoolDelivery([]byte("junk"), later); err == nil || errors.Is(err, ErrNowhere) {
		t.Errorf("junk: %v", err)
	}
}

func TestSpoolLostCountsEveryEvent(t *testing.T) {
	w := newWorker(t, nil)
	b := spooled(t, w, `[{"site":"shop"},{"site":"shop"},{"site":"blog"}]`)
	now := time.Now()
	recs, n, err := w.SpoolLost(b, now)
	if err != nil || n != 3 || len(recs) != 2 {
		t.Fatalf("%d records, %d events, %v", len(recs), n, err)
	}
	_, orig, _ := wire.DecodeBatch(nil, b)
	lost := map[string]uint64{}
	for i, r := range recs {
		evs, c, err := wire.DecodeBatch(nil, r)
		if err != nil || len(evs) != 0 || c == nil || c.Validate() != nil {
			t.Fatalf("record %d: %d events, %+v, %v", i, len(evs), c, err)
		}
		if i == 0 {
			// The batch's own counts, unchanged.
			if c.Instance != orig.Instance || len(c.Sites) != len(orig.Sites) {
				t.Errorf("the batch's counts: %+v, want %+v", c, orig)
			}
			continue
		}
		if c.Instance == orig.Instance {
			t.Error("the loss reuses the batch's instance: a later report of it would replace the loss")
		}
		for _, s := range c.Sites {
			if s.Hits != 0 || s.Events != 0 || s.Time != now.UnixMilli() {
				t.Errorf("loss of %s: %+v", s.Site, s)
			}
			lost[s.Site] += s.Dropped(wire.DropDeliveryFailed)
		}
	}
	if lost["shop"] != 2 || lost["blog"] != 1 || len(lost) != 2 {
		t.Errorf("lost %v", lost)
	}
	if _, _, err := w.SpoolLost([]byte("nonsense"), now); err == nil {
		t.Error("a bad batch: no error")
	}
}

func TestSpoolConfig(t *testing.T) {
	c, err := ParseConfig(func(k string) string {
		return map[string]string{ConfigDeliveryDeadline: "1000", ConfigSpoolRetry: "200", ConfigSpoolRetryMax: "100", ConfigSpoolMaxBytes: "4096", ConfigSpoolMaxAge: "60"}[k]
	})
	if err != nil || c.DeliveryDeadline != time.Second || c.SpoolRetry != 200*time.Millisecond || c.SpoolRetryMax != 200*time.Millisecond || c.SpoolMaxBytes != 4096 || c.SpoolMaxAge != time.Minute {
		t.Errorf("%+v %v", c, err)
	}
	c, err = ParseConfig(func(k string) string {
		return map[string]string{ConfigDeliveryDeadline: "60000", ConfigSpoolMaxAge: "x", ConfigSpoolMaxBytes: "0"}[k]
	})
	if err == nil || c.DeliveryDeadline != DefaultDeliveryDeadline || c.SpoolMaxAge != DefaultSpoolMaxAge || c.SpoolMaxBytes != DefaultSpoolMaxBytes {
		t.Errorf("bad values: %+v %v", c, err)
	}
}
