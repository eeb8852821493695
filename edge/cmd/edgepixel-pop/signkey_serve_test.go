package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/tests/attack"
)

// A site with sign=reject whose key the secret store lacks had every hit
// dropped with nothing said (found by a new-user tester). The POP warns
// at start, where it sees the stores; the module says it at the site's
// first hit, as it must on Fastly, where no host sees them.
func TestEdgeModuleWarnsOfMissingPixelKey(t *testing.T) {
	wasm := edgeModule(t)
	toml, _, flags := edgeSetup(t)
	f, err := os.OpenFile(toml, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\"site.signed.example\" = \"sign=reject\"\n")
	f.Close()
	p := startModule(t, toml, wasm, flags...)
	c := attack.Client("127.0.0.2", 10*time.Second)
	defer c.CloseIdleConnections()
	askPixel(t, c, p.url, "signed.example")
	askPixel(t, c, p.url, "signed.example")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := p.stderr.String()
		pop := strings.Contains(out, "site.signed.example checks pixel signatures of site signed.example, but secret store edgepixel has no pixel_key.signed.example")
		module := strings.Contains(out, "edgepixel: site signed.example checks pixel signatures, but secret store edgepixel has no pixel_key.signed.example")
		if pop && module {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warned at start: %v, by the module: %v\n%s", pop, module, lastLines(out, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
