package worker

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/wire"
)

var secret = []byte("test-secret")

func getter(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func newWorker(t *testing.T, env map[string]string) *Worker {
	t.Helper()
	if env == nil {
		env = map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: string(secret) + "\n", ConfigBatchWait: "100"}
	}
	c, err := ParseConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return New(c)
}

func request(t *testing.T, method, url, headers string, body string) *Request {
	t.Helper()
	var r Request
	text := method + "\n" + url + "\nDE\nHE\nFrankfurt\n3320\n42\nFRA\n" + headers
	if err := ParseRequest(text, []byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestParseRequest(t *testing.T) {
	r := request(t, "GET", "https://px.test/p.gif?site=a", "user-agent:UA/1\nreferer:https://a.test/x\ncf-connecting-ip:203.0.113.7\n", "")
	if r.Method != "GET" || r.CF.Country != "DE" || r.CF.Region != "HE" || r.CF.City != "Frankfurt" || r.CF.ASN != "3320" || r.CF.BotScore != "42" || r.CF.Colo != "FRA" {
		t.Errorf("%+v", r)
	}
	if r.Header("User-Agent") != "UA/1" || r.Header("CF-Connecting-IP") != "203.0.113.7" || r.Header("origin") != "" {
		t.Errorf("headers: %q %q", r.Header("User-Agent"), r.Header("CF-Connecting-IP"))
	}
	if err := ParseRequest("GET\nhttps://x/\n", nil, r); err != ErrBadRequest {
		t.Errorf("short block: %v", err)
	}
}

func TestSplitURL(t *testing.T) {
	for _, c := range []struct{ in, path, q string }{
		{"https://px.test/p.gif?site=a&b=c#f", "/p.gif", "site=a&b=c"},
		{"https://px.test", "/", ""},
		{"https://px.test?site=a", "/", "site=a"},
		{"http://127.0.0.1:8787/e", "/e", ""},
	} {
		if p, q := splitURL(c.in); p != c.path || q != c.q {
			t.Errorf("%s: %q %q", c.in, p, q)
		}
	}
}

// serve serves r and checks the answer's status.
func serve(t *testing.T, w *Worker, r *Request, status int) (*pixel.Response, uint32) {
	t.Helper()
	resp, h, _ := w.Serve(r, time.Now())
	if resp.Status != status {
		t.Fatalf("%s %s: %d, want %d (drop %q)", r.Method, r.URL, resp.Status, status, resp.Drop)
	}
	return resp, h
}

func header(d *Delivery, name string) string {
	for _, f := range d.Header {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func TestPixelDeliveredAsSignedBatch(t *testing.T) {
	w := newWorker(t, nil)
	resp, h := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop&url=https%3A%2F%2Fshop.test%2Fa%3Futm_source%3Dnews", "user-agent:UA/1\ncf-connecting-ip:203.0.113.7\n", ""), 200)
	if !bytes.Equal(resp.Body, pixel.GIF) || h == 0 {
		t.Fatalf("body %d bytes, handle %d", len(resp.Body), h)
	}
	d, err := w.Next(h, Start)
	if err != nil || d == nil {
		t.Fatal(d, err)
	}
	if d.URL != "https://agg.test/ingest" || header(d, "Content-Type") != wire.ContentType {
		t.Errorf("delivery to %s %v", d.URL, d.Header)
	}
	if err := wire.Verify(secret, header(d, wire.HeaderTimestamp), header(d, wire.HeaderSignature), d.Body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	evs, c, err := wire.DecodeBatch(nil, d.Body)
	if err != nil || len(evs) != 1 || c == nil {
		t.Fatalf("batch: %v %d events, counters %v", err, len(evs), c)
	}
	e := evs[0]
	if e.Site != "shop" || e.URL != "https://shop.test/a" || e.UTMSource != "news" || e.Country != "DE" || e.Pop != "FRA" || e.ClientIP != "" || e.UserAgent != "UA/1" || e.Method != "GET" {
		t.Errorf("event: %+v", e)
	}
	if c.Sites[0].Hits != 1 || c.Sites[0].Events != 1 {
		t.Errorf("counts: %+v", c.Sites)
	}
	if d, err := w.Next(h, Delivered); d != nil || err != nil {
		t.Fatalf("after delivery: %v %v", d, err)
	}
	if _, err := w.Next(h, Start); err == nil {
		t.Error("an ended delivery accepted an outcome")
	}
	// The slot is reused, and its counts were reported: the next batch
	// carries the new counts only.
	_, h2 := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "", ""), 200)
	d, _ = w.Next(h2, Start)
	_, c, _ = wire.DecodeBatch(nil, d.Body)
	if w.Slots() != 1 || c.Sites[0].Hits != 2 {
		t.Errorf("%d slots, counts %+v", w.Slots(), c.Sites)
	}
	w.Next(h2, Delivered)
}

// A request that brings only a drop gets a batch, so that its count is
// delivered without waiting for a later request; a hit meanwhile joins
// the same batch.
func TestDropsAloneGetABatch(t *testing.T) {
	w := newWorker(t, nil)
	resp, h := serve(t, w, request(t, "GET", "https://px.test/p.gif", "", ""), 200)
	if resp.Drop != wire.DropMissingSite || h == 0 {
		t.Fatalf("drop %q handle %d", resp.Drop, h)
	}
	if _, h2 := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=a", "", ""), 200); h2 != h {
		t.Fatalf("a hit after the drop went to batch %d, not the open batch %d", h2, h)
	}
	d, _ := w.Next(h, Start)
	evs, c, _ := wire.DecodeBatch(nil, d.Body)
	var dropped uint64
	for _, s := range c.Sites {
		dropped += s.Dropped(wire.DropMissingSite)
	}
	if dropped != 1 || len(evs) != 1 {
		t.Errorf("batch of %d events, counts %+v; want the hit and the missing_site drop", len(evs), c.Sites)
	}
	w.Next(h, Delivered)
	// After the delivery, a later drop alone gets a batch of its own.
	if _, h3 := serve(t, w, request(t, "GET", "https://px.test/p.gif", "", ""), 200); h3 == 0 {
		t.Error("a second drop alone got no batch")
	}
}

func TestFallbackLinesAreWhatSpillWrites(t *testing.T) {
	w := newWorker(t, nil)
	body := `[{"site":"shop","name":"signup","props":{"plan":"pro"}},{"site":"blog","name":"read","url":"https://blog.test/x"}]`
	_, h := serve(t, w, request(t, "POST", "https://px.test/e", "content-type:text/plain\n", body), 204)
	d, _ := w.Next(h, Start)
	batch := append([]byte(nil), d.Body...)
	d, err := w.Next(h, Failed)
	if err != nil || d == nil {
		t.Fatal(d, err)
	}
	if d.URL != "https://agg.test/ingest/ndjson" || header(d, "Content-Type") != "application/x-ndjson" {
		t.Errorf("fallback to %s %v", d.URL, d.Header)
	}
	if err := wire.Verify(secret, header(d, wire.HeaderTimestamp), header(d, wire.HeaderSignature), d.Body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	// What a Batcher holding the same events would write to its
	// fallback log endpoint.
	evs, c, _ := wire.DecodeBatch(nil, batch)
	var want []byte
	for i := range evs {
		want = append(wire.AppendEventLine(want, &evs[i], event.ID{}, nil), '\n')
	}
	want = append(wire.AppendCountersLine(want, c), '\n')
	if !bytes.Equal(d.Body, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", d.Body, want)
	}
	if n := strings.Count(string(d.Body), "\n"); n != 3 {
		t.Errorf("%d lines", n)
	}
	if d, err := w.Next(h, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
	if c := w.Counts("shop"); c.Dropped(wire.DropDeliveryFailed) != 0 {
		t.Errorf("counted a loss: %+v", c)
	}
	// The slot is empty: the next delivery holds the next request's event only.
	_, h = serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "", ""), 200)
	d, _ = w.Next(h, Start)
	if evs, _ := wire.Decode(nil, d.Body); len(evs) != 1 {
		t.Errorf("%d events after the fallback took them", len(evs))
	}
}

func TestEveryPathFailsCountsTheLoss(t *testing.T) {
	w := newWorker(t, nil)
	_, h := serve(t, w, request(t, "POST", "https://px.test/e", "", `[{"site":"shop"},{"site":"shop"}]`), 204)
	w.Next(h, Start)
	w.Next(h, Failed)
	// Then the spool, which there is none of (or which did not answer).
	if d, err := w.Next(h, Failed); d == nil || !d.Spool || err != nil {
		t.Fatalf("after the fallback: %+v %v, want the spool", d, err)
	}
	d, err := w.Next(h, Failed)
	if d != nil || err == nil || !strings.Contains(err.Error(), "2 events lost") {
		t.Fatalf("%v %v", d, err)
	}
	if c := w.Counts("shop"); c.Dropped(wire.DropDeliveryFailed) != 2 || c.Events != 2 || c.Hits != 1 {
		t.Errorf("counts %+v", c)
	}
	// The loss is reported with the slot's next delivery.
	_, h = serve(t, w, request(t, "GET", "https://px.test/p.gif?site=blog", "", ""), 200)
	d, _ = w.Next(h, Start)
	evs, c, err := wire.DecodeBatch(nil, d.Body)
	if err != nil || len(evs) != 1 {
		t.Fatal(err, len(evs))
	}
	var lost uint64
	for _, s := range c.Sites {
		lost += s.Dropped(wire.DropDeliveryFailed)
	}
	if lost != 2 {
		t.Errorf("next batch reports %d lost: %+v", lost, c.Sites)
	}
}

func TestConcurrentDeliveriesUseTheirOwnSlots(t *testing.T) {
	w := newWorker(t, nil)
	_, h1 := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=a", "", ""), 200)
	d1, _ := w.Next(h1, Start)
	b1 := append([]byte(nil), d1.Body...)
	// A second request arrives while the first's batch is out.
	_, h2 := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=b", "", ""), 200)
	if h1 == h2 {
		t.Fatal("two deliveries in one slot")
	}
	d2, _ := w.Next(h2, Start)
	if evs, _ := wire.Decode(nil, d2.Body); len(evs) != 1 || evs[0].Site != "b" {
		t.Errorf("second batch: %+v", evs)
	}
	if d, err := w.Next(h2, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
	if evs, _ := wire.Decode(nil, b1); len(evs) != 1 || evs[0].Site != "a" {
		t.Errorf("first batch: %+v", evs)
	}
	if d, err := w.Next(h1, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
	// Both slots idle: sequential requests reuse the last one.
	serve(t, w, request(t, "GET", "https://px.test/p.gif?site=c", "", ""), 200)
	if w.Slots() != 2 {
		t.Errorf("%d slots", w.Slots())
	}
}

func TestLogTokenWithoutSecret(t *testing.T) {
	w := newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigLogToken: "tok"})
	_, h := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=a", "", ""), 200)
	d, _ := w.Next(h, Start)
	if d == nil || d.URL != "https://agg.test/ingest/ndjson" || header(d, "Authorization") != "Bearer tok" || header(d, wire.HeaderSignature) != "" {
		t.Fatalf("%+v", d)
	}
	if !strings.HasPrefix(string(d.Body), `{"event_id":`) {
		t.Errorf("lines: %s", d.Body)
	}
	if d, err := w.Next(h, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
}

func TestCORSFromConfig(t *testing.T) {
	w := newWorker(t, map[string]string{pixel.ConfigCORSOrigins: "shop=https://shop.test", pixel.ConfigCORSDefault: "none"})
	resp, _ := serve(t, w, request(t, "POST", "https://px.test/e", "origin:https://evil.test\n", `{"site":"shop"}`), 403)
	if resp.Drop != wire.DropOriginNotAllowed {
		t.Errorf("drop %q", resp.Drop)
	}
	resp, _ = serve(t, w, request(t, "POST", "https://px.test/e", "origin:https://shop.test\n", `{"site":"shop"}`), 204)
	if resp.Get("Access-Control-Allow-Origin") != "https://shop.test" {
		t.Errorf("ACAO %q", resp.Get("Access-Control-Allow-Origin"))
	}
}

func TestOversizedBodyRefused(t *testing.T) {
	w := newWorker(t, nil)
	resp, h := serve(t, w, request(t, "POST", "https://px.test/e", "", `{"site":"a","url":"`+strings.Repeat("x", pixel.MaxPostBody)+`"}`), 413)
	if resp.Drop != wire.DropTooLarge || h == 0 {
		t.Errorf("drop %q handle %d; want the drop counted in a batch", resp.Drop, h)
	}
}

func TestIdleSlotsCountsAreDelivered(t *testing.T) {
	w := newWorker(t, nil)
	// Two concurrent deliveries that both fail for good.
	var hs []uint32
	for _, site := range []string{"a", "b"} {
		_, h := serve(t, w, request(t, "GET", "https://px.test/p.gif?site="+site, "", ""), 200)
		w.Next(h, Start)
		hs = append(hs, h)
	}
	for _, h := range hs {
		w.Next(h, Failed)
		w.Next(h, Failed)
		w.Next(h, Failed) // the spool
	}
	// Later sequential requests deliver both slots' losses, not one
	// slot's again and again.
	later := time.Now().Add(2 * time.Second)
	lost := map[string]uint64{}
	for i := 0; i < 2; i++ {
		resp, h, _ := w.Serve(request(t, "GET", "https://px.test/p.gif?site=c", "", ""), later)
		if resp.Status != 200 || h == 0 {
			t.Fatal(resp.Status, h)
		}
		d, _ := w.Next(h, Start)
		_, c, _ := wire.DecodeBatch(nil, d.Body)
		for _, s := range c.Sites {
			lost[s.Site] += s.Dropped(wire.DropDeliveryFailed)
		}
		w.Next(h, Delivered)
	}
	if lost["a"] != 1 || lost["b"] != 1 {
		t.Errorf("losses reported: %v", lost)
	}
}

// request.cf's geography and bot score reach the event's columns, as
// Fastly's geolocation does in the Fastly module; Cloudflare's score (42:
// likely human) leaves a browser a person (TestCFBotScore), and a
// verified bot scores 100. Sec-GPC puts the hit in the aggregate tier;
// visitor ids come from the salts in the environment.
func TestCFFieldsAndPrivacy(t *testing.T) {
	now := time.Now()
	day := privacy.Day(now)
	env := map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: string(secret),
		privacy.SaltKey(day): privacy.NewSalt(day, [16]byte{7}).String(), "site.shop": "sign=mark"}
	w := newWorker(t, env)
	one := func(r *Request) event.Event {
		t.Helper()
		_, h := serve(t, w, r, 200)
		d, err := w.Next(h, Start)
		if err != nil || d == nil {
			t.Fatal(d, err)
		}
		evs, _, err := wire.DecodeBatch(nil, d.Body)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%v %d", err, len(evs))
		}
		w.Next(h, Delivered)
		return evs[0]
	}
	const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	e := one(request(t, "GET", "https://px.test/p.gif?site=shop", "user-agent:"+chrome+"\ncf-connecting-ip:203.0.113.7\n", ""))
	if e.Country != "DE" || e.Region != "HE" || e.City != "Frankfurt" || e.ASN != 3320 || e.BotScore != 0 || e.BotReason != "" || e.Device == "bot" ||
		e.Browser != "Chrome" || e.Tier != "full" || e.VisitorID == 0 || e.Signature != pixel.SignatureUnsigned || e.ClientIP != "" {
		t.Errorf("event %+v", e)
	}
	var r Request
	if err := ParseRequest("GET\nhttps://px.test/p.gif?site=shop\nDE\n\n\n\nverified\nFRA\nuser-agent:"+chrome+"\nsec-gpc:1\ncf-connecting-ip:203.0.113.7\n", nil, &r); err != nil {
		t.Fatal(err)
	}
	e = one(&r)
	if e.BotScore != 100 || e.BotReason != "verified_bot" || e.Device != "bot" || e.Tier != "aggregate" || e.ConsentReason != "gpc" || e.VisitorID != 0 || e.UserAgent != "" {
		t.Errorf("verified bot with Sec-GPC: %+v", e)
	}
}

// TestSeveralAggregators: ingest_url may list aggregators; the fallback's
// URLs follow each of them.
// TestCFBotScore: Cloudflare's 30-99 mean a human, and were turned into
// bot scores 70-1 that outscored the edge's 0 for a browser, so that
// people were stored with bot_reason "platform", and those scoring 30-50
// as bots (bot_score >= event.BotScoreMin).
func TestCFBotScore(t *testing.T) {
	for in, want := range map[string]uint8{"99": 0, "42": 0, "30": 0, "29": 71, "2": 98, "1": 99, "": 0, "0": 0, "100": 0, "x": 0} {
		got, reason := cfBotScore(in)
		if got != want || reason != "" {
			t.Errorf("cfBotScore(%q) = %d %q, want %d", in, got, reason, want)
		}
		if got > 0 && got < event.BotScoreMin {
			t.Errorf("cfBotScore(%q) = %d: likely automated below event.BotScoreMin", in, got)
		}
	}
	if got, reason := cfBotScore("verified"); got != 100 || reason != "verified_bot" {
		t.Errorf("verified: %d %q", got, reason)
	}
}

func TestSeveralAggregators(t *testing.T) {
	c, err := ParseConfig(func(k string) string {
		return map[string]string{ConfigIngestURL: "https://a.test/ingest, https://b.test/ingest/"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://a.test/ingest/ndjson,https://b.test/ingest/ndjson"; c.NDJSONURL != want {
		t.Fatalf("ndjson_url %q, want %q", c.NDJSONURL, want)
	}
	// A trailing slash is a path the aggregator does not serve.
	if want := "https://a.test/ingest,https://b.test/ingest"; c.IngestURL != want {
		t.Errorf("ingest_url %q, want %q", c.IngestURL, want)
	}
	// wrangler.toml's placeholder, and any name RFC 2606 keeps for
	// examples, is reported and left out: nothing is sent to it. An
	// ndjson_url left out is as one not set: the default.
	for in, want := range map[string]string{
		"https://aggregator.example.com/ingest":                 "",
		"https://EXAMPLE.org./ingest,https://a.test/ingest":     "https://a.test/ingest",
		"http://agg.invalid/ingest, http://agg.example/ingest/": "",
		"https://example.com.agg.test/ingest":                   "https://example.com.agg.test/ingest",
		"https://myexample.com/ingest":                          "https://myexample.com/ingest",
	} {
		c, err := ParseConfig(func(k string) string { return map[string]string{ConfigIngestURL: in}[k] })
		if c.IngestURL != want || c.NDJSONURL != strings.ReplaceAll(want, "/ingest", "/ingest/ndjson") {
			t.Errorf("ingest_url %q: %q and ndjson_url %q, want %q", in, c.IngestURL, c.NDJSONURL, want)
		}
		if (err != nil && strings.Contains(err.Error(), "placeholder")) != (want != in) {
			t.Errorf("ingest_url %q: %v", in, err)
		}
	}
	c, err = ParseConfig(func(k string) string {
		return map[string]string{ConfigIngestURL: "https://a.test/ingest", ConfigNDJSONURL: "https://x.example.net/ingest/ndjson"}[k]
	})
	if c.NDJSONURL != "https://a.test/ingest/ndjson" || err == nil || !strings.Contains(err.Error(), `ndjson_url "https://x.example.net/ingest/ndjson" is a placeholder`) {
		t.Errorf("a placeholder ndjson_url: %q, %v", c.NDJSONURL, err)
	}
}

// TestPostJS runs src/post.test.mjs: the JavaScript that makes the POSTs
// passes a batch from an aggregator that fails to the next.
func TestPostJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	out, err := exec.Command(node, "--test", "../src/post.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
}

// Requests served while a batch is open join it: one id, one POST with
// all their events, and the batch's end frees the id.
func TestConcurrentRequestsShareABatch(t *testing.T) {
	w := newWorker(t, nil)
	var id uint32
	for i, site := range []string{"a", "b", "c"} {
		_, h, due := w.Serve(request(t, "GET", "https://px.test/p.gif?site="+site, "", ""), time.Now())
		if h == 0 || due || (i > 0 && h != id) {
			t.Fatalf("request %d: batch %d due %t, want the open batch %d", i, h, due, id)
		}
		id = h
	}
	if _, err := w.Next(id, Delivered); err == nil {
		t.Error("an open batch took an outcome other than Start")
	}
	d, err := w.Next(id, Start)
	if err != nil || d == nil {
		t.Fatal(d, err)
	}
	evs, c, err := wire.DecodeBatch(nil, d.Body)
	if err != nil || len(evs) != 3 {
		t.Fatalf("%v: %d events in the batch", err, len(evs))
	}
	var hits uint64
	for _, s := range c.Sites {
		hits += s.Hits
	}
	if hits != 3 {
		t.Errorf("counts %+v", c.Sites)
	}
	// A request while the batch is out opens the next one.
	_, h, _ := w.Serve(request(t, "GET", "https://px.test/p.gif?site=d", "", ""), time.Now())
	if h == 0 || h == id {
		t.Fatalf("request during delivery: batch %d (the closed one is %d)", h, id)
	}
	if d, err := w.Next(id, Delivered); d != nil || err != nil {
		t.Fatal(d, err)
	}
	if _, err := w.Next(id, Start); err == nil {
		t.Error("an ended batch took an outcome")
	}
	d, _ = w.Next(h, Start)
	if evs, _ := wire.Decode(nil, d.Body); len(evs) != 1 || evs[0].Site != "d" {
		t.Errorf("second batch: %+v", evs)
	}
}

// A batch closes, due at once, when it holds BatchEvents events.
func TestBatchClosesWhenFull(t *testing.T) {
	w := newWorker(t, nil)
	post := "[" + strings.Repeat(`{"site":"a"},`, pixel.MaxPostEvents-1) + `{"site":"a"}]`
	now := time.Now()
	var id uint32
	for i := 0; i < BatchEvents/pixel.MaxPostEvents; i++ {
		_, h, due := w.Serve(request(t, "POST", "https://px.test/e", "", post), now)
		if id != 0 && h != id {
			t.Fatalf("POST %d: batch %d, want %d", i, h, id)
		}
		id = h
		if want := (i+1)*pixel.MaxPostEvents >= BatchEvents; due != want {
			t.Fatalf("POST %d: due %t", i, due)
		}
	}
	_, h, due := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), now)
	if h == id || due {
		t.Fatalf("after the full batch: batch %d due %t", h, due)
	}
	d, _ := w.Next(id, Start)
	if evs, _ := wire.Decode(nil, d.Body); len(evs) != BatchEvents {
		t.Errorf("%d events in the full batch", len(evs))
	}
}

// A batch whose first event has waited BatchWait is due on the next hit;
// batch_wait_ms=0 makes every request's batch its own.
func TestBatchWait(t *testing.T) {
	w := newWorker(t, nil)
	t0 := time.Now()
	_, h1, due := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), t0)
	if due {
		t.Fatal("due at once")
	}
	_, h2, due := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), t0.Add(BatchWait))
	if h2 != h1 || !due {
		t.Fatalf("after BatchWait: batch %d (want %d) due %t", h2, h1, due)
	}

	w = newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: "s", ConfigBatchWait: "0"})
	_, h1, due1 := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), t0)
	_, h2, due2 := w.Serve(request(t, "GET", "https://px.test/p.gif?site=a", "", ""), t0)
	if h1 == 0 || h1 == h2 || !due1 || !due2 {
		t.Errorf("batch_wait_ms=0: batches %d %d due %t %t", h1, h2, due1, due2)
	}
	for _, v := range []string{"-1", "x", "60000"} {
		c, err := ParseConfig(func(k string) string {
			if k == ConfigBatchWait {
				return v
			}
			return ""
		})
		if err == nil || c.BatchWait != DefaultBatchWait {
			t.Errorf("%s=%s: %v, wait %v", ConfigBatchWait, v, err, c.BatchWait)
		}
	}
}

