// Command baseline is guest without the enrichment packages: the same
// standard library, and net/http as the edge module has it (through
// compute-sdk-go), so that the difference in module size and start cost
// is the enrichment's. Like guest, "start" does nothing.
package main

import (
	"fmt"
	"hash/fnv"
	_ "net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "digest" {
		f := fnv.New64a()
		fmt.Fprintf(f, "%+v %v", os.Args, time.Since(time.Now()))
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		os.Stdout.WriteString(strconv.FormatUint(f.Sum64()+m.HeapSys, 16) + "\n")
	}
}
