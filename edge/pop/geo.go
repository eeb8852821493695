package pop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// geoDB answers fastly_geo.lookup (fastly_geo.go) from [local_server.geolocation]. Records
// are encoded to JSON once, at startup, so a lookup copies bytes only.
type geoDB struct {
	records  map[netip.Addr][]byte
	loopback []byte // answer for other loopback addresses; nil if none
}

func newGeoDB(m *fastlytoml.Manifest) (*geoDB, error) {
	// Without a manifest, behave as Viceroy does without a geolocation
	// table: loopback addresses get the default record.
	cfg := fastlytoml.Geolocation{UseDefaultLoopback: true}
	if m != nil {
		cfg = m.LocalServer.Geolocation
	}
	g := &geoDB{records: make(map[netip.Addr][]byte, len(cfg.Addresses))}
	for addr, rec := range cfg.Addresses {
		js, err := geoJSON(rec)
		if err != nil {
			return nil, fmt.Errorf("geolocation record for %s: %w", addr, err)
		}
		g.records[addr.Unmap()] = js
	}
	if cfg.UseDefaultLoopback {
		g.loopback, _ = geoJSON(fastlytoml.DefaultGeoRecord())
	}
	return g, nil
}

// geoJSON encodes a record like Viceroy does: keys sorted, no HTML
// escaping.
func geoJSON(rec map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// lookup returns the JSON record for addr. An address with no record gets
// an empty answer, which the SDK turns into a zero geo.Geo, as Viceroy
// does (older Viceroys answered $none).
func (g *geoDB) lookup(addr netip.Addr) []byte {
	addr = addr.Unmap()
	if js, ok := g.records[addr]; ok {
		return js
	}
	if addr.IsLoopback() {
		return g.loopback
	}
	return nil
}

// newDeviceDB reads [local_server.device_detection] for
// fastly_device_detection.lookup (fastly_device_detection.go): user agent
// to JSON record, encoded once, at startup, as the geolocation records
// are.
func newDeviceDB(m *fastlytoml.Manifest) (map[string][]byte, error) {
	if m == nil {
		return nil, nil
	}
	db := make(map[string][]byte, len(m.LocalServer.DeviceDetection))
	for ua, rec := range m.LocalServer.DeviceDetection {
		js, err := geoJSON(rec)
		if err != nil {
			return nil, fmt.Errorf("device detection record for %q: %w", ua, err)
		}
		db[ua] = js
	}
	return db, nil
}
