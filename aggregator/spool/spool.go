// Package spool is the aggregator's write-ahead log: every accepted batch is
// appended here and fsynced before the edge gets its 200, so an accepted
// event survives a crash of the aggregator, Redis or ClickHouse. The loader
// reads records after a persisted checkpoint and commits the checkpoint only
// once their events are stored.
//
// The log is a directory of numbered segment files. Appends go through one
// writer goroutine that batches concurrent appends into a single write and
// fsync (group commit), which is what makes per-request durability cheap
// under load.
package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgepixel/edgepixel/shared/privdir"
)

// Errors returned by Append.
var (
	// ErrFull means the unconsumed records reached Options.MaxBytes: the
	// loader is behind (its backends are down or slow). Senders should back
	// off and retry.
	ErrFull   = errors.New("spool: full")
	ErrClosed = errors.New("spool: closed")
	// ErrFailed is wrapped by every failure of the write path (Err): the
	// spool refuses appends until the process restarts.
	ErrFailed = errors.New("spool failed")
	// ErrNoSpace is wrapped by an append the disk had no room for
	// (NoSpace). Unlike ErrFailed it leaves the spool working: the
	// write is cut back before anything is acknowledged, what was
	// written before it is untouched, and the next append tries again,
	// so the spool takes batches once the disk has room.
	ErrNoSpace = errors.New("spool: no room on the disk")
)

// NoSpace reports whether err is the file system's "no space left on
// device" (ENOSPC) or "disk quota exceeded" (EDQUOT): a write that may
// succeed once space is freed, with nothing lost by trying again.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpaceWindow is how long after an append the disk had no room for
// NoRoom still reports it. Readiness fails meanwhile, so that a load
// balancer sends the batches elsewhere; afterwards it passes again, and
// the next batch tries the disk: nothing else would notice the room.
const noSpaceWindow = 10 * time.Second

// Position is a place in the log: a segment and a byte offset in it.
type Position struct {
	Segment uint64
	Offset  int64
}

// Less orders positions in log order.
func (p Position) Less(q Position) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Segment, p.Offset) }

// Record is one appended payload and the position just after it, which is
// what to Commit once the payload is processed.
type Record struct {
	Data []byte
	Next Position
}

// Options tune a spool. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds the bytes appended but not yet committed; Append
	// returns ErrFull beyond it. Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started.
	// Consumed segments are deleted whole, so this also bounds the disk
	// space held by already-processed records. Default 64 MiB.
	SegmentBytes int64
	Logger       *slog.Logger
}

// Spool is an open log. Append is safe for concurrent use; Read and Commit
// are meant for a single consumer.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger

	reqs   chan *appendReq
	quit   chan struct{}
	done   chan struct{}
	notify chan struct{}
	once   sync.Once

	mu         sync.Mutex
	durable    Position         // end of fsynced data
	checkpoint Position         // committed position
	sizes      map[uint64]int64 // durable size of each segment file
	openEnd    Position         // durable end when the spool was opened
	broken     error            // the write path failed: every later append gets it
	noRoom     noRoom           // appends the disk had no room for, since the last that wrote

	failed chan struct{} // closed when broken is set

	f *os.File // active segment; owned by the writer goroutine
	// writeAt writes to the active segment: (*os.File).WriteAt, but for
	// tests of a full disk.
	writeAt func(f *os.File, b []byte, off int64) (int, error)
}

// noRoom is the spool's record of appends the disk had no room for.
type noRoom struct {
	err         error     // the last one's; nil once an append wrote
	since, last time.Time // the first and the last
	refused     int       // appends refused (each of a group commit)
}

type appendReq struct {
	payload []byte
	done    chan error
	requeue bool // past MaxBytes: see Requeue
}

const (
	segSuffix      = ".seg"
	checkpointFile = "checkpoint"
)

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

