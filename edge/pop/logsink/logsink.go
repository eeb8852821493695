// Package logsink delivers what guests write to their log endpoints.
//
// A guest writes log entries to named endpoints (fastly_log.endpoint_get /
// write, rtlog.Open(name) in compute-sdk-go). Each write is one entry. By
// default an entry is printed to stdout as "name :: entry", as Viceroy
// does. An Endpoint can instead append entries to a file, or deliver them
// in batches by HTTP POST the way Fastly's HTTPS real-time log streaming
// does.
//
// What is delivered is what the guest wrote, one entry per line: Fastly
// sends a Compute program's log lines as written (no JSON wrapping, no
// syslog prefix, i.e. message_type "blank"; with json_format "2" a batch
// is newline-delimited). An entry that is JSON therefore stays JSON and a
// batch of them is NDJSON; an entry that is not JSON is sent as plain
// text, not wrapped in a JSON string. A trailing newline is dropped and
// inner newlines are written as the two characters `\n`, so one entry is
// always exactly one line (JSON from encoding/json never contains a raw
// newline, so JSON entries are unaffected).
//
// Memory is bounded: an HTTP endpoint queues at most MaxBuffer bytes; a
// line that does not fit is refused and counted. An edge module's
// counters line (wire.IsCountersLine), which counts what the module could
// not deliver, may take 1 MiB more (countersReserve), so that the count
// of events a full queue refused still travels. A batch that cannot be
// delivered after its retries is dropped and counted as well. All of it
// is flushed when the server shuts down, after the guests have ended (so
// what they log after their serve loop is included).
//
// An HTTP endpoint can keep its queue on disk instead (Endpoint.Queue,
// queue.go): each entry is written to a file before the guest's write
// returns (at Endpoint.Durability: handed to the kernel, or fsynced), the
// queue survives a restart or a crash of the POP, and batches are retried
// until delivered, within a disk budget (MaxBuffer). That is what makes an
// edge module's journal durable (edge/pixel's Batcher).
//
// A write that a destination refuses (a full queue, a failed disk) returns
// an error to the guest, so it can deliver the entry another way, and
// counts as refused here, apart from entries taken and lost later
// (dropped): only those are lost for a guest that delivers otherwise.
//
// Failure: a file (or stdout) destination whose write fails has stopped
// doing its job (the disk is full, the file system read-only), and says
// so through the fail function given to Open, which stops the POP so a
// supervisor restarts it. An HTTP collector that does not accept
// deliveries is not a stop: the endpoint keeps retrying within its
// bounds, and Degraded and the metrics show it.
package logsink

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/shared/redact"
	"github.com/edgepixel/edgepixel/shared/tokenfile"
	"github.com/edgepixel/edgepixel/shared/urlescape"
)

// Kinds of log endpoint destination.
const (
	Stdout = "stdout"
	File   = "file"
	HTTP   = "http"
)

// Endpoint says where the entries a guest writes to one named log
// endpoint go.
type Endpoint struct {
	// Name is the name the guest opens. "*" applies to every name that has
	// no Endpoint of its own (otherwise those print to stdout).
	Name string
	Kind string // Stdout, File or HTTP
	Path string // File: appended to, created if missing

	// HTTP only.
	URL string // batches are POSTed here
	// Failover are further collectors: a batch that URL did not take
	// with an answer that may be temporary (no answer, 408, 429, 5xx) is
	// POSTed to each in turn within the same attempt, as a Fastly
	// backend list would. The collectors must tell a batch they already
	// took (edgepixel's aggregators do, by event id), since one that
	// took it but did not answer gets it again from the next.
	Failover    []string
	Header      http.Header   // added to every request (e.g. Authorization)
	ContentType string        // default application/x-ndjson
	Period      time.Duration // an entry waits at most this long for its batch to be sent (default 5s, as Fastly)
	MaxEntries  int           // entries per request (default 10000, as Fastly)
	MaxBytes    int           // bytes per request (default 10 MiB; Fastly allows 100 MB)
	MaxBuffer   int           // bytes queued in memory; further entries are dropped (default 64 MiB)
	Retries     int           // further attempts after a failed request: 0 = 5, negative = none (backoff 0.5s doubling to 30s); a disk queue retries until delivered
	// Queue is a directory to keep the queue in, on disk (queue.go); ""
	// or "memory" keeps it in memory. With a queue, MaxBuffer bounds the
	// undelivered bytes on disk (default 2 GiB).
	Queue string
	// Durability, with a Queue: DurabilityWrite (the default) or
	// DurabilityFsync.
	Durability string
}

const (
	defaultLogPeriod     = 5 * time.Second
	defaultLogMaxEntries = 10000
	defaultLogMaxBytes   = 10 << 20
	defaultLogMaxBuffer  = 64 << 20
	defaultLogRetries    = 5
	logFileFlushEvery    = time.Second
	logFileBufferBytes   = 64 << 10
)

