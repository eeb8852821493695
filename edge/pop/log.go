package pop

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// lockedWriter serialises writes from all instances (guest stdout/stderr
// and log endpoints) so lines from concurrent guests do not interleave and
// a non-thread-safe writer (a test's bytes.Buffer) stays safe.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLockedWriter returns w with its writes serialised, for a writer a
// caller shares with the Server (the CLI's stdout, which the guests and an
// access log on "-" both write).
func NewLockedWriter(w io.Writer) io.Writer { return &lockedWriter{w: w} }

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logEndpoint is the object behind an endpoint handle: a name and the
// destination its entries go to (logsink.go), resolved once per instance.
type logEndpoint struct {
	name string
	sink sink
}

// endpoint_get(name_ptr, name_len, endpoint_out). Names reserved on Fastly
// (stdout, stderr, fst_managed_*) are $inval, as there.
func logEndpointGet(c *call) status {
	inst := c.inst
	name, ok := c.argString(0)
	if !ok {
		return stInval
	}
	lower := strings.ToLower(name)
	if lower == "stdout" || lower == "stderr" || strings.HasPrefix(lower, "fst_managed_") {
		return stInval
	}
	h, ok := inst.endpoints[name]
	if !ok {
		h = inst.tab.add(&logEndpoint{name: name, sink: inst.s.sinks.lookup(name)}, inst.gen, true)
		inst.endpoints[name] = h
	}
	if !c.putU32(c.u32(2), h) {
		return stInval
	}
	return stOK
}

// write(endpoint, msg_ptr, msg_len, nwritten_out): one entry per call,
// with a trailing newline dropped and inner newlines escaped so an entry
// stays on one line. By default it is printed as "name :: message" like
// Viceroy does; see logsink.go for the other destinations.
func logWrite(c *call) status {
	ep, ok := lookup[*logEndpoint](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	msg, ok := c.argBytes(1)
	if !ok {
		return stInval
	}
	n := len(msg)
	msg = bytes.TrimSuffix(msg, []byte("\n"))
	if len(msg) > 0 {
		// msg is guest memory: sinks copy it and never keep it.
		if bytes.IndexByte(msg, '\n') >= 0 {
			esc := make([]byte, 0, len(msg)+8)
			for _, b := range msg {
				if b == '\n' {
					esc = append(esc, '\\', 'n')
				} else {
					esc = append(esc, b)
				}
			}
			msg = esc
		}
		ep.sink.write(ep.name, msg)
	}
	if !c.putU32(c.u32(3), uint32(n)) {
		return stInval
	}
	return stOK
}
