package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePart is a part whose process ends when the test calls end. Its
// restart says on calls when it begins ("restarting") and how it ends
// ("restarted", "failed", or "canceled" when ctx ended first), waiting
// first until gate, if any, is closed.
type fakePart struct {
	mu    sync.Mutex
	cur   chan struct{} // closed when the running process ends
	gate  chan struct{}
	fail  error
	calls chan string
}

func newFakePart() *fakePart {
	return &fakePart{cur: make(chan struct{}), calls: make(chan string, 16)}
}

func (f *fakePart) end() {
	f.mu.Lock()
	close(f.cur)
	f.mu.Unlock()
}

func (f *fakePart) part(name string) part {
	return part{
		name: name,
		log:  name + ".log",
		done: func() <-chan struct{} {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.cur
		},
		err: func() error { return errors.New("signal: killed") },
		restart: func(ctx context.Context) error {
			f.calls <- "restarting"
			if f.gate != nil {
				select {
				case <-f.gate:
				case <-ctx.Done():
					f.calls <- "canceled"
					return ctx.Err()
				}
			}
			if f.fail != nil {
				f.calls <- "failed"
				return f.fail
			}
			f.mu.Lock()
			f.cur = make(chan struct{})
			f.mu.Unlock()
			f.calls <- "restarted"
			return nil
		},
	}
}

// next fails the test unless f's next call is want, within 5 s.
func (f *fakePart) next(t *testing.T, name, want string) {
	t.Helper()
	select {
	case got := <-f.calls:
		if got != want {
			t.Fatalf("%s: %q, want %q", name, got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no %q within 5 s", name, want)
	}
}

// already fails the test unless f's next call, already made, is want.
func (f *fakePart) already(t *testing.T, name, want string) {
	t.Helper()
	select {
	case got := <-f.calls:
		if got != want {
			t.Fatalf("%s: %q, want %q", name, got, want)
		}
	default:
		t.Fatalf("%s: no %q yet", name, want)
	}
}

// idle fails the test if f has a call waiting.
func (f *fakePart) idle(t *testing.T, name string) {
	t.Helper()
	select {
	case got := <-f.calls:
		t.Fatalf("%s: unexpected %q", name, got)
	default:
	}
}

// runWatch runs watchParts on parts in a goroutine: its result, once it
// returns, comes on the channel, and its log is in the buffer (to be read
// after that).
func runWatch(ctx context.Context, parts ...part) (<-chan error, *bytes.Buffer) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	res := make(chan error, 1)
	go func() { res <- watchParts(ctx, log, parts) }()
	return res, &b
}

func wait(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("watchParts did not return within 5 s")
		return nil
	}
}

// A part that ends while another part's restart waits (the aggregator's
// waits up to 30 s for ClickHouse) is restarted at once: it went
// unnoticed until that restart was done (a tester's).
func TestWatchPartsIndependently(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, quick := newFakePart(), newFakePart()
	slow.gate = make(chan struct{})
	res, b := runWatch(ctx, slow.part("slow"), quick.part("quick"))

	slow.end()
	slow.next(t, "slow", "restarting")
	quick.end()
	quick.next(t, "quick", "restarting")
	quick.next(t, "quick", "restarted")
	// And again, still during the slow restart.
	quick.end()
	quick.next(t, "quick", "restarting")
	quick.next(t, "quick", "restarted")
	slow.idle(t, "slow")

	close(slow.gate)
	slow.next(t, "slow", "restarted")
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("watchParts after ctx ended: %v, want nil", err)
	}
	for _, line := range []string{
		`level=WARN msg="slow ended: signal: killed; restarting it" log=slow.log`,
		`level=WARN msg="quick ended: signal: killed; restarting it" log=quick.log`,
		`level=INFO msg="restarted quick"`,
		`level=INFO msg="restarted slow"`,
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("log without %s:\n%s", line, b)
		}
	}
}

// Ctrl-C during a restart ends it and returns nil promptly, with no
// goroutine left restarting; a part that ends as the stack stops is not
// restarted.
func TestWatchPartsStopDuringRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, other := newFakePart(), newFakePart()
	slow.gate = make(chan struct{})
	res, _ := runWatch(ctx, slow.part("slow"), other.part("other"))

	slow.end()
	slow.next(t, "slow", "restarting")
	cancel()
	other.end()
	if err := wait(t, res); err != nil {
		t.Fatalf("watchParts: %v, want nil", err)
	}
	// The restart had returned when watchParts did.
	slow.already(t, "slow", "canceled")
	slow.idle(t, "slow")
	other.idle(t, "other")
}

// A part that ends more than restartsPerMinute times in a minute, or
// whose restart fails, stops the stack: watchParts says why, once the
// other parts' restarts have ended too.
func TestWatchPartsGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flaky, slow := newFakePart(), newFakePart()
	slow.gate = make(chan struct{})
	res, b := runWatch(ctx, flaky.part("flaky"), slow.part("slow"))

	slow.end()
	slow.next(t, "slow", "restarting")
	for range restartsPerMinute {
		flaky.end()
		flaky.next(t, "flaky", "restarting")
		flaky.next(t, "flaky", "restarted")
	}
	flaky.end()
	if err := wait(t, res); err == nil || err.Error() != "flaky ended too often" {
		t.Fatalf("watchParts: %v, want flaky ended too often", err)
	}
	slow.already(t, "slow", "canceled")
	flaky.idle(t, "flaky")
	if want := `level=ERROR msg="flaky ended: signal: killed; it ended too often to restart it again: stopping the stack" log=flaky.log`; !strings.Contains(b.String(), want) {
		t.Errorf("log without %s:\n%s", want, b)
	}

	broken := newFakePart()
	broken.fail = errors.New("address in use")
	res, b = runWatch(context.Background(), broken.part("broken"), newFakePart().part("other"))
	broken.end()
	if err := wait(t, res); err != broken.fail {
		t.Fatalf("watchParts with a failing restart: %v, want %v", err, broken.fail)
	}
	if want := `level=ERROR msg="could not restart broken: stopping the stack" err="address in use" log=broken.log`; !strings.Contains(b.String(), want) {
		t.Errorf("log without %s:\n%s", want, b)
	}
}

// The launcher's lines about a part that ended carry the last error its
// log has: "exit status 1" alone did not say the disk was full. An error
// logged more than staleError before is not the cause.
func TestLastError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aggregator.log")
	now := time.Date(2026, 12, 6, 21, 6, 0, 0, time.UTC)
	log := "time=2026-12-06T21:04:00Z level=INFO msg=started\n" +
		"time=2026-12-06T21:05:30Z level=ERROR msg=\"exiting after a failure\" reason=\"write spool: no space left on device\"\n" +
		"time=2026-12-06T21:05:40Z level=INFO msg=stopped\n"
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := lastError(path, now); !strings.Contains(got, "no space left on device") {
		t.Errorf("lastError = %q", got)
	}
	if got := lastError(path, now.Add(staleError)); got != "" {
		t.Errorf("lastError of an error logged %v before = %q", staleError+30*time.Second, got)
	}
	if got := lastError(filepath.Join(dir, "none.log"), now); got != "" {
		t.Errorf("lastError of a missing log = %q", got)
	}
}
