//go:build wasip1

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/edge/privacy"
	"github.com/edgepixel/edgepixel/wrangler/worker"
)

// The exports' memory protocol. The JavaScript asks ep_buffer for an input
// buffer of n bytes, writes into it, and calls an export with the lengths
// of what it wrote. An export's answer is at the address it returns: a
// little-endian uint32 length, then that many bytes, laid out as the
// export says. The input and output buffers are reused; the Go heap never
// moves, but the wasm memory may grow during any call, so the JavaScript
// takes a fresh view of it after each.
var (
	w   *worker.Worker
	in  []byte
	out []byte
	req worker.Request
)

//go:wasmexport ep_buffer
func epBuffer(n uint32) uint32 {
	if uint32(cap(in)) < n {
		in = make([]byte, n)
	}
	in = in[:n]
	if n == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&in[0])))
}

// ep_max_body is the most body bytes the worker reads of a request
// (pixel.MaxPostBody and one more, to tell an oversized body).
//
//go:wasmexport ep_max_body
func epMaxBody() uint32 { return pixel.MaxPostBody + 1 }

// ep_init reads the Worker's environment from the input buffer's first n
// bytes, "key\x00value\x00" for each string var and secret, and
// "key\x00\x00" for each binding, and makes the worker. Configuration problems are written to stderr (the
// worker's console); the worker serves anyway.
//
//go:wasmexport ep_init
func epInit(n uint32) {
	env := cutPairs(string(in[:n]))
	c, err := worker.ParseConfig(func(k string) string { return env[k] })
	logErr("worker config", err)
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	logErr("worker config", worker.CheckNames(names, env[pixel.ConfigSites]))
	logErr("worker config", worker.CheckSpool(names))
	logErr("worker config", worker.CheckPixelKeys(names, func(k string) string { return env[k] }))
	switch {
	case c.IngestURL == "" && c.NDJSONURL == "":
		fmt.Fprintf(os.Stderr, "edgepixel: no %s: hits are answered but cannot be delivered; the spool (if bound) keeps them until a deploy sets it, up to spool_max_age_s (set it in wrangler.toml [vars])\n", worker.ConfigIngestURL)
	case len(c.Secret) == 0 && c.LogToken == "":
		fmt.Fprintf(os.Stderr, "edgepixel: no %s secret: hits are answered but cannot be delivered (wrangler secret put %s)\n", worker.ConfigSecret, worker.ConfigSecret)
	}
	for _, k := range [...]string{"rate_limit_client", "rate_limit_site"} {
		if env[k] != "" {
			// Fastly's Edge Rate Limiter, which the Fastly module uses
			// for these, has no counterpart inside a worker.
			fmt.Fprintf(os.Stderr, "edgepixel: %s is not supported on Workers and is ignored: use Cloudflare's rate limiting rules\n", k)
		}
	}
	if c.Serve.Sites != nil {
		// A bad site.SITE is read at its first hit; say so as the
		// Fastly module does.
		c.Serve.Sites.Errors = func(err error) { logErr("worker config", err) }
	}
	w = worker.New(c)
	w.SettingsErrors = func(err error) { logErr("settings from KV", err) }
	w.NoSalt = func(now time.Time) {
		// As the Fastly module says it (edge/cmd/edgepixel, enrich.go).
		fmt.Fprintf(os.Stderr, "edgepixel: no visitor salt for %s: events carry no visitor id and are counted as no_salt; bind the KV namespace edgepixel-salt --cf-kv writes as SALTS (wrangler.toml [[kv_namespaces]]) and run edgepixel-salt --today once, or set the %s secret (wrangler secret put %s; wrangler/README.md: Visitor-id salts)\n",
			now.UTC().Format(time.DateOnly), privacy.SaltKeys[0], privacy.SaltKeys[0])
	}
	w.OverSalt = func(warning string) { fmt.Fprintf(os.Stderr, "edgepixel: visitor salts: %s\n", warning) }
	w.NoPixelKey = func(site, secret string) {
		// As the Fastly module says it (edge/cmd/edgepixel, enrich.go).
		fmt.Fprintf(os.Stderr, "edgepixel: site %s checks pixel signatures (its settings, from KV or the vars), but there is no %s secret: no hit of it verifies (sign=reject drops them as unsigned, sign=mark stores them unverified); add the site's key (edgepixel-sign): wrangler secret put %s\n", site, secret, secret)
	}
}

