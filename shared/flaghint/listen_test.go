package flaghint

import (
	"net"
	"strings"
	"testing"
)

// Net.Listen takes "" and a missing port as every interface at a random
// port; ListenAddr refuses both, and what is not HOST:PORT, as usage
// errors naming the setting.
func TestListenAddr(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1:", ":", "bogus", "127.0.0.1:99999", "127.0.0.1:nosuchservice", "localhost:http", "127.0.0.1:00", "127.0.0.1:+80"} {
		err := ListenAddr("--addr", addr, "127.0.0.1:8080")
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), "--addr") || !strings.Contains(err.Error(), "e.g. 127.0.0.1:8080 (") {
			t.Errorf("%q: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", ":8080", "[::1]:7676", "localhost:65535"} {
		if err := ListenAddr("--addr", addr, "127.0.0.1:8080"); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
}

// A taken address says to stop what listens there; another failure does
// not (nothing listens on an address not of this machine).
func TestListenError(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = net.Listen("tcp", held.Addr().String())
	if got := ListenError("--addr", err).Error(); !strings.HasPrefix(got, "--addr: ") || !strings.Contains(got, "stop what listens there") {
		t.Errorf("taken: %s", got)
	}
	_, err = net.Listen("tcp", "192.0.2.1:0")
	if got := ListenError("--addr", err).Error(); strings.Contains(got, "stop what listens") || !strings.Contains(got, "an address of this machine") {
		t.Errorf("not this machine's: %s", got)
	}
}
