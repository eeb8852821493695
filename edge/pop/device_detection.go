package pop

import (
	"fmt"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// fastly_device_detection: what Fastly's device detection answers for a
// user agent, from [local_server.device_detection] (Viceroy's format).
// The POP has no device database of its own: a user agent that is not
// configured is not found, as in Viceroy.

// newDeviceDB encodes the configured records to JSON once, at startup.
func newDeviceDB(m *fastlytoml.Manifest) (map[string][]byte, error) {
	if m == nil {
		return nil, nil
	}
	db := make(map[string][]byte, len(m.LocalServer.DeviceDetection))
	for ua, rec := range m.LocalServer.DeviceDetection {
		js, err := geoJSON(rec) // same encoding: keys sorted, no HTML escaping
		if err != nil {
			return nil, fmt.Errorf("device detection record for %q: %w", ua, err)
		}
		db[ua] = js
	}
	return db, nil
}

// lookup(user_agent_ptr, user_agent_len, buf, buf_len, nwritten_out):
// the record as JSON ({"device": {"name": ..., "is_mobile": ...}}), or
// $none for a user agent with no record (the SDK's ErrDeviceNotFound).
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
