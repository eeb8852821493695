// Command floor is the guest CPU bench's floor: a Fastly Compute guest that
// answers every request as the edge module answers a pixel hit, with
// edge/pixel's headers and GIF sent through edge/hostcall, and does nothing
// else: it reads no part of the request and enriches, buffers and delivers
// nothing. Its guest CPU per hit under the POP is what the host's side of a
// hit costs (taking the request, the answer's hostcalls, handing the answer
// to the connection, the thread clock's readings), the part of the edge
// module's figure no change to the module can remove.
package main

import (
	"time"

	"github.com/edgepixel/edgepixel/edge/hostcall"
	"github.com/edgepixel/edgepixel/edge/pixel"
)

func main() {
	if _, err := hostcall.Downstream(); err != nil {
		panic(err)
	}
	// A HEAD reads nothing of the request (no Meta) and gets the pixel's
	// headers; the answer is then the one an accepted GET gets: the GIF,
	// without the HEAD's drop reason.
	hit := pixel.Hit{Method: "HEAD", Path: pixel.PathPixel}
	var batcher pixel.Batcher
	var resp pixel.Response
	for {
		pixel.Serve(&hit, nil, &batcher, time.Now(), &resp)
		if err := answer(&resp); err != nil {
			panic(err)
		}
		if _, ok, err := hostcall.Next(5 * time.Second); err != nil || !ok {
			return
		}
	}
}

func answer(r *pixel.Response) error {
	resp, err := hostcall.NewResponse(r.Status)
	if err != nil {
		return err
	}
	for _, f := range r.Header {
		if f.Name == pixel.DropHeader {
			continue
		}
		if err := resp.AppendHeader(f.Name, f.Value); err != nil {
			return err
		}
	}
	return resp.Send(pixel.GIF)
}
