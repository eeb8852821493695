package logsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepixel/edgepixel/shared/dirlock"
	"github.com/edgepixel/edgepixel/shared/privdir"
	"github.com/edgepixel/edgepixel/shared/wire"
)

// Durability levels of a disk-queued HTTP endpoint: when a guest's write
// returns, its entry is
const (
	// DurabilityWrite: written to the queue file with one write(2), in
	// the kernel's page cache. It survives the POP's death (kill -9, a
	// crash), not the machine's.
	DurabilityWrite = "write"
	// DurabilityFsync: also fsynced, one fsync for all the writes of all
	// instances that arrived meanwhile (group commit). It survives a
	// machine crash or power loss too.
	DurabilityFsync = "fsync"
)

// Disk queue defaults.
const (
	defaultQueueBudget = 2 << 30 // bytes on disk; enough for 10 minutes of a busy POP's events
	queueSegmentBytes  = 32 << 20
	checkpointName     = "checkpoint"
	segmentSuffix      = ".ndjson"
	// A queue whose disk failed tries it again after queueRetryMin, then
	// waiting twice as long after each failure up to queueRetryMax: soon
	// after space is freed, and rarely enough that a full disk costs
	// nothing.
	queueRetryMin = 100 * time.Millisecond
	queueRetryMax = 5 * time.Second
	// countersReserve is what counters lines (wire.IsCountersLine) may
	// queue beyond max_buffer, and hold in memory while the disk cannot
	// write: see queueSink.
	countersReserve = 1 << 20
)

// Errors a guest's write to a queued endpoint can return (the log write
// hostcall then fails, so the guest can deliver the entry another way).
var (
	ErrQueueFull = errors.New("log endpoint queue full (max_buffer bytes await delivery)")
	ErrTooLarge  = errors.New("log entry larger than the endpoint's max_bytes")
	ErrClosed    = errors.New("log endpoint closed")
)

