// Command precompile fills a pop compilation cache for a module. The pop
// tests run it (built without -race) so that the race-instrumented test
// binary only loads the compiled code instead of compiling it, which under
// the race detector takes ten times longer.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/edgepixel/edgepixel/edge/pop"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: precompile CACHE_DIR MODULE.wasm...")
		os.Exit(2)
	}
	for _, wasm := range os.Args[2:] {
		if err := pop.Precompile(context.Background(), wasm, os.Args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