// Open opens or creates the spool in dir. It scans every segment and
// truncates a torn or corrupt tail (a write cut short by a crash, or
// garbage), so what remains is exactly the records whose appends returned.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Under the data directory, whose mode the aggregator checks.
	if _, err := privdir.Make(dir); err != nil {
		return nil, err
	}
	s := &Spool{
		dir: dir, opts: opts, log: opts.Logger,
		reqs: make(chan *appendReq), quit: make(chan struct{}), done: make(chan struct{}),
		notify: make(chan struct{}, 1), sizes: map[uint64]int64{}, failed: make(chan struct{}),
		writeAt: (*os.File).WriteAt,
	}
	segs, err := s.listSegments()
	if err != nil {
		return nil, err
	}
	cp, cpErr := s.readCheckpoint()
	if cpErr != nil && !errors.Is(cpErr, os.ErrNotExist) {
		// Reading from the start again is safe: the loader deduplicates.
		s.log.Warn("spool checkpoint unreadable; re-reading from the oldest segment", "err", cpErr)
		cp = Position{}
	}
	for _, seq := range segs {
		if seq < cp.Segment { // consumed; a crash came between commit and delete
			os.Remove(filepath.Join(dir, segName(seq)))
			continue
		}
		size, err := s.repair(seq)
		if err != nil {
			return nil, err
		}
		s.sizes[seq] = size
	}
	var active uint64
	for seq := range s.sizes {
		active = max(active, seq)
	}
	if active == 0 || active < cp.Segment {
		active = max(cp.Segment, 1)
		if _, ok := s.sizes[active]; !ok {
			s.sizes[active] = 0
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, segName(active)), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	s.durable = Position{active, s.sizes[active]}
	first := active
	for seq := range s.sizes {
		first = min(first, seq)
	}
	switch {
	case cp.Segment < first:
		cp = Position{first, 0}
	case s.durable.Less(cp) || cp.Offset > s.sizes[cp.Segment]:
		s.log.Warn("spool checkpoint beyond the data; re-reading the last segment", "checkpoint", cp, "end", s.durable)
		cp = Position{cp.Segment, 0}
	}
	s.checkpoint = cp
	s.openEnd = s.durable
	if cpErr != nil {
		// A checkpoint file from the start, which a commit on a full
		// disk can overwrite in place (writeCheckpoint).
		if err := s.writeCheckpoint(cp); err != nil {
			s.log.Warn("spool: could not write the checkpoint", "err", err)
		}
	}
	go s.writer()
	return s, nil
}

func (s *Spool) listSegments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || seq == 0 {
			continue
		}
		segs = append(segs, seq)
	}
	slices.Sort(segs)
	return segs, nil
}

// repair scans segment seq and truncates it after its last intact record.
func (s *Spool) repair(seq uint64) (int64, error) {
	path := filepath.Join(s.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	valid, err := scan(f, st.Size(), nil)
	if err != nil {
		return 0, fmt.Errorf("spool: scan %s: %w", path, err)
	}
	if valid < st.Size() {
		s.log.Warn("spool: truncating a torn or corrupt tail (an append that never returned, or disk damage)",
			"segment", path, "valid_bytes", valid, "dropped_bytes", st.Size()-valid)
		if err := f.Truncate(valid); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return valid, nil
}

// Append writes payload as one record and returns once it is on disk
// (fsynced). If ctx ends first it returns ctx's error, and the record may
// or may not be written.
func (s *Spool) Append(ctx context.Context, payload []byte) error {
	return s.append(ctx, &appendReq{payload: payload, done: make(chan error, 1)})
}

// Requeue is Append for the consumer: it writes payload, taken from
// records it read but cannot finish yet, at the end of the log, so that
// it can commit past them. It is not refused by Options.MaxBytes: the
// records it moves stop counting once the consumer commits past them, so
// the spool ends up holding no more than before, and a full spool must
// not keep its consumer from moving on.
func (s *Spool) Requeue(ctx context.Context, payload []byte) error {
	return s.append(ctx, &appendReq{payload: payload, done: make(chan error, 1), requeue: true})
}

func (s *Spool) append(ctx context.Context, r *appendReq) error {
	if len(r.payload) > MaxRecord {
		return fmt.Errorf("spool: record of %d bytes exceeds %d", len(r.payload), MaxRecord)
	}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the single goroutine that writes to the active segment: it
// takes every append that is waiting, writes them with one write and one
// fsync, and then answers them all.
func (s *Spool) writer() {
	defer close(s.done)
	var buf []byte
	var batch []*appendReq
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.quit:
			return
		}
		size := len(batch[0].payload)
	drain:
		for size < 8<<20 && len(batch) < 4096 {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += len(r.payload)
			default:
				break drain
			}
		}
		buf = s.writeBatch(buf[:0], batch)
		if cap(buf) > 16<<20 {
			buf = nil // don't hold on to a huge buffer
		}
	}
}

