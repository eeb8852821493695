package pop

import "github.com/tetratelabs/wazero/api"

// Config stores, dictionaries and secret stores come from the manifest's
// [local_server] tables and are read-only, so every instance shares the
// same maps without locking. Their handles are sticky: guests commonly open
// a store once at startup and keep the handle for the instance's life.

const (
	maxStoreNameLen = 255
	maxStoreKeyLen  = 255 * 3
)

// configStore is the object behind a config-store or dictionary handle.
type configStore struct {
	name string
	kv   map[string]string
}

// dictStore marks dictionary handles apart from config-store handles so one
// cannot be used as the other.
type dictStore struct{ configStore }

type secretStore struct {
	name    string
	secrets map[string][]byte
}

type secret struct{ value []byte }

// addStoreHostcalls registers the config store, dictionary, secret store,
// KV store and geolocation hostcalls.
func addStoreHostcalls(add func(mod, name string, params []api.ValueType, fn hostFn)) {
	add("fastly_config_store", "open", i32s(3), openKV(false))
	add("fastly_config_store", "get", i32s(6), getKV(false))
	add("fastly_dictionary", "open", i32s(3), openKV(true))
	add("fastly_dictionary", "get", i32s(6), getKV(true))

	const sec = "fastly_secret_store"
	add(sec, "open", i32s(3), secretStoreOpen)
	add(sec, "get", i32s(4), secretStoreGet)
	add(sec, "plaintext", i32s(4), secretPlaintext)
	add(sec, "from_bytes", i32s(3), secretFromBytes)

	addKVHostcalls(add)
	add("fastly_geo", "lookup", i32s(5), geoLookup)
}

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

// openKV implements open(name_ptr, name_len, handle_out) for config stores
// and dictionaries: $none for an empty name, $unsupported for one that is
// too long, $badf for one that does not exist (the codes the SDK maps to
// its ErrStoreNameEmpty/TooLong/NotFound errors; Viceroy answers $badf for
// an unknown name too).
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

// getKV implements get(h, key_ptr, key_len, value, value_max_len,
// nwritten_out): $none for a missing key, $buflen with the needed size when
// the value does not fit (the SDK's Has passes a zero-length buffer and
// takes $buflen as "present").
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

// secret_store.open(name_ptr, name_len, store_out): $none if it does not
// exist, $inval for an empty or over-long name.
func secretStoreOpen(c *call) status {
	inst := c.inst
	name, ok := c.argString(0)
	if !ok || name == "" || len(name) > maxStoreNameLen {
		return stInval
	}
	h, ok := inst.secretStores[name]
	if !ok {
		secrets, exists := inst.s.secretStores[name]
		if !exists {
			return stNone
		}
		h = inst.tab.add(&secretStore{name: name, secrets: secrets}, inst.gen, true)
		inst.secretStores[name] = h
	}
	if !c.putU32(c.u32(2), h) {
		return stInval
	}
	return stOK
}

// secret_store.get(store, key_ptr, key_len, secret_out)
func secretStoreGet(c *call) status {
	inst := c.inst
	st, ok := lookup[*secretStore](&inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	key, ok := c.argString(1)
	if !ok || key == "" || len(key) > maxStoreNameLen {
		return stInval
	}
	id := st.name + "\x00" + key
	h, ok := inst.secrets[id]
	if !ok {
		v, exists := st.secrets[key]
		if !exists {
			return stNone
		}
		h = inst.tab.add(&secret{value: v}, inst.gen, true)
		inst.secrets[id] = h
	}
	if !c.putU32(c.u32(3), h) {
		return stInval
	}
	return stOK
}

// secret_store.plaintext(secret, buf, buf_len, nwritten_out)
func secretPlaintext(c *call) status {
	s, ok := lookup[*secret](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, s.value, c.u32(1), c.u32(2), c.u32(3))
}

// secret_store.from_bytes(buf, buf_len, secret_out): a secret made by the
// guest; it lives like other request-scoped handles.
func secretFromBytes(c *call) status {
	b, ok := c.argBytes(0)
	if !ok {
		return stInval
	}
	h := c.inst.tab.add(&secret{value: append([]byte(nil), b...)}, c.inst.gen, false)
	return c.putHandle(c.u32(2), h)
}
