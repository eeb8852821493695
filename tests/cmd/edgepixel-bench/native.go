package main

// The native baseline: edge/pixel's logic compiled for this machine and
// served by net/http, with the edge module's batching and delivery (the
// same pixel.Batcher settings, signed batches to the same sink, a flush
// after the visitor is answered when one is due). What the POP adds on top
// of it is WebAssembly, the ABI and the pool.

import (
	"bytes"
	"crypto/rand"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgepixel/edgepixel/edge/pixel"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// nativeEdge serves like a pool of edge instances: each request takes an
// instance (its own Batcher and buffers), as the POP hands a request to a
// warm guest, so a flush holds up one instance and not the others.
type nativeEdge struct {
	pool   chan *nativeInstance
	all    []*nativeInstance
	secret []byte
	ingest string
	client *http.Client
	stop   chan struct{}
	done   sync.WaitGroup
}

type nativeInstance struct {
	mu   sync.Mutex // held while serving or flushing
	b    pixel.Batcher
	resp pixel.Response
	hit  pixel.Hit
	meta pixel.Meta
	r    *http.Request
}

// newNativeEdge starts n instances delivering to sink (host:port).
func newNativeEdge(n int, sink string, secret []byte) *nativeEdge {
	e := &nativeEdge{
		pool:   make(chan *nativeInstance, n),
		secret: secret,
		ingest: "http://" + sink + "/ingest",
		client: &http.Client{Timeout: 10 * time.Second},
		stop:   make(chan struct{}),
	}
	for range n {
		in := &nativeInstance{
			// The edge module's defaults (edge/cmd/edgepixel).
			b: pixel.Batcher{MaxEvents: 500, MaxAge: 200 * time.Millisecond, MaxBuffered: 20000, Counts: pixel.Counts{Pop: "bench"}},
		}
		in.hit.Meta = in.readMeta
		in.hit.Header = func(name string) string { return in.r.Header.Get(name) }
		in.hit.Body = func(max int) ([]byte, error) {
			var buf bytes.Buffer
			_, err := buf.ReadFrom(http.MaxBytesReader(nil, in.r.Body, int64(max)+1))
			return buf.Bytes(), err
		}
		e.all = append(e.all, in)
		e.pool <- in
	}
	// An idle instance flushes when its oldest event is due, as an idle
	// guest does when its wait for the next request times out.
	e.done.Add(1)
	go func() {
		defer e.done.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
			}
			for _, in := range e.all {
				if in.mu.TryLock() {
					if in.b.Due(time.Now()) {
						in.b.Flush(e.secret, e.send, time.Now, time.Sleep)
					}
					in.mu.Unlock()
				}
			}
		}
	}()
	return e
}

func (in *nativeInstance) readMeta() *pixel.Meta {
	m := &in.meta
	m.UserAgent = in.r.Header.Get("User-Agent")
	m.Referer = in.r.Header.Get("Referer")
	if host, _, err := net.SplitHostPort(in.r.RemoteAddr); err == nil {
		m.ClientIP = host
	}
	return m
}

func (e *nativeEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := <-e.pool
	in.mu.Lock()
	now := time.Now()
	in.r = r
	in.meta = pixel.Meta{Now: now, Pop: "bench", Rand: rand.Reader}
	in.hit.Method, in.hit.Path, in.hit.RawQuery = r.Method, r.URL.Path, r.URL.RawQuery
	pixel.Serve(&in.hit, nil, &in.b, now, &in.resp)
	h := w.Header()
	for _, f := range in.resp.Header {
		h[f.Name] = append(h[f.Name], f.Value)
	}
	w.WriteHeader(in.resp.Status)
	w.Write(in.resp.Body)
	// The visitor is answered before any delivery, as at the edge.
	w.(http.Flusher).Flush()
	if in.b.Due(time.Now()) {
		in.b.Flush(e.secret, e.send, time.Now, time.Sleep)
	}
	in.r = nil
	in.mu.Unlock()
	e.pool <- in
}

// send is the edge module's send (edge/cmd/edgepixel, deliver.go) over
// net/http.
func (e *nativeEdge) send(b *pixel.Request) (int, time.Duration, error) {
	req, err := http.NewRequest("POST", e.ingest, bytes.NewReader(b.Body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set(wire.HeaderTimestamp, b.Timestamp)
	req.Header.Set(wire.HeaderSignature, b.Signature)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var retry time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retry = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retry, nil
}

// Close stops the idle flusher and delivers what every instance holds.
func (e *nativeEdge) Close() {
	close(e.stop)
	e.done.Wait()
	for _, in := range e.all {
		in.mu.Lock()
		in.b.Close(e.secret, e.send, time.Now, time.Sleep)
		in.mu.Unlock()
	}
}

// measureNativeHit times edge/pixel's work for the bench's pixel hit, in
// this process, for about d: pixel.Serve and, when due, the flush that
// follows it (encoding and signing a batch; the send itself answers at
// once), as the guest time per hit counts them.
func measureNativeHit(d time.Duration) []time.Duration {
	b := pixel.Batcher{MaxEvents: 500, MaxAge: 200 * time.Millisecond, MaxBuffered: 20000, Counts: pixel.Counts{Pop: "bench"}}
	meta := pixel.Meta{Pop: "bench", Rand: rand.Reader, ClientIP: "127.0.0.1", UserAgent: "wrk", Country: "US"}
	path, query, _ := strings.Cut(benchPath, "?")
	hit := pixel.Hit{Method: http.MethodGet, Path: path, RawQuery: query, Meta: func() *pixel.Meta { return &meta }}
	send := func(*pixel.Request) (int, time.Duration, error) { return http.StatusOK, 0, nil }
	var resp pixel.Response
	var times []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		for range 1000 {
			t0 := time.Now()
			meta.Now = t0
			pixel.Serve(&hit, nil, &b, t0, &resp)
			if b.Due(t0) {
				b.Flush([]byte("bench-secret"), send, time.Now, time.Sleep)
			}
			times = append(times, time.Since(t0))
		}
	}
	return times
}

// meanOf returns the mean of ds in milliseconds.
func meanOf(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return float64(sum) / float64(len(ds)) / 1e6
}
