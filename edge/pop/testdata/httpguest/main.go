// Command httpguest is the POP's HTTP-area conformance guest: it drives the
// fastly_http_* and fastly_backend hostcalls through compute-sdk-go's public
// fsthttp API only, one scenario per path. Each scenario reports what the
// SDK returned (values, errors) as JSON or plain text, and the Go tests
// (conformance_http_test.go) decide whether that is what Fastly answers.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fastly/compute-sdk-go/fsthttp"
)

func main() {
	fsthttp.ServeMany(handle, &fsthttp.ServeManyOptions{})
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/headers":
		headers(w, r)
	case "/send":
		send(w, q.Get("name"), q.Get("path"))
	case "/dynamic":
		dynamic(w, q.Get("name"), q.Get("target"))
	case "/backendinfo":
		be, err := fsthttp.BackendFromName(q.Get("name"))
		if err != nil {
			report(w, map[string]any{"err": err.Error()})
			return
		}
		report(w, backendInfo(be))
	case "/sends":
		sends(w, q.Get("name"), atoi(q.Get("n")))
	case "/trailers/resp":
		// Trailers a streamed response ends with: one announced in the
		// Trailer header, one set with the TrailerPrefix after the body.
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(200)
		sum := sha256.New()
		for i := range 3 {
			chunk := fmt.Sprintf("chunk %d\n", i)
			io.WriteString(w, chunk)
			sum.Write([]byte(chunk))
		}
		w.Header().Set("X-Checksum", hex.EncodeToString(sum.Sum(nil)))
		w.Header().Set(fsthttp.TrailerPrefix+"X-Late", "late value")
	case "/trailers/backend":
		backendTrailers(w, q.Get("name"), q.Get("passthrough") == "1")
	case "/closedbody":
		// Write after Close: the body handle is gone, which the SDK
		// reports as ErrClosed ($badf underneath). The response is already
		// complete, so the outcome goes to stdout.
		io.WriteString(w, "closing")
		w.Close()
		_, err := w.Write([]byte("late"))
		fmt.Fprintf(os.Stdout, "closedbody write: closed=%v err=%v\n", errors.Is(err, fsthttp.ErrClosed), err)
	default:
		w.WriteHeader(404)
		io.WriteString(w, "no route "+r.URL.Path)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func report(w fsthttp.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// headers reports what the guest sees of a request with a long URL, a long
// header value and a header with many values, and answers with the same
// shapes so the client can check the host's reading of guest-set headers.
func headers(w fsthttp.ResponseWriter, r *fsthttp.Request) {
	long := r.Header.Get("X-Long")
	multi := r.Header.Values("X-Multi")
	names := 0
	for range r.Header {
		names++
	}
	out := map[string]any{
		"url_len":     len(r.URL.String()),
		"query_len":   len(r.URL.RawQuery),
		"long_len":    len(long),
		"long_sha":    sha(long),
		"multi_count": len(multi),
		"multi_sha":   sha(strings.Join(multi, "|")),
		"names":       names,
	}
	h := w.Header()
	h.Set("X-Resp-Long", long)
	for _, v := range multi {
		h.Add("X-Resp-Multi", v)
	}
	report(w, out)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

func newReq(path string) *fsthttp.Request {
	req, err := fsthttp.NewRequest("GET", "http://origin.example"+path, nil)
	if err != nil {
		panic(err)
	}
	req.CacheOptions.Pass = true
	return req
}

// send sends one request and reports the outcome.
func send(w fsthttp.ResponseWriter, name, path string) {
	resp, err := newReq(path).Send(context.Background(), name)
	out := map[string]any{}
	if err != nil {
		out["err"] = err.Error()
		out["not_found"] = errors.Is(err, fsthttp.ErrBackendNotFound)
	} else {
		body, _ := io.ReadAll(resp.Body)
		out["status"] = resp.StatusCode
		out["body"] = string(body)
	}
	report(w, out)
}

type beInfo struct {
	Name, Target, HostOverride             string
	Dynamic, SSL                           bool
	ConnectMs, FirstByteMs, BetweenBytesMs int64
	Err                                    string `json:",omitempty"`
}

func backendInfo(be *fsthttp.Backend) beInfo {
	return beInfo{
		Name: be.Name(), Target: be.Target(), HostOverride: be.HostOverride(),
		Dynamic: be.IsDynamic(), SSL: be.IsSSL(),
		ConnectMs:      be.ConnectTimeout().Milliseconds(),
		FirstByteMs:    be.FirstByteTimeout().Milliseconds(),
		BetweenBytesMs: be.BetweenBytesTimeout().Milliseconds(),
	}
}

// dynamic registers a dynamic backend, reads its configuration back,
// sends a request to it, and tries to register the name again and the name
// of the static backend "static".
func dynamic(w fsthttp.ResponseWriter, name, target string) {
	out := map[string]any{}
	opts := fsthttp.NewBackendOptions().
		HostOverride("dyn.example").
		ConnectTimeout(1234 * time.Millisecond).
		FirstByteTimeout(5678 * time.Millisecond).
		BetweenBytesTimeout(910 * time.Millisecond)
	be, err := fsthttp.RegisterDynamicBackend(name, target, opts)
	if err != nil {
		out["register_err"] = err.Error()
	} else {
		out["registered"] = backendInfo(be)
	}
	if be, err := fsthttp.BackendFromName(name); err == nil {
		out["from_name"] = backendInfo(be)
	} else {
		out["from_name_err"] = err.Error()
	}
	resp, err := newReq("/dyn?x=1").Send(context.Background(), name)
	if err != nil {
		out["send_err"] = err.Error()
	} else {
		body, _ := io.ReadAll(resp.Body)
		out["send_status"] = resp.StatusCode
		out["send_body"] = string(body)
	}
	_, err = fsthttp.RegisterDynamicBackend(name, target, nil)
	out["again_in_use"] = errors.Is(err, fsthttp.ErrBackendNameInUse)
	_, err = fsthttp.RegisterDynamicBackend("static", target, nil)
	out["static_in_use"] = errors.Is(err, fsthttp.ErrBackendNameInUse)
	report(w, out)
}

// sends makes n backend requests in one execution and reports each
// outcome: "ok" or the error.
func sends(w fsthttp.ResponseWriter, name string, n int) {
	var results []string
	for i := range n {
		resp, err := newReq("/n/"+strconv.Itoa(i)).Send(context.Background(), name)
		if err != nil {
			results = append(results, err.Error())
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		results = append(results, "ok")
	}
	report(w, results)
}

// backendTrailers fetches from a backend that ends its response with
// trailers: either reading the body and its trailers in the guest, or
// passing the body through to the client, trailers included.
func backendTrailers(w fsthttp.ResponseWriter, name string, passthrough bool) {
	resp, err := newReq("/trailers").Send(context.Background(), name)
	if err != nil {
		w.WriteHeader(502)
		io.WriteString(w, err.Error())
		return
	}
	if passthrough {
		w.WriteHeader(resp.StatusCode)
		w.Append(resp.Body)
		return
	}
	out := map[string]any{}
	// Before the body is read the trailers are not there yet ($again).
	_, err = resp.Trailers()
	out["early_not_ready"] = errors.Is(err, fsthttp.ErrTrailersNotReady)
	body, _ := io.ReadAll(resp.Body)
	out["body"] = string(body)
	t, err := resp.Trailers()
	if err != nil {
		out["err"] = err.Error()
	} else {
		out["trailers"] = map[string][]string(t)
	}
	report(w, out)
}