// Salts read from KV (SetSalts) replace the environment's, and a value
// that does not parse keeps the salt there was.
func TestSetSalts(t *testing.T) {
	day := privacy.Day(time.Now())
	visitor := func(w *Worker) uint64 {
		t.Helper()
		_, h := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=shop", "user-agent:UA/1\ncf-connecting-ip:203.0.113.7\n", ""), 200)
		d, err := w.Next(h, Start)
		if err != nil || d == nil {
			t.Fatal(d, err)
		}
		evs, _, err := wire.DecodeBatch(nil, d.Body)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%v %d", err, len(evs))
		}
		w.Next(h, Delivered)
		return evs[0].VisitorID
	}
	s1, s2 := privacy.NewSalt(day, [16]byte{1}), privacy.NewSalt(day, [16]byte{2})
	w := newWorker(t, nil)
	if id := visitor(w); id != 0 {
		t.Fatalf("visitor id %x without a salt", id)
	}
	if err := w.SetSalts(getter(map[string]string{privacy.SaltKey(day): s1.String()})); err != nil {
		t.Fatal(err)
	}
	id1 := visitor(w)
	fromEnv := newWorker(t, map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: string(secret), privacy.SaltKey(day): s1.String()})
	if id1 == 0 || visitor(fromEnv) != id1 {
		t.Errorf("visitor id %x from the KV salt, %x from the same salt in the environment", id1, visitor(fromEnv))
	}
	// Rotated: today's entry holds another salt (a test of the swap;
	// edgepixel-salt never rewrites today's).
	if err := w.SetSalts(getter(map[string]string{privacy.SaltKey(day): s2.String(), privacy.SaltKey(day + 1): "not a salt"})); err == nil {
		t.Error("a bad salt: no error")
	}
	if id2 := visitor(w); id2 == 0 || id2 == id1 {
		t.Errorf("visitor id %x after the salt changed (was %x)", id2, id1)
	}
	if got := w.Salts(); got[0] != s2 && got[1] != s2 {
		t.Errorf("salts %v", got)
	}
}

