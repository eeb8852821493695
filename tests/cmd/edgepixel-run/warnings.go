package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The servers' warnings go to their log files, which a user of make run
// does not read while everything seems to work: a misspelt EDGEPIXEL_AGG_
// variable or edge-config.toml key was said only there, and its setting
// silently did not apply; a full disk under the running stack refused
// every batch while the launcher's terminal printed nothing (found by
// new-user testers). So the launcher notes where each log ends before the
// stack starts, repeats below the banner the warnings and errors written
// since, then follows the logs, repeating each new one as it comes, and
// repeats those the servers write as they stop.
// The servers log the end of a condition they warned about (the disk has
// room again, the collector takes deliveries again) at WARN too, with
// what it cost, so the terminal shows both ends of it.

// logServers are the servers whose logs are read, as tests/stack names
// them (Dir/logs/NAME.log).
var logServers = []string{"pop", "aggregator"}

// logTail reads the whole lines a server adds to its log after an offset.
type logTail struct {
	name, path string
	off        int64
}

// logTails returns a logTail for each server's log under dir/logs, from
// where the log ends now: where this run's lines begin. A missing log
// begins at 0.
func logTails(dir string) []*logTail {
	var out []*logTail
	for _, name := range logServers {
		t := &logTail{name: name, path: filepath.Join(dir, "logs", name+".log")}
		if fi, err := os.Stat(t.path); err == nil {
			t.off = fi.Size()
		}
		out = append(out, t)
	}
	return out
}

// read returns the whole lines written after t's offset and moves the
// offset past them; a line still being written waits for the next read.
// A log shorter than the offset was replaced and is read from its start.
func (t *logTail) read() []byte {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < t.off {
		t.off = 0
	}
	// At most 4 MiB a read: a flood is read in parts, not all held.
	b, _ := io.ReadAll(io.NewSectionReader(f, t.off, 4<<20))
	end := bytes.LastIndexByte(b, '\n') + 1
	if end == 0 && len(b) == 4<<20 {
		end = len(b) // one line longer than a read: taken as it is
	}
	t.off += int64(end)
	return b[:end]
}

// warningsSince returns "NAME: message" for each line at level WARN or
// ERROR that a server logged after tails' offsets, and moves them past:
// at the start, those logged while starting (tails from logTails before
// it); at the stop, those logged while stopping.
func warningsSince(tails []*logTail) []string {
	var out []string
	for _, t := range tails {
		for _, m := range warnings(bytes.NewReader(t.read())) {
			out = append(out, t.name+": "+m.text())
		}
	}
	return out
}

// logWarning is one WARN or ERROR line of a server's log: its message and
// the attributes after it.
type logWarning struct{ msg, attrs string }

func (w logWarning) text() string {
	if w.attrs == "" {
		return w.msg
	}
	return w.msg + " (" + w.attrs + ")"
}

// warnings returns r's slog text lines at level WARN or ERROR.
func warnings(r io.Reader) []logWarning {
	var out []logWarning
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, " level=WARN ") && !strings.Contains(line, " level=ERROR ") {
			continue
		}
		_, rest, ok := strings.Cut(line, " msg=")
		if !ok {
			continue
		}
		w := logWarning{msg: rest}
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			w.msg, _ = strconv.Unquote(q)
			w.attrs = strings.TrimSpace(rest[len(q):])
		} else if m, a, ok := strings.Cut(rest, " "); ok {
			w.msg, w.attrs = m, a
		}
		out = append(out, w)
	}
	return out
}

// warningsNote is the banner's addition for ws, "" for none.
func warningsNote(ws []string, logs string) string {
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nWarnings while starting (from the logs in %s): a setting below may not apply.\n\n", logs)
	for _, w := range ws {
		b.WriteString("  " + w + "\n")
	}
	return b.String()
}

// repeatEvery is how often make run prints one server's same message
// while the stack runs: a server that fails every batch logs as often as
// batches come.
const repeatEvery = time.Minute

// followWarnings prints to w, as "15:04:05 NAME: message (attrs)", each
// WARN or ERROR line the servers log after tails' offsets, reading them
// every poll until ctx ends. The same message of the same server is
// printed at most once every `every` (repeatEvery); those held back in
// between are counted, and once `every` has passed the last of them is
// printed with the count, or the count is given with the next.
func followWarnings(ctx context.Context, tails []*logTail, w io.Writer, poll, every time.Duration) {
	type seen struct {
		at   time.Time
		held int
		last logWarning
	}
	printed := map[string]*seen{}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		stamp := now.Format("15:04:05")
		for _, t := range tails {
			for _, m := range warnings(bytes.NewReader(t.read())) {
				key := t.name + "\x00" + m.msg
				s := printed[key]
				if s != nil && now.Sub(s.at) < every {
					s.held++
					s.last = m
					continue
				}
				line := m.text()
				if s != nil && s.held > 0 {
					line += fmt.Sprintf(" [and %d more like it since %s]", s.held, s.at.Format("15:04:05"))
				}
				fmt.Fprintf(w, "%s %s: %s\n", stamp, t.name, line)
				printed[key] = &seen{at: now}
			}
		}
		for key, s := range printed {
			if now.Sub(s.at) < every {
				continue
			}
			if s.held > 0 {
				name, _, _ := strings.Cut(key, "\x00")
				fmt.Fprintf(w, "%s %s: %s [%d more like it since %s; this is the last]\n", stamp, name, s.last.text(), s.held, s.at.Format("15:04:05"))
			}
			delete(printed, key)
		}
	}
}