// ep_salt_keys answers the keys the visitor-id salts are kept under
// (privacy.SaltKeys), as the header lines of an answer whose words are 0.
//
//go:wasmexport ep_salt_keys
func epSaltKeys() uint32 {
	var keys []pixel.Field
	for _, k := range privacy.SaltKeys {
		keys = append(keys, pixel.Field{Name: k})
	}
	return answer(0, 0, keys, nil)
}

// ep_salts replaces the salts with those in the input buffer's first n
// bytes, "key\x00value\x00" for each key read (worker.SetSalts); it
// returns 0, or 1 when a value did not parse (written to stderr; that
// salt is kept).
//
//go:wasmexport ep_salts
func epSalts(n uint32) uint32 {
	kv := cutPairs(string(in[:n]))
	if err := w.SetSalts(func(k string) string { return kv[k] }); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: salts from KV: %v\n", err)
		return 1
	}
	return 0
}

// ep_settings_keys answers the per-site settings keys still to read from
// the settings KV namespace (worker.Worker.SettingsKeys), as the header
// lines of an answer whose words are 0, given the input buffer's first n
// bytes: "key\x00value\x00" for each key read so far, an empty value for
// a key KV does not hold.
//
//go:wasmexport ep_settings_keys
func epSettingsKeys(n uint32) uint32 {
	var keys []pixel.Field
	for _, k := range w.SettingsKeys(cutPairs(string(in[:n]))) {
		keys = append(keys, pixel.Field{Name: k})
	}
	return answer(0, 0, keys, nil)
}

// ep_settings replaces the per-site settings with those in the input
// buffer's first n bytes, "key\x00value\x00" for each key read
// (worker.Worker.SetSettings); it returns 0, or 1 when a value did not
// parse (written to stderr; the rest applies).
//
//go:wasmexport ep_settings
func epSettings(n uint32) uint32 {
	kv := cutPairs(string(in[:n]))
	if err := w.SetSettings(func(k string) string { return kv[k] }); err != nil {
		logErr("settings from KV", err)
		return 1
	}
	return 0
}

// cutPairs reads "key\x00value\x00" pairs.
func cutPairs(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		var k, v string
		k, s, _ = strings.Cut(s, "\x00")
		v, s, _ = strings.Cut(s, "\x00")
		m[k] = v
	}
	return m
}

// ep_batch_wait is how long a batch stays open for later requests'
// events, in milliseconds (worker.Config.BatchWait).
//
//go:wasmexport ep_batch_wait
func epBatchWait() uint32 { return uint32(w.Config().BatchWait.Milliseconds()) }

// ep_serve serves the request whose block (worker.ParseRequest) is the
// input buffer's first textLen bytes and whose body the next bodyLen.
// Answer: status, batch, header bytes, body bytes (uint32 each), the
// headers as "name: value\n" lines, the body. The batch word is the id
// of the batch holding the request's events (0: none) in its low 31
// bits, and in its top bit whether the batch is due now (worker.Serve).
//
//go:wasmexport ep_serve
func epServe(textLen, bodyLen uint32) uint32 {
	if err := worker.ParseRequest(string(in[:textLen]), in[textLen:textLen+bodyLen], &req); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
		return answer(500, 0, nil, nil)
	}
	resp, batch, due := w.Serve(&req, time.Now())
	req = worker.Request{}
	if due {
		batch |= 1 << 31
	}
	return answer(uint32(resp.Status), batch, resp.Header, resp.Body)
}

// ep_next advances the delivery of batch h after outcome (worker.Start, Delivered,
// Failed). Answer: empty when the delivery has ended, else flags (1: the
// same bytes may be sent again; 2: the fallback's lines; 4: the batch
// goes to the spool, not to the URL), header bytes, body bytes (uint32 each),
// the URL and the headers as lines, the body.
//
//go:wasmexport ep_next
func epNext(h, outcome uint32) uint32 {
	spooled := w.Spooled()
	d, err := w.Next(h, int(outcome))
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
	}
	if n := w.Spooled() - spooled; n > 0 {
		why := "the aggregators took neither form in time"
		if c := w.Config(); c.IngestURL == "" && c.NDJSONURL == "" {
			why = "there is no ingest_url to send them to"
		}
		fmt.Fprintf(os.Stderr, "edgepixel: worker: %d events spooled: %s\n", n, why)
	}
	if d == nil {
		out = append(out[:0], 0, 0, 0, 0)
		return uint32(uintptr(unsafe.Pointer(&out[0])))
	}
	flags := uint32(0)
	if d.Retry {
		flags |= 1
	}
	if d.Fallback {
		flags |= 2
	}
	if d.Spool {
		flags |= 4
	}
	return answer(flags, 0, append([]pixel.Field{{Name: d.URL}}, d.Header...), d.Body)
}

