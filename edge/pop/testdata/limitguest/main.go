// Command limitguest is the POP's guest for execution limits, pool
// behaviour and hot reload: routes that allocate, spin, sleep or wait on
// a backend, and one that names the instance and counts its requests.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fastly/compute-sdk-go/fsthttp"
)

var (
	instanceID string
	served     int
	hoard      [][]byte // what /alloc keeps alive
	spins      uint64
)

func main() {
	var id [8]byte
	rand.Read(id[:])
	instanceID = hex.EncodeToString(id[:])
	fsthttp.ServeMany(handle, &fsthttp.ServeManyOptions{})
	// Code after the serve loop: the tests look for this line to see that
	// an instance the pool let go ended cleanly.
	fmt.Printf("limitguest: serve loop ended %s after %d\n", instanceID, served)
}

func handle(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
	served++
	q := r.URL.Query()
	switch r.URL.Path {
	case "/id":
		fmt.Fprintf(w, "%s %d", instanceID, served)
	case "/version":
		io.WriteString(w, "limitguest")
	case "/alloc":
		// Allocate and touch mb MiB in 1 MiB pieces, keeping them alive.
		mb, _ := strconv.Atoi(q.Get("mb"))
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
		fmt.Fprintf(w, "allocated %d MiB", len(hoard))
	case "/spin":
		// Never returns: no hostcall, no sleep, only guest code.
		for {
			spins++
		}
	case "/sleep":
		ms, _ := strconv.Atoi(q.Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %d", ms)
	case "/after":
		// Answers, then works on with the client answered, as a batch
		// flush does (the POP's GuestSamples split the two).
		io.WriteString(w, "answered")
		w.Close()
		n, _ := strconv.Atoi(q.Get("n"))
		for i := range n {
			spins += uint64(i) * 2654435761
		}
	case "/gate":
		// Waits for the test's "gate" backend to answer.
		req, err := fsthttp.NewRequest("GET", "http://gate.example/", nil)
		if err != nil {
			w.WriteHeader(500)
			return
		}
		req.CacheOptions.Pass = true
		resp, err := req.Send(ctx, "gate")
		if err != nil {
			w.WriteHeader(502)
			io.WriteString(w, err.Error())
			return
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "gate: %s", body)
	default:
		w.WriteHeader(404)
		io.WriteString(w, "limitguest: no route "+r.URL.Path)
	}
}
