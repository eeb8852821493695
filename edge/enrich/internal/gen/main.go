// Command gen writes the enrichment packages' lookup tables (tables.go in
// edge/enrich/referrer and edge/enrich/bot) from the public lists kept
// beside them in data/ (see each data/SOURCE.md for where a list comes
// from, its version and licence). Run it from the repository root after
// replacing a list:
//
//	go run ./edge/enrich/internal/gen
//
// The output depends only on the files in data/, so running it twice
// gives the same tables; a test checks the committed tables are current.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	gen "github.com/edgepixel/edgepixel/edge/enrich/internal/gen/lib"
)

func main() {
	dir := flag.String("dir", "edge/enrich", "the edge/enrich directory")
	flag.Parse()
	for name, gen := range map[string]func(string) ([]byte, error){
		"referrer": gen.Referrer,
		"bot":      gen.Bot,
	} {
		src, err := gen(filepath.Join(*dir, name, "data"))
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		out := filepath.Join(*dir, name, "tables.go")
		if err := os.WriteFile(out, src, 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("wrote %s (%d bytes)\n", out, len(src))
	}
}