// ep_kv_cache_ms is how long an isolate uses what it read from KV, in
// milliseconds (worker.Config.KVCache).
//
//go:wasmexport ep_kv_cache_ms
func epKVCacheMs() uint32 { return uint32(w.Config().KVCache.Milliseconds()) }

// ep_delivery_deadline is how long a batch's delivery to the aggregators
// may take from its close, in milliseconds (worker.Config.DeliveryDeadline).
//
//go:wasmexport ep_delivery_deadline
func epDeliveryDeadline() uint32 { return uint32(w.Config().DeliveryDeadline.Milliseconds()) }

// ep_spool_config answers the spool's settings (worker.Config) as header
// lines, in this order: first retry wait (ms), longest retry wait (ms),
// most bytes held, longest time a batch is held (ms); the words are 0.
//
//go:wasmexport ep_spool_config
func epSpoolConfig() uint32 {
	c := w.Config()
	var lines []pixel.Field
	for _, v := range [...]int64{c.SpoolRetry.Milliseconds(), c.SpoolRetryMax.Milliseconds(), c.SpoolMaxBytes, c.SpoolMaxAge.Milliseconds()} {
		lines = append(lines, pixel.Field{Name: strconv.FormatInt(v, 10)})
	}
	return answer(0, 0, lines, nil)
}

// ep_spool_send answers the POST that delivers the spooled batch in the
// input buffer's first n bytes now (worker.Worker.SpoolDelivery), laid
// out as ep_next's; flags 8 and nothing else when the worker has no URL
// to send it to (the spool keeps it: worker.ErrNowhere); empty when it
// cannot be sent, since it does not decode. Either is said on stderr.
//
//go:wasmexport ep_spool_send
func epSpoolSend(n uint32) uint32 {
	d, err := w.SpoolDelivery(in[:n], time.Now())
	if errors.Is(err, worker.ErrNowhere) {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
		return answer(8, 0, nil, nil)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
		out = append(out[:0], 0, 0, 0, 0)
		return uint32(uintptr(unsafe.Pointer(&out[0])))
	}
	flags := uint32(1)
	if d.Fallback {
		flags |= 2
	}
	return answer(flags, 0, append([]pixel.Field{{Name: d.URL}}, d.Header...), d.Body)
}

// ep_spool_lost answers what replaces the spooled batch in the input
// buffer's first n bytes when it must be dropped
// (worker.Worker.SpoolLost): words: the batch's events, the number of
// records; a header line per record with its length in bytes; the
// records one after another as the body. Empty when the batch does not
// decode (said on stderr).
//
//go:wasmexport ep_spool_lost
func epSpoolLost(n uint32) uint32 {
	recs, events, err := w.SpoolLost(in[:n], time.Now())
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: %v\n", err)
		out = append(out[:0], 0, 0, 0, 0)
		return uint32(uintptr(unsafe.Pointer(&out[0])))
	}
	var lines []pixel.Field
	var body []byte
	for _, r := range recs {
		lines = append(lines, pixel.Field{Name: strconv.Itoa(len(r))})
		body = append(body, r...)
	}
	return answer(uint32(events), uint32(len(recs)), lines, body)
}

// answer lays out two words, the header lines and the body, after the
// length word. A field with an empty value is written as a bare line
// (the URL of ep_next).
func answer(a, b uint32, hdr []pixel.Field, body []byte) uint32 {
	out = append(out[:0], make([]byte, 20)...)
	for _, f := range hdr {
		out = append(out, f.Name...)
		if f.Value != "" {
			out = append(out, ": "...)
			out = append(out, f.Value...)
		}
		out = append(out, '\n')
	}
	nh := len(out) - 20
	out = append(out, body...)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)-4))
	binary.LittleEndian.PutUint32(out[4:], a)
	binary.LittleEndian.PutUint32(out[8:], b)
	binary.LittleEndian.PutUint32(out[12:], uint32(nh))
	binary.LittleEndian.PutUint32(out[16:], uint32(len(body)))
	return uint32(uintptr(unsafe.Pointer(&out[0])))
}

// logErr writes err to the worker's console, each of its lines (errors
// joined by errors.Join) as a line of its own under "edgepixel: what:",
// so that every problem can be found by the prefix.
func logErr(what string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(os.Stderr, "edgepixel: %s: %s\n", what, line)
	}
}