// queueSink is an HTTP endpoint whose queue is a directory on disk:
//
//	DIR/lock                  held (flock) by the POP using the queue
//	DIR/00000000000000000007.ndjson  segments: the entries, one line each
//	DIR/checkpoint            "SEGMENT OFFSET": what was delivered
//
// Write appends the entry to the newest segment with one write(2), and,
// at DurabilityFsync, waits for a group fsync. One sender goroutine reads
// from the checkpoint on, POSTs batches of whole lines in order and moves
// the checkpoint past each batch the collector accepts, deleting segments
// it has passed. It retries until delivered, whatever the collector
// answers (a wrong token is fixed by its operator, not by dropping the
// events), except that a batch refused as too large (413) is split, and a
// single line refused so is dropped and counted. At start the queue is
// resumed from the checkpoint; a torn last line (a write cut short by a
// crash, never acknowledged to its guest) is cut off. The checkpoint is
// written without fsync: after a machine crash, batches may be delivered
// twice, which the aggregator deduplicates (events by id, counts by
// taking the largest).
//
// MaxBuffer bounds the undelivered bytes on disk: an entry that would
// pass it is refused (ErrQueueFull) and counted as refused.
//
// A write (or fsync) that fails (the disk is full, read-only, gone) puts
// the queue in a state of its own, apart from delivery failures: entries
// are refused and counted as refused, the guests deliver them another way,
// and Degraded and a metric say so until the disk writes again, whatever
// the collector does meanwhile (a delivery of older lines is no sign the
// disk took new ones). The queue tries the disk again by itself, with the
// next entry after a backoff that grows to queueRetryMax, so a full disk
// costs a hit little more than a clock read; once a write succeeds (at
// DurabilityFsync: once its fsync does) the queue takes entries again.
// Nothing needs a restart: journaling resumes as soon as there is space.
//
// Counters lines (wire.IsCountersLine: an instance's counts, no event)
// are what tells the aggregator of the events the queue refused: a guest
// whose events no path took counts them (delivery_failed) and writes its
// counts as its instance ends, when the queue is as full as it was for
// the events. So a counters line may queue countersReserve bytes beyond
// MaxBuffer, and while the disk cannot write, up to countersReserve
// bytes of them are held in memory, taken as written, and written first
// once the queue writes again, or sent to the collector directly as the
// queue closes (a POP that dies before then, or closes while the
// collector does not answer, loses them: the counts, never an event). A tester's full disk under an aggregator
// outage lost 480 answered events, and /api/loss said none were lost.
type queueSink struct {
	ep     Endpoint
	log    *slog.Logger
	client *http.Client
	st     sinkStats
	lock   *os.File

	mu       sync.Mutex
	synced   *sync.Cond // broadcast after each fsync
	f        *os.File   // newest segment, appended to
	seg      uint64
	size     int64
	buf      []byte
	closed   bool
	writeErr error     // the queue cannot write: it refuses until a retry succeeds (since when: st.queueFailing)
	retryAt  time.Time // the first entry after this tries the disk again
	retryGap time.Duration
	failedN  uint64     // writes when writeErr began: a later fsync that succeeds covers a retry
	syncBad  uint64     // entries up to this were covered by an fsync that failed
	syncErr  error      // why, for their writers
	writes   uint64     // entries written
	fsynced  uint64     // entries covered by the last fsync
	toSync   []*os.File // fsync level: rotated segments to fsync, then close
	unsent   int        // bytes since the sender was last woken
	unsentN  int
	full     bool // warned that the queue is full
	// held are counters lines taken while the disk could not write,
	// heldBytes their size with newlines (at most countersReserve).
	held      [][]byte
	heldBytes int
	segBytes  int64
	syncs     atomic.Uint64 // fsync rounds (group commits)
	latency   latencyHist   // how long guests' writes took

	// Sender state, owned by the sender goroutine.
	rseg  uint64
	roff  int64
	rf    *os.File
	rbuf  []byte
	limit int // entries per batch; lowered after a 413
	alone int // entries dropped in a row as too large even alone (the sender's)
	// failWarned is when the sender first warned that deliveries fail,
	// zero once one succeeds (the sender's).
	failWarned time.Time

	wake     chan struct{}
	syncWake chan struct{}
	tick     <-chan time.Time
	stop     chan struct{}
	done     chan struct{}
	syncDone chan struct{}
	probing  chan struct{} // closed when the prober has ended
	// probeEvery is how often the prober looks for a failed disk to try
	// again; queueRetryMax unless a test shortens it.
	probeEvery time.Duration
	closeCtx   context.Context
	backoff    time.Duration

	closeOnce sync.Once
	closeErr  error
	tooLong   atomic.Bool

	// writeFile writes to a segment; nil is f.Write. Tests make it fail
	// as a full disk would, which they cannot arrange otherwise (CI runs
	// as root, whom permissions do not stop).
	writeFile func(f *os.File, b []byte) (int, error)
	syncFile  func(f *os.File) error // nil is f.Sync; tests make it fail
}

// queueTestHook, if set, adjusts a queue before its goroutines start.
var queueTestHook func(*queueSink)

