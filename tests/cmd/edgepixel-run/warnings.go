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
	"unicode/utf8"
)

// The servers' warnings go to their log files, which a user of make run
// does not read while everything seems to work: a misspelt EDGEPIXEL_AGG_
// variable or edge-config.toml key was said only there, and its setting
// silently did not apply; a full disk under the running stack refused
// every batch while the launcher's terminal printed nothing (found by
// new-user testers). So the launcher notes where each log ends before the
// stack starts, repeats below the banner the warnings and errors written
// since, then follows the logs, repeating each new one as it comes,
// until the stack has stopped.
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

// warningsSince returns "NAME: message" for each warning (see warnings)
// a server logged after tails' offsets, and moves them past: at the
// start, those logged while starting (tails from logTails before it).
func warningsSince(tails []*logTail) []string {
	var out []string
	for _, t := range tails {
		for _, m := range warnings(bytes.NewReader(t.read())) {
			out = append(out, t.name+": "+m.text())
		}
	}
	return out
}

// logWarning is one WARN or ERROR line of a server's log: when it was
// logged (zero if the line does not say), its message and the attributes
// after it. The edge module's own lines (see moduleLine) are warnings
// too, with no time and no attributes.
type logWarning struct {
	at         time.Time
	msg, attrs string
}

// text is w as the terminal shows it: its message, then its attributes
// in brackets, cut after maxAttrs bytes (an answer's whole body quoted in
// an err= ran over several screen lines; the log has it all).
func (w logWarning) text() string {
	if w.attrs == "" {
		return w.msg
	}
	a := w.attrs
	if len(a) > maxAttrs {
		cut := maxAttrs
		for cut > 0 && !utf8.RuneStart(a[cut]) {
			cut--
		}
		a = a[:cut] + "…"
	}
	return w.msg + " (" + a + ")"
}

// maxAttrs is how much of a warning's attributes the terminal shows.
const maxAttrs = 300

// subject is what w's condition is about: the log endpoint it names, if
// any, or the edge module for its own lines. The same message for two
// endpoints is two conditions.
func (w logWarning) subject() string {
	if strings.HasPrefix(w.msg, moduleSubject) {
		return moduleSubject
	}
	if _, v, ok := strings.Cut(w.attrs, "endpoint="); ok {
		v, _, _ = strings.Cut(v, " ")
		return v
	}
	return ""
}

// kind is w's message with its numbers taken out, so that the edge
// module's "6 events lost" and "8 events lost" are one kind.
func (w logWarning) kind() string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, w.msg)
}

// moduleLine is the edge module's own prefix on what it writes to
// stderr, which the POP writes to its log as it is (not as slog lines):
// the module says there what it could not deliver and what it lost.
// Its per-instance summary ("edgepixel: instance ...") is not a warning.
const moduleLine = "edgepixel: "

// moduleSubject begins the message of a moduleLine as printed.
const moduleSubject = "edge module: "

// warnings returns r's slog text lines at level WARN or ERROR and the
// edge module's lines (moduleLine) but its instance summaries.
func warnings(r io.Reader) []logWarning {
	var out []logWarning
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, moduleLine); ok {
			if !strings.HasPrefix(rest, "instance ") {
				out = append(out, logWarning{msg: moduleSubject + rest})
			}
			continue
		}
		if !strings.Contains(line, " level=WARN ") && !strings.Contains(line, " level=ERROR ") {
			continue
		}
		head, rest, ok := strings.Cut(line, " msg=")
		if !ok {
			continue
		}
		w := logWarning{msg: rest, at: slogTime(head)}
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

// repeatEvery is how often make run prints one server's same warning
// about one subject while it lasts: a server that fails every batch logs
// as often as batches come.
const repeatEvery = time.Minute

// follower prints the servers' warnings as followWarnings reads them,
// holding back repeats (see followWarnings).
type follower struct {
	w     io.Writer
	every time.Duration
	last  map[subjectKey]*shown
}

// subjectKey is a server's name and the subject of one of its warnings
// (logWarning.subject).
type subjectKey struct{ server, subject string }

// shown is the last warning printed about one subject, and the repeats
// of it held back since.
type shown struct {
	kind  string
	at    time.Time // when it was printed
	held  int
	since time.Time // when the first repeat held back was logged
	last  logWarning
}

// print prints w with its time (now if it has none) and name, and note
// after it if not "".
func (f *follower) print(name string, w logWarning, note string) {
	at := w.at
	if at.IsZero() {
		at = time.Now()
	}
	if note != "" {
		note = " [" + note + "]"
	}
	termLine(f.w, at, name, w.text()+note)
}

// take prints w, or holds it back: a repeat of the last warning printed
// about its subject, within every of that print. Any other warning
// about the subject (the condition ended, or changed) is printed at once,
// after the count of the repeats held back before it.
func (f *follower) take(name string, w logWarning, now time.Time) {
	key := subjectKey{name, w.subject()}
	kind := w.kind()
	s := f.last[key]
	if s != nil && s.kind == kind && now.Sub(s.at) < f.every {
		if s.held == 0 {
			s.since = w.at
		}
		s.held++
		s.last = w
		return
	}
	if s != nil {
		f.flush(name, s)
	}
	f.print(name, w, "")
	f.last[key] = &shown{kind: kind, at: now}
}

// flush prints the last repeat held back about s's subject, with how
// many there were.
func (f *follower) flush(name string, s *shown) {
	if s.held == 0 {
		return
	}
	note := fmt.Sprintf("%d like it", s.held)
	if !s.since.IsZero() {
		note += " since " + s.since.Local().Format("15:04:05")
	}
	f.print(name, s.last, note)
	s.held = 0
}

// followWarnings prints to w, as "15:04:05 NAME: message (attrs)" with
// the time the server logged it, each warning the servers log after
// tails' offsets (see warnings), reading them every poll until ctx ends.
// A repeat of the last warning printed about the same subject (a
// server's, or one of its log endpoints) is held back for `every`
// (repeatEvery) after that print: then the last one held back is printed
// with how many there were, and so are they when another warning about
// the subject comes. When ctx ends it reads the logs once more and prints
// what it held back.
func followWarnings(ctx context.Context, tails []*logTail, w io.Writer, poll, every time.Duration) {
	f := &follower{w: w, every: every, last: map[subjectKey]*shown{}}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		done := false
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		now := time.Now()
		for _, t := range tails {
			for _, m := range warnings(bytes.NewReader(t.read())) {
				f.take(t.name, m, now)
			}
		}
		if done {
			for k, s := range f.last {
				f.flush(k.server, s)
			}
			return
		}
		for k, s := range f.last {
			if s.held > 0 && now.Sub(s.at) >= every {
				f.flush(k.server, s)
				s.at = now
			}
		}
	}
}

// slogTime is the time of a log/slog text line ("time=2006-01-02T15:04:05.000Z07:00 level=…"),
// or the zero time if line does not start with one.
func slogTime(line string) time.Time {
	v, ok := strings.CutPrefix(line, "time=")
	if !ok {
		return time.Time{}
	}
	v, _, _ = strings.Cut(v, " ")
	at, _ := time.Parse(time.RFC3339Nano, v)
	return at
}
