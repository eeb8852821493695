package guard

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/edgepixel/edgepixel/shared/clientip"
)

// TestTrustedProxies: behind a trusted reverse proxy, a request's
// RemoteAddr is the client X-Forwarded-For names, and the proxy's own
// connections are not capped per client (they carry many clients); from
// a peer not trusted, the header is ignored and the cap applies.
func TestTrustedProxies(t *testing.T) {
	trust, err := clientip.NewTrust([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	remote := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })
	r := start(t, Config{MaxConnsPerClient: 1, Trust: trust}, &http.Server{}, remote)
	const fwd = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
	answer := func(from string) (int, string) {
		t.Helper()
		c := r.dial(from)
		br := bufio.NewReader(c)
		if _, err := c.Write([]byte(fwd)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body string
		fmt.Fscan(resp.Body, &body)
		return resp.StatusCode, body
	}
	for i := range 3 { // three connections held open from the proxy
		if status, got := answer("127.0.0.2"); status != 200 || got != "203.0.113.7" {
			t.Fatalf("proxy connection %d: %d %q, want 200 from 203.0.113.7", i, status, got)
		}
	}
	if status, got := answer("127.0.0.3"); status != 200 || netip.MustParseAddrPort(got).Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("from a peer not trusted: %d %q, want 200 from the peer itself", status, got)
	}
	if status, _ := answer("127.0.0.3"); status != http.StatusTooManyRequests {
		t.Fatalf("second connection from a peer not trusted: %d, want 429 (its cap)", status)
	}
}
