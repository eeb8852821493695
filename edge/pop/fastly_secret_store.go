package pop

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/shared/permhint"
)

// fastly_secret_store: secret stores from [local_server.secret_stores].
// Store and secret handles are sticky and deduplicated, like config store
// handles.
var fastlySecretStore = hostModule{name: "fastly_secret_store", funcs: []hostFunc{
	{"open", i32("name_ptr", "name_len", "store_out"), secretStoreOpen},
	{"get", i32("store", "key_ptr", "key_len", "secret_out"), secretStoreGet},
	{"plaintext", i32("secret", "buf", "buf_len", "nwritten_out"), secretPlaintext},
	{"from_bytes", i32("buf", "buf_len", "secret_out"), secretFromBytes},
}}

// secretSnapshot is one reading of the manifest's secret stores; gen
// counts the readings.
type secretSnapshot struct {
	gen    uint64
	stores map[string]map[string][]byte
}

// reloadSecrets reads the manifest's secret stores again, as the last
// reloadConfig defined them (a secret file rotated by edgepixel-salt,
// say), and, when anything changed, makes new opens see the new values
// and reports so: the caller replaces the instances, which may have read
// a secret once (edgepixel's module reads aggregator_secret at its
// start). Called on every reload (SIGHUP) and by the module watcher. A
// store that fails to read keeps its old values; the error is logged
// once (the watcher asks every interval) and shows in Degraded until the
// stores read again.
func (s *Server) reloadSecrets() (changed bool) {
	s.secretsMu.Lock()
	defer s.secretsMu.Unlock()
	if s.secretDefs == nil {
		return false
	}
	stores, err := s.secretDefs.ReadSecretStores()
	if err != nil {
		// A salt rotated by root's cron, 0600, for a POP running as
		// another user: who may read what, in the message.
		err = permhint.Wrap("the POP", err)
		why := "reading the secret stores again failed (" + strings.ReplaceAll(err.Error(), "\n", " ") + "); keeping the values read before"
		if last := s.secretFailure.Swap(&why); last == nil || *last != why {
			s.log.Error("reading the secret stores again failed; keeping the values read before", "err", err)
		}
		return false
	}
	if s.secretFailure.Swap(nil) != nil {
		s.log.Info("the secret stores read again")
	}
	old := s.secrets.Load()
	if old != nil && reflect.DeepEqual(old.stores, stores) {
		return false
	}
	var gen uint64
	if old != nil {
		gen = old.gen + 1
	}
	s.secrets.Store(&secretSnapshot{gen: gen, stores: stores})
	s.log.Info("secret stores read again", "generation", gen)
	return true
}

// secretStore and secret are the objects behind store and secret handles.
type secretStore struct {
	name    string
	secrets map[string][]byte
}

type secret struct{ value []byte }

// secretStoreOpen implements fastly_secret_store.open(name_ptr, name_len,
// store_out): a handle to the named store.
//
// Status: $ok; $none if it does not exist; $inval for an empty name or
// one over 255 bytes.
//
// Differs: no known difference.
func secretStoreOpen(c *call) status {
	inst := c.inst
	name, ok := c.argString(0)
	if !ok || name == "" || len(name) > maxStoreNameLen {
		return stInval
	}
	snap := inst.s.secrets.Load()
	if snap == nil {
		return stNone
	}
	// Handles are per snapshot: after the stores were read again, an
	// instance's next open sees the new values.
	id := strconv.FormatUint(snap.gen, 10) + "\x00" + name
	h, ok := inst.secretStores[id]
	if !ok {
		secrets, exists := snap.stores[name]
		if !exists {
			return stNone
		}
		h = inst.tab.add(&secretStore{name: id, secrets: secrets}, inst.gen, true)
		inst.secretStores[id] = h
	}
	if !c.putU32(c.u32(2), h) {
		return stInval
	}
	return stOK
}

// secretStoreGet implements fastly_secret_store.get(store, key_ptr,
// key_len, secret_out): a handle to the named secret.
//
// Status: $ok; $none if the store has no such secret; $inval for an empty
// key or one over 255 bytes.
//
// Differs: no known difference.
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

// secretPlaintext implements fastly_secret_store.plaintext(secret, buf,
// buf_len, nwritten_out): the secret's bytes.
//
// Status: $ok; $buflen if they do not fit, with their length in
// nwritten_out.
//
// Differs: no known difference.
func secretPlaintext(c *call) status {
	s, ok := lookup[*secret](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	return writeOut(c, s.value, c.u32(1), c.u32(2), c.u32(3))
}

// secretFromBytes implements fastly_secret_store.from_bytes(buf, buf_len,
// secret_out): a secret made from bytes the guest has (copied); its
// handle lives like other request-scoped handles.
//
// Status: $ok.
//
// Differs: no known difference.
func secretFromBytes(c *call) status {
	b, ok := c.argBytes(0)
	if !ok {
		return stInval
	}
	h := c.inst.tab.add(&secret{value: append([]byte(nil), b...)}, c.inst.gen, false)
	return c.putHandle(c.u32(2), h)
}

// Stores returns what a guest opening the config store (or dictionary)
// and the secret store named name would read now, after any reload and
// the watcher's rereads of the secrets: nil for a store not defined. The
// maps are the server's own: read them, never change them. A host checks
// with them what its guest depends on (see Probe).
func (s *Server) Stores(name string) (config map[string]string, secrets map[string][]byte) {
	config, _ = s.configContents(name, false)
	if snap := s.secrets.Load(); snap != nil {
		secrets = snap.stores[name]
	}
	return config, secrets
}