// ParseEndpoint parses "NAME=DEST" where DEST is
//
//	stdout
//	file:/path/to/file
//	http(s)://host/path[?period=1s&max_entries=500&max_bytes=1048576&max_buffer=N&retries=N
//	                    &content_type=T&header=Name:Value&bearer_file=PATH&queue=DIR
//	                    &durability=write|fsync&failover=URL]
//
// The listed query parameters configure the endpoint and are removed from
// the URL (header and failover may repeat; their values are URL-decoded,
// so write a space as %20 and escape a failover URL's own ? and &); any
// other parameter stays part of the URL. bearer_file names a file whose
// token (package tokenfile) is sent as "Authorization: Bearer TOKEN",
// read once here: it keeps the token out of the command line and the
// environment, and may be the aggregator's --log-token-file.
func ParseEndpoint(spec string) (Endpoint, error) {
	name, dest, ok := strings.Cut(strings.TrimSpace(spec), "=")
	name = strings.TrimSpace(name)
	// A URL without its NAME= cuts at its query's first '=': that
	// "name" holds the URL, credentials and all.
	if !ok || !validName(name) || dest == "" {
		return Endpoint{}, fmt.Errorf("log endpoint %s: want NAME=stdout|file:PATH|http(s)://URL, NAME of letters, digits, '_', '-' and '.' (or *)", quoteRedacted(spec))
	}
	ep := Endpoint{Name: name}
	switch {
	case dest == Stdout:
		ep.Kind = Stdout
	case strings.HasPrefix(dest, "file:"):
		ep.Kind = File
		ep.Path = strings.TrimPrefix(strings.TrimPrefix(dest, "file:"), "//")
		if ep.Path == "" {
			return Endpoint{}, fmt.Errorf("log endpoint %s: empty file path", name)
		}
	case strings.HasPrefix(dest, "http://") || strings.HasPrefix(dest, "https://"):
		ep.Kind = HTTP
		if err := ep.parseHTTP(dest); err != nil {
			return Endpoint{}, fmt.Errorf("log endpoint %s: %w", name, err)
		}
	default:
		return Endpoint{}, fmt.Errorf("log endpoint %s: unknown destination %s (want stdout, file:PATH or http(s)://URL)", name, quoteRedacted(dest))
	}
	return ep, nil
}

// validName reports whether name can name an endpoint: letters, digits,
// '_', '-' and '.', as Fastly's log endpoint names are written, or "*".
func validName(name string) bool {
	if name == "*" {
		return true
	}
	return name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == ""
}

// quoteRedacted quotes s, a value an error names, without the secrets it
// may hold (package redact): a refused endpoint's error goes to the
// terminal and the logs, and a mistyped one still holds whatever
// credentials were typed into it.
func quoteRedacted(s string) string { return strconv.Quote(redact.URL(s)) }

func (ep *Endpoint) parseHTTP(dest string) error {
	u, err := url.Parse(dest)
	if err != nil {
		return redact.Error(err) // url.Error's message quotes the whole URL
	}
	if u.Host == "" {
		return errors.New("URL without host")
	}
	q := u.Query()
	// A value that would be silently replaced (0 by the default, a
	// max_buffer below max_bytes by max_bytes) is refused instead, naming
	// what applies without it (a tester's max_buffer=1000 became 10 MiB
	// without a word).
	intParam := func(key string, dst *int, least int) error {
		v := q.Get(key)
		q.Del(key)
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			return fmt.Errorf("%s=%q: want a whole number of at least %d (leave it out for the default)", key, v, least)
		}
		*dst = n
		return nil
	}
	if v := q.Get("period"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			// Fastly's period is in seconds: accept a bare number too.
			n, nerr := strconv.Atoi(v)
			if nerr != nil {
				return fmt.Errorf("period=%q: %w", v, err)
			}
			d = time.Duration(n) * time.Second
		}
		if d <= 0 {
			return fmt.Errorf("period=%q: want a duration above 0, e.g. 5s (leave it out for the default)", v)
		}
		ep.Period = d
	}
	q.Del("period")
	noRetries := q.Get("retries") == "0"
	for _, p := range []struct {
		key   string
		dst   *int
		least int
	}{{"max_entries", &ep.MaxEntries, 1}, {"max_bytes", &ep.MaxBytes, 1}, {"max_buffer", &ep.MaxBuffer, 1}, {"retries", &ep.Retries, 0}} {
		if err := intParam(p.key, p.dst, p.least); err != nil {
			return err
		}
	}
	if maxBytes := cmp.Or(ep.MaxBytes, defaultLogMaxBytes); ep.MaxBuffer > 0 && ep.MaxBuffer < maxBytes {
		return fmt.Errorf("max_buffer=%d is below max_bytes (%d), one batch: want at least that", ep.MaxBuffer, maxBytes)
	}
	if noRetries {
		ep.Retries = -1 // retries=0 asks for none; a zero field means the default
	}
	ep.ContentType = q.Get("content_type")
	q.Del("content_type")
	ep.Queue = q.Get("queue")
	q.Del("queue")
	ep.Durability = q.Get("durability")
	q.Del("durability")
	switch ep.Durability {
	case "", DurabilityWrite, DurabilityFsync:
	default:
		return fmt.Errorf("durability=%q: want %s or %s", ep.Durability, DurabilityWrite, DurabilityFsync)
	}

	for _, h := range q["header"] {
		k, v, ok := strings.Cut(h, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("header=%s: want Name:Value", quoteRedacted(h))
		}
		if ep.Header == nil {
			ep.Header = http.Header{}
		}
		ep.Header.Add(k, strings.TrimSpace(v))
	}
	q.Del("header")
	if paths, ok := q["bearer_file"]; ok {
		if len(paths) > 1 || ep.Header.Get("Authorization") != "" {
			return errors.New("bearer_file: give one, and no header=Authorization:... beside it")
		}
		if paths[0] == "" {
			return errors.New("bearer_file: empty: give the path of the file that holds the token")
		}
		token, err := tokenfile.ReadIssued(paths[0], "the collector's token file: the aggregator's --log-token-file")
		if err != nil {
			return fmt.Errorf("bearer_file: %w", err)
		}
		if ep.Header == nil {
			ep.Header = http.Header{}
		}
		ep.Header.Set("Authorization", "Bearer "+token)
	}
	q.Del("bearer_file")
	// A failover URL written with a raw '?' had its own query cut at the
	// first '&': what followed became this endpoint's parameters, sent
	// to its URL (a tester's failover collector's API key went to the
	// first collector), so it must be percent-encoded whole.
	// (fail%6Fver is a failover too: a tester's.)
	for k, v := range urlescape.Params(u.RawQuery) {
		if k == "failover" && strings.Contains(v, "?") {
			return fmt.Errorf("failover=%s: its '?' is not percent-encoded, so its own query would end at its first '&' and the parameters after it would be this endpoint's, sent to %s: percent-encode the whole failover URL (url.QueryEscape; ? as %%3F, & as %%26, = as %%3D)",
				quoteRedacted(v), redact.URL(u.Scheme+"://"+u.Host+u.Path))
		}
	}
	for _, f := range q["failover"] {
		fu, err := url.Parse(f)
		if err != nil || fu.Host == "" || (fu.Scheme != "http" && fu.Scheme != "https") {
			return fmt.Errorf("failover=%s: want an http(s)://host/path URL", quoteRedacted(f))
		}
		ep.Failover = append(ep.Failover, f)
	}
	q.Del("failover")
	u.RawQuery = q.Encode()
	ep.URL = u.String()
	return nil
}

