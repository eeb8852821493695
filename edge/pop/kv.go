package pop

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// The KV stores behind fastly_kv_store (fastly_kv_store.go).
//
// KV stores start with the manifest's [local_server.kv_stores] contents
// and, unlike config stores, change: a guest's insert or delete is seen by
// every instance of this POP process (nothing is persisted). Operations
// complete at the call that starts them, as in Viceroy; the *_wait
// hostcalls only collect the outcome.

const (
	// maxKVValue is Fastly's limit for one KV item (25 MB).
	maxKVValue = 25_000_000
	// defaultKVListLimit is the page size when the guest sets none.
	defaultKVListLimit = 1000
)

// kvStores holds every KV store of the POP. One lock covers them all:
// local traffic is light, and a single lock keeps generations ordered.
type kvStores struct {
	mu      sync.RWMutex
	stores  map[string]*kvStore
	lastGen uint64
	now     func() time.Time
}

// kvStore is one named store; its items are guarded by kvStores.mu.
type kvStore struct {
	name  string
	items map[string]kvItem
}

// kvItem is immutable once stored: updates replace it, so a value handed
// to a guest's body is never changed underneath it.
type kvItem struct {
	value      []byte
	metadata   []byte
	generation uint64
	expires    time.Time // zero: never
}

func newKVStores(m *fastlytoml.Manifest) *kvStores {
	k := &kvStores{stores: map[string]*kvStore{}, now: time.Now}
	if m == nil {
		return k
	}
	for name, entries := range m.LocalServer.KVStores {
		st := &kvStore{name: name, items: make(map[string]kvItem, len(entries))}
		for key, e := range entries {
			st.items[key] = kvItem{value: e.Value, metadata: e.Metadata, generation: k.nextGen()}
		}
		k.stores[name] = st
	}
	return k
}

// nextGen returns a new generation: nanoseconds since the epoch like
// Viceroy's, but strictly increasing so two writes in the same
// nanosecond still differ. Called with mu held for writing.
func (k *kvStores) nextGen() uint64 {
	g := max(uint64(k.now().UnixNano()), k.lastGen+1)
	k.lastGen = g
	return g
}

func (k *kvStores) store(name string) *kvStore {
	return k.stores[name] // the set of stores never changes: no lock
}

func (it kvItem) live(now time.Time) bool {
	return it.expires.IsZero() || now.Before(it.expires)
}

func (k *kvStores) lookup(st *kvStore, key string) (kvItem, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	it, ok := st.items[key]
	if !ok || !it.live(k.now()) {
		return kvItem{}, false
	}
	return it, true
}

// kvInsert is one insert's parameters.
type kvInsert struct {
	key      string
	value    []byte
	mode     uint32
	metadata []byte
	hasMeta  bool
	ttl      time.Duration // 0: no expiry
	ifGen    uint64
	hasIfGen bool
}

// insert applies an insert with Viceroy's semantics: if_generation_match
// fails only against an existing item of another generation, add fails if
// the key exists, append and prepend act on the current value (or none),
// and the item's metadata is replaced by the new one (or dropped).
func (k *kvStores) insert(st *kvStore, in kvInsert) kvError {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	old, exists := st.items[in.key]
	if exists && !old.live(now) {
		exists = false
		delete(st.items, in.key)
	}
	if in.hasIfGen && exists && old.generation != in.ifGen {
		return kvErrPreconditionFailed
	}
	value := in.value
	switch in.mode {
	case kvModeAdd:
		if exists {
			return kvErrPreconditionFailed
		}
	case kvModeAppend:
		if exists {
			value = slices.Concat(old.value, in.value)
		}
	case kvModePrepend:
		if exists {
			value = slices.Concat(in.value, old.value)
		}
	}
	if len(value) > maxKVValue {
		return kvErrPayloadTooLarge
	}
	it := kvItem{value: value, generation: k.nextGen()}
	if in.hasMeta {
		it.metadata = in.metadata
	}
	if in.ttl > 0 {
		it.expires = now.Add(in.ttl)
	}
	st.items[in.key] = it
	return kvErrOK
}

// delete removes key. Like Viceroy, deleting a missing key succeeds.
func (k *kvStores) delete(st *kvStore, key string) kvError {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(st.items, key)
	return kvErrOK
}

// kvListPage is the JSON body of a list result, in the shape Viceroy and
// the SDK's kvstore.ListPage use.
type kvListPage struct {
	Data []string       `json:"data"`
	Meta kvListPageMeta `json:"meta"`
}

type kvListPageMeta struct {
	Limit      uint32 `json:"limit"`
	Prefix     string `json:"prefix,omitempty"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// list returns one page of the store's live keys in byte order, those
// after the cursor (base64 of the last key of the previous page) that
// start with prefix.
func (k *kvStores) list(st *kvStore, cursor, prefix string, limit uint32) ([]byte, kvError) {
	var after string
	if cursor != "" {
		dec, err := base64.StdEncoding.DecodeString(cursor)
		if err != nil || !utf8.Valid(dec) {
			return nil, kvErrBadRequest
		}
		after = string(dec)
	}
	k.mu.RLock()
	now := k.now()
	var keys []string
	for key, it := range st.items {
		if strings.HasPrefix(key, prefix) && (cursor == "" || key > after) && it.live(now) {
			keys = append(keys, key)
		}
	}
	k.mu.RUnlock()
	slices.Sort(keys)
	page := kvListPage{Data: keys, Meta: kvListPageMeta{Limit: limit, Prefix: prefix}}
	if uint32(len(keys)) > limit {
		page.Data = keys[:limit]
		page.Meta.NextCursor = base64.StdEncoding.EncodeToString([]byte(keys[limit-1]))
	}
	if page.Data == nil {
		page.Data = []string{}
	}
	out, err := json.Marshal(page)
	if err != nil {
		return nil, kvErrBadRequest // cannot happen: strings and a number
	}
	return out, kvErrOK
}
