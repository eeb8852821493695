package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/localsrv"
)

// A write path that fails (here: the directory is gone when a new segment
// must start) fails the spool for good: Failed closes, the append and
// every later one get the reason, and Full reports it for readiness.
func TestWriteFailureFailsTheSpool(t *testing.T) {
	dir := t.TempDir() + "/spool"
	s := open(t, dir, Options{SegmentBytes: 100})
	ctx := context.Background()
	if err := s.Append(ctx, make([]byte, 90)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Failed():
		t.Fatal("failed before any fault")
	default:
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, make([]byte, 90)) // needs a new segment
	if err == nil || !strings.Contains(err.Error(), "start segment") {
		t.Fatalf("append into a removed directory: %v", err)
	}
	select {
	case <-s.Failed():
	case <-time.After(time.Second):
		t.Fatal("Failed not closed")
	}
	if !errors.Is(s.Err(), os.ErrNotExist) || !errors.Is(s.Err(), ErrFailed) {
		t.Errorf("Err = %v, want the cause, and ErrFailed", s.Err())
	}
	if err2 := s.Append(ctx, []byte("later")); err2 == nil || err2.Error() != s.Err().Error() {
		t.Errorf("a later append: %v, want the failure", err2)
	}
	if !s.Full(0) {
		t.Error("Full is false on a failed spool")
	}
}

// A disk with no room for an append (here: half of it written, then
// ENOSPC) refuses that append with ErrNoSpace and leaves the spool
// working: nothing of the refused append stays, NoRoom says so, and the
// next append, once there is room, is written after the last one that was.
func TestNoRoomIsAPause(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	ctx := context.Background()
	if err := s.Append(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	full.Store(true)
	s.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		if full.Load() {
			n, _ := f.WriteAt(b[:len(b)/2], off)
			return n, syscall.ENOSPC
		}
		return f.WriteAt(b, off)
	}
	for range 2 {
		err := s.Append(ctx, []byte("refused"))
		if !errors.Is(err, ErrNoSpace) || !NoSpace(err) || errors.Is(err, ErrFailed) {
			t.Fatalf("append to a full disk: %v, want ErrNoSpace and not ErrFailed", err)
		}
	}
	select {
	case <-s.Failed():
		t.Fatalf("a full disk failed the spool: %v", s.Err())
	default:
	}
	if since, err := s.NoRoom(); err == nil || since.IsZero() {
		t.Errorf("NoRoom while full: %v %v", since, err)
	}
	if s.Full(0) {
		t.Error("Full while the disk is full and the spool empty: readiness says why through NoRoom")
	}
	full.Store(false)
	if err := s.Append(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if since, err := s.NoRoom(); err != nil {
		t.Errorf("NoRoom after an append wrote: %v %v", since, err)
	}
	want := [][]byte{[]byte("before"), []byte("after")}
	if got, _ := readAll(t, s, Position{}); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("records %q, want %q", got, want)
	}
	st, err := os.Stat(filepath.Join(dir, segName(s.End().Segment)))
	if err != nil || st.Size() != s.End().Offset {
		t.Errorf("segment %v (%v), want %d bytes: nothing of the refused appends", st.Size(), err, s.End().Offset)
	}
}

// The same on a real disk that fills (a tmpfs), where the refused append
// also needs a new segment: the spool takes appends again once a file is
// removed, and a reopened spool finds exactly the appends that returned.
func TestNoRoomOnAFullDisk(t *testing.T) {
	mnt := localsrv.Tmpfs(t, 256<<10)
	dir := filepath.Join(mnt, "spool")
	s, err := Open(dir, Options{SegmentBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()
	var want [][]byte
	for i := range 10 {
		p := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		if err := s.Append(ctx, p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	filler := filepath.Join(mnt, "filler")
	localsrv.Fill(t, filler)
	big := bytes.Repeat([]byte{'z'}, 8<<10) // past the segment: a new one
	for range 3 {
		if err := s.Append(ctx, big); !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrFailed) {
			t.Fatalf("append to a full disk: %v, want ErrNoSpace", err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, big); err != nil {
		t.Fatalf("append once the disk has room: %v", err)
	}
	want = append(want, big)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{SegmentBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, s, Position{}); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%d records after reopening, want the %d appends that returned", len(got), len(want))
	}
}

// A spool alone on its disk fills it (tester90): the loader then commits
// what it stored, and the commit must free the room, though the disk has
// none for a new checkpoint file; so must an append when the only room
// is in the active segment, whose records are all committed. Both on a
// real tmpfs.
func TestSpoolAloneOnAFullDisk(t *testing.T) {
	for _, c := range []struct {
		name    string
		segment int64
	}{{"consumed segments", 16 << 10}, {"the active segment", 1 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			mnt := localsrv.Tmpfs(t, 128<<10)
			dir := filepath.Join(mnt, "spool")
			s := open(t, dir, Options{SegmentBytes: c.segment})
			ctx := context.Background()
			rec := bytes.Repeat([]byte{'r'}, 3000)
			n := 0
			for ; ; n++ {
				err := s.Append(ctx, rec)
				if errors.Is(err, ErrNoSpace) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if n == 0 {
				t.Fatal("the disk took no record")
			}
			got, end := readAll(t, s, s.Checkpoint())
			if len(got) != n {
				t.Fatalf("read %d records, want %d", len(got), n)
			}
			if err := s.Commit(end); err != nil {
				t.Fatalf("commit on a full disk: %v", err)
			}
			for i := range 3 {
				if err := s.Append(ctx, rec); err != nil {
					t.Fatalf("append %d after everything was committed: %v", i, err)
				}
			}
			if got, _ := readAll(t, s, s.Checkpoint()); len(got) != 3 {
				t.Errorf("%d records after the commit, want the 3 new ones", len(got))
			}
			// Reopened, the spool holds no more than the uncommitted
			// records (those the recycled segment held are gone).
			s.Close()
			s2 := open(t, dir, Options{SegmentBytes: c.segment})
			if got, _ := readAll(t, s2, s2.Checkpoint()); len(got) != 3 {
				t.Errorf("%d records after reopening, want the 3 new ones", len(got))
			}
		})
	}
}