func (s *Spool) writeBatch(buf []byte, batch []*appendReq) (out []byte) {
	answered := 0
	defer func() {
		// A bug must not leave appenders waiting forever: fail the spool,
		// answer the batch, and let the process exit through Failed.
		if p := recover(); p != nil {
			s.log.Error("panic", "component", "spool", "panic", p, "stack", string(debug.Stack()))
			err := s.fail(fmt.Errorf("spool: writer panicked: %v", p))
			for _, r := range batch[answered:] {
				r.done <- err
			}
			out = nil
		}
	}()
	s.mu.Lock()
	pending := s.pendingLocked()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		for _, r := range batch {
			r.done <- broken
		}
		return buf
	}
	// Refused appends are answered at once; those written, after the
	// write. batch is reordered so that batch[:answered] are answered.
	ok := 0
	for i, r := range batch {
		if !r.requeue && pending+int64(len(buf)+headerLen+len(r.payload)) > s.opts.MaxBytes {
			batch[i], batch[answered] = batch[answered], batch[i]
			batch[answered].done <- ErrFull
			answered++
			continue
		}
		buf = appendRecord(buf, r.payload)
		ok++
	}
	if ok == 0 {
		return buf
	}
	err := s.write(buf)
	s.noteRoom(err, ok)
	for _, r := range batch[answered:] {
		r.done <- err
	}
	answered = len(batch)
	if err == nil {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return buf
}

// write appends buf to the active segment (starting a new one first if the
// active one is full) and fsyncs it. Any failure fails the spool (see
// Failed): after a failed fsync the kernel may have dropped the dirty
// pages while reporting later fsyncs as successful, so no append after it
// could be trusted; the process restarts and Open repairs the tail. The
// segment is cut back first, so the repair finds no torn record.
//
// The exception is a disk with no room (NoSpace) for the new segment's
// file or for the write itself, before any fsync: nothing written before
// is in doubt, the write is cut back, and the error wraps ErrNoSpace,
// leaving the spool working. (An fsync's ENOSPC still fails the spool:
// the file system may have dropped the pages it could not place, as
// PostgreSQL concluded of fsync errors in 2018.)
func (s *Spool) write(buf []byte) error {
	s.mu.Lock()
	end := s.durable
	s.mu.Unlock()
	if end.Offset > 0 && end.Offset+int64(len(buf)) > s.opts.SegmentBytes {
		if err := s.startSegment(end.Segment + 1); err != nil {
			return err
		}
		end = Position{end.Segment + 1, 0}
	}
	_, err := s.writeAt(s.f, buf, end.Offset)
	if err != nil && NoSpace(err) {
		if terr := s.f.Truncate(end.Offset); terr == nil {
			if end.Offset > 0 && s.consumed(end) {
				// Every record of the active segment is stored, and
				// its room is what this write needs (a spool alone on
				// its disk, tester90): start a new segment and delete
				// the old one, as Commit would once it were full. The
				// write then starts a segment, so this happens once.
				if rerr := s.recycle(end.Segment); rerr != nil {
					return rerr
				}
				return s.write(buf)
			}
			return fmt.Errorf("%w: append to %s: %w", ErrNoSpace, s.dir, err)
		}
	}
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		if terr := s.f.Truncate(end.Offset); terr != nil {
			return s.fail(fmt.Errorf("spool: append to %s: %w (and the write could not be undone: %v)", s.dir, err, terr))
		}
		return s.fail(fmt.Errorf("spool: append to %s: %w", s.dir, err))
	}
	s.mu.Lock()
	s.durable.Offset += int64(len(buf))
	s.sizes[s.durable.Segment] = s.durable.Offset
	s.mu.Unlock()
	return nil
}

// fail records err as the spool's failure (the first one wins) and
// returns the failure.
func (s *Spool) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = failure{err}
		close(s.failed)
		s.log.Error("spool failed; appends are refused until the process restarts", "err", err)
	}
	return s.broken
}

// noteRoom records how the write of n appends ended (err) for NoRoom,
// and logs the first append the disk had no room for and the first that
// wrote after them.
func (s *Spool) noteRoom(err error, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	switch {
	case errors.Is(err, ErrNoSpace):
		if s.noRoom.err == nil {
			s.noRoom.since = now
			s.log.Warn("spool: the disk has no room; batches are answered 503 until it has", "err", err)
		}
		s.noRoom.err, s.noRoom.last = err, now
		s.noRoom.refused += n
	case err == nil && s.noRoom.err != nil:
		// At WARN, as the pause began: its end and what it refused are
		// read where its start is (make run repeats WARN lines).
		s.log.Warn("spool: the disk has room again; batches are taken", "dir", s.dir,
			"after", now.Sub(s.noRoom.since).Round(time.Millisecond), "appends_refused", s.noRoom.refused)
		s.noRoom = noRoom{}
	}
}

// Refusing reports whether the last append that reached the disk was
// refused for lack of room (ErrNoSpace): true from then until an append
// writes, however long no batch comes (unlike NoRoom).
func (s *Spool) Refusing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.noRoom.err != nil
}

