// Command edgepixel is the edge module: built with GOOS=wasip1 GOARCH=wasm it
// runs on Fastly Compute and under edgepixel's own POP (edge/cmd/edgepixel-pop).
//
// It answers the pixel (GET /p.gif) and event POSTs (POST /e) at once, then,
// with the visitor's response already sent, buffers the events and delivers
// them in signed batches to the "aggregator" backend. A warm instance serves
// many requests (fsthttp.ServeMany), so events from many visitors share one
// delivery; an instance that sits idle for MaxAge exits, and flushes first.
//
// Configuration comes from the config store "edgepixel" (all keys optional:
// pop, backend, ingest_url, batch_max_events, batch_max_age_ms) and the
// secret store "edgepixel" (key aggregator_secret, required to deliver).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/wire"
	"github.com/fastly/compute-sdk-go/configstore"
	"github.com/fastly/compute-sdk-go/fsthttp"
	"github.com/fastly/compute-sdk-go/geo"
	"github.com/fastly/compute-sdk-go/secretstore"
)

// config is read once per instance, not per request: store lookups are
// hostcalls and the values do not change during an instance's life.
type config struct {
	pop       string
	backend   string
	ingestURL string
	secret    []byte
}

var (
	cfg     config
	batcher = pixel.Batcher{MaxEvents: 500, MaxAge: 200 * time.Millisecond, MaxBuffered: 20000}
)

func main() {
	cfg = loadConfig()
	fsthttp.ServeMany(handle, &fsthttp.ServeManyOptions{
		// Waiting no longer than a batch may age bounds how stale a
		// buffered event can get when traffic stops: the instance exits
		// and flushes below.
		NextTimeout: batcher.MaxAge,
		MaxLifetime: 5 * time.Minute,
	})
	flush()
	if batcher.Dropped > 0 {
		fmt.Fprintf(os.Stderr, "edgepixel: %d events dropped: %s\n", batcher.Dropped, pixel.DropBufferFull)
	}
}

func loadConfig() config {
	c := config{pop: os.Getenv("FASTLY_POP"), backend: "aggregator", ingestURL: "http://aggregator/ingest"}
	if st, err := configstore.Open("edgepixel"); err == nil {
		get := func(key string, dst *string) {
			if v, err := st.Get(key); err == nil && v != "" {
				*dst = v
			}
		}
		get("pop", &c.pop)
		get("backend", &c.backend)
		get("ingest_url", &c.ingestURL)
		var n, ms string
		get("batch_max_events", &n)
		get("batch_max_age_ms", &ms)
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			batcher.MaxEvents = min(v, wire.MaxEvents)
		}
		if v, err := strconv.Atoi(ms); err == nil && v > 0 {
			batcher.MaxAge = time.Duration(v) * time.Millisecond
		}
	}
	if c.pop == "" {
		c.pop = "unknown"
	}
	secret, err := secretstore.Plaintext("edgepixel", "aggregator_secret")
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: no secret edgepixel/aggregator_secret (%v): hits are answered but cannot be delivered\n", err)
	}
	// A secret kept in a file often ends in a newline; it is never part of it.
	c.secret = bytes.TrimSpace(secret)
	return c
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	switch r.URL.Path {
	case "/p.gif", "/p", "/i":
		servePixel(w, r)
	case "/e":
		servePost(w, r)
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(fsthttp.StatusOK)
		io.WriteString(w, "ok\n")
	default:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(fsthttp.StatusNotFound)
		io.WriteString(w, "not found: the pixel is /p.gif, events go to POST /e\n")
	}
	// The visitor's response is complete; only now is time spent on delivery.
	w.Close()
	if batcher.Due(time.Now()) {
		flush()
	}
}

func meta(r *fsthttp.Request) *pixel.Meta {
	m := &pixel.Meta{
		Now:       time.Now(),
		ClientIP:  r.RemoteAddr,
		UserAgent: r.Header.Get("User-Agent"),
		Referer:   r.Header.Get("Referer"),
		Pop:       cfg.pop,
		Rand:      rand.Reader,
	}
	if ip := net.ParseIP(r.RemoteAddr); ip != nil {
		if g, err := geo.Lookup(ip); err == nil {
			m.Country = g.CountryCode
		}
	}
	return m
}

func servePixel(w fsthttp.ResponseWriter, r *fsthttp.Request) {
	h := w.Header()
	if r.Method != "GET" && r.Method != "HEAD" {
		h.Set("Allow", "GET, HEAD")
		reject(w, fsthttp.StatusMethodNotAllowed, pixel.DropBadMethod)
		return
	}
	e, drop := pixel.FromQuery(r.URL.RawQuery, meta(r))
	if drop == "" && !batcher.Add(time.Now(), e) {
		drop = pixel.DropBufferFull
	}
	if drop != "" {
		h.Set("X-Edgepixel-Drop", drop)
	}
	h.Set("Content-Type", "image/gif")
	h.Set("Content-Length", strconv.Itoa(len(pixel.GIF)))
	noCache(h)
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	w.WriteHeader(fsthttp.StatusOK)
	if r.Method == "GET" {
		w.Write(pixel.GIF)
	}
}

func noCache(h fsthttp.Header) {
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
}

func servePost(w fsthttp.ResponseWriter, r *fsthttp.Request) {
	h := w.Header()
	// Any origin may post: the events name their site, and trust comes from
	// the edge's enrichment, not from the browser.
	h.Set("Access-Control-Allow-Origin", "*")
	noCache(h)
	switch r.Method {
	case "OPTIONS":
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(fsthttp.StatusNoContent)
		return
	case "POST":
	default:
		h.Set("Allow", "POST, OPTIONS")
		reject(w, fsthttp.StatusMethodNotAllowed, pixel.DropBadMethod)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, pixel.MaxPostBody+1))
	if err != nil {
		reject(w, fsthttp.StatusBadRequest, "read_error")
		return
	}
	evs, drop := pixel.FromJSON(body, meta(r))
	if drop == "" && !batcher.Add(time.Now(), evs...) {
		drop = pixel.DropBufferFull
	}
	switch drop {
	case "":
		w.WriteHeader(fsthttp.StatusNoContent)
	case pixel.DropTooLarge, pixel.DropTooManyEvents:
		reject(w, fsthttp.StatusRequestEntityTooLarge, drop)
	case pixel.DropBufferFull:
		h.Set("Retry-After", "1")
		reject(w, fsthttp.StatusServiceUnavailable, drop)
	default:
		reject(w, fsthttp.StatusBadRequest, drop)
	}
}

func reject(w fsthttp.ResponseWriter, status int, reason string) {
	h := w.Header()
	h.Set("X-Edgepixel-Drop", reason)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":%q,\"reason\":%q}\n", fsthttp.StatusText(status), reason)
}

// flush delivers the buffer. Failures are logged and the events stay
// buffered for the next flush; see pixel.Batcher.Flush.
func flush() {
	if batcher.Len() == 0 {
		return
	}
	if len(cfg.secret) == 0 {
		return
	}
	n := batcher.Len()
	if err := batcher.Flush(cfg.secret, send, time.Now, time.Sleep); err != nil {
		fmt.Fprintf(os.Stderr, "edgepixel: delivering %d events to %s: %v (%d still buffered)\n", n, cfg.backend, err, batcher.Len())
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
