package pop

import (
	"context"
	"net"
	"testing"
)

func TestParseResolve(t *testing.T) {
	for _, tc := range []struct{ spec, key, addr string }{
		{"example.com:443:127.0.0.1", "example.com:443", "127.0.0.1:443"},
		{"Example.COM:80:[::1]", "example.com:80", "[::1]:80"},
		{"h:8080:::1", "h:8080", "[::1]:8080"},
		{"h:443:127.0.0.1:8443", "h:443", "127.0.0.1:8443"},
		{"h:443:[::1]:8443", "h:443", "[::1]:8443"},
	} {
		k, a, err := ParseResolve(tc.spec)
		if err != nil || k != tc.key || a != tc.addr {
			t.Errorf("ParseResolve(%q) = %q, %q, %v; want %q, %q", tc.spec, k, a, err, tc.key, tc.addr)
		}
	}
	for _, bad := range []string{"", "host", "host:443", "host:x:127.0.0.1", ":443:127.0.0.1", "host:443:not-an-ip", "host:0:127.0.0.1",
		"host:443:127.0.0.1:0", "host:443:name:80"} {
		if _, _, err := ParseResolve(bad); err == nil {
			t.Errorf("ParseResolve(%q) accepted", bad)
		}
	}
}

func TestResolvingDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var dialed []string
	dial := resolving(map[string]string{"Backend.Example:" + port: ln.Addr().String()},
		func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		})
	c, err := dial(context.Background(), "tcp", "backend.example:"+port)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Not overridden: dialed as given (and refused: nothing listens on 1).
	dial(context.Background(), "tcp", "127.0.0.1:1")
	if len(dialed) != 2 || dialed[0] != ln.Addr().String() || dialed[1] != "127.0.0.1:1" {
		t.Errorf("dialed %q", dialed)
	}
}
