package main

import (
	"unsafe"
)

// Raw hostcalls, for the misuse the SDK never commits (bad handles, a
// handle of the wrong kind, bad config records): the host must answer
// with the status a Fastly host gives, not crash or guess. Pointers are
// passed as u32, as the SDK does on wasm32.

//go:wasmimport fastly_kv_store open
func rawKVOpen(name, nameLen, out uint32) uint32

//go:wasmimport fastly_kv_store lookup
func rawKVLookup(store, key, keyLen, mask, cfg, out uint32) uint32

//go:wasmimport fastly_kv_store lookup_wait_v2
func rawKVLookupWait(h, bodyOut, meta, metaLen, nwritten, gen, kvErr uint32) uint32

//go:wasmimport fastly_kv_store insert
func rawKVInsert(store, key, keyLen, body, mask, cfg, out uint32) uint32

//go:wasmimport fastly_kv_store insert_wait
func rawKVInsertWait(h, kvErr uint32) uint32

//go:wasmimport fastly_kv_store list
func rawKVList(store, mask, cfg, out uint32) uint32

//go:wasmimport fastly_http_body new
func rawBodyNew(out uint32) uint32

//go:wasmimport fastly_geo lookup
func rawGeoLookup(addr, addrLen, buf, bufLen, nwritten uint32) uint32

//go:wasmimport fastly_config_store get
func rawConfigGet(h, key, keyLen, buf, bufLen, nwritten uint32) uint32

//go:wasmimport fastly_dictionary open
func rawDictOpen(name, nameLen, out uint32) uint32

//go:wasmimport fastly_secret_store plaintext
func rawSecretPlaintext(h, buf, bufLen, nwritten uint32) uint32

const badHandle = 0xFFFF_FFFE

func ptr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

func strPtr(s string) (uint32, uint32) {
	if s == "" {
		return 0, 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), uint32(len(s))
}

// rawChecks runs each misuse and reports the status (and for $buflen the
// length the host asked for). kvStore is an existing KV store, geoIP4 a
// configured IPv4 address and dictName an existing dictionary.
func rawChecks(kvStore string, geoIP4 [4]byte, dictName string) map[string]uint32 {
	out := map[string]uint32{}
	var kvh, h, body, kvErr, n uint32
	var cfg [32]byte // zeroed $kv_insert_config / $kv_list_config
	key, keyLen := strPtr("k")

	name, nameLen := strPtr("no such store")
	out["kv_open_unknown"] = rawKVOpen(name, nameLen, ptr(&h))
	name, nameLen = strPtr(kvStore)
	out["kv_open"] = rawKVOpen(name, nameLen, ptr(&kvh))

	out["kv_lookup_bad_store"] = rawKVLookup(badHandle, key, keyLen, 0, ptr(&cfg), ptr(&h))
	out["kv_lookup_wait_bad_handle"] = rawKVLookupWait(badHandle, ptr(&body), 0, 0, ptr(&n), ptr(&cfg), ptr(&kvErr))

	// A lookup handle is not an insert handle, and a store handle is not
	// a body.
	var lh uint32
	rawKVLookup(kvh, key, keyLen, 0, ptr(&cfg), ptr(&lh))
	out["kv_insert_wait_on_lookup_handle"] = rawKVInsertWait(lh, ptr(&kvErr))
	out["kv_insert_store_as_body"] = rawKVInsert(kvh, key, keyLen, kvh, 0, ptr(&cfg), ptr(&h))

	rawBodyNew(ptr(&body))
	badMode := cfg
	badMode[0] = 9
	out["kv_insert_bad_mode"] = rawKVInsert(kvh, key, keyLen, body, 0, ptr(&badMode), ptr(&h))
	// $metadata flagged with a zero length.
	out["kv_insert_empty_metadata"] = rawKVInsert(kvh, key, keyLen, body, 1<<3, ptr(&cfg), ptr(&h))
	// $cursor flagged with a zero length.
	out["kv_list_empty_cursor"] = rawKVList(kvh, 1<<1, ptr(&cfg), ptr(&h))
	out["kv_list_bad_store"] = rawKVList(badHandle, 0, ptr(&cfg), ptr(&h))

	var small [4]byte
	n = 0
	out["geo_small_buffer"] = rawGeoLookup(ptr(&geoIP4[0]), 4, ptr(&small[0]), uint32(len(small)), ptr(&n))
	out["geo_small_buffer_needed"] = n
	out["geo_addr_len_5"] = rawGeoLookup(ptr(&geoIP4[0]), 5, ptr(&small[0]), uint32(len(small)), ptr(&n))

	out["config_get_bad_handle"] = rawConfigGet(badHandle, key, keyLen, ptr(&small[0]), 4, ptr(&n))
	var dh uint32
	name, nameLen = strPtr(dictName)
	rawDictOpen(name, nameLen, ptr(&dh))
	out["config_get_dictionary_handle"] = rawConfigGet(dh, key, keyLen, ptr(&small[0]), 4, ptr(&n))
	out["secret_plaintext_bad_handle"] = rawSecretPlaintext(badHandle, ptr(&small[0]), 4, ptr(&n))
	return out
}
