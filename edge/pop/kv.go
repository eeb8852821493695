package pop

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
	"github.com/tetratelabs/wazero/api"
)

// KV stores start with the manifest's [local_server.kv_stores] contents
// and, unlike config stores, change: a guest's insert or delete is seen by
// every instance of this POP process (nothing is persisted). Operations
// complete at the call that starts them, as in Viceroy; the *_wait
// hostcalls only collect the outcome.

// kvError is the witx $kv_error enum the *_wait hostcalls report.
type kvError = uint32

const (
	kvErrOK                 kvError = 1
	kvErrBadRequest         kvError = 2
	kvErrNotFound           kvError = 3
	kvErrPreconditionFailed kvError = 4
	kvErrPayloadTooLarge    kvError = 5
)

// Insert modes ($kv_insert_mode).
const (
	kvModeOverwrite = 0
	kvModeAdd       = 1
	kvModeAppend    = 2
	kvModePrepend   = 3
)

// Option bits of $kv_insert_config_options and $kv_list_config_options.
const (
	kvInsertMetadata          = 1 << 3
	kvInsertTTL               = 1 << 4
	kvInsertIfGenerationMatch = 1 << 5

	kvListCursor = 1 << 1
	kvListLimit  = 1 << 2
	kvListPrefix = 1 << 3
)

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

// --- hostcalls ---

// Pending operations; each is consumed by its *_wait hostcall.
type (
	kvLookupPending struct {
		item  kvItem
		found bool
	}
	kvInsertPending struct{ err kvError }
	kvDeletePending struct{ err kvError }
	kvListPending   struct {
		page []byte
		err  kvError
	}
)

// addKVHostcalls registers fastly_kv_store.* with the signatures
// compute-sdk-go v1.9.0 imports (plus the older lookup_wait).
func addKVHostcalls(add func(mod, name string, params []api.ValueType, fn hostFn)) {
	const kv = "fastly_kv_store"
	add(kv, "open", i32s(3), kvOpen)
	add(kv, "lookup", i32s(6), kvLookup)
	add(kv, "lookup_wait", i32s(7), kvLookupWait(false))
	add(kv, "lookup_wait_v2", i32s(7), kvLookupWait(true))
	add(kv, "insert", i32s(7), kvInsertCall)
	add(kv, "insert_wait", i32s(2), kvWait[*kvInsertPending](func(p *kvInsertPending) kvError { return p.err }))
	add(kv, "delete", i32s(6), kvDeleteCall)
	add(kv, "delete_wait", i32s(2), kvWait[*kvDeletePending](func(p *kvDeletePending) kvError { return p.err }))
	add(kv, "list", i32s(4), kvListCall)
	add(kv, "list_wait", i32s(3), kvListWait)
}

// open(name_ptr, name_len, store_out): $inval for a store that does not
// exist (the SDK's ErrStoreNotFound). Store handles are sticky and
// deduplicated by name, like config store handles.
func kvOpen(c *call) status {
	inst := c.inst
	name, ok := c.argString(0)
	if !ok {
		return stInval
	}
	if h, ok := inst.kvStores[name]; ok {
		return c.putU32Status(c.u32(2), h)
	}
	st := inst.s.kv.store(name)
	if st == nil {
		return stInval
	}
	h := inst.tab.add(st, inst.gen, true)
	if inst.kvStores == nil {
		inst.kvStores = map[string]uint32{}
	}
	inst.kvStores[name] = h
	return c.putU32Status(c.u32(2), h)
}

func (c *call) putU32Status(ptr, v uint32) status {
	if !c.putU32(ptr, v) {
		return stInval
	}
	return stOK
}

// kvKeyArg reads the store handle at stack position 0 and the key at 1,2:
// $badf for a bad store handle, $inval for a key Fastly would refuse (the
// SDK's ErrInvalidKey).
func kvKeyArg(c *call) (*kvStore, string, status) {
	st, ok := lookup[*kvStore](&c.inst.tab, c.u32(0))
	if !ok {
		return nil, "", stBadf
	}
	key, ok := c.argString(1)
	if !ok || fastlytoml.CheckKVKey(key) != nil {
		return nil, "", stInval
	}
	return st, key, stOK
}