// Queued reports whether the endpoint keeps its queue on disk.
func (ep Endpoint) Queued() bool { return ep.Queue != "" && ep.Queue != "memory" }

// withDefaults fills in unset limits.
func (ep Endpoint) withDefaults() Endpoint {
	if ep.Period <= 0 {
		ep.Period = defaultLogPeriod
	}
	if ep.MaxEntries <= 0 {
		ep.MaxEntries = defaultLogMaxEntries
	}
	if ep.MaxBytes <= 0 {
		ep.MaxBytes = defaultLogMaxBytes
	}
	if ep.MaxBuffer <= 0 {
		ep.MaxBuffer = defaultLogMaxBuffer
		if ep.Queued() {
			ep.MaxBuffer = defaultQueueBudget
		}
	}
	if ep.Queued() && ep.Durability == "" {
		ep.Durability = DurabilityWrite
	}
	ep.MaxBuffer = max(ep.MaxBuffer, ep.MaxBytes)
	switch {
	case ep.Retries == 0:
		ep.Retries = defaultLogRetries
	case ep.Retries < 0:
		ep.Retries = 0
	}
	if ep.ContentType == "" {
		ep.ContentType = "application/x-ndjson"
	}
	return ep
}

// sinkStats are one destination's counters, exported as metrics labelled
// with the configured endpoint name ("*" for the default destination).
type sinkStats struct {
	label     string
	kind      string
	written   atomic.Uint64 // entries the guests wrote
	delivered atomic.Uint64 // entries printed, written to the file or accepted by the collector
	refused   atomic.Uint64 // entries Write returned an error for: the guest knows, and may deliver them another way
	dropped   atomic.Uint64 // entries Write took and that were lost later: a file write error, an undeliverable batch
	requests  atomic.Uint64 // HTTP: batches POSTed successfully
	failures  atomic.Uint64 // HTTP: failed attempts (each retry counts)
	queued    atomic.Int64  // HTTP: bytes waiting in memory
	failovers atomic.Uint64 // HTTP: batches a failover collector took

	// HTTP: since when deliveries fail (zero: the last one succeeded),
	// and the last error.
	failMu       sync.Mutex
	failingSince time.Time
	lastErr      error

	// HTTP with failover: whether a failover collector has taken the
	// endpoint's batches since the URL last took one (a spell), and how
	// many they had taken before it began; since when the URL has
	// failed (zero: it took the last batch), its last error and when it
	// was last tried (see primaryDue); the collector that took the last
	// batch; probeEvery, if not zero, replaces primaryProbe (tests).
	inSpell          bool
	spellBase        uint64
	primaryFailSince time.Time
	primaryErr       error
	primaryTried     time.Time
	primaryVia       string
	probeEvery       time.Duration

	// Disk queue: since when it cannot write (zero: it writes), and why.
	// Apart from the above, which a delivery of older lines clears.
	queueDir        string
	queueFailSince  time.Time
	queueFailReason error
}

func (st *sinkStats) queueFailed(err error, now time.Time) {
	st.failMu.Lock()
	if st.queueFailSince.IsZero() {
		st.queueFailSince = now
	}
	st.queueFailReason = err
	st.failMu.Unlock()
}

func (st *sinkStats) queueOK() {
	st.failMu.Lock()
	st.queueFailSince, st.queueFailReason = time.Time{}, nil
	st.failMu.Unlock()
}

func (st *sinkStats) queueFailing() (since time.Time, err error) {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	return st.queueFailSince, st.queueFailReason
}

func (st *sinkStats) deliveryFailed(err error) {
	st.failMu.Lock()
	if st.failingSince.IsZero() {
		st.failingSince = time.Now()
	}
	st.lastErr = err
	st.failMu.Unlock()
}

func (st *sinkStats) deliveryOK() {
	st.failMu.Lock()
	st.failingSince, st.lastErr = time.Time{}, nil
	st.failMu.Unlock()
}

// primaryProbe is how often, while a failover collector takes an
// endpoint's batches, a batch tries the endpoint's URL first: the
// batches between go straight to the failover, so that a URL that takes
// a connection and never answers holds the deliveries (one batch at a
// time) for probeTimeout in each primaryProbe, not every batch for 30 s
// (a tester's batches went one per 30 s).
const (
	primaryProbe = 30 * time.Second
	probeTimeout = 10 * time.Second
	sendTimeout  = 30 * time.Second
)

// primaryDue reports whether a batch should try the endpoint's URL
// before its failovers, and within what time: always, within
// sendTimeout, unless a failover took the batches since the URL last
// failed; then once primaryProbe has passed since its last try, within
// probeTimeout.
func (st *sinkStats) primaryDue(now time.Time) (due bool, timeout time.Duration) {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	if !st.inSpell {
		return true, sendTimeout
	}
	every := st.probeEvery
	if every == 0 {
		every = primaryProbe
	}
	return now.Sub(st.primaryTried) >= every, probeTimeout
}

// primaryFailedAt records a failed try of the endpoint's URL.
func (st *sinkStats) primaryFailedAt(now time.Time, err error) {
	st.failMu.Lock()
	if st.primaryFailSince.IsZero() {
		st.primaryFailSince = now
	}
	st.primaryTried = now
	st.primaryErr = err
	st.failMu.Unlock()
}

