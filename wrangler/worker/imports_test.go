package worker

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWorkerImports keeps net/http, crypto/tls and the public-key crypto
// they bring out of the worker module: the pixel logic needs none of
// them, and their package initialisers are what TinyGo's compile-time
// interpreter spends minutes in (crypto/internal/fips140/nistec).
func TestWorkerImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command("go", "list", "-deps", "github.com/edgepixel/edgepixel/wrangler/cmd/edgepixel-worker")
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps gave %d packages", len(deps))
	}
	for _, p := range deps {
		for _, banned := range []string{"net/http", "crypto/tls", "crypto/x509", "crypto/ecdsa", "crypto/rsa", "crypto/internal/fips140/nistec"} {
			if p == banned || strings.HasPrefix(p, banned+"/") {
				t.Errorf("the worker imports %s", p)
			}
		}
	}
}
