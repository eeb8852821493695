// Command edgepixel-worker is edgepixel's Cloudflare Workers module: built
// with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared (or TinyGo's
// -target=wasip1 -buildmode=c-shared) it is a WASI reactor whose exports
// (exports.go) the worker's JavaScript, wrangler/src, calls for each
// request. The logic is package wrangler/worker; this package only moves
// bytes across the wasm boundary.
//
// The JavaScript instantiates the module inside the first fetch (workerd
// allows no random values at global scope, and the Go runtime asks for
// some as it starts), calls _initialize and then ep_init with the
// Worker's environment.
package main

// main is not called in a reactor (-buildmode=c-shared): _initialize runs
// the package initialisers and returns, and the exports do the work.
func main() {}