// failedOver records that failover collector via took a batch the URL
// did not; it reports whether this began a spell.
func (st *sinkStats) failedOver(via string) (began bool) {
	n := st.failovers.Add(1)
	st.failMu.Lock()
	defer st.failMu.Unlock()
	began = !st.inSpell
	if began {
		st.inSpell, st.spellBase = true, n-1
	}
	st.primaryVia = via
	return began
}

// primaryOK records that the endpoint's URL took a batch; it returns
// since when it had failed, if a spell of failedOver ended (zero: none).
func (st *sinkStats) primaryOK() (failedSince time.Time) {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	if st.inSpell {
		failedSince = st.primaryFailSince
	}
	st.inSpell, st.primaryFailSince, st.primaryErr, st.primaryVia = false, time.Time{}, nil, ""
	return failedSince
}

// primaryFailing describes a spell of failedOver, if one is on (since
// is zero if not): since when the URL has failed, the collector that
// took the last batch, how many batches failovers took in the spell,
// and the URL's last error.
func (st *sinkStats) primaryFailing() (since time.Time, via string, batches uint64, err error) {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	if !st.inSpell {
		return time.Time{}, "", 0, st.primaryErr
	}
	return st.primaryFailSince, st.primaryVia, st.failovers.Load() - st.spellBase, st.primaryErr
}

func (st *sinkStats) failing() (since time.Time, err error) {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	return st.failingSince, st.lastErr
}

// Sink is one destination. Write takes one entry (without its newline) of
// the endpoint name, and returns an error if the entry was dropped; it
// must not block on I/O for long (a disk queue waits for its write, or
// its fsync) and must not keep msg, which is guest memory. Sinks are safe
// for concurrent use.
type Sink interface {
	Write(name string, msg []byte) error
	close(ctx context.Context) error
	stats() *sinkStats
}

// Set routes endpoint names to destinations.
type Set struct {
	byName    map[string]Sink // configured names; read-only after Open
	fallback  Sink            // "*" or stdout
	implicit  bool            // fallback is the implicit stdout (no "*")
	log       *slog.Logger
	warned    sync.Map // names told to go to the implicit stdout
	all       []Sink
	closeOnce sync.Once
	closeErr  error
}

// Open opens the destinations eps name; every other name goes to stdout
// (which the caller must make safe for concurrent writes) unless an
// Endpoint named "*" says otherwise. It fails for a name configured twice
// or a file that cannot be opened for appending. fail (may be nil) is
// called, once per destination, when a file or stdout destination cannot
// write: entries are being lost and will be until the cause is fixed.
func Open(eps []Endpoint, stdout io.Writer, log *slog.Logger, fail func(error)) (*Set, error) {
	if fail == nil {
		fail = func(error) {}
	}
	ls := &Set{byName: map[string]Sink{}, log: log}
	for _, ep := range eps {
		if _, dup := ls.byName[ep.Name]; dup || (ep.Name == "*" && ls.fallback != nil) {
			ls.Close(context.Background())
			return nil, fmt.Errorf("log endpoint %s configured twice", ep.Name)
		}
		var sk Sink
		switch ep.Kind {
		case Stdout, "":
			sk = &stdoutSink{w: stdout, st: sinkStats{label: ep.Name, kind: Stdout}, fail: fail}
		case File:
			f, err := os.OpenFile(ep.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				ls.Close(context.Background())
				return nil, fmt.Errorf("log endpoint %s: %w", ep.Name, err)
			}
			sk = newFileSink(f, ep.Name, log, fail)
		case HTTP:
			if ep.Durability != "" && !ep.Queued() {
				ls.Close(context.Background())
				return nil, fmt.Errorf("log endpoint %s: durability=%s needs a disk queue (queue=DIR, or --log-queue-dir): an in-memory queue is lost with the process", ep.Name, ep.Durability)
			}
			if ep.Queued() {
				q, err := openQueue(ep.withDefaults(), log, nil)
				if err != nil {
					ls.Close(context.Background())
					return nil, err
				}
				sk = q
				break
			}
			sk = newHTTPSink(ep.withDefaults(), log, nil)
		default:
			ls.Close(context.Background())
			return nil, fmt.Errorf("log endpoint %s: unknown kind %q", ep.Name, ep.Kind)
		}
		ls.all = append(ls.all, sk)
		if ep.Name == "*" {
			ls.fallback = sk
		} else {
			ls.byName[ep.Name] = sk
		}
	}
	if ls.fallback == nil {
		ls.implicit = true
		ls.fallback = &stdoutSink{w: stdout, st: sinkStats{label: "*", kind: Stdout}, fail: fail, implicit: true}
		ls.all = append(ls.all, ls.fallback)
	}
	return ls, nil
}

// Lookup returns the destination of endpoint name. A name that goes to
// the implicit stdout is logged once: a guest relying on an endpoint (a
// journal, a fallback) that nobody configured would otherwise only print.
func (ls *Set) Lookup(name string) Sink {
	if sk, ok := ls.byName[name]; ok {
		return sk
	}
	if ls.implicit && ls.log != nil {
		if _, seen := ls.warned.LoadOrStore(name, true); !seen {
			ls.log.Warn("log endpoint not configured: its entries are printed to stdout (configure it with --log-endpoint NAME=...)", "endpoint", name)
		}
	}
	return ls.fallback
}

// Close flushes and closes every destination, waiting for HTTP deliveries
// until ctx ends. It is safe to call more than once.
func (ls *Set) Close(ctx context.Context) error {
	ls.closeOnce.Do(func() {
		var wg sync.WaitGroup
		errs := make([]error, len(ls.all))
		for i, sk := range ls.all {
			wg.Go(func() { errs[i] = sk.close(ctx) })
		}
		wg.Wait()
		ls.closeErr = errors.Join(errs...)
	})
	return ls.closeErr
}

