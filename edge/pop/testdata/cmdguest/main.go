// Command cmdguest is the POP's guest for Run (Viceroy's run subcommand):
// a WASI command, not a server. It prints its arguments, copies stdin to
// stdout, optionally serves the one (placeholder) client request and asks
// for another, and exits with the code its last argument names.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/fastly/compute-sdk-go/fsthttp"
)

func main() {
	args := os.Args[1:]
	fmt.Printf("argv0=%s args=%q\n", os.Args[0], args)
	fmt.Printf("FASTLY_HOSTNAME=%s FASTLY_TRACE_ID=%s\n", os.Getenv("FASTLY_HOSTNAME"), os.Getenv("FASTLY_TRACE_ID"))
	if len(args) > 0 && args[0] == "stdin" {
		io.Copy(os.Stdout, os.Stdin)
	}
	if len(args) > 0 && args[0] == "serve" {
		served := 0
		fsthttp.ServeMany(func(ctx context.Context, w fsthttp.ResponseWriter, r *fsthttp.Request) {
			served++
			meta, _ := r.FastlyMeta()
			fmt.Printf("request %s %s from %s to %s id %s\n", r.Method, r.URL, r.RemoteAddr, r.ServerAddr, meta.RequestID)
			fmt.Fprintln(w, "discarded")
		}, &fsthttp.ServeManyOptions{NextTimeout: time.Hour})
		fmt.Printf("served=%d\n", served)
	}
	if len(args) > 0 && args[0] == "panic" {
		panic("cmdguest panics")
	}
	if len(args) > 0 {
		if code, err := strconv.Atoi(args[len(args)-1]); err == nil {
			fmt.Fprintln(os.Stderr, "exiting with", code)
			os.Exit(code)
		}
	}
}
