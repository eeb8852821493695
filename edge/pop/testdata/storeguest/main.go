// Command storeguest is the POP's conformance guest for stores and
// geolocation: a compute-sdk-go program that calls the config store,
// dictionary, secret store, KV store and geolocation APIs through the
// SDK's public packages only, and reports what the SDK returned as JSON.
// The pop package's tests compare those reports with the manifest they
// started the POP with. Errors are reported by the name of the SDK's
// sentinel error they match, so the tests check the exact error the SDK
// derived from the host's status codes.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fastly/compute-sdk-go/configstore"
	"github.com/fastly/compute-sdk-go/edgedict"
	"github.com/fastly/compute-sdk-go/erl"
	"github.com/fastly/compute-sdk-go/fsthttp"
	"github.com/fastly/compute-sdk-go/geo"
	"github.com/fastly/compute-sdk-go/kvstore"
	"github.com/fastly/compute-sdk-go/secretstore"
)

var instanceID string

func main() {
	var id [8]byte
	rand.Read(id[:])
	instanceID = hex.EncodeToString(id[:])
	fsthttp.ServeMany(handle, &fsthttp.ServeManyOptions{})
}

// result is every route's answer; unused fields are left out.
type result struct {
	Instance   string   `json:"instance"`
	Err        string   `json:"err,omitempty"`
	Value      *string  `json:"value,omitempty"`
	Bytes      []byte   `json:"bytes,omitempty"`
	Has        *bool    `json:"has,omitempty"`
	Meta       *string  `json:"meta,omitempty"`
	Generation uint64   `json:"generation,omitempty"`
	Keys       []string `json:"keys,omitempty"`
	Pages      []page   `json:"pages,omitempty"`
	Geo        *geo.Geo `json:"geo,omitempty"`
	N          *uint32  `json:"n,omitempty"`
	Client     string   `json:"client,omitempty"`
}

