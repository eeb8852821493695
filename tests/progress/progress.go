// Package progress reports long steps — builds, installs, a server's first
// start — with their elapsed time, so that a newcomer watching `make run`
// sees what it waits for and for how long.
//
// On a terminal a step is one line whose clock ticks in place every second
// and ends with "done in 12.3s"; anywhere else (CI logs, files) the step
// prints a start line, a "still ..." line every 15 seconds and an end line.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Reporter writes step reports to one writer. A nil *Reporter reports
// nothing, so code can take one optionally.
type Reporter struct {
	w     io.Writer
	tty   bool
	every time.Duration
	mu    sync.Mutex
}

// New reports to w; it ticks in place if w is a terminal.
func New(w io.Writer) *Reporter {
	r := &Reporter{w: w, every: 15 * time.Second}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			r.tty, r.every = true, time.Second
		}
	}
	return r
}

// Printf writes a line of its own (not part of a step).
func (r *Reporter) Printf(format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, format+"\n", args...)
}

// Run reports the step what while f runs: "what ...", then the elapsed
// time, then "done in D" or "failed after D". It returns f's error.
func (r *Reporter) Run(what string, f func() error) error {
	if r == nil {
		return f()
	}
	start := time.Now()
	r.mu.Lock()
	fmt.Fprintf(r.w, "%s ...", what)
	if !r.tty {
		fmt.Fprintln(r.w)
	}
	r.mu.Unlock()

	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(r.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.mu.Lock()
				if r.tty {
					fmt.Fprintf(r.w, "\r%s ... %s", what, Round(time.Since(start)))
				} else {
					fmt.Fprintf(r.w, "  still %s (%s)\n", what, Round(time.Since(start)))
				}
				r.mu.Unlock()
			}
		}
	}()
	err := f()
	close(stop)
	<-ticked

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty {
		// \033[K clears what a longer tick left on the line.
		fmt.Fprintf(r.w, "\r%s ... ", what)
		if err != nil {
			fmt.Fprintf(r.w, "failed after %s\033[K\n", Round(time.Since(start)))
		} else {
			fmt.Fprintf(r.w, "done in %s\033[K\n", Round(time.Since(start)))
		}
		return err
	}
	if err != nil {
		fmt.Fprintf(r.w, "%s: failed after %s\n", what, Round(time.Since(start)))
	} else {
		fmt.Fprintf(r.w, "%s: done in %s\n", what, Round(time.Since(start)))
	}
	return err
}

// Round shortens d for people: whole seconds from a minute on, tenths
// below.
func Round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
