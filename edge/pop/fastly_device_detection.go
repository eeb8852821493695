package pop

// fastly_device_detection: what Fastly's device detection answers for a
// user agent, from [local_server.device_detection] (Viceroy's format;
// geo.go encodes the records). The POP has no device database of its
// own.
var fastlyDeviceDetection = hostModule{name: "fastly_device_detection", funcs: []hostFunc{
	{"lookup", i32("user_agent_ptr", "user_agent_len", "buf", "buf_len", "nwritten_out"), deviceLookup},
}}

// deviceLookup implements fastly_device_detection.lookup(user_agent_ptr,
// user_agent_len, buf, buf_len, nwritten_out): the user agent's record as
// JSON ({"device": {"name": ..., "is_mobile": ...}}), as configured.
//
// Status: $ok; $none for a user agent with no record (the SDK's
// ErrDeviceNotFound); $buflen if the record does not fit, with its length
// in nwritten_out.
//
// Differs: Fastly identifies every user agent from its device database;
// here, as in Viceroy, only the configured ones are found.
func deviceLookup(c *call) status {
	ua, ok := c.argBytes(0)
	if !ok {
		return stInval
	}
	js, ok := c.inst.s.devices[string(ua)]
	if !ok {
		return stNone
	}
	return writeOut(c, js, c.u32(2), c.u32(3), c.u32(4))
}