// Degraded describes each HTTP destination whose deliveries are failing,
// one line each: since when, the last error, what was dropped so far;
// each whose deliveries succeed only through a failover collector;
// each disk queue that cannot write (its entries are refused: a journal
// has lost its crash safety), whatever its deliveries do; and each
// endpoint name without a destination (no "*" either) that entries were
// written to, printed to stdout rather than delivered.
func (ls *Set) Degraded() []string {
	var out []string
	if sk, ok := ls.fallback.(*stdoutSink); ok && sk.implicit {
		// What a guest wrote to an endpoint nobody configured is printed,
		// not delivered: a journal or fallback of a POP started without
		// its --log-endpoint (a tester's /healthz said ok meanwhile).
		sk.printed.Range(func(name, n any) bool {
			out = append(out, fmt.Sprintf("log endpoint %s is not configured: %d entries printed to stdout, not delivered (--log-endpoint %s=URL; %s=stdout to print them on purpose)",
				name, n.(*atomic.Int64).Load(), name, name))
			return true
		})
	}
	for _, sk := range ls.all {
		st := sk.stats()
		if st.kind != HTTP {
			continue
		}
		if since, err := st.queueFailing(); !since.IsZero() {
			out = append(out, fmt.Sprintf("log endpoint %s: its disk queue cannot write for %s (%v); entries are refused to the guests (%d so far; an edgepixel module delivers them another way) until a retry of the disk succeeds (tried again within seconds, with or without entries; no restart needed): free space in %s, or make it writable",
				st.label, time.Since(since).Round(time.Second), err, st.refused.Load(), st.queueDir))
		}
		since, err := st.failing()
		if since.IsZero() {
			// Deliveries succeed, but perhaps only through a failover
			// collector: the endpoint has lost its spare, which nothing
			// else shows (a tester's primary was down unseen).
			if since, via, n, err := st.primaryFailing(); !since.IsZero() {
				out = append(out, fmt.Sprintf("log endpoint %s: its URL has been failing for %s (%v); failover collector %s takes its batches (%d so far)",
					st.label, time.Since(since).Round(time.Second), err, via, n))
			}
			continue
		}
		out = append(out, fmt.Sprintf("log endpoint %s: deliveries failing for %s (%v); %d entries dropped so far, %d refused to the guests, %d bytes queued",
			st.label, time.Since(since).Round(time.Second), err, st.dropped.Load(), st.refused.Load(), st.queued.Load()))
	}
	slices.Sort(out)
	return out
}

// WritePrometheus writes the destinations' counters in the Prometheus
// text format, labelled with the configured endpoint name ("*" for the
// default destination) and kind.
func (ls *Set) WritePrometheus(w io.Writer) {
	all := slices.Clone(ls.all)
	slices.SortFunc(all, func(a, b Sink) int { return strings.Compare(a.stats().label, b.stats().label) })
	type metric struct {
		name, kind, help string
		httpOnly         bool
		get              func(*sinkStats) int64
	}
	for _, m := range []metric{
		{"edgepixel_pop_log_lines_total", "counter", "Log entries guests wrote, by configured endpoint (* = all others).", false,
			func(st *sinkStats) int64 { return int64(st.written.Load()) }},
		{"edgepixel_pop_log_lines_delivered_total", "counter", "Log entries printed, written to their file or accepted by their HTTP collector (with a disk queue, also entries an earlier run queued: this can pass edgepixel_pop_log_lines_total).", false,
			func(st *sinkStats) int64 { return int64(st.delivered.Load()) }},
		{"edgepixel_pop_log_lines_refused_total", "counter", "Log entries refused to the guest as it wrote them (the write failed: too large, buffer or disk budget full, the disk queue cannot write). The guest knows: an edgepixel module delivers a refused journal line by batch, holds a refused fallback line for its next try (counted delivery_failed at the aggregator if lost); another guest may lose it.", false,
			func(st *sinkStats) int64 { return int64(st.refused.Load()) }},
		{"edgepixel_pop_log_lines_dropped_total", "counter", "Log entries taken and lost later: a file write error, or a batch undeliverable after retries.", false,
			func(st *sinkStats) int64 { return int64(st.dropped.Load()) }},
		{"edgepixel_pop_log_batches_total", "counter", "Batches an HTTP log endpoint delivered.", true,
			func(st *sinkStats) int64 { return int64(st.requests.Load()) }},
		{"edgepixel_pop_log_send_failures_total", "counter", "Failed delivery attempts of an HTTP log endpoint (each retry counts; a batch a failover collector took is delivered: see edgepixel_pop_log_failover_batches_total).", true,
			func(st *sinkStats) int64 { return int64(st.failures.Load()) }},
		{"edgepixel_pop_log_failover_batches_total", "counter", "Batches of an HTTP log endpoint that its URL did not take and a failover collector did.", true,
			func(st *sinkStats) int64 { return int64(st.failovers.Load()) }},
		{"edgepixel_pop_log_queued_bytes", "gauge", "Bytes an HTTP log endpoint holds awaiting delivery (in memory, or on disk with queue=DIR).", true,
			func(st *sinkStats) int64 { return st.queued.Load() }},
		{"edgepixel_pop_log_failing_seconds", "gauge", "How long an HTTP log endpoint's deliveries have been failing (0: the last one succeeded).", true,
			func(st *sinkStats) int64 {
				if since, _ := st.failing(); !since.IsZero() {
					return int64(max(time.Since(since).Seconds(), 1))
				}
				return 0
			}},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, sk := range all {
			st := sk.stats()
			if m.httpOnly && st.kind != HTTP {
				continue
			}
			fmt.Fprintf(w, "%s{endpoint=\"%s\",kind=\"%s\"} %d\n", m.name, promLabel(st.label), st.kind, m.get(st))
		}
	}
	const wf = "edgepixel_pop_log_queue_write_failing_seconds"
	fmt.Fprintf(w, "# HELP %s How long a disk-queued log endpoint's queue has been unable to write, its entries refused (0: it writes).\n# TYPE %s gauge\n", wf, wf)
	for _, sk := range all {
		if q, ok := sk.(*queueSink); ok {
			v := int64(0)
			if since, _ := q.st.queueFailing(); !since.IsZero() {
				v = int64(max(time.Since(since).Seconds(), 1))
			}
			fmt.Fprintf(w, "%s{endpoint=\"%s\",kind=\"%s\"} %d\n", wf, promLabel(q.st.label), q.st.kind, v)
		}
	}
	const hist = "edgepixel_pop_log_write_seconds"
	fmt.Fprintf(w, "# HELP %s How long a guest's write to a disk-queued log endpoint took: the write(2), and at durability fsync the group fsync.\n# TYPE %s histogram\n", hist, hist)
	for _, sk := range all {
		if q, ok := sk.(*queueSink); ok {
			q.latency.writePrometheus(w, hist, fmt.Sprintf("endpoint=\"%s\",durability=\"%s\"", promLabel(q.st.label), q.ep.Durability))
		}
	}
}

