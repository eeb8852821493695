package pop

// fastly_config_store: config stores from [local_server.config_stores]
// (and [local_server.dictionaries], see configContents). The contents
// are read-only, so every instance shares the same maps without locking;
// store handles are sticky and deduplicated by name: guests commonly open
// a store once at startup and keep the handle for the instance's life.
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

// configContents finds a config store or dictionary by name. Viceroy reads
// [local_server.config_stores] and [local_server.dictionaries] as one
// table, and Fastly serves edge dictionaries through the config store
// API, so either hostcall family finds a store defined under either name;
// its own kind wins if both define it.
func (s *Server) configContents(name string, dict bool) (map[string]string, bool) {
	own, other := s.configStores, s.dicts
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
