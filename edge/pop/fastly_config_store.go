package pop

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// fastly_config_store: config stores from [local_server.config_stores]
// (and [local_server.dictionaries], see configContents). The contents
// are read-only, so every instance shares the same maps without locking;
// store handles are sticky and deduplicated by name: guests commonly open
// a store once at startup and keep the handle for the instance's life.
// A reload reads fastly.toml again (reloadConfig) and, when the stores
// changed, the Server replaces its instances, as a change to a config
// store on Fastly reaches the instances started after it.
var fastlyConfigStore = hostModule{name: "fastly_config_store", funcs: []hostFunc{
	{"open", i32("name_ptr", "name_len", "h_out"), openKV(false)},
	{"get", i32("h", "key_ptr", "key_len", "value", "value_max_len", "nwritten_out"), getKV(false)},
}}

// configStore is the object behind a config-store or dictionary handle.
type configStore struct {
	name string
	kv   map[string]string
}

// dictStore marks dictionary handles apart from config-store handles so one
// cannot be used as the other.
type dictStore struct{ configStore }

// configSnapshot is one reading of the manifest's config stores and
// dictionaries.
type configSnapshot struct {
	stores, dicts map[string]map[string]string
}

// reloadConfig reads fastly.toml again and reports whether its config
// stores or dictionaries changed: opens from then on see the new
// contents, and the caller replaces the instances, which keep the handles
// they opened (edgepixel's module reads its store once, at its start).
// Its secret stores' definitions apply to the next reloadSecrets. The
// other tables (backends, the KV stores' initial contents, geolocation,
// ACLs, device detection, shielding sites) are held by the running
// server: a change to them is logged with the advice to restart. A
// manifest that no longer reads changes nothing and is returned as the
// error, naming the file.
func (s *Server) reloadConfig() (changed bool, err error) {
	path := s.manifestPath()
	if path == "" {
		return false, nil
	}
	m, err := fastlytoml.Load(path)
	if err != nil {
		return false, err
	}
	// An edit that misspells a key is said now, as at the start, not at
	// the next restart; one the command refuses at start is refused now.
	warnings := m.Warnings
	var cerr error
	if s.checkManifest != nil {
		var more []string
		more, cerr = s.checkManifest(m)
		if cerr == nil {
			// Of a refused manifest only the refusal is said: its other
			// warnings describe stores that do not apply (a tester read
			// one of the kept stores' endpoint as unwritten).
			warnings = append(slices.Clip(warnings), more...)
		}
	}
	for _, w := range warnings {
		s.log.Warn(w, "manifest", m.Path)
	}
	if cerr != nil {
		return false, fmt.Errorf("%s: %w", m.Path, cerr)
	}
	s.secretsMu.Lock()
	s.secretDefs = &m.LocalServer
	s.secretsMu.Unlock()
	s.configFiles = m.LocalServer.ConfigFiles // under reloadMu, as Reload calls
	ls := m.LocalServer
	old := s.config.Load()
	if !reflect.DeepEqual(old.stores, ls.ConfigStores) || !reflect.DeepEqual(old.dicts, ls.Dictionaries) {
		s.config.Store(&configSnapshot{stores: ls.ConfigStores, dicts: ls.Dictionaries})
		changed = true
	}
	held := s.manifest.LocalServer
	for _, t := range []struct {
		table    string
		was, now any
	}{
		{"backends", held.Backends, ls.Backends},
		{"kv_stores", held.KVStores, ls.KVStores},
		{"geolocation", held.Geolocation, ls.Geolocation},
		{"acls", held.ACLs, ls.ACLs},
		{"device_detection", held.DeviceDetection, ls.DeviceDetection},
		{"shielding_sites", held.ShieldingSites, ls.ShieldingSites},
	} {
		if !reflect.DeepEqual(t.was, t.now) {
			s.log.Warn(fmt.Sprintf("fastly.toml's [local_server.%s] changed; the running POP keeps the one it started with: restart it to apply the change", t.table),
				"manifest", m.Path)
		}
	}
	return changed, nil
}

// manifestPath is the file of the manifest the server started with, for
// reading it again; "" when there is none, or it was not read from a
// file.
func (s *Server) manifestPath() string {
	if s.manifest == nil {
		return ""
	}
	return s.manifest.Path
}

// configContents finds a config store or dictionary by name. Viceroy reads
// [local_server.config_stores] and [local_server.dictionaries] as one
// table, and Fastly serves edge dictionaries through the config store
// API, so either hostcall family finds a store defined under either name;
// its own kind wins if both define it.
func (s *Server) configContents(name string, dict bool) (map[string]string, bool) {
	snap := s.config.Load()
	if snap == nil {
		return nil, false
	}
	own, other := snap.stores, snap.dicts
	if dict {
		own, other = other, own
	}
	if kv, ok := own[name]; ok {
		return kv, true
	}
	kv, ok := other[name]
	return kv, ok
}

// Fastly's limits on store names and keys.
const (
	maxStoreNameLen = 255
	maxStoreKeyLen  = 255 * 3
)

// openKV implements fastly_config_store.open and fastly_dictionary.open(
// name_ptr, name_len, h_out): a handle to the named store.
//
// Status: $ok; $none for an empty name; $unsupported for a name over 255
// bytes; $badf for a store that does not exist. These are the codes the
// SDK maps to its ErrStoreNameEmpty, ErrStoreNameTooLong and
// ErrStoreNotFound.
//
// Differs: no known difference; Viceroy also answers $badf for an unknown
// name.
func openKV(dict bool) hostFn {
	return func(c *call) status {
		inst := c.inst
		name, ok := c.argString(0)
		if !ok {
			return stInval
		}
		switch {
		case name == "":
			return stNone
		case len(name) > maxStoreNameLen:
			return stUnsupported
		}
		cache := inst.configStores
		if dict {
			cache = inst.dicts
		}
		h, ok := cache[name]
		if !ok {
			kv, exists := inst.s.configContents(name, dict)
			if !exists {
				return stBadf
			}
			var obj any = &configStore{name: name, kv: kv}
			if dict {
				obj = &dictStore{configStore{name: name, kv: kv}}
			}
			h = inst.tab.add(obj, inst.gen, true)
			cache[name] = h
		}
		if !c.putU32(c.u32(2), h) {
			return stInval
		}
		return stOK
	}
}

// getKV implements fastly_config_store.get and fastly_dictionary.get(h,
// key_ptr, key_len, value, value_max_len, nwritten_out): the value of key.
//
// Status: $ok; $none for a missing key; $buflen with the needed size when
// the value does not fit (the SDK's Has passes a zero-length buffer and
// takes $buflen as "present"); $inval for a key over 765 bytes.
//
// Differs: no known difference.
func getKV(dict bool) hostFn {
	return func(c *call) status {
		var st *configStore
		if dict {
			d, ok := lookup[*dictStore](&c.inst.tab, c.u32(0))
			if !ok {
				return stBadf
			}
			st = &d.configStore
		} else {
			s, ok := lookup[*configStore](&c.inst.tab, c.u32(0))
			if !ok {
				return stBadf
			}
			st = s
		}
		key, ok := c.argBytes(1)
		if !ok || len(key) > maxStoreKeyLen {
			return stInval
		}
		v, ok := st.kv[string(key)]
		if !ok {
			return stNone
		}
		return writeOut(c, v, c.u32(3), c.u32(4), c.u32(5))
	}
}
