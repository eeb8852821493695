package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, dir string, o Options) *Spool {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readAll reads every durable record after pos.
func readAll(t *testing.T, s *Spool, pos Position) ([][]byte, Position) {
	t.Helper()
	var out [][]byte
	for {
		recs, err := s.Read(pos, 3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out, pos
		}
		for _, r := range recs {
			out = append(out, r.Data)
		}
		pos = recs[len(recs)-1].Next
	}
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("record-%04d-%s", i, bytes.Repeat([]byte{'x'}, i%50)))
}

func TestAppendReadCommitReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 500})
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		if err := s.Append(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, end := readAll(t, s, s.Checkpoint())
	if len(got) != 40 {
		t.Fatalf("read %d records", len(got))
	}
	for i, g := range got {
		if !bytes.Equal(g, payload(i)) {
			t.Fatalf("record %d = %q", i, g)
		}
	}
	if end != s.End() {
		t.Fatalf("read to %v, end %v", end, s.End())
	}
	segs, _ := s.listSegments()
	if len(segs) < 3 {
		t.Fatalf("want several segments with SegmentBytes 500, got %v", segs)
	}
	// Segments hold visitors' events: only the aggregator's user reads them.
	if fi, err := os.Stat(filepath.Join(dir, segName(segs[0]))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("segment %v: mode %v, want -rw------- (%v)", segs[0], fi.Mode(), err)
	}
	// Commit half way: earlier segments go, later records stay.
	pos := s.Checkpoint()
	for n := 0; n < 25; n++ { // Read stops at segment ends: walk record by record
		recs, err := s.Read(pos, 1, 1<<30)
		if err != nil || len(recs) != 1 {
			t.Fatal(recs, err)
		}
		pos = recs[0].Next
	}
	if err := s.Commit(pos); err != nil {
		t.Fatal(err)
	}
	segs2, _ := s.listSegments()
	if len(segs2) >= len(segs) {
		t.Errorf("no segment deleted: %v -> %v", segs, segs2)
	}
	s.Close()
	if err := s.Append(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}

	s = open(t, dir, Options{SegmentBytes: 500})
	got, _ = readAll(t, s, s.Checkpoint())
	if len(got) != 15 || !bytes.Equal(got[0], payload(25)) {
		t.Fatalf("after reopen read %d records, first %q", len(got), got[0])
	}
	if s.OpenEnd() != s.End() {
		t.Errorf("OpenEnd %v End %v", s.OpenEnd(), s.End())
	}
	if err := s.Commit(s.End()); err != nil {
		t.Fatal(err)
	}
	if p := s.Pending(); p != 0 {
		t.Errorf("pending %d after committing everything", p)
	}
}

// activeSegment returns the path of the newest segment file.
func activeSegment(t *testing.T, dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if len(m) == 0 {
		t.Fatal("no segment")
	}
	return m[len(m)-1]
}

func TestTornTailIsTruncated(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"cut mid-record", func(t *testing.T, path string) {
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()-5); err != nil {
				t.Fatal(err)
			}
		}},
		{"cut mid-header", func(t *testing.T, path string) {
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()-int64(len(payload(9)))-3); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage appended", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("\xff\xff\xff\x7fgarbage that is not a record"))
			f.Close()
		}},
		{"plausible header, bad crc", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			rec := appendRecord(nil, []byte("hello"))
			rec[len(rec)-1] ^= 1
			f.Write(rec)
			f.Close()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			for i := 0; i < 10; i++ {
				if err := s.Append(context.Background(), payload(i)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			c.damage(t, activeSegment(t, dir))
			s = open(t, dir, Options{})
			got, _ := readAll(t, s, s.Checkpoint())
			want := 10
			if c.name == "cut mid-record" || c.name == "cut mid-header" {
				want = 9
			}
			if len(got) != want {
				t.Fatalf("%d records after repair, want %d", len(got), want)
			}
			for i, g := range got {
				if !bytes.Equal(g, payload(i)) {
					t.Fatalf("record %d misread: %q", i, g)
				}
			}
			// Appends after the repair follow the intact prefix.
			if err := s.Append(context.Background(), []byte("after")); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = open(t, dir, Options{})
			got, _ = readAll(t, s, s.Checkpoint())
			if len(got) != want+1 || string(got[want]) != "after" {
				t.Fatalf("after reopen: %d records, last %q", len(got), got[len(got)-1])
			}
		})
	}
}

func TestConcurrentAppends(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 64 << 10})
	const writers, each = 16, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := s.Append(context.Background(), []byte(fmt.Sprintf("w%02d-%04d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	// A concurrent consumer reads and commits while appends happen.
	seen := map[string]bool{}
	pos := s.Checkpoint()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; ; {
		recs, err := s.Read(pos, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if seen[string(r.Data)] {
				t.Fatalf("record %q read twice", r.Data)
			}
			seen[string(r.Data)] = true
			pos = r.Next
		}
		if len(recs) > 0 {
			if err := s.Commit(pos); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if finished {
			break
		}
		select {
		case <-s.Notify():
		case <-done:
			finished = true
		case <-time.After(time.Second):
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("read %d records, want %d", len(seen), writers*each)
	}
}

func TestFull(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1000})
	ctx := context.Background()
	big := bytes.Repeat([]byte{'a'}, 300)
	for i := 0; i < 3; i++ {
		if err := s.Append(ctx, big); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, big); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	if !s.Full(300) {
		t.Error("Full(300) = false")
	}
	recs, _ := s.Read(s.Checkpoint(), 2, 1<<20)
	if err := s.Commit(recs[1].Next); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, big); err != nil {
		t.Fatalf("after commit: %v", err)
	}
}

// The consumer can move a record it read to the end of a full spool and
// commit past the original: the spool then holds what it held before.
func TestRequeueWhenFull(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1000})
	ctx := context.Background()
	for _, c := range "abc" {
		if err := s.Append(ctx, bytes.Repeat([]byte{byte(c)}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, bytes.Repeat([]byte{'d'}, 300)); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	recs, _ := s.Read(s.Checkpoint(), 1, 1<<20)
	if err := s.Requeue(ctx, recs[0].Data); err != nil {
		t.Fatalf("requeue on a full spool: %v", err)
	}
	before := s.Pending()
	if err := s.Commit(recs[0].Next); err != nil {
		t.Fatal(err)
	}
	if after := s.Pending(); after >= before {
		t.Errorf("pending %d after commit, %d before", after, before)
	}
	got, _ := readAll(t, s, s.Checkpoint())
	if len(got) != 3 || got[0][0] != 'b' || got[1][0] != 'c' || got[2][0] != 'a' {
		t.Errorf("records after requeue: %d, want b c a", len(got))
	}
}

func TestCorruptCheckpointRereads(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	s.Append(context.Background(), []byte("a"))
	s.Append(context.Background(), []byte("b"))
	s.Commit(s.End())
	s.Close()
	os.WriteFile(filepath.Join(dir, checkpointFile), []byte("junk"), 0o644)
	s = open(t, dir, Options{})
	got, _ := readAll(t, s, s.Checkpoint())
	if len(got) != 2 {
		t.Fatalf("want both records re-read after a corrupt checkpoint, got %d", len(got))
	}
}

func TestAppendContextCanceled(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, []byte("x")); err == nil {
		// The writer may have taken it before noticing; either is fine,
		// but a nil error must mean it is durable.
		got, _ := readAll(t, s, s.Checkpoint())
		if len(got) != 1 {
			t.Fatal("Append returned nil but the record is not there")
		}
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := bytes.Repeat([]byte{'x'}, 2000)
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(context.Background(), p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
