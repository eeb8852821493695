package pop

import (
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/edgepixel/edgepixel/edge/fastlytoml"
)

// fastly_kv_store: KV stores (kv.go), with the signatures compute-sdk-go
// v1.9.0 imports plus the older lookup_wait. Operations complete at the
// call that starts them, as in Viceroy; the *_wait calls only collect the
// outcome.
var fastlyKVStore = hostModule{name: "fastly_kv_store", funcs: []hostFunc{
	{"open", i32("name_ptr", "name_len", "store_out"), kvOpen},
	{"lookup", i32("store", "key_ptr", "key_len", "lookup_config_mask", "lookup_config", "handle_out"), kvLookup},
	{"lookup_wait", i32("handle", "body_handle_out", "metadata_buf", "metadata_buf_len", "nwritten_out", "generation_out", "kv_error_out"), kvLookupWait(false)},
	{"lookup_wait_v2", i32("handle", "body_handle_out", "metadata_buf", "metadata_buf_len", "nwritten_out", "generation_out", "kv_error_out"), kvLookupWait(true)},
	{"insert", i32("store", "key_ptr", "key_len", "body_handle", "insert_config_mask", "insert_config", "handle_out"), kvInsertCall},
	{"insert_wait", i32("handle", "kv_error_out"), kvWait[*kvInsertPending](func(p *kvInsertPending) kvError { return p.err })},
	{"delete", i32("store", "key_ptr", "key_len", "delete_config_mask", "delete_config", "handle_out"), kvDeleteCall},
	{"delete_wait", i32("handle", "kv_error_out"), kvWait[*kvDeletePending](func(p *kvDeletePending) kvError { return p.err })},
	{"list", i32("store", "list_config_mask", "list_config", "handle_out"), kvListCall},
	{"list_wait", i32("handle", "body_handle_out", "kv_error_out"), kvListWait},
}}

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

// Pending operations; each is consumed by its *_wait call.
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

// kvOpen implements fastly_kv_store.open(name_ptr, name_len, store_out): a
// handle to the named store. Store handles are sticky and deduplicated by
// name, like config store handles.
//
// Status: $ok; $inval for a store that does not exist (the SDK's
// ErrStoreNotFound).
//
// Differs: no known difference.
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

// kvLookup implements fastly_kv_store.lookup(store, key_ptr, key_len,
// lookup_config_mask, lookup_config, handle_out): looks the key up and
// returns a handle for lookup_wait to collect the outcome. The lookup
// options are ignored.
//
// Status: $ok; $inval for a key Fastly would refuse (fastlytoml.CheckKVKey).
//
// Differs: no known difference.
func kvLookup(c *call) status {
	st, key, s := kvKeyArg(c)
	if s != stOK {
		return s
	}
	it, found := c.inst.s.kv.lookup(st, key)
	h := c.inst.tab.add(&kvLookupPending{item: it, found: found}, c.inst.gen, false)
	return c.putHandle(c.u32(5), h)
}

// kvLookupWait implements fastly_kv_store.lookup_wait and lookup_wait_v2(
// handle, body_handle_out, metadata_buf, metadata_buf_len, nwritten_out,
// generation_out, kv_error_out): the outcome of a lookup. A found item's
// value comes as a new body, its metadata in metadata_buf (length in
// nwritten_out) and its generation in generation_out: a u64 in v2, a u32
// that is always 0 in the original. The handle is consumed.
//
// Status: $ok, with kv_error $ok, or $not_found for a missing key;
// $buflen when the metadata does not fit, with its length in nwritten_out
// (the lookup is spent: the SDK does not retry).
//
// Differs: no known difference; the original's generation is 0 as in
// Viceroy.
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

// kvInsertCall implements fastly_kv_store.insert(store, key_ptr, key_len,
// body_handle, insert_config_mask, insert_config, handle_out): stores the
// body (consumed) under key with the $kv_insert_config options (mode,
// metadata, time to live, if_generation_match), and returns a handle for
// insert_wait. Store-level outcomes (add on an existing key, generation
// mismatch, value over 25 MB) are insert_wait's kv_error.
//
// Status: $ok; $inval for a bad key, an unknown mode, empty or non-UTF-8
// metadata, or a streaming body; $error when reading the body fails.
//
// Differs: no known difference; the rules are Viceroy's.
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

// kvDeleteCall implements fastly_kv_store.delete(store, key_ptr, key_len,
// delete_config_mask, delete_config, handle_out): deletes key and returns
// a handle for delete_wait. Deleting a missing key succeeds.
//
// Status: $ok; $inval for a bad key.
//
// Differs: no known difference; Viceroy also succeeds for a missing key.
func kvDeleteCall(c *call) status {
	st, key, s := kvKeyArg(c)
	if s != stOK {
		return s
	}
	h := c.inst.tab.add(&kvDeletePending{err: c.inst.s.kv.delete(st, key)}, c.inst.gen, false)
	return c.putHandle(c.u32(5), h)
}

// kvWait implements fastly_kv_store.insert_wait and delete_wait(handle,
// kv_error_out): the operation's $kv_error; the handle is consumed.
//
// Status: $ok.
//
// Differs: no known difference.
func kvWait[P any](result func(P) kvError) hostFn {
	return func(c *call) status {
		p, ok := take[P](&c.inst.tab, c.u32(0))
		if !ok {
			return stBadf
		}
		return c.putU32Status(c.u32(1), result(p))
	}
}

// kvListCall implements fastly_kv_store.list(store, list_config_mask,
// list_config, handle_out): one page of the store's keys in byte order,
// for list_wait to collect. The $kv_list_config record is mode u32 @0,
// cursor pointer @4 and length @8, limit @12 (default 1000), prefix
// pointer @16 and length @20.
//
// Status: $ok; $inval for a cursor or prefix that is flagged but empty,
// or not UTF-8 (Viceroy's rule). A cursor that is not one this host made
// is kv_error $bad_request from list_wait.
//
// Differs: no known difference.
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

// kvListWait implements fastly_kv_store.list_wait(handle, body_handle_out,
// kv_error_out): the page as a JSON body in the SDK's kvstore.ListPage
// shape, {"data":[keys],"meta":{"limit":N,"prefix":P,"next_cursor":C}}.
// The handle is consumed.
//
// Status: $ok, with kv_error $ok or $bad_request.
//
// Differs: no known difference.
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
