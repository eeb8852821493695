package main

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The launcher's own lines have the shape of the servers' warnings it
// repeats: "15:04:05 make run: message (attrs)", attributes as slog's
// text handler quotes them, With's and groups' among them, and nothing
// below the level.
func TestTermHandler(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(newTermHandler(&b, "make run", slog.LevelInfo))
	log.Debug("not shown")
	log.Info("stopped")
	log.With("part", "pop").WithGroup("g").Warn("pop ended; restarting it", "err", "exit status 2", "log", "/tmp/my logs/pop.log")
	got := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d `).ReplaceAllString(b.String(), "T ")
	want := "T make run: stopped\n" +
		`T make run: pop ended; restarting it (part=pop g.err="exit status 2" g.log="/tmp/my logs/pop.log")` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	var f bytes.Buffer
	(&follower{w: &f}).print("aggregator", logWarning{at: time.Now(), msg: "spool: the disk has no room", attrs: "err=ENOSPC"}, "")
	if got := regexp.MustCompile(`^\d\d:\d\d:\d\d `).ReplaceAllString(f.String(), "T "); got != "T aggregator: spool: the disk has no room (err=ENOSPC)\n" {
		t.Errorf("a server's warning: %q", got)
	}
	long := logWarning{msg: "m", attrs: "err=" + strings.Repeat("é", maxAttrs)}
	if got := long.text(); !strings.HasSuffix(got, "é…)") || len(got) > maxAttrs+len("m (…)") || !utf8.ValidString(got) {
		t.Errorf("long attributes shown as %q", got)
	}
}
