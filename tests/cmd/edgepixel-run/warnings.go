package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The servers' warnings at start go to their log files, which a user of
// make run does not read while everything works: a misspelt
// EDGEPIXEL_AGG_ variable or edge-config.toml key was said only there,
// and its setting silently did not apply (found by a new-user tester).
// So the launcher notes where each log ends before the stack starts and
// repeats, below the banner, the warnings and errors written after it.

// logServers are the servers whose logs are read, as tests/stack names
// them (Dir/logs/NAME.log).
var logServers = []string{"pop", "aggregator"}

// logEnds returns the size of each server's log under dir/logs now: where
// this run's lines begin. A missing log has size 0.
func logEnds(dir string) map[string]int64 {
	out := map[string]int64{}
	for _, name := range logServers {
		if fi, err := os.Stat(filepath.Join(dir, "logs", name+".log")); err == nil {
			out[name] = fi.Size()
		}
	}
	return out
}

// startWarnings returns "NAME: message" for each line at level WARN or
// ERROR that a server logged after from (logEnds before the start).
func startWarnings(dir string, from map[string]int64) []string {
	var out []string
	for _, name := range logServers {
		f, err := os.Open(filepath.Join(dir, "logs", name+".log"))
		if err != nil {
			continue
		}
		if _, err := f.Seek(from[name], io.SeekStart); err == nil {
			for _, m := range warnings(f) {
				out = append(out, name+": "+m)
			}
		}
		f.Close()
	}
	return out
}

// warnings returns the messages of r's slog text lines at level WARN or
// ERROR, with the line's other attributes after the message.
func warnings(r io.Reader) []string {
	var out []string
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
		msg, attrs := rest, ""
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			msg, _ = strconv.Unquote(q)
			attrs = strings.TrimSpace(rest[len(q):])
		} else if m, a, ok := strings.Cut(rest, " "); ok {
			msg, attrs = m, a
		}
		if attrs != "" {
			msg += " (" + attrs + ")"
		}
		out = append(out, msg)
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