// --- stdout ---

// stdoutSink prints "name :: entry" lines, as Viceroy does. w is the
// server's locked stdout, shared with the guests' own stdout.
type stdoutSink struct {
	w      io.Writer
	st     sinkStats
	fail   func(error)
	failed atomic.Bool
	// implicit marks the stdout of names no endpoint configures, whose
	// entries it counts per name (printed): Degraded lists them.
	implicit bool
	printed  sync.Map // name → *atomic.Int64
}

func (s *stdoutSink) Write(name string, msg []byte) error {
	s.st.written.Add(1)
	if s.implicit {
		n, ok := s.printed.Load(name)
		if !ok {
			n, _ = s.printed.LoadOrStore(name, new(atomic.Int64))
		}
		n.(*atomic.Int64).Add(1)
	}
	line := make([]byte, 0, len(name)+len(msg)+5)
	line = append(line, name...)
	line = append(line, " :: "...)
	line = append(line, msg...)
	line = append(line, '\n')
	if _, err := s.w.Write(line); err != nil {
		s.st.refused.Add(1)
		if !s.failed.Swap(true) {
			s.fail(fmt.Errorf("log endpoint %s: writing to stdout: %w", s.st.label, err))
		}
		return err
	}
	s.st.delivered.Add(1)
	return nil
}

func (s *stdoutSink) close(context.Context) error { return nil }
func (s *stdoutSink) stats() *sinkStats           { return &s.st }

// --- file ---

// fileSink appends entries to a file through a buffer that is written out
// when it holds 64 KiB, every second, and at close, always in whole lines
// (so another process tailing or appending to the file never sees half a
// line from us).
type fileSink struct {
	log     *slog.Logger
	fail    func(error)
	mu      sync.Mutex
	f       *os.File
	buf     []byte
	pending uint64 // entries in buf
	warned  bool
	st      sinkStats
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	err     error
}

func newFileSink(f *os.File, label string, log *slog.Logger, fail func(error)) *fileSink {
	s := &fileSink{log: log, fail: fail, f: f, st: sinkStats{label: label, kind: File},
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.flusher()
	return s
}

func (s *fileSink) Write(_ string, msg []byte) error {
	s.st.written.Add(1)
	s.mu.Lock()
	s.buf = append(s.buf, msg...)
	s.buf = append(s.buf, '\n')
	s.pending++
	if len(s.buf) >= logFileBufferBytes {
		s.flushLocked()
	}
	s.mu.Unlock()
	return nil
}

func (s *fileSink) flushLocked() {
	if len(s.buf) == 0 {
		return
	}
	_, err := s.f.Write(s.buf)
	if err != nil {
		s.st.dropped.Add(s.pending)
		if !s.warned {
			s.warned = true
			s.log.Warn("log endpoint: file write failed; entries dropped", "endpoint", s.st.label, "file", s.f.Name(), "err", err)
			s.fail(fmt.Errorf("log endpoint %s: writing %s: %w", s.st.label, s.f.Name(), err))
		}
	} else {
		s.st.delivered.Add(s.pending)
	}
	s.pending = 0
	if cap(s.buf) > 4*logFileBufferBytes {
		s.buf = nil // do not keep a burst's buffer forever
	} else {
		s.buf = s.buf[:0]
	}
}

func (s *fileSink) flusher() {
	defer close(s.done)
	t := time.NewTicker(logFileFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.mu.Lock()
			s.flushLocked()
			s.mu.Unlock()
		case <-s.stop:
			return
		}
	}
}

func (s *fileSink) close(context.Context) error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		s.flushLocked()
		s.err = s.f.Close()
	})
	return s.err
}

func (s *fileSink) stats() *sinkStats { return &s.st }

// --- HTTP ---

// httpSink batches entries and POSTs each batch as newline-separated lines.
// Entries go into the open batch; a batch is sealed when it reaches
// MaxEntries or MaxBytes, or when the period ticks, and a single sender
// goroutine delivers sealed batches in order, retrying failures with
// exponential backoff. Writing never waits for the network.
type httpSink struct {
	ep     Endpoint
	log    *slog.Logger
	client *http.Client
	st     sinkStats

	mu      sync.Mutex
	open    []byte // the batch being filled
	openN   int
	sealed  []logBatch
	queued  int // bytes in open and sealed
	closing bool

	wake     chan struct{} // a batch was sealed
	tick     <-chan time.Time
	stop     chan struct{} // closed by close
	done     chan struct{}
	closeCtx context.Context // set before stop is closed

	backoff   time.Duration // first retry delay; tests shorten it
	tooLong   atomic.Bool   // warned about an entry larger than MaxBytes
	closeOnce sync.Once
	closeErr  error
}

type logBatch struct {
	body []byte
	n    int
}

// newHTTPSink starts the sender. tick, if non-nil, replaces the period
// ticker (tests drive it by hand).
func newHTTPSink(ep Endpoint, log *slog.Logger, tick <-chan time.Time) *httpSink {
	s := &httpSink{
		ep:      ep,
		log:     log,
		client:  &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		st:      sinkStats{label: ep.Name, kind: HTTP},
		wake:    make(chan struct{}, 1),
		tick:    tick,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		backoff: 500 * time.Millisecond,
	}
	var ticker *time.Ticker
	if s.tick == nil {
		ticker = time.NewTicker(ep.Period)
		s.tick = ticker.C
	}
	go func() {
		if ticker != nil {
			defer ticker.Stop()
		}
		s.run()
	}()
	return s
}

