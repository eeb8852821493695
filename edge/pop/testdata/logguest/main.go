// Command logguest is the test guest for log endpoints, the access log,
// TLS metadata and graceful shutdown. Like an edge module that buffers
// events, it writes to a log endpoint after its ServeMany loop ends, which
// the host must let run and deliver at shutdown.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fastly/compute-sdk-go/fsthttp"
	"github.com/fastly/compute-sdk-go/rtlog"
)

var served int

func main() {
	fsthttp.ServeMany(handle, &fsthttp.ServeManyOptions{})
	fmt.Fprintf(rtlog.Open("shutdown"), `{"event":"bye","served":%d}`, served)
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	served++
	q := r.URL.Query()
	switch r.URL.Path {
	case "/log":
		// n entries to endpoint ep: msg as is for n <= 1, else msg-0..msg-(n-1).
		ep := rtlog.Open(q.Get("ep"))
		n, _ := strconv.Atoi(q.Get("n"))
		if n <= 1 {
			io.WriteString(ep, q.Get("msg"))
		} else {
			for i := range n {
				fmt.Fprintf(ep, "%s-%d", q.Get("msg"), i)
			}
		}
		io.WriteString(w, "logged")
	case "/tls":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"proto":    r.Proto,
			"scheme":   r.URL.Scheme,
			"protocol": r.TLSInfo.Protocol,
			"cipher":   r.TLSInfo.CipherOpenSSLName,
			"sni":      r.TLSInfo.ClientSNI,
		})
	case "/sleep":
		ms, _ := strconv.Atoi(q.Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, "slept")
	default:
		w.WriteHeader(404)
		io.WriteString(w, "no route "+r.URL.Path)
	}
}