// NoRoom returns when the disk first had no room for an append, and the
// error (ErrNoSpace) of the last append it had no room for, if that came
// in the last noSpaceWindow and no append wrote since; else nil.
func (s *Spool) NoRoom() (since time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.noRoom.err == nil || time.Since(s.noRoom.last) > noSpaceWindow {
		return time.Time{}, nil
	}
	return s.noRoom.since, s.noRoom.err
}

// failure is a failure of the write path: its message is the cause's,
// and it is ErrFailed.
type failure struct{ error }

func (f failure) Is(target error) bool { return target == ErrFailed }
func (f failure) Unwrap() error        { return f.error }

// Failed returns a channel closed when the spool's write path failed (a
// write, fsync or new segment did not succeed, or a bug). From then on
// every append returns the failure (Err); the owner should stop the
// process so that a restart repairs the spool.
func (s *Spool) Failed() <-chan struct{} { return s.failed }

// Err returns the spool's failure, or nil.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// consumed reports whether the committed position is end, the end of
// the durable records.
func (s *Spool) consumed(end Position) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoint == end
}

// recycle starts segment seq+1 in place of seq, whose records are all
// committed (consumed), and deletes seq. The checkpoint file may still
// name seq: Open then starts at the oldest segment there is.
func (s *Spool) recycle(seq uint64) error {
	if err := s.startSegment(seq + 1); err != nil {
		return err
	}
	s.mu.Lock()
	s.checkpoint = Position{seq + 1, 0}
	delete(s.sizes, seq)
	s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.dir, segName(seq))); err != nil {
		s.log.Warn("spool: could not delete a consumed segment", "segment", seq, "err", err)
	}
	return nil
}

// startSegment is roll for the write path: a disk with no room for the
// new file is ErrNoSpace, and any other failure fails the spool.
func (s *Spool) startSegment(seq uint64) error {
	err := s.roll(seq)
	switch {
	case err == nil:
		return nil
	case NoSpace(err) && !errors.Is(err, errSyncDir):
		return fmt.Errorf("%w: start segment in %s: %w", ErrNoSpace, s.dir, err)
	default:
		return s.fail(fmt.Errorf("spool: start segment in %s: %w", s.dir, err))
	}
}

// errSyncDir marks roll's failure to fsync the directory, which fails
// the spool whatever its cause.
var errSyncDir = errors.New("fsync the directory")

func (s *Spool) roll(seq uint64) error {
	f, err := os.OpenFile(filepath.Join(s.dir, segName(seq)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("%w: %w", errSyncDir, err)
	}
	s.f.Close()
	s.f = f
	s.mu.Lock()
	s.durable = Position{seq, 0}
	s.sizes[seq] = 0
	s.mu.Unlock()
	return nil
}

// pendingLocked is the size of the records after the checkpoint.
func (s *Spool) pendingLocked() int64 {
	var n int64
	for seq, size := range s.sizes {
		if seq >= s.checkpoint.Segment {
			n += size
		}
	}
	return n - s.checkpoint.Offset
}

// Pending returns the bytes appended but not yet committed.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingLocked()
}

// Full reports whether an append of n bytes would be refused, for
// readiness checks.
func (s *Spool) Full(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken != nil || s.pendingLocked()+int64(n+headerLen) > s.opts.MaxBytes
}

// Notify returns a channel that receives a value after appends become
// durable, so the consumer can wake without polling. It is meant for one
// consumer; several appends may share one notification.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Checkpoint returns the committed position: where a consumer starts.
func (s *Spool) Checkpoint() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoint
}

// End returns the position after the last durable record.
func (s *Spool) End() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

// OpenEnd returns the end of the data found when the spool was opened.
// Records before it were written by an earlier process, which may have
// stored some of them without committing: the loader treats them as
// possibly stored.
func (s *Spool) OpenEnd() Position { return s.openEnd }