// lookup(store, key_ptr, key_len, mask, config, handle_out)
func kvLookup(c *call) status {
	st, key, s := kvKeyArg(c)
	if s != stOK {
		return s
	}
	it, found := c.inst.s.kv.lookup(st, key)
	h := c.inst.tab.add(&kvLookupPending{item: it, found: found}, c.inst.gen, false)
	return c.putHandle(c.u32(5), h)
}

// lookup_wait(_v2)(handle, body_out, metadata_buf, metadata_buf_len,
// nwritten_out, generation_out, kv_error_out). A missing key is $ok with
// kv_error $not_found. Metadata that does not fit is $buflen with the
// needed length, and the lookup is spent (the SDK does not retry). The
// original lookup_wait has a u32 generation, which Viceroy leaves 0.
func kvLookupWait(v2 bool) hostFn {
	return func(c *call) status {
		p, ok := take[*kvLookupPending](&c.inst.tab, c.u32(0))
		if !ok {
			return stBadf
		}
		bodyOut, metaBuf, metaLen, nwrittenOut, genOut, errOut := c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5), c.u32(6)
		if !p.found {
			return c.putU32Status(errOut, kvErrNotFound)
		}
		meta := p.item.metadata
		if !c.putU32(nwrittenOut, uint32(len(meta))) {
			return stInval
		}
		if uint32(len(meta)) > metaLen {
			return stBufLen
		}
		if !c.putBytes(metaBuf, meta) {
			return stInval
		}
		genOK := c.putU32(genOut, 0)
		if v2 {
			genOK = c.putU64(genOut, p.item.generation)
		}
		if !genOK || !c.putU32(errOut, kvErrOK) {
			return stInval
		}
		b := newBody()
		if err := b.write(c.inst.ctx, p.item.value, false); err != nil {
			return stError
		}
		return c.putHandle(bodyOut, c.inst.tab.add(b, c.inst.gen, false))
	}
}

// insert(store, key_ptr, key_len, body, mask, config, handle_out): the
// body handle is consumed. A bad mode or an empty or non-UTF-8 metadata
// is $inval, as in Viceroy; store-level outcomes (add on an existing key,
// generation mismatch, too large) come from insert_wait.
func kvInsertCall(c *call) status {
	st, key, s := kvKeyArg(c)
	if s != stOK {
		return s
	}
	in, s := readKVInsertConfig(c, c.u32(4), c.u32(5))
	if s != stOK {
		return s
	}
	in.key = key
	b, ok := lookup[*body](&c.inst.tab, c.u32(3))
	if !ok {
		return stBadf
	}
	if b.streaming {
		return stInval
	}
	c.inst.tab.free(c.u32(3))
	value, tooLarge, err := readBodyAll(b, maxKVValue)
	b.release()
	var kvErr kvError
	switch {
	case err != nil:
		c.inst.s.log.Debug("kv insert: reading the body failed", "err", err)
		return stError
	case tooLarge:
		kvErr = kvErrPayloadTooLarge
	default:
		in.value = value
		kvErr = c.inst.s.kv.insert(st, in)
	}
	h := c.inst.tab.add(&kvInsertPending{err: kvErr}, c.inst.gen, false)
	return c.putHandle(c.u32(6), h)
}

// readKVInsertConfig reads a $kv_insert_config record: mode u32 @0,
// metadata pointer @8 and length @12, time_to_live_sec @16 and
// if_generation_match u64 @24.
func readKVInsertConfig(c *call, mask, ptr uint32) (kvInsert, status) {
	rec, ok := c.bytes(ptr, 32)
	if !ok {
		return kvInsert{}, stInval
	}
	u32 := func(off int) uint32 {
		return uint32(rec[off]) | uint32(rec[off+1])<<8 | uint32(rec[off+2])<<16 | uint32(rec[off+3])<<24
	}
	in := kvInsert{mode: u32(0)}
	if in.mode > kvModePrepend {
		return kvInsert{}, stInval
	}
	if mask&kvInsertMetadata != 0 {
		n := u32(12)
		meta, ok := c.bytes(u32(8), n)
		if !ok || n == 0 || !utf8.Valid(meta) {
			return kvInsert{}, stInval
		}
		in.metadata, in.hasMeta = bytes.Clone(meta), true
	}
	if mask&kvInsertTTL != 0 {
		in.ttl = time.Duration(u32(16)) * time.Second
	}
	if mask&kvInsertIfGenerationMatch != 0 {
		in.ifGen, in.hasIfGen = uint64(u32(24))|uint64(u32(28))<<32, true
	}
	return in, stOK
}

