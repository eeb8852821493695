package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// termLine writes one line of make run's terminal: the clock time at
// (local, to the second), who said it, and what. The launcher's own
// log lines and the servers' warnings it repeats share it, so the
// terminal reads as one log (a tester saw slog's time=…level=… lines
// beside the others).
func termLine(w io.Writer, at time.Time, who, text string) {
	fmt.Fprintf(w, "%s %s: %s\n", at.Local().Format("15:04:05"), who, text)
}

// termHandler is a slog.Handler writing each record as a termLine,
// "15:04:05 make run: message (attrs)", its attributes (the With ones,
// then the record's, in groups) as slog's text handler writes them. The
// level is not written: what the launcher logs says its severity.
type termHandler struct {
	w     io.Writer
	who   string
	level slog.Leveler
	mu    *sync.Mutex
	buf   *bytes.Buffer // what attrs wrote, under mu
	attrs slog.Handler  // a text handler writing only the attributes, to buf
}

func newTermHandler(w io.Writer, who string, level slog.Leveler) *termHandler {
	h := &termHandler{w: w, who: who, level: level, mu: new(sync.Mutex), buf: new(bytes.Buffer)}
	h.attrs = slog.NewTextHandler(h.buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}})
	return h
}

func (h *termHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *termHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.attrs.Handle(ctx, r); err != nil {
		return err
	}
	text := r.Message
	if a := strings.TrimSpace(h.buf.String()); a != "" {
		text += " (" + a + ")"
	}
	at := r.Time
	if at.IsZero() {
		at = time.Now()
	}
	termLine(h.w, at, h.who, text)
	return nil
}

func (h *termHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithAttrs(as)
	return &c
}

func (h *termHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithGroup(name)
	return &c
}
