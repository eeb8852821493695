package fastlytoml

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
)

// Geolocation is [local_server.geolocation]: what a geolocation lookup
// answers for each address.
type Geolocation struct {
	// Addresses maps an address to its record: the fields of Fastly's
	// geolocation JSON (as_name, city, country_code, latitude, ...).
	// Values are strings, bools, json.Number (from a JSON file), int64 or
	// float64 (from inline TOML). IPv4-mapped IPv6 keys are stored as
	// IPv4.
	Addresses map[netip.Addr]map[string]any
	// UseDefaultLoopback makes loopback addresses missing from Addresses
	// answer DefaultGeoRecord (Viceroy's use_default_loopback, default
	// true).
	UseDefaultLoopback bool
}

// Lookup returns the record for addr: its configured one, else the
// default record for a loopback address if UseDefaultLoopback, else false
// (Viceroy then answers an empty record).
func (g Geolocation) Lookup(addr netip.Addr) (map[string]any, bool) {
	addr = addr.Unmap()
	if rec, ok := g.Addresses[addr]; ok {
		return rec, true
	}
	if g.UseDefaultLoopback && addr.IsLoopback() {
		return DefaultGeoRecord(), true
	}
	return nil, false
}

// DefaultGeoRecord is the record Viceroy answers for loopback addresses:
// Fastly's office in San Francisco.
func DefaultGeoRecord() map[string]any {
	return map[string]any{
		"as_name":           "Fastly, Inc",
		"as_number":         int64(54113),
		"area_code":         int64(415),
		"city":              "San Francisco",
		"conn_speed":        "broadband",
		"conn_type":         "wired",
		"continent":         "NA",
		"country_code":      "US",
		"country_code3":     "USA",
		"country_name":      "United States of America",
		"latitude":          37.77869,
		"longitude":         -122.39557,
		"metro_code":        int64(0),
		"postal_code":       "94107",
		"proxy_description": "?",
		"proxy_type":        "?",
		"region":            "CA",
		"utc_offset":        int64(-700),
	}
}

// resolveGeolocation reads the table: use_default_loopback, and format
// "inline-toml" with an addresses table or format "json" with a file
// holding an object of address -> record. No format means no addresses.
func resolveGeolocation(t map[string]any, dir string) (Geolocation, error) {
	g := Geolocation{Addresses: map[netip.Addr]map[string]any{}, UseDefaultLoopback: true}
	if v, ok := t["use_default_loopback"]; ok {
		b, ok := v.(bool)
		if !ok {
			return g, fmt.Errorf("use_default_loopback must be a boolean, not %s", tomlType(v))
		}
		g.UseDefaultLoopback = b
	}
	format, err := stringField(t, "format", false)
	if err != nil {
		return g, err
	}
	_, hasFormat := t["format"]
	switch {
	case !hasFormat:
		return g, nil
	case format == "inline-toml":
		return g, g.fromTOML(t)
	case format == "json":
		file, err := stringField(t, "file", true)
		if err != nil {
			return g, err
		}
		if err := g.fromJSON(resolvePath(dir, file)); err != nil {
			return g, err
		}
		return g, nil
	default:
		return g, fmt.Errorf("unsupported format %q (want inline-toml or json)", format)
	}
}

func (g *Geolocation) fromTOML(t map[string]any) error {
	v, ok := t["addresses"]
	if !ok {
		return fmt.Errorf(`format "inline-toml" needs an addresses table`)
	}
	addrs, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("addresses must be a table, not %s", tomlType(v))
	}
	for _, a := range sortedKeys(addrs) {
		rec, err := geoRecordFromTOML(addrs[a])
		if err == nil {
			err = g.add(a, rec)
		}
		if err != nil {
			return fmt.Errorf("addresses.%q: %w", a, err)
		}
	}
	return nil
}

func geoRecordFromTOML(v any) (map[string]any, error) {
	t, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a table of fields, not %s", tomlType(v))
	}
	rec := make(map[string]any, len(t))
	for _, f := range sortedKeys(t) {
		switch fv := t[f].(type) {
		case string, int64, bool:
			rec[f] = fv
		case float64:
			if math.IsNaN(fv) || math.IsInf(fv, 0) {
				return nil, fmt.Errorf("%s: %v cannot be represented in JSON", f, fv)
			}
			rec[f] = fv
		default:
			return nil, fmt.Errorf("%s: want a string, number or boolean, not %s", f, tomlType(fv))
		}
	}
	return rec, nil
}

func (g *Geolocation) fromJSON(path string) error {
	obj, err := readJSONObject(path, `a JSON object of IP addresses to geolocation records, e.g. {"192.0.2.1": {"country_code": "DE"}}`)
	if err != nil {
		return err
	}
	for _, a := range sortedKeys(obj) {
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(obj[a]))
		dec.UseNumber() // keep numbers exactly as written
		if err := dec.Decode(&rec); err != nil || rec == nil {
			return fmt.Errorf("%s: address %q: want an object of fields", path, a)
		}
		if err := g.add(a, rec); err != nil {
			return fmt.Errorf("%s: address %q: %w", path, a, err)
		}
	}
	return nil
}

func (g *Geolocation) add(a string, rec map[string]any) error {
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return fmt.Errorf("not an IP address")
	}
	if addr.Zone() != "" {
		return fmt.Errorf("an address with a zone cannot be looked up")
	}
	addr = addr.Unmap()
	if _, dup := g.Addresses[addr]; dup {
		return fmt.Errorf("address %s is listed twice", addr)
	}
	g.Addresses[addr] = rec
	return nil
}