// TestSettingsFromKV: per-site settings and CORS origins read from a KV
// namespace replace the vars of their names, keys KV lacks keep the
// vars', and site.SITE is read for the sites KV's sites key lists.
func TestSettingsFromKV(t *testing.T) {
	env := map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: string(secret),
		pixel.ConfigSites: "shop", "site.shop": "sign=reject", pixel.ConfigCORSDefault: "none"}
	w := newWorker(t, env)
	unsigned := func(site string) *Request {
		return request(t, "GET", "https://px.test/p.gif?site="+site, "", "")
	}
	if resp, _ := serve(t, w, unsigned("shop"), 200); resp.Drop != wire.DropUnsigned {
		t.Fatalf("vars: drop %q, want %q", resp.Drop, wire.DropUnsigned)
	}
	kv := map[string]string{pixel.ConfigSites: "shop, blog", "site.blog": "sign=reject", "site.shop": "sign=off tier=aggregate",
		pixel.ConfigCORSOrigins: "shop=https://shop.test"}
	// The rounds a caller makes: the fixed keys, then the sites' keys.
	have := map[string]string{}
	var asked [][]string
	for keys := w.SettingsKeys(have); len(keys) > 0; keys = w.SettingsKeys(have) {
		asked = append(asked, keys)
		if len(asked) > 3 {
			t.Fatalf("still asking: %v", asked)
		}
		for _, k := range keys {
			have[k] = kv[k]
		}
	}
	if fmt.Sprint(asked) != fmt.Sprint([][]string{SettingsKeys, {"site.shop", "site.blog"}}) {
		t.Errorf("keys asked: %v", asked)
	}
	if err := w.SetSettings(getter(have)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := serve(t, w, unsigned("shop"), 200); resp.Drop != "" {
		t.Errorf("shop after KV: drop %q, want none", resp.Drop)
	}
	if resp, _ := serve(t, w, unsigned("blog"), 200); resp.Drop != wire.DropUnsigned {
		t.Errorf("blog after KV: drop %q, want %q", resp.Drop, wire.DropUnsigned)
	}
	if resp, _ := serve(t, w, unsigned("other"), 200); resp.Drop != wire.DropUnknownSite {
		t.Errorf("a site KV's list lacks: drop %q, want %q", resp.Drop, wire.DropUnknownSite)
	}
	resp, _ := serve(t, w, request(t, "POST", "https://px.test/e", "origin:https://shop.test\n", `{"site":"shop"}`), 204)
	if resp.Drop != "" || resp.Get("Access-Control-Allow-Origin") != "https://shop.test" {
		t.Errorf("shop's POST: drop %q ACAO %q", resp.Drop, resp.Get("Access-Control-Allow-Origin"))
	}
	// cors_default stays the var's: an origin no entry names is refused.
	if resp, _ := serve(t, w, request(t, "POST", "https://px.test/e", "origin:https://evil.test\n", `{"site":"shop"}`), 403); resp.Drop != wire.DropOriginNotAllowed {
		t.Errorf("evil origin: drop %q", resp.Drop)
	}
	// A bad value is reported, at once or at the site's first hit (as
	// the Fastly module reports it), under where it came from: one read
	// from KV to SettingsErrors (logged "settings from KV:"), one from a
	// var to the Errors the vars' Sites had ("worker config:"). Until
	// 2026-12 a KV value's went to the vars'.
	var fromVars, fromKV []error
	w.cfg.Serve.Sites.Errors = func(err error) { fromVars = append(fromVars, err) }
	w.SettingsErrors = func(err error) { fromKV = append(fromKV, err) }
	w.cfg.env = getter(map[string]string{"site.other": "tier=never"})
	have[pixel.ConfigUnknownSites] = "sometimes"
	have["site.blog"] = "sign=maybe tier=aggregate"
	have[pixel.ConfigSites] = "shop, blog, other"
	if err := w.SetSettings(getter(have)); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("bad unknown_sites: %v", err)
	}
	serve(t, w, unsigned("blog"), 200)
	serve(t, w, unsigned("other"), 200)
	if len(fromKV) != 1 || !strings.Contains(fromKV[0].Error(), "site.blog") {
		t.Errorf("bad site.blog from KV reported as from KV: %v", fromKV)
	}
	if len(fromVars) != 1 || !strings.Contains(fromVars[0].Error(), "site.other") {
		t.Errorf("bad site.other var reported as from the vars: %v", fromVars)
	}
}