// readBodyAll reads a non-streaming body to its end, stopping once it is
// longer than limit.
func readBodyAll(b *body, limit int) (_ []byte, tooLarge bool, _ error) {
	var out bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := b.read(buf)
		if err != nil {
			return nil, false, err
		}
		if n == 0 {
			return out.Bytes(), false, nil
		}
		out.Write(buf[:n])
		if out.Len() > limit {
			return nil, true, nil
		}
	}
}

// delete(store, key_ptr, key_len, mask, config, handle_out)
func kvDeleteCall(c *call) status {
	st, key, s := kvKeyArg(c)
	if s != stOK {
		return s
	}
	h := c.inst.tab.add(&kvDeletePending{err: c.inst.s.kv.delete(st, key)}, c.inst.gen, false)
	return c.putHandle(c.u32(5), h)
}

// kvWait implements insert_wait and delete_wait(handle, kv_error_out).
func kvWait[P any](result func(P) kvError) hostFn {
	return func(c *call) status {
		p, ok := take[P](&c.inst.tab, c.u32(0))
		if !ok {
			return stBadf
		}
		return c.putU32Status(c.u32(1), result(p))
	}
}

// list(store, mask, config, handle_out). The $kv_list_config record is
// mode u32 @0, cursor pointer @4 and length @8, limit @12, prefix pointer
// @16 and length @20. A cursor or prefix flagged but empty, or not UTF-8,
// is $inval (Viceroy); a cursor that is not one this host made is
// kv_error $bad_request from list_wait.
func kvListCall(c *call) status {
	st, ok := lookup[*kvStore](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	mask := c.u32(1)
	rec, ok := c.bytes(c.u32(2), 24)
	if !ok {
		return stInval
	}
	u32 := func(off int) uint32 {
		return uint32(rec[off]) | uint32(rec[off+1])<<8 | uint32(rec[off+2])<<16 | uint32(rec[off+3])<<24
	}
	str := func(flag uint32, ptrOff, lenOff int) (string, bool) {
		if mask&flag == 0 {
			return "", true
		}
		b, ok := c.bytes(u32(ptrOff), u32(lenOff))
		if !ok || len(b) == 0 || !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	}
	cursor, ok1 := str(kvListCursor, 4, 8)
	prefix, ok2 := str(kvListPrefix, 16, 20)
	if !ok1 || !ok2 {
		return stInval
	}
	limit := uint32(defaultKVListLimit)
	if mask&kvListLimit != 0 && u32(12) > 0 {
		limit = u32(12)
	}
	page, kvErr := c.inst.s.kv.list(st, cursor, prefix, limit)
	h := c.inst.tab.add(&kvListPending{page: page, err: kvErr}, c.inst.gen, false)
	return c.putHandle(c.u32(3), h)
}

// list_wait(handle, body_out, kv_error_out): the page as a JSON body.
func kvListWait(c *call) status {
	p, ok := take[*kvListPending](&c.inst.tab, c.u32(0))
	if !ok {
		return stBadf
	}
	if p.err != kvErrOK {
		return c.putU32Status(c.u32(2), p.err)
	}
	if !c.putU32(c.u32(2), kvErrOK) {
		return stInval
	}
	b := newBody()
	if err := b.write(c.inst.ctx, p.page, false); err != nil {
		return stError
	}
	return c.putHandle(c.u32(1), c.inst.tab.add(b, c.inst.gen, false))
}