type page struct {
	N          int    `json:"n"`
	NextCursor string `json:"next_cursor"`
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	q := r.URL.Query()
	res := &result{Instance: instanceID}
	switch r.URL.Path {
	case "/config":
		config(res, q.Get("store"), q.Get("key"))
	case "/dict":
		dict(res, q.Get("store"), q.Get("key"))
	case "/secret":
		secret(res, q.Get("store"), q.Get("key"))
	case "/secret/frombytes":
		s, err := secretstore.SecretFromBytes([]byte(q.Get("data")))
		if err == nil {
			res.Bytes, err = s.Plaintext()
		}
		res.Err = errName(err)
	case "/kv/get":
		kvGet(res, q.Get("store"), q.Get("key"))
		if ms, _ := strconv.Atoi(q.Get("sleep_ms")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	case "/kv/put":
		kvPut(res, r, q.Get("store"), q.Get("key"))
	case "/kv/del":
		kvDo(res, q.Get("store"), func(st *kvstore.Store) error { return st.Delete(q.Get("key")) })
	case "/kv/list":
		limit, _ := strconv.Atoi(q.Get("limit"))
		kvList(res, q.Get("store"), &kvstore.ListConfig{Prefix: q.Get("prefix"), Cursor: q.Get("cursor"), Limit: uint32(limit)})
	case "/geo":
		geoLookup(res, q.Get("ip"))
	case "/client":
		// What the guest is told of its client: the address, and its
		// geolocation as a module would look it up.
		res.Client = r.RemoteAddr
		geoLookup(res, r.RemoteAddr)
	case "/erl":
		erlCall(res, q)
	case "/erl/raw":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rawERLChecks())
		return
	case "/raw":
		ip := net.ParseIP(q.Get("ip")).To4()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rawChecks(q.Get("kv"), [4]byte(ip), q.Get("dict")))
		return
	default:
		w.WriteHeader(404)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

func config(res *result, store, key string) {
	st, err := configstore.Open(store)
	if err != nil {
		res.Err = errName(err)
		return
	}
	has, err := st.Has(key)
	if err != nil {
		res.Err = "has: " + errName(err)
		return
	}
	res.Has = &has
	v, err := st.Get(key)
	if err != nil {
		res.Err = errName(err)
		return
	}
	res.Value = &v
}

func dict(res *result, store, key string) {
	d, err := edgedict.Open(store)
	if err != nil {
		res.Err = errName(err)
		return
	}
	has, err := d.Has(key)
	if err != nil {
		res.Err = "has: " + errName(err)
		return
	}
	res.Has = &has
	v, err := d.Get(key)
	if err != nil {
		res.Err = errName(err)
		return
	}
	res.Value = &v
}

func secret(res *result, store, key string) {
	st, err := secretstore.Open(store)
	if err != nil {
		res.Err = errName(err)
		return
	}
	s, err := st.Get(key)
	if err != nil {
		res.Err = errName(err)
		return
	}
	res.Bytes, err = s.Plaintext()
	res.Err = errName(err)
}

func kvDo(res *result, store string, f func(*kvstore.Store) error) {
	st, err := kvstore.Open(store)
	if err != nil {
		res.Err = errName(err)
		return
	}
	res.Err = errName(f(st))
}

func kvGet(res *result, store, key string) {
	kvDo(res, store, func(st *kvstore.Store) error {
		e, err := st.Lookup(key)
		if err != nil {
			return err
		}
		if res.Bytes, err = io.ReadAll(e); err != nil {
			return err
		}
		meta := string(e.Meta())
		res.Meta = &meta
		res.Generation = e.Generation()
		return nil
	})
}

// kvPut inserts the request body under key; mode, meta, ttl and gen
// (if_generation_match) come from the query.
func kvPut(res *result, r *fsthttp.Request, store, key string) {
	q := r.URL.Query()
	cfg := &kvstore.InsertConfig{}
	switch q.Get("mode") {
	case "add":
		cfg.Mode = kvstore.InsertModeAdd
	case "append":
		cfg.Mode = kvstore.InsertModeAppend
	case "prepend":
		cfg.Mode = kvstore.InsertModePrepend
	}
	if q.Has("meta") {
		cfg.Metadata = []byte(q.Get("meta"))
	}
	if n, _ := strconv.Atoi(q.Get("metalen")); n > 0 {
		cfg.Metadata = []byte(strings.Repeat("m", n))
	}
	ttl, _ := strconv.Atoi(q.Get("ttl"))
	cfg.TTLSec = uint32(ttl)
	cfg.IfGenerationMatch, _ = strconv.ParseUint(q.Get("gen"), 10, 64)
	kvDo(res, store, func(st *kvstore.Store) error {
		// Passing the request body itself exercises insert with a body
		// handle the host streams from the client.
		return st.InsertWithConfig(key, r.Body, cfg)
	})
}

// kvList walks every page and records each page's size and cursor.
func kvList(res *result, store string, cfg *kvstore.ListConfig) {
	kvDo(res, store, func(st *kvstore.Store) error {
		it := st.List(cfg)
		for it.Next() {
			p := it.Page()
			res.Keys = append(res.Keys, p.Data...)
			res.Pages = append(res.Pages, page{N: len(p.Data), NextCursor: p.Meta.NextCursor})
			if len(res.Pages) > 1000 {
				return errors.New("list does not end")
			}
		}
		return it.Err()
	})
}

// geoLookup looks up ip; "badlen" sends a 5-byte address.
func geoLookup(res *result, ip string) {
	addr := net.ParseIP(ip)
	if ip == "badlen" {
		addr = net.IP{1, 2, 3, 4, 5}
	}
	g, err := geo.Lookup(addr)
	res.Geo = g
	res.Err = errName(err)
}

// errName names the SDK sentinel err matches ("" for nil), or returns its
// text.
func errName(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range []struct {
		name string
		err  error
	}{
		{"configstore.ErrStoreNotFound", configstore.ErrStoreNotFound},
		{"configstore.ErrStoreNameEmpty", configstore.ErrStoreNameEmpty},
		{"configstore.ErrStoreNameInvalid", configstore.ErrStoreNameInvalid},
		{"configstore.ErrStoreNameTooLong", configstore.ErrStoreNameTooLong},
		{"configstore.ErrKeyNotFound", configstore.ErrKeyNotFound},
		{"edgedict.ErrDictionaryNotFound", edgedict.ErrDictionaryNotFound},
		{"edgedict.ErrKeyNotFound", edgedict.ErrKeyNotFound},
		{"secretstore.ErrSecretStoreNotFound", secretstore.ErrSecretStoreNotFound},
		{"secretstore.ErrInvalidSecretStoreName", secretstore.ErrInvalidSecretStoreName},
		{"secretstore.ErrSecretNotFound", secretstore.ErrSecretNotFound},
		{"secretstore.ErrInvalidSecretName", secretstore.ErrInvalidSecretName},
		{"kvstore.ErrStoreNotFound", kvstore.ErrStoreNotFound},
		{"kvstore.ErrKeyNotFound", kvstore.ErrKeyNotFound},
		{"kvstore.ErrInvalidKey", kvstore.ErrInvalidKey},
		{"kvstore.ErrBadRequest", kvstore.ErrBadRequest},
		{"kvstore.ErrPreconditionFailed", kvstore.ErrPreconditionFailed},
		{"kvstore.ErrPayloadTooLarge", kvstore.ErrPayloadTooLarge},
		{"geo.ErrInvalidIP", geo.ErrInvalidIP},
		{"erl.ErrInvalidArgument", erl.ErrInvalidArgument},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return err.Error()
}
