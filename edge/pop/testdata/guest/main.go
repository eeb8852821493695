// Command guest is the POP's conformance guest: a compute-sdk-go program
// that exercises the hostcalls through the SDK's public API only. The pop
// package's tests build it with GOOS=wasip1 GOARCH=wasm and drive it over
// HTTP. Each route is one behaviour the tests check.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fastly/compute-sdk-go/configstore"
	"github.com/fastly/compute-sdk-go/edgedict"
	"github.com/fastly/compute-sdk-go/fsthttp"
	"github.com/fastly/compute-sdk-go/kvstore"
	"github.com/fastly/compute-sdk-go/rtlog"
	"github.com/fastly/compute-sdk-go/secretstore"
)

var (
	instanceID string
	served     int
	logger     = rtlog.Open("guestlog")
)

func main() {
	// A "poison" entry in the KV store of that name (when one is
	// configured) makes every new instance fail at start, as a module
	// whose start-up dependency broke would: see /poison.
	if st, err := kvstore.Open("poison"); err == nil {
		if _, err := st.Lookup("poison"); err == nil {
			fmt.Fprintln(os.Stderr, "guest: poisoned; exiting at start")
			os.Exit(3)
		}
	}
	var id [8]byte
	rand.Read(id[:])
	instanceID = hex.EncodeToString(id[:])

	opts := &fsthttp.ServeManyOptions{}
	final := ""
	if st, err := configstore.Open("guest"); err == nil {
		if v, err := st.Get("next_timeout_ms"); err == nil {
			ms, _ := strconv.Atoi(v)
			opts.NextTimeout = time.Duration(ms) * time.Millisecond
		}
		if v, err := st.Get("max_requests"); err == nil {
			opts.MaxRequests, _ = strconv.Atoi(v)
		}
		final, _ = st.Get("final_backend")
	}

	fsthttp.ServeMany(handle, opts)

	// Post-loop work: the POP must let this run at shutdown.
	if final != "" {
		req, err := fsthttp.NewRequest("POST", "http://final/final", strings.NewReader("bye "+instanceID+" "+strconv.Itoa(served)))
		if err == nil {
			req.CacheOptions.Pass = true
			if resp, err := req.Send(context.Background(), final); err == nil {
				io.Copy(io.Discard, resp.Body)
			} else {
				fmt.Fprintln(os.Stderr, "guest: final send:", err)
			}
		}
	}
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	served++
	q := r.URL.Query()
	switch r.URL.Path {
	case "/info":
		info(w, r)
	case "/echo":
		echo(w, r)
	case "/counter":
		w.Header().Set("X-Instance", instanceID)
		fmt.Fprintf(w, "%s %d", instanceID, served)
	case "/backend":
		backend(w, r, q.Get("name"), q.Get("path"), q.Get("stream") == "1")
	case "/log":
		fmt.Fprintf(logger, "%s", q.Get("msg"))
		fmt.Fprintln(os.Stdout, "guest stdout:", q.Get("msg"))
		io.WriteString(w, "logged")
	case "/config":
		st, err := configstore.Open(q.Get("store"))
		if err != nil {
			fail(w, 404, err)
			return
		}
		v, err := st.Get(q.Get("key"))
		if err != nil {
			fail(w, 404, err)
			return
		}
		io.WriteString(w, v)
	case "/dict":
		d, err := edgedict.Open(q.Get("store"))
		if err != nil {
			fail(w, 404, err)
			return
		}
		v, err := d.Get(q.Get("key"))
		if err != nil {
			fail(w, 404, err)
			return
		}
		io.WriteString(w, v)
	case "/secret":
		v, err := secretstore.Plaintext(q.Get("store"), q.Get("key"))
		if err != nil {
			fail(w, 404, err)
			return
		}
		w.Write(v)
	case "/slowtail":
		// The response is complete at Close; the sleep after it must not
		// delay the client.
		io.WriteString(w, "done")
		w.Close()
		time.Sleep(3 * time.Second)
	case "/big":
		// mb MiB of zeros, streamed as written.
		mb, _ := strconv.Atoi(q.Get("mb"))
		buf := make([]byte, 64<<10)
		for range mb * 16 {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	case "/panic":
		panic("guest panics on purpose")
	case "/poison":
		// From now on no instance starts (see main); this one ends too.
		st, err := kvstore.Open("poison")
		if err == nil {
			err = st.Insert("poison", strings.NewReader("1"))
		}
		if err != nil {
			fail(w, 500, err)
			return
		}
		io.WriteString(w, "poisoned")
		w.Close()
		os.Exit(3)
	case "/status":
		code, _ := strconv.Atoi(q.Get("code"))
		w.Header().Set("X-Custom", "yes")
		w.WriteHeader(code)
		io.WriteString(w, "status body")
	default:
		w.WriteHeader(404)
		io.WriteString(w, "no route "+r.URL.Path)
	}
}

func fail(w fsthttp.ResponseWriter, code int, err error) {
	w.Header().Set("X-Error", err.Error())
	w.WriteHeader(code)
	io.WriteString(w, err.Error())
}

type infoResp struct {
	Method, URL, Host, Path, RawQuery, Proto string
	RemoteAddr, ServerAddr                   string
	Header                                   map[string][]string
	BodyLen                                  int
	Instance                                 string
}

func info(w fsthttp.ResponseWriter, r *fsthttp.Request) {
	body, _ := io.ReadAll(r.Body)
	out := infoResp{
		Method: r.Method, URL: r.URL.String(), Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Proto: r.Proto, RemoteAddr: r.RemoteAddr, ServerAddr: r.ServerAddr,
		Header: map[string][]string(r.Header), BodyLen: len(body), Instance: instanceID,
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func echo(w fsthttp.ResponseWriter, r *fsthttp.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	for i := 0; i < 5; i++ {
		h.Add("X-Multi", "v"+strconv.Itoa(i))
	}
	if n, _ := strconv.Atoi(r.URL.Query().Get("big")); n > 0 {
		h.Set("X-Big", strings.Repeat("b", n))
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h.Set("X-Header-Keys", strings.Join(keys, ","))
	w.WriteHeader(201)
	io.Copy(w, r.Body)
}

func backend(w fsthttp.ResponseWriter, r *fsthttp.Request, name, path string, stream bool) {
	var body io.Reader = bytes.NewReader([]byte("hello backend"))
	if stream {
		// Not a bytes/strings reader: fsthttp streams it (send_async_streaming).
		body = io.MultiReader(strings.NewReader("hello "), strings.NewReader("streamed backend"))
	}
	req, err := fsthttp.NewRequest("POST", "http://origin.example"+path, body)
	if err != nil {
		fail(w, 500, err)
		return
	}
	req.Header.Set("X-From-Guest", "1")
	req.Header.Add("X-Two", "a")
	req.Header.Add("X-Two", "b")
	req.CacheOptions.Pass = true
	resp, err := req.Send(context.Background(), name)
	if err != nil {
		code := 502
		if errors.Is(err, fsthttp.ErrBackendNotFound) {
			code = 503
		}
		fail(w, code, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		fail(w, 500, err)
		return
	}
	w.Header().Set("X-Backend-Status", strconv.Itoa(resp.StatusCode))
	w.Header().Set("X-Backend-Header", resp.Header.Get("X-Backend"))
	w.Write(data)
}
