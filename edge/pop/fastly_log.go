package pop

import (
	"bytes"
	"errors"
	"strings"

	"github.com/edgepixel/edgepixel/edge/pop/logsink"
)

// fastly_log: log endpoints. Where an endpoint's entries go is the
// logsink package's business (Config.LogEndpoints); by default they are
// printed to stdout as "name :: entry", as Viceroy does.
var fastlyLog = hostModule{name: "fastly_log", funcs: []hostFunc{
	{"endpoint_get", i32("name_ptr", "name_len", "endpoint_handle_out"), logEndpointGet},
	{"write", i32("h", "msg_ptr", "msg_len", "nwritten_out"), logWrite},
}}

// logEndpoint is the object behind an endpoint handle: a name and the
// destination its entries go to, resolved once per instance.
type logEndpoint struct {
	name string
	sink logsink.Sink
}

// logEndpointGet implements fastly_log.endpoint_get(name_ptr, name_len,
// endpoint_handle_out): a handle to the named endpoint. Any other name is
// accepted; handles are sticky and deduplicated by name.
//
// Status: $ok; $inval for a name reserved on Fastly (stdout, stderr,
// fst_managed_*), as there.
//
// Differs: Fastly knows which endpoints the service has; here every name
// exists.
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
		h = inst.tab.add(&logEndpoint{name: name, sink: inst.s.sinks.Lookup(name)}, inst.gen, true)
		inst.endpoints[name] = h
	}
	if !c.putU32(c.u32(2), h) {
		return stInval
	}
	return stOK
}

// logWrite implements fastly_log.write(h, msg_ptr, msg_len, nwritten_out):
// one entry per call, with a trailing newline dropped and inner newlines
// escaped as the two characters \n, so an entry stays one line. All of
// msg counts as written. For an endpoint queued on disk, the entry is
// written to the queue (at its durability level) when the call returns.
//
// Status: $ok; $limitexceeded when the destination refuses the entry (its
// queue is full, or the entry is over max_bytes); $error when it cannot
// take entries at all (its disk failed).
//
// Differs: where entries go is configured here (Config.LogEndpoints)
// rather than with the service; what is written is the same. Fastly
// accepts every write; here a guest learns that an entry was refused, so
// it can deliver it another way.
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
		if err := ep.sink.Write(ep.name, msg); err != nil {
			if errors.Is(err, logsink.ErrQueueFull) || errors.Is(err, logsink.ErrTooLarge) {
				return stLimitExceeded
			}
			return stError
		}
	}
	if !c.putU32(c.u32(3), uint32(n)) {
		return stInval
	}
	return stOK
}