func (s *httpSink) stats() *sinkStats { return &s.st }

func (s *httpSink) Write(_ string, msg []byte) error {
	s.st.written.Add(1)
	size := len(msg) + 1
	if size > s.ep.MaxBytes {
		// It could never be sent within the collector's limit.
		s.st.refused.Add(1)
		if !s.tooLong.Swap(true) {
			s.log.Warn("log endpoint: entry larger than max_bytes refused", "endpoint", s.ep.Name, "bytes", size, "max_bytes", s.ep.MaxBytes)
		}
		return ErrTooLarge
	}
	s.mu.Lock()
	if s.closing || int64(s.queued+size) > budget(s.ep.MaxBuffer, msg) {
		closing := s.closing
		s.mu.Unlock()
		s.st.refused.Add(1)
		if closing {
			return ErrClosed
		}
		return ErrQueueFull
	}
	sealed := false
	if s.openN > 0 && len(s.open)+size > s.ep.MaxBytes {
		s.sealLocked()
		sealed = true
	}
	s.open = append(s.open, msg...)
	s.open = append(s.open, '\n')
	s.openN++
	s.queued += size
	s.st.queued.Add(int64(size))
	if s.openN >= s.ep.MaxEntries {
		s.sealLocked()
		sealed = true
	}
	s.mu.Unlock()
	if sealed {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *httpSink) sealLocked() {
	if s.openN == 0 {
		return
	}
	s.sealed = append(s.sealed, logBatch{body: s.open, n: s.openN})
	s.open, s.openN = nil, 0
}

// next takes the oldest sealed batch; with seal it first seals the open one.
func (s *httpSink) next(seal bool) (logBatch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seal {
		s.sealLocked()
	}
	if len(s.sealed) == 0 {
		return logBatch{}, false
	}
	b := s.sealed[0]
	s.sealed[0] = logBatch{}
	s.sealed = s.sealed[1:]
	return b, true
}

func (s *httpSink) release(b logBatch) {
	s.mu.Lock()
	s.queued -= len(b.body)
	s.st.queued.Add(-int64(len(b.body)))
	s.mu.Unlock()
}

// deliveryContext returns the context that bounds a sender's deliveries:
// unbounded while serving, then ended with closeCtx once stop is closed
// (closeCtx is set before stop closes). cancel releases its goroutine.
func deliveryContext(stop <-chan struct{}, closeCtx *context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
			return
		}
		select {
		case <-(*closeCtx).Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (s *httpSink) run() {
	defer close(s.done)
	// ctx bounds every delivery: unbounded while serving, and by closeCtx
	// once close has begun.
	ctx, cancel := deliveryContext(s.stop, &s.closeCtx)
	defer cancel()
	for {
		seal := false
		select {
		case <-s.wake:
		case <-s.tick:
			seal = true
		case <-s.stop:
			s.drain(ctx)
			return
		}
		for {
			b, ok := s.next(seal)
			if !ok {
				break
			}
			seal = false
			s.deliver(ctx, b)
		}
	}
}

// drain delivers everything left at close, until closeCtx ends; what
// remains then is dropped.
func (s *httpSink) drain(ctx context.Context) {
	for {
		b, ok := s.next(true)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			s.st.dropped.Add(uint64(b.n))
			s.release(b)
			continue
		}
		s.deliver(ctx, b)
	}
}

// deliver POSTs one batch, retrying with backoff; it gives up (dropping
// the batch) after the configured retries, on a response that retrying
// cannot fix (4xx other than 408 and 429), or when ctx ends. A batch the
// collector refuses as too large (413) is split in two and each half
// delivered so, as the disk queue does: the POP's max_bytes (10 MiB) is
// above the aggregator's --max-body (4 MiB) by default, and such a
// batch was dropped whole (a reviewer's finding). Batches are delivered
// one at a time, in order: a collector sees entries in the order the
// guests wrote them.
func (s *httpSink) deliver(ctx context.Context, b logBatch) {
	defer s.release(b)
	if alone := s.deliverBody(ctx, b.body, b.n); alone > 0 {
		// Once per batch, not per entry: a collector that refuses
		// everything as too large made a line per entry (a tester's).
		s.log.Warn("log endpoint: the collector refuses entries as too large even alone; dropped", "endpoint", s.ep.Name, "entries", alone)
	}
}

// deliverBody is deliver of body, n entries each ending in '\n'. It
// returns how many entries it dropped because the collector refused
// each alone as too large (413), which deliver logs.
func (s *httpSink) deliverBody(ctx context.Context, body []byte, n int) (alone int) {
	delay := s.backoff
	stop := s.stop
	for attempt := 0; ; attempt++ {
		retry, status, err := send(ctx, s.client, &s.ep, &s.st, s.log, body)
		if err == nil {
			s.st.requests.Add(1)
			s.st.delivered.Add(uint64(n))
			s.st.deliveryOK()
			return 0
		}
		s.st.failures.Add(1)
		s.st.deliveryFailed(err)
		if status == http.StatusRequestEntityTooLarge {
			if mid := splitAt(body); n > 1 && mid > 0 {
				k := bytes.Count(body[:mid], []byte{'\n'})
				s.log.Debug("log endpoint: the collector refuses the batch as too large; sending it in two", "endpoint", s.ep.Name, "bytes", len(body), "entries", n)
				return s.deliverBody(ctx, body[:mid], k) + s.deliverBody(ctx, body[mid:], n-k)
			}
			if n == 1 {
				s.st.dropped.Add(1)
				return 1
			}
		}
		if !retry || attempt >= s.ep.Retries || ctx.Err() != nil {
			s.st.dropped.Add(uint64(n))
			s.log.Warn("log endpoint: batch dropped", "endpoint", s.ep.Name, "entries", n, "attempts", attempt+1, "err", err)
			return 0
		}
		// Jitter spreads the retries of several POPs sharing a collector;
		// the wait logged is the one taken (a tester read "in=500ms" of
		// a retry 0.35 s later).
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Debug("log endpoint: delivery failed; retrying", "endpoint", s.ep.Name, "in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-stop:
			// Shutdown began: retry at once (time is short now), then
			// back off as before within the shutdown deadline.
			t.Stop()
			stop = nil
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// splitAt returns where to cut body, entries each ending in '\n', into
// two batches of whole entries, neither empty: after the entry that
// ends nearest past the middle. 0: body holds one entry.
func splitAt(body []byte) int {
	if len(body) < 2 {
		return 0
	}
	from := len(body)/2 - 1
	if i := bytes.IndexByte(body[from:len(body)-1], '\n'); i >= 0 {
		return from + i + 1
	}
	return bytes.LastIndexByte(body[:len(body)-1], '\n') + 1
}

// send POSTs body to ep.URL and, while the answer is one that may be
// temporary, to each of ep.Failover in turn until one takes it, each
// request within sendTimeout. It returns the answer that decided: retry says
// whether the failure may be temporary (always, once the URL's was),
// status is the last HTTP status (0: no answer). A batch a failover
// collector took is delivered, but the endpoint has lost its spare: st
// records it (Degraded, metrics) and log says when such a spell begins
// and ends. While it lasts the URL is tried first once per primaryProbe,
// within probeTimeout (and last, should every failover fail too).
func send(ctx context.Context, client *http.Client, ep *Endpoint, st *sinkStats, log *slog.Logger, body []byte) (retry bool, status int, err error) {
	tried, timeout := true, sendTimeout
	if len(ep.Failover) > 0 {
		tried, timeout = st.primaryDue(time.Now())
	}
	if tried {
		if retry, status, err = primary(ctx, client, ep, st, log, body, timeout); err == nil || !retry || len(ep.Failover) == 0 {
			return retry, status, err
		}
	}
	var last error
	for _, u := range ep.Failover {
		var e error
		if _, status, e = sendTo(ctx, client, ep, u, body, sendTimeout); e == nil {
			if via := redact.URL(u); st.failedOver(via) {
				_, _, _, first := st.primaryFailing()
				log.Warn("log endpoint: its URL fails; a failover collector takes its batches", "endpoint", ep.Name, "failover", via, "err", first)
			}
			return false, status, nil
		}
		last = e
	}
	if !tried {
		if retry, status, err = primary(ctx, client, ep, st, log, body, probeTimeout); err == nil {
			return retry, status, err
		}
	}
	if _, _, _, first := st.primaryFailing(); first != nil {
		return true, status, fmt.Errorf("%v; failover: %w", first, last)
	}
	return true, status, last
}

// primary is send's try of the endpoint's URL, within timeout.
func primary(ctx context.Context, client *http.Client, ep *Endpoint, st *sinkStats, log *slog.Logger, body []byte, timeout time.Duration) (retry bool, status int, err error) {
	retry, status, err = sendTo(ctx, client, ep, ep.URL, body, timeout)
	if err != nil {
		st.primaryFailedAt(time.Now(), err)
		return retry, status, err
	}
	if since := st.primaryOK(); !since.IsZero() {
		// At WARN, as the failover was: both ends are read in one place.
		log.Warn("log endpoint: its URL takes deliveries again", "endpoint", ep.Name, "after", time.Since(since).Round(time.Second))
	}
	return retry, status, nil
}

// sendTo POSTs body to target, within timeout.
func sendTo(ctx context.Context, client *http.Client, ep *Endpoint, target string, body []byte, timeout time.Duration) (retry bool, status int, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	for k, v := range ep.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ep.ContentType)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "edgepixel-pop")
	}
	resp, err := client.Do(req)
	if err != nil {
		// The error is logged and listed (redact.Error: a collector's
		// token in the query, ?dd-api-key=).
		return true, 0, redact.Error(err)
	}
	// The start of a refusal's body is kept for the error: a collector's
	// own words (edgepixel's aggregator says what is wrong with a token)
	// were dropped, leaving a tester a bare "401 Unauthorized".
	head := make([]byte, 200)
	n, _ := io.ReadFull(resp.Body, head)
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	said := ""
	if t := strings.Join(strings.Fields(strings.ToValidUTF8(string(head[:n]), "")), " "); t != "" {
		said = ": " + strconv.Quote(t)
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, c, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, c, fmt.Errorf("collector %s answered %s%s", req.URL.Host, resp.Status, said)
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		// The fix of a token file did nothing until a restart, and
		// nothing said so (a tester's).
		return false, c, fmt.Errorf("collector %s answered %s%s (check the endpoint's URL and credentials; its header= and bearer_file= are read at start: restart the POP after changing them)", req.URL.Host, resp.Status, said)
	default:
		return false, c, fmt.Errorf("collector %s answered %s%s (check the endpoint's URL and credentials)", req.URL.Host, resp.Status, said)
	}
}

// close stops taking entries and delivers what is queued, waiting until
// ctx ends. If ctx has already ended (the guests used up the shutdown
// time), one short attempt is still made: losing the last batch to a
// deadline the collector had no part in would be a pity.
func (s *httpSink) close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.doClose(ctx) })
	return s.closeErr
}

func (s *httpSink) doClose(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	cctx := ctx
	var cancel context.CancelFunc = func() {}
	if ctx.Err() != nil {
		cctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	}
	defer cancel()
	dropped := s.st.dropped.Load()
	s.closeCtx = cctx
	close(s.stop)
	<-s.done
	s.client.CloseIdleConnections()
	if n := s.st.dropped.Load() - dropped; n > 0 {
		return fmt.Errorf("log endpoint %s: %d entries undelivered at shutdown", s.ep.Name, n)
	}
	return nil
}

// promLabel escapes a label value for the text format.
func promLabel(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}
