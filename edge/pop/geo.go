package pop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/edgepixel/edgepixel/edge/pop/geoip"
)

// geoDB answers fastly_geo.lookup (fastly_geo.go): from the addresses
// [local_server.geolocation] lists, then from the MaxMind-format
// databases of Config.GeoIPDatabases (package geoip), then, for loopback
// addresses, Viceroy's default record. The manifest's records are
// encoded to JSON once, at startup, so a lookup of one copies bytes only.
type geoDB struct {
	records  map[netip.Addr][]byte
	db       *geoip.DB // nil: no databases
	loopback []byte    // answer for other loopback addresses; nil if none
}

func newGeoDB(m *fastlytoml.Manifest, db *geoip.DB) (*geoDB, error) {
	// Without a manifest, behave as Viceroy does without a geolocation
	// table: loopback addresses get the default record.
	cfg := fastlytoml.Geolocation{UseDefaultLoopback: true}
	if m != nil {
		cfg = m.LocalServer.Geolocation
	}
	g := &geoDB{records: make(map[netip.Addr][]byte, len(cfg.Addresses)), db: db}
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
	if g.db != nil {
		if js := g.db.Lookup(addr); js != nil {
			return js
		}
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