// A site that checks signatures by its settings in KV, or by site_default
// with no sites list, and has no pixel_key.SITE secret is told of once,
// at its first hit: CheckPixelKeys at start sees only the sites the vars
// name, and a tester's KV-signing site dropped every hit as unsigned
// with nothing said. A site with its key is not.
func TestNoPixelKeyToldOnce(t *testing.T) {
	key := "k2V0LXNlY3JldC1rZXktb2YtMzItYnl0ZXMtbG9uZyE"
	env := map[string]string{ConfigIngestURL: "https://agg.test/ingest", ConfigSecret: string(secret),
		pixel.ConfigSiteDefault: "sign=reject", "pixel_key.keyed": key}
	w := newWorker(t, env)
	var told []string
	w.NoPixelKey = func(site, secret string) { told = append(told, site+" "+secret) }
	hit := func(site string) {
		if resp, _ := serve(t, w, request(t, "GET", "https://px.test/p.gif?site="+site, "", ""), 200); resp.Drop != wire.DropUnsigned {
			t.Fatalf("%s: drop %q, want %q", site, resp.Drop, wire.DropUnsigned)
		}
	}
	hit("shop")
	hit("shop")
	hit("keyed") // unsigned, but its key is there
	if fmt.Sprint(told) != "[shop pixel_key.shop]" {
		t.Errorf("site_default, no sites list: told %q, want shop's once", told)
	}
	// From KV: blog signs there, and has no key.
	told = nil
	if err := w.SetSettings(getter(map[string]string{pixel.ConfigSites: "blog", "site.blog": "sign=mark"})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if resp, _ := serve(t, w, request(t, "GET", "https://px.test/p.gif?site=blog", "", ""), 200); resp.Drop != "" {
			t.Fatalf("blog (sign=mark): drop %q", resp.Drop)
		}
	}
	if fmt.Sprint(told) != "[blog pixel_key.blog]" {
		t.Errorf("KV's site.blog: told %q, want blog's once", told)
	}
}
