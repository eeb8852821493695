package fastlytoml

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// This file reads the [local_server] tables of Fastly products that a
// local host fakes from configuration, in Viceroy's formats: ACLs
// (acls), device detection (device_detection) and shielding sites
// (shielding_sites).

// ACL is one access control list of [local_server.acls].
type ACL struct {
	// Entries in file order. Lookup picks the longest matching prefix and,
	// among equally long ones, the last entry (Viceroy's rule).
	Entries []ACLEntry
}

// ACLEntry is one prefix of an ACL and its action ("ALLOW", "BLOCK" or
// any other string the file gives; ALLOW and BLOCK are upper-cased).
type ACLEntry struct {
	Prefix netip.Prefix // masked: 1.2.3.4/24 is stored as 1.2.3.0/24
	Action string
}

// Lookup returns the entry that matches addr, if any. IPv4-mapped IPv6
// addresses match IPv4 prefixes.
func (a *ACL) Lookup(addr netip.Addr) (ACLEntry, bool) {
	addr = addr.Unmap()
	var best ACLEntry
	found := false
	for _, e := range a.Entries {
		if e.Prefix.Contains(addr) && (!found || e.Prefix.Bits() >= best.Prefix.Bits()) {
			best, found = e, true
		}
	}
	return best, found
}

// resolveACLs reads [local_server.acls]: each name maps to the path of a
// JSON file, or to a table with a file key. The file has the shape of
// Fastly's ACL API: {"entries": [{"op": "create", "prefix": "1.2.3.0/24",
// "action": "BLOCK"}, ...]}; op is ignored, as in Viceroy.
func resolveACLs(raw map[string]any, dir string) (map[string]*ACL, error) {
	out := make(map[string]*ACL, len(raw))
	for _, name := range sortedKeys(raw) {
		var path string
		switch v := raw[name].(type) {
		case string:
			path = v
		case map[string]any:
			p, err := stringField(v, "file", true)
			if err != nil {
				return nil, fmt.Errorf("local_server.acls.%s: %w", name, err)
			}
			path = p
		default:
			return nil, fmt.Errorf("local_server.acls.%s: want a file path or a table with file, not %s", name, tomlType(v))
		}
		acl, err := readACL(resolvePath(dir, path))
		if err != nil {
			return nil, fmt.Errorf("local_server.acls.%s: %w", name, err)
		}
		out[name] = acl
	}
	return out, nil
}

func readACL(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Entries []struct {
			Prefix string `json:"prefix"`
			Action string `json:"action"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	acl := &ACL{Entries: make([]ACLEntry, 0, len(file.Entries))}
	for i, e := range file.Entries {
		p, err := netip.ParsePrefix(e.Prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: entries[%d]: prefix %q: want IP/MASK", path, i, e.Prefix)
		}
		action := e.Action
		if u := strings.ToUpper(action); u == "ALLOW" || u == "BLOCK" {
			action = u
		}
		acl.Entries = append(acl.Entries, ACLEntry{Prefix: p.Masked(), Action: action})
	}
	return acl, nil
}

// resolveDeviceDetection reads [local_server.device_detection]: format
// "inline-toml" with a user_agents table (user agent -> record), or format
// "json" with a file holding an object of user agent -> record. A record
// is what Fastly's device detection answers for that user agent, e.g.
// {device = {name = "iPhone", brand = "Apple", is_mobile = true}}. No
// format means no user agents.
func resolveDeviceDetection(t map[string]any, dir string) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	format, err := stringField(t, "format", false)
	if err != nil {
		return nil, err
	}
	switch format {
	case "":
	case "inline-toml":
		uas, ok := t["user_agents"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("format inline-toml needs a user_agents table")
		}
		for _, ua := range sortedKeys(uas) {
			rec, ok := uas[ua].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("user_agents.%q: want a table, not %s", ua, tomlType(uas[ua]))
			}
			out[ua] = rec
		}
	case "json":
		file, err := stringField(t, "file", true)
		if err != nil {
			return nil, err
		}
		path := resolvePath(dir, file)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		var m map[string]map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%s: want an object of user agent -> record: %w", path, err)
		}
		out = m
	default:
		return nil, fmt.Errorf("format %q: want inline-toml or json", format)
	}
	return out, nil
}

// ShieldingSite is one entry of [local_server.shielding_sites]: either
// the site this host runs as (the value "Local"), or another site reached
// at the given URLs.
type ShieldingSite struct {
	Local                  bool
	Unencrypted, Encrypted string // absolute URLs; empty for the local site
}

// resolveShieldingSites reads [local_server.shielding_sites]: NAME =
// "Local", or NAME = {unencrypted = "http://...", encrypted = "https://..."}
// (both required, as in Viceroy).
func resolveShieldingSites(raw map[string]any) (map[string]ShieldingSite, error) {
	out := make(map[string]ShieldingSite, len(raw))
	for _, name := range sortedKeys(raw) {
		switch v := raw[name].(type) {
		case string:
			if !strings.EqualFold(v, "local") {
				return nil, fmt.Errorf("local_server.shielding_sites.%s: the only string value is \"Local\", not %q", name, v)
			}
			out[name] = ShieldingSite{Local: true}
		case map[string]any:
			var site ShieldingSite
			for _, f := range []struct {
				key string
				dst *string
			}{{"unencrypted", &site.Unencrypted}, {"encrypted", &site.Encrypted}} {
				s, err := stringField(v, f.key, true)
				if err != nil {
					return nil, fmt.Errorf("local_server.shielding_sites.%s: %w", name, err)
				}
				if u, err := url.Parse(s); err != nil || !u.IsAbs() {
					return nil, fmt.Errorf("local_server.shielding_sites.%s: %s: %q is not an absolute URL", name, f.key, s)
				}
				*f.dst = s
			}
			out[name] = site
		default:
			return nil, fmt.Errorf("local_server.shielding_sites.%s: want \"Local\" or a table, not %s", name, tomlType(v))
		}
	}
	return out, nil
}