// Read returns up to maxRecords durable records after pos, stopping early
// once maxBytes of payload are read (but always returning at least one
// record if there is one). It returns no records when pos is the end.
func (s *Spool) Read(pos Position, maxRecords, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	end := s.durable
	for pos.Segment < end.Segment && pos.Offset >= s.sizes[pos.Segment] {
		pos = Position{pos.Segment + 1, 0}
	}
	limit, ok := s.sizes[pos.Segment]
	if pos.Segment == end.Segment {
		limit, ok = end.Offset, true
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("spool: read at %v: no such segment", pos)
	}
	if pos.Offset >= limit {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(s.dir, segName(pos.Segment)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	var nbytes int
	stop := errors.New("stop")
	_, err = scan(io.NewSectionReader(f, pos.Offset, limit-pos.Offset), limit-pos.Offset, func(p []byte, end int64) error {
		recs = append(recs, Record{Data: p, Next: Position{pos.Segment, pos.Offset + end}})
		nbytes += len(p)
		if len(recs) >= maxRecords || nbytes >= maxBytes {
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		return recs, err
	}
	if len(recs) == 0 || err == nil && recs[len(recs)-1].Next.Offset != limit {
		// Durable bytes that do not scan are disk damage, not a torn write.
		return recs, fmt.Errorf("spool: corrupt record in segment %d after offset %d", pos.Segment, pos.Offset)
	}
	return recs, nil
}

// Commit records that everything before pos is processed: it persists the
// checkpoint (write a temporary file, fsync, rename, fsync the directory)
// and deletes segments that lie wholly before it.
func (s *Spool) Commit(pos Position) error {
	s.mu.Lock()
	if s.durable.Less(pos) {
		s.mu.Unlock()
		return fmt.Errorf("spool: commit %v beyond the end %v", pos, s.durable)
	}
	// A position at the end of a finished segment is the start of the next.
	for pos.Segment < s.durable.Segment && pos.Offset >= s.sizes[pos.Segment] {
		pos = Position{pos.Segment + 1, 0}
	}
	s.mu.Unlock()
	if err := s.writeCheckpoint(pos); err != nil {
		return err
	}
	s.mu.Lock()
	// Only forward: an append that recycled the segment meanwhile (see
	// recycle) moved the checkpoint past pos.
	if s.checkpoint.Less(pos) {
		s.checkpoint = pos
	}
	var old []uint64
	for seq := range s.sizes {
		if seq < pos.Segment {
			old = append(old, seq)
			delete(s.sizes, seq)
		}
	}
	s.mu.Unlock()
	for _, seq := range old {
		if err := os.Remove(filepath.Join(s.dir, segName(seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("spool: could not delete a consumed segment", "segment", seq, "err", err)
		}
	}
	return nil
}

func (s *Spool) writeCheckpoint(pos Position) error {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:8], pos.Segment)
	binary.LittleEndian.PutUint64(b[8:16], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], castagnoli))
	err := s.writeFile(checkpointFile, b[:])
	if NoSpace(err) {
		// The new file needs a block the disk does not have, and only
		// a commit deletes consumed segments (a spool alone on its
		// disk never recovered: tester90). Overwriting the checkpoint
		// in place needs none. Its 20 bytes lie in one sector, and a
		// torn write fails its checksum: Open then reads from the
		// oldest segment again, which the loader deduplicates.
		os.Remove(filepath.Join(s.dir, checkpointFile+".tmp"))
		if ierr := writeSynced(filepath.Join(s.dir, checkpointFile), os.O_WRONLY, b[:]); ierr != nil {
			return fmt.Errorf("%w (and in place: %v)", err, ierr)
		}
		return nil
	}
	return err
}

// writeSynced opens name with flag (and mode 0600 if it creates it),
// writes data at its start and fsyncs and closes it.
func writeSynced(name string, flag int, data []byte) error {
	f, err := os.OpenFile(name, flag, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeFile replaces the file name in the spool's directory with data,
// durably and whole: a crash leaves the old file or the new one.
func (s *Spool) writeFile(name string, data []byte) error {
	tmp := filepath.Join(s.dir, name+".tmp")
	if err := writeSynced(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// Note files are the consumer's own small files beside the segments (the
// loader's insert journal): WriteNote replaces the note name with data,
// durably and whole (a crash leaves the old one or the new one); ReadNote
// returns it, or nil and no error when there is none; RemoveNote removes
// it. Names are plain file names that neither end in ".seg" nor start
// with "checkpoint".
func (s *Spool) WriteNote(name string, data []byte) error {
	if err := s.writeFile(name, data); err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	return nil
}

// ReadNote: see WriteNote.
func (s *Spool) ReadNote(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// RemoveNote: see WriteNote.
func (s *Spool) RemoveNote(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Spool) readCheckpoint() (Position, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, checkpointFile))
	if err != nil {
		return Position{}, err
	}
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]) {
		return Position{}, fmt.Errorf("spool: checkpoint file %q is corrupt", bytes.TrimSpace(b[:min(len(b), 40)]))
	}
	return Position{binary.LittleEndian.Uint64(b[0:8]), int64(binary.LittleEndian.Uint64(b[8:16]))}, nil
}

// Close stops accepting appends, lets the write in progress finish and
// closes the active segment. Appends waiting to be written get ErrClosed.
func (s *Spool) Close() error {
	var err error
	s.once.Do(func() {
		close(s.quit)
		<-s.done
		err = s.f.Close()
	})
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