// openQueue opens (creating) the queue in ep.Queue and resumes it.
func openQueue(ep Endpoint, log *slog.Logger, tick <-chan time.Time) (*queueSink, error) {
	warning, err := privdir.Make(ep.Queue)
	if err != nil {
		return nil, fmt.Errorf("log endpoint %s: queue directory: %w", ep.Name, err)
	}
	if warning != "" {
		log.Warn("log endpoint "+ep.Name+": queue directory: "+warning, "endpoint", ep.Name)
	}
	// Two POPs appending to one queue would interleave their checkpoints
	// and send each other's entries.
	lock, err := dirlock.Lock(filepath.Join(ep.Queue, dirlock.Name))
	if errors.Is(err, dirlock.ErrHeld) {
		return nil, fmt.Errorf("log endpoint %s: queue %s: %w (give each POP its own queue directory)", ep.Name, ep.Queue, err)
	}
	if err != nil {
		return nil, fmt.Errorf("log endpoint %s: queue %s: %w", ep.Name, ep.Queue, err)
	}
	s := &queueSink{
		ep: ep, log: log, lock: lock,
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		st:       sinkStats{label: ep.Name, kind: HTTP, queueDir: ep.Queue},
		wake:     make(chan struct{}, 1),
		syncWake: make(chan struct{}, 1),
		tick:     tick,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		syncDone: make(chan struct{}),
		probing:  make(chan struct{}),
		backoff:  500 * time.Millisecond,

		probeEvery: queueRetryMax,
		limit:      ep.MaxEntries,
		segBytes:   queueSegmentBytes,
	}
	s.synced = sync.NewCond(&s.mu)
	if err := s.resume(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("log endpoint %s: queue %s: %w", ep.Name, ep.Queue, err)
	}
	if queueTestHook != nil {
		queueTestHook(s)
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
	if ep.Durability == DurabilityFsync {
		go s.committer()
	} else {
		close(s.syncDone)
	}
	go s.prober()
	log.Info("log endpoint: queue on disk", "endpoint", ep.Name, "dir", ep.Queue, "durability", ep.Durability,
		"max_buffer", ep.MaxBuffer, "queued_bytes", s.st.queued.Load())
	if s.st.queued.Load() > 0 {
		s.wakeSender()
	}
	return s, nil
}

func segmentPath(dir string, seg uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", seg, segmentSuffix))
}

// segments lists the segment numbers in dir, in order.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// resume reads the checkpoint, deletes delivered segments, cuts torn
// tails, counts what is queued and opens a new segment to append to.
func (s *queueSink) resume() error {
	dir := s.ep.Queue
	segs, err := segments(dir)
	if err != nil {
		return err
	}
	cpSeg, cpOff := uint64(0), int64(0)
	if b, err := os.ReadFile(filepath.Join(dir, checkpointName)); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			cpSeg, _ = strconv.ParseUint(f[0], 10, 64)
			cpOff, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	var queued int64
	var keep []uint64
	for _, seg := range segs {
		path := segmentPath(dir, seg)
		if seg < cpSeg {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		size, err := cutTornTail(path)
		if err != nil {
			return err
		}
		keep = append(keep, seg)
		queued += size
		if seg == cpSeg {
			queued -= min(cpOff, size)
		}
	}
	// Read from the checkpoint; if its segment is gone, from the first
	// one kept.
	s.rseg, s.roff = cpSeg, cpOff
	if len(keep) == 0 || keep[0] != cpSeg {
		s.roff = 0
		if len(keep) > 0 {
			s.rseg = keep[0]
		}
	}
	s.seg = 1
	if len(keep) > 0 {
		s.seg = keep[len(keep)-1] + 1
	}
	s.seg = max(s.seg, s.rseg)
	if s.f, err = os.OpenFile(segmentPath(dir, s.seg), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		return err
	}
	if s.size, err = s.f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	queued += s.size
	if len(keep) == 0 {
		s.rseg, s.roff = s.seg, 0
	}
	s.st.queued.Store(queued)
	return syncDir(dir)
}

// cutTornTail truncates the segment at path after its last newline and
// returns its size.
func cutTornTail(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if end < n {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end != size {
		if err := f.Truncate(end); err != nil {
			return 0, err
		}
	}
	return end, nil
}

func (s *queueSink) stats() *sinkStats { return &s.st }

// Write appends msg as one line. It returns once the line is written (at
// DurabilityFsync: fsynced), or the reason it was not, which counts as a
// refused entry.
func (s *queueSink) Write(_ string, msg []byte) error {
	t0 := time.Now()
	defer func() { s.latency.observe(time.Since(t0)) }()
	s.st.written.Add(1)
	size := len(msg) + 1
	if size > s.ep.MaxBytes {
		s.st.refused.Add(1)
		if !s.tooLong.Swap(true) {
			s.log.Warn("log endpoint: entry larger than max_bytes refused", "endpoint", s.ep.Name, "bytes", size, "max_bytes", s.ep.MaxBytes)
		}
		return ErrTooLarge
	}
	s.mu.Lock()
	err := s.appendLocked(msg, size)
	if err != nil {
		held := err != ErrClosed && err != ErrQueueFull && s.holdLocked(msg, size)
		s.mu.Unlock()
		if held {
			return nil
		}
		s.st.refused.Add(1)
		return err
	}
	seq := s.writes
	wake := s.unsentN >= s.ep.MaxEntries || s.unsent >= s.ep.MaxBytes
	if wake {
		s.unsent, s.unsentN = 0, 0
	}
	if s.ep.Durability == DurabilityFsync {
		select {
		case s.syncWake <- struct{}{}:
		default:
		}
		for s.fsynced < seq && s.syncBad < seq {
			s.synced.Wait()
		}
		if s.fsynced < seq {
			err = s.syncErr
		}
	}
	s.mu.Unlock()
	if wake {
		s.wakeSender()
	}
	if err != nil {
		// Written but not known to be on disk: the guest will deliver it
		// another way too; the aggregator deduplicates.
		s.st.refused.Add(1)
	}
	return err
}

// budget is how many bytes may be queued once msg is: maxBuffer, and
// for a counters line countersReserve more (see queueSink).
func budget(maxBuffer int, msg []byte) int64 {
	if wire.IsCountersLine(msg) {
		return int64(maxBuffer) + countersReserve
	}
	return int64(maxBuffer)
}

// holdLocked keeps counters line msg in memory while the disk cannot
// write, if it is one and countersReserve has room (see queueSink).
func (s *queueSink) holdLocked(msg []byte, size int) bool {
	if !wire.IsCountersLine(msg) || s.heldBytes+size > countersReserve {
		return false
	}
	if len(s.held) == 0 {
		s.log.Warn("log endpoint: the disk queue cannot write; counters lines are held in memory until it does, or sent directly as the POP stops",
			"endpoint", s.ep.Name, "dir", s.ep.Queue, "err", s.writeErr)
	}
	s.held = append(s.held, slices.Clone(msg))
	s.heldBytes += size
	return true
}

// writeHeldLocked writes the held counters lines to the queue, now that
// it writes again; those a failed write leaves stay held.
func (s *queueSink) writeHeldLocked() {
	for len(s.held) > 0 {
		msg := s.held[0]
		if s.writeLocked(msg, len(msg)+1) != nil {
			return
		}
		s.held[0] = nil
		s.held = s.held[1:]
		s.heldBytes -= len(msg) + 1
	}
}

func (s *queueSink) appendLocked(msg []byte, size int) error {
	switch {
	case s.closed:
		return ErrClosed
	case s.writeErr != nil && time.Now().Before(s.retryAt):
		return s.writeErr
	case s.st.queued.Load()+int64(size) > budget(s.ep.MaxBuffer, msg):
		if !s.full {
			s.full = true
			s.log.Warn("log endpoint: disk queue full; entries are refused until deliveries catch up",
				"endpoint", s.ep.Name, "dir", s.ep.Queue, "max_buffer", s.ep.MaxBuffer)
		}
		return ErrQueueFull
	}
	s.full = false
	if err := s.writeLocked(msg, size); err != nil {
		return err
	}
	if s.writeErr != nil && s.ep.Durability != DurabilityFsync {
		s.recoverLocked()
	}
	s.writeHeldLocked()
	return nil
}

// writeLocked appends msg and a newline (size bytes) to the newest
// segment, rotating first if it is full, or fails the queue.
func (s *queueSink) writeLocked(msg []byte, size int) error {
	if s.writeErr != nil {
		// Retrying: drop whatever a failed write left past the last
		// whole line, or the next line would be appended to half a one.
		if err := s.f.Truncate(s.size); err != nil {
			s.failLocked(err)
			return s.writeErr
		}
	}
	if s.size > 0 && s.size+int64(size) > s.segBytes {
		if err := s.rotateLocked(); err != nil {
			s.failLocked(err)
			return s.writeErr
		}
	}
	s.buf = append(append(s.buf[:0], msg...), '\n')
	write := s.writeFile
	if write == nil {
		write = (*os.File).Write
	}
	n, err := write(s.f, s.buf)
	if err != nil {
		if n > 0 {
			s.f.Truncate(s.size) // no half line; if this fails too, resume cuts it
		}
		s.failLocked(err)
		return s.writeErr
	}
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	s.size += int64(n)
	s.st.queued.Add(int64(n))
	s.writes++
	s.unsent += n
	s.unsentN++
	return nil
}

// failLocked stops the queue taking entries until a retry of the disk
// succeeds: it failed (full, read-only, gone). Guests get the error and
// deliver another way. A failed retry keeps the state and waits longer.
func (s *queueSink) failLocked(err error) {
	now := time.Now()
	first := s.writeErr == nil
	// The latest error is the one shown: the cause may change (a full
	// disk remounted read-only).
	s.writeErr = fmt.Errorf("log endpoint %s: queue %s: %w", s.ep.Name, s.ep.Queue, err)
	s.st.queueFailed(err, now)
	if first {
		s.failedN, s.retryGap = s.writes, queueRetryMin
		s.log.Error("log endpoint: the disk queue cannot write; entries are refused (and delivered another way by guests that can) until a retry of the disk succeeds",
			"endpoint", s.ep.Name, "dir", s.ep.Queue, "err", err, "retry_in", s.retryGap)
	} else {
		s.retryGap = min(2*s.retryGap, queueRetryMax)
	}
	s.retryAt = now.Add(s.retryGap)
}

// recoverLocked leaves the failed state: a retry wrote (at
// DurabilityFsync: and fsynced).
func (s *queueSink) recoverLocked() {
	since, _ := s.st.queueFailing()
	// At WARN, as the failure was: its end and what it refused are read
	// where its start is (make run repeats WARN lines).
	s.log.Warn("log endpoint: the disk queue writes again; entries are taken again", "endpoint", s.ep.Name, "dir", s.ep.Queue,
		"failed_for", time.Since(since).Round(time.Millisecond), "refused_total", s.st.refused.Load())
	s.writeErr = nil
	s.st.queueOK()
}

// prober tries the disk of a queue that cannot write again, every
// probeEvery once its retry is due, so that the failed state (and
// /healthz's line, and log_queue_write_failing_seconds) ends once the
// disk is mended even when no entry comes to retry it: a fallback
// endpoint's entries are rare, and a tester's /healthz still said the
// queue could not write a minute after space was freed.
func (s *queueSink) prober() {
	defer close(s.probing)
	t := time.NewTicker(s.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.probe()
		}
	}
}

// probe writes and fsyncs a probe file in the queue's directory, through
// writeFile and syncFile as an entry would be, if the queue has failed
// and its retry is due, and ends the failed state when that succeeds.
func (s *queueSink) probe() {
	s.mu.Lock()
	due := s.writeErr != nil && !s.closed && !time.Now().Before(s.retryAt)
	write, sync := s.writeFile, s.syncFile
	s.mu.Unlock()
	if !due {
		return
	}
	err := probeDisk(s.ep.Queue, write, sync)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.writeErr == nil || s.closed: // an entry's retry ended it meanwhile
	case err != nil:
		s.failLocked(err)
		// The newest segment is kept, though delivered, because it is
		// the one written to: a new one lets the sender delete it and
		// free what the queue itself filled.
		if s.st.queued.Load() == 0 && s.size > 0 && s.rotateLocked() == nil {
			s.wakeSender()
		}
	default:
		// What a failed write left past the last whole line goes first,
		// as an entry's retry cuts it.
		if err := s.f.Truncate(s.size); err != nil {
			s.failLocked(err)
			return
		}
		s.recoverLocked()
		if len(s.held) > 0 {
			s.writeHeldLocked()
			s.unsent, s.unsentN = 0, 0
			s.wakeSender()
		}
	}
}

// probeDisk writes a page to a new file in dir with write (nil:
// (*os.File).Write), fsyncs it with sync (nil: (*os.File).Sync) and
// removes it. (segments ignores its name should a crash leave it.)
func probeDisk(dir string, write func(*os.File, []byte) (int, error), sync func(*os.File) error) error {
	if write == nil {
		write = (*os.File).Write
	}
	if sync == nil {
		sync = (*os.File).Sync
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err = write(f, make([]byte, 4096)); err == nil {
		err = sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rotateLocked starts the next segment.
func (s *queueSink) rotateLocked() error {
	f, err := os.OpenFile(segmentPath(s.ep.Queue, s.seg+1), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if s.ep.Durability == DurabilityFsync {
		if err := syncDir(s.ep.Queue); err != nil {
			f.Close()
			return err
		}
		s.toSync = append(s.toSync, s.f) // the committer syncs and closes it
	} else {
		s.f.Close()
	}
	s.f, s.seg, s.size = f, s.seg+1, 0
	return nil
}

// committer fsyncs for DurabilityFsync: each round covers every write
// made before it started (group commit).
func (s *queueSink) committer() {
	defer close(s.syncDone)
	for {
		stopping := false
		select {
		case <-s.syncWake:
		case <-s.stop:
			stopping = true
		}
		s.mu.Lock()
		target := s.writes
		files := append(s.toSync, s.f)
		s.toSync = nil
		sync := s.syncFile
		s.mu.Unlock()
		if sync == nil {
			sync = (*os.File).Sync
		}
		var err error
		if target != s.fsyncedNow() || len(files) > 1 {
			s.syncs.Add(1)
			for _, f := range files {
				if e := sync(f); e != nil && err == nil {
					err = e
				}
			}
		}
		for _, f := range files[:len(files)-1] {
			f.Close()
		}
		s.mu.Lock()
		if err != nil {
			// What this round covered may not be on disk: its writers
			// get the error (and a later fsync that succeeds says nothing
			// of pages the failed one dropped).
			s.syncBad = max(s.syncBad, target)
			s.syncErr = fmt.Errorf("log endpoint %s: queue %s: fsync: %w", s.ep.Name, s.ep.Queue, err)
			s.failLocked(err)
		} else {
			s.fsynced = max(s.fsynced, target)
			if s.writeErr != nil && target > s.failedN {
				s.recoverLocked()
			}
		}
		s.synced.Broadcast()
		s.mu.Unlock()
		if stopping {
			return
		}
	}
}

func (s *queueSink) fsyncedNow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fsynced
}

func (s *queueSink) wakeSender() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the sender: on each tick (and when a batch's worth is written)
// it delivers everything queued, in order.
func (s *queueSink) run() {
	defer close(s.done)
	ctx, cancel := deliveryContext(s.stop, &s.closeCtx)
	defer cancel()
	defer func() {
		if s.rf != nil {
			s.rf.Close()
		}
	}()
	for {
		stopping := false
		select {
		case <-s.wake:
		case <-s.tick:
		case <-s.stop:
			stopping = true
		}
		for ctx.Err() == nil && s.sendOne(ctx) {
		}
		if stopping {
			return
		}
	}
}

// sendOne delivers the next batch, retrying until it is delivered or ctx
// ends; it reports whether it delivered one (false: nothing queued, or
// stopping).
func (s *queueSink) sendOne(ctx context.Context) bool {
	body, n, err := s.readBatch()
	if err != nil {
		s.log.Error("log endpoint: reading the disk queue", "endpoint", s.ep.Name, "err", err)
		s.st.deliveryFailed(err)
		return false
	}
	if n == 0 {
		return false
	}
	delay := s.backoff
	stop := s.stop
	select {
	case <-stop:
		stop = nil // already stopping: one try per batch
	default:
	}
	for attempt := 0; ; attempt++ {
		retry, status, err := s.post(ctx, body)
		if err == nil {
			s.st.requests.Add(1)
			s.st.delivered.Add(uint64(n))
			s.st.deliveryOK()
			if !s.failWarned.IsZero() {
				// At WARN, as the failure was: both ends are read in one
				// place (make run repeats WARN lines).
				s.log.Warn("log endpoint: deliveries succeed again", "endpoint", s.ep.Name, "after", time.Since(s.failWarned).Round(time.Millisecond))
				s.failWarned = time.Time{}
			}
			s.advance(int64(len(body)))
			s.limit = s.ep.MaxEntries
			if s.alone > 1 {
				s.log.Warn("log endpoint: the collector refused entries as too large even alone; dropped", "endpoint", s.ep.Name, "entries", s.alone)
			}
			s.alone = 0
			return true
		}
		s.st.failures.Add(1)
		s.st.deliveryFailed(err)
		if status == http.StatusRequestEntityTooLarge {
			if n > 1 {
				s.limit = max(1, n/2)
				return true // read again, smaller
			}
			s.st.dropped.Add(1)
			// The first of a run is said at once, the rest once the
			// collector takes a batch again: a collector that refuses
			// everything made a line per entry (a tester's).
			if s.alone++; s.alone == 1 {
				s.log.Warn("log endpoint: the collector refuses an entry as too large even alone; dropped (more in a row are said together)", "endpoint", s.ep.Name, "bytes", len(body))
			}
			s.advance(int64(len(body)))
			return true
		}
		if ctx.Err() != nil || stop == nil {
			// Stopping: one more try was made; the rest stays on disk
			// for the next start, so there is no point waiting.
			return false
		}
		lvl := slog.LevelDebug
		if attempt == 0 || !retry {
			lvl = slog.LevelWarn
			if s.failWarned.IsZero() {
				s.failWarned = time.Now()
			}
		}
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Log(ctx, lvl, "log endpoint: delivery failed; the batch stays queued and is retried", "endpoint", s.ep.Name, "in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		case <-stop:
			// Shutdown began: retry once, at once.
			t.Stop()
			stop = nil
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// readBatch reads whole lines from the read position: at most MaxBytes,
// s.limit entries, within one segment, moving to the next segment when
// the current one is done.
func (s *queueSink) readBatch() ([]byte, int, error) {
	for {
		s.mu.Lock()
		wseg, wsize := s.seg, s.size
		s.mu.Unlock()
		if s.rf == nil {
			f, err := os.Open(segmentPath(s.ep.Queue, s.rseg))
			if err != nil {
				if os.IsNotExist(err) && s.rseg < wseg {
					s.rseg, s.roff = s.rseg+1, 0
					continue
				}
				return nil, 0, err
			}
			s.rf = f
		}
		end := wsize
		if s.rseg < wseg {
			fi, err := s.rf.Stat()
			if err != nil {
				return nil, 0, err
			}
			end = fi.Size()
		}
		if s.roff >= end {
			if s.rseg >= wseg {
				return nil, 0, nil
			}
			// Done with this segment: move the checkpoint past it, then
			// delete it.
			s.rf.Close()
			s.rf = nil
			old := s.rseg
			s.rseg, s.roff = s.rseg+1, 0
			if err := s.writeCheckpoint(); err != nil {
				// The segment goes all the same: resume reads a
				// missing segment as delivered (it starts at the first
				// one kept), and deleting it frees the disk, whose
				// being full may be why the checkpoint failed (a
				// tester's queue had filled its own disk before its
				// first checkpoint, and stayed full).
				s.log.Warn("log endpoint: writing the queue checkpoint failed; the delivered segment is deleted all the same", "endpoint", s.ep.Name, "segment", old, "err", err)
			}
			os.Remove(segmentPath(s.ep.Queue, old))
			continue
		}
		want := min(end-s.roff, int64(s.ep.MaxBytes))
		if int64(cap(s.rbuf)) < want {
			s.rbuf = make([]byte, want)
		}
		buf := s.rbuf[:want]
		if _, err := s.rf.ReadAt(buf, s.roff); err != nil {
			return nil, 0, err
		}
		n, cut := 0, 0
		for cut < len(buf) && n < s.limit {
			i := bytes.IndexByte(buf[cut:], '\n')
			if i < 0 {
				break
			}
			cut += i + 1
			n++
		}
		if n == 0 {
			// No newline within max_bytes: a damaged segment (writes are
			// whole lines of at most max_bytes). Skip what was read.
			s.log.Error("log endpoint: skipping bytes of the disk queue that are not whole lines", "endpoint", s.ep.Name, "segment", s.rseg, "offset", s.roff, "bytes", len(buf))
			s.st.dropped.Add(1)
			s.advance(int64(len(buf)))
			continue
		}
		return buf[:cut], n, nil
	}
}

// advance moves the read position past n delivered bytes.
func (s *queueSink) advance(n int64) {
	s.roff += n
	s.st.queued.Add(-n)
	if err := s.writeCheckpoint(); err != nil {
		s.log.Warn("log endpoint: writing the queue checkpoint failed; delivered entries may be sent again after a restart", "endpoint", s.ep.Name, "err", err)
	}
}

// writeCheckpoint records the read position (write and rename, no fsync:
// see queueSink).
func (s *queueSink) writeCheckpoint() error {
	line := []byte(fmt.Sprintf("%d %d\n", s.rseg, s.roff))
	path := filepath.Join(s.ep.Queue, checkpointName)
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, line, 0o600)
	if err == nil {
		return os.Rename(tmp, path)
	}
	os.Remove(tmp)
	// A full disk has no room for a new file, and a delivered segment is
	// deleted only once the checkpoint is past it: a queue that filled
	// its disk itself stayed full for good (a tester's). Overwriting the
	// checkpoint in place needs no new block.
	if oerr := overwriteCheckpoint(path, line); oerr != nil {
		return errors.Join(err, oerr)
	}
	return nil
}

// overwriteCheckpoint writes line over the checkpoint file at path, in
// place, padded with spaces to the old line's length so that no part of
// the old one remains to be read with the new (resume reads the fields
// between white space). One small write: a crash leaves the old line or
// the new one.
func overwriteCheckpoint(path string, line []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if pad := int(fi.Size()) - len(line); pad > 0 {
		line = append(line, bytes.Repeat([]byte{' '}, pad)...)
	}
	_, err = f.WriteAt(line, 0)
	return err
}

// post sends one batch (see send); retry says whether a failure may be
// temporary (it is retried either way; it only sets how loudly it is
// logged).
func (s *queueSink) post(ctx context.Context, body []byte) (retry bool, status int, err error) {
	return send(ctx, s.client, &s.ep, &s.st, s.log, body)
}

// close stops taking entries, delivers what it can until ctx ends and
// leaves the rest on disk for the next start: nothing queued is dropped.
func (s *queueSink) close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		cctx := ctx
		var cancel context.CancelFunc = func() {}
		if ctx.Err() != nil {
			cctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		}
		defer cancel()
		s.closeCtx = cctx
		close(s.stop)
		<-s.done
		<-s.syncDone
		<-s.probing
		s.sendHeld(cctx)
		s.client.CloseIdleConnections()
		s.mu.Lock()
		err := s.f.Close()
		for _, f := range s.toSync {
			f.Close()
		}
		s.mu.Unlock()
		if q := s.st.queued.Load(); q > 0 {
			s.log.Info("log endpoint: entries left queued on disk; they are delivered when the POP starts again", "endpoint", s.ep.Name, "dir", s.ep.Queue, "bytes", q)
		}
		if n := len(s.held); n > 0 {
			s.st.dropped.Add(uint64(n))
			s.log.Error("log endpoint: counters lines held in memory are lost: the disk queue never wrote again; the aggregator does not learn of the events they counted as lost",
				"endpoint", s.ep.Name, "dir", s.ep.Queue, "lines", n, "err", s.writeErr)
		}
		s.closeErr = errors.Join(err, s.lock.Close())
	})
	return s.closeErr
}

// heldSendTimeout bounds sendHeld's delivery.
const heldSendTimeout = 5 * time.Second

// sendHeld delivers the counters lines held in memory (see holdLocked)
// to the collector directly, once, as the queue closes with its disk
// still failing: they are the only count of what the queue refused, and
// a POP stopped while nothing took its events lost them. A counters line
// delivered twice counts once (the aggregator keeps an instance's highest
// count), so one that also reached the disk is no harm. Those it cannot
// deliver stay held, and close counts them as lost.
func (s *queueSink) sendHeld(ctx context.Context) {
	s.mu.Lock()
	var body []byte
	for _, m := range s.held {
		body = append(append(body, m...), '\n')
	}
	n := len(s.held)
	s.mu.Unlock()
	if n == 0 {
		return
	}
	// Bounded apart from ctx: a collector that takes the connection and
	// never answers would otherwise use the whole shutdown, and a
	// supervisor may kill the POP before it says what was lost.
	ctx, cancel := context.WithTimeout(ctx, heldSendTimeout)
	defer cancel()
	if _, _, err := s.post(ctx, body); err != nil {
		s.log.Warn("log endpoint: delivering the held counters lines directly failed", "endpoint", s.ep.Name, "lines", n, "err", err)
		return
	}
	s.st.delivered.Add(uint64(n))
	s.log.Warn("log endpoint: the counters lines held in memory while the disk queue could not write were delivered directly as it closed", "endpoint", s.ep.Name, "lines", n)
	s.mu.Lock()
	s.held, s.heldBytes = nil, 0
	s.mu.Unlock()
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeBuckets are the upper bounds of the write latency histogram.
var writeBuckets = [...]time.Duration{
	time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond,
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
}

// latencyHist counts durations in writeBuckets (and one more for longer).
type latencyHist struct {
	counts [len(writeBuckets) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(writeBuckets) && d > writeBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// writePrometheus writes h as the histogram name with the labels.
func (h *latencyHist) writePrometheus(w io.Writer, name, labels string) {
	var cum uint64
	for i, b := range writeBuckets {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %d\n", name, labels, b.Seconds(), cum)
	}
	cum += h.counts[len(writeBuckets)].Load()
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n%s_sum{%s} %g\n%s_count{%s} %d\n",
		name, labels, cum, name, labels, float64(h.sumNs.Load())/1e9, name, labels, cum)
}
